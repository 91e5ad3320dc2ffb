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

/// Every buffer a training run allocates: the model's and the optimizer's (what `wgpt info`
/// prints and the trainer checks against the adapter's memory).
pub fn memory_plan(rc: &crate::config::RunConfig) -> crate::model::memory::MemoryPlan {
    let m = &rc.model;
    crate::model::memory::MemoryPlan::model(m, rc.train().device_batch_size, &rc.file.memory)
        .with(optimizer::plan(&crate::model::ParamLayout::new(m)))
}
