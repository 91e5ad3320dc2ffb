//! Training: schedules and hyperparameter transfer ([`schedule`]), the GPU optimizer
//! ([`optimizer`]), checkpoints ([`checkpoint`]), the loop ([`trainer`]), evaluation samples
//! ([`sampling`]), peak FLOPS for MFU ([`mfu`]), and the run report ([`report`], [`plot`]).

pub mod checkpoint;
pub mod mfu;
pub mod optimizer;
pub mod plot;
pub mod precision;
pub mod report;
pub mod rundir;
pub mod sampling;
pub mod schedule;
pub mod trainer;

pub use schedule::Hyper;

/// Every buffer a training run allocates: the model's, the optimizer's and, with
/// `train.core_every`, the CORE scorer's beyond what it borrows from the model (what `wgpt info`
/// prints and the trainer checks against the adapter's memory), at the precision the config asks
/// for. Planning opens no adapter, so `auto` is planned as f16, what it resolves to on adapters
/// with cooperative matrices; elsewhere it resolves to f32, whose plan is smaller by the f16
/// weight copies.
pub fn memory_plan(rc: &crate::config::RunConfig) -> crate::model::memory::MemoryPlan {
    let planned = match rc.train().precision {
        crate::config::Precision::F32 => crate::kernels::matmul::MatmulPrecision::F32,
        crate::config::Precision::F16 | crate::config::Precision::Auto => crate::kernels::matmul::MatmulPrecision::F16,
    };
    memory_plan_at(rc, planned)
}

/// [`memory_plan`] with the products at `matmul`, whatever the config says.
pub fn memory_plan_at(
    rc: &crate::config::RunConfig,
    matmul: crate::kernels::matmul::MatmulPrecision,
) -> crate::model::memory::MemoryPlan {
    let m = &rc.model;
    let model = crate::model::memory::MemoryPlan::model(m, rc.train().device_batch_size, &rc.file.memory, matmul);
    // CORE during training scores on the training model's own buffers where they are large
    // enough (it runs between steps); only the rest is allocated beside them.
    let core = if rc.train().core_every > 0 {
        let scorer =
            crate::eval::scorer::Scorer::plan(m, &rc.file.memory, matmul, crate::eval::scorer::DEFAULT_TOKENS_PER_PASS);
        let mut extra = scorer.not_in(&model);
        for e in &mut extra.entries {
            e.name = format!("core.{}", e.name);
        }
        extra
    } else {
        crate::model::memory::MemoryPlan::default()
    };
    model.with(optimizer::plan(&crate::model::ParamLayout::new(m))).with(core)
}
