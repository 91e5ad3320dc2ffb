//! The GPU optimizer of a training run (spec §3): AdamW for the six AdamW groups, Muon for every
//! shape group, and the global gradient norm with its non-finite check, recorded into the
//! trainer's [`Stream`] as one step.
//!
//! ```text
//! let mut opt = Optimizer::new(ctx, &layout, MuonVariant::Seed)?; // allocates OptimizerBuffers
//! loop {
//!     // … forward/backward accumulate into `grads` …
//!     opt.step(&mut s, &params, &grads, it, &hyper, &scaler)?; // records; writes this step's scalars
//!     s.run()?;                                        // (submit before the next step() call)
//!     let r = opt.grad_report()?;                      // ‖g‖ and the non-finite count: one readback
//!     if r.nonfinite > 0 { stop: the step was skipped on the GPU, params and state are intact }
//! }
//! let entries = opt.state()?;       // checkpoint: [(name, values)] for the four state buffers
//! opt.load_state(&entries)?;        // resume
//! ```
//!
//! One step is, in this order: the gradient-norm reduction over the whole gradient arena
//! (partials per 4,096-element block, per-tensor totals, grand total: 3 dispatches plus one per
//! extra binding-sized chunk of the arena), one AdamW dispatch over every AdamW tensor (more only
//! if the AdamW part of the arena exceeds one storage binding), then each Muon group in slices
//! (27 dispatches plus matmul chunks per slice, see `kernels::muon`). d12 is 3 + 1 + 13·27 ≈ 355
//! dispatches. Every kernel that writes parameters or optimizer state first reads the non-finite
//! count the norm pass produced and does nothing when it is non-zero, so a NaN or infinite
//! gradient never reaches the weights or the moments: the step is skipped, and the trainer stops
//! with the previous checkpoint still valid.
//!
//! The dispatches are recorded once, on the first `step` (bind groups, tables, autotuned matmul
//! variants) and replayed on later steps with the same parameter and gradient buffers; what a step
//! changes (learning rates, bias corrections, momentum, weight decay) is written into the
//! `optim.scalars` buffer by [`Optimizer::step`] before the submission that runs it. The AdamW
//! bias-correction step is t = it + 1, as nanochat's per-parameter counter is after `it + 1` steps,
//! so a resumed run needs no extra state beyond `it`.
//!
//! State layout (what [`Optimizer::state`] returns; fields of [`OptimizerBuffers`]):
//! - `adamw.m`, `adamw.v`: the AdamW tensors' moments packed back to back in `layout.specs` order
//!   (no alignment gaps), so tensor i's state starts at the sum of the earlier AdamW tensors'
//!   element counts ([`Optimizer::adamw_state_ranges`] lists them by name);
//! - `muon.momentum`: each Muon group's K·R·C momentum in `layout.muon_groups` order (matrix j of
//!   a group at j·R·C, as in the arena);
//! - `muon.second_moment`: each group's K·max(R, C) NorMuon second moment, same order.
//!
//! Workspace (also [`OptimizerBuffers`]' fields, and so entries of the memory plan): `optim.scalars` (8 per AdamW group + 4 per
//! Muon group), `adamw.table` (8 u32 per AdamW tensor), `grad_norm.table` (4 u32 per tensor),
//! `grad_norm.partials` (2 per 4,096-element block), `grad_norm.out` (2 + 2 per tensor), and
//! Muon's `muon.ws.{x,y}` (largest slice kk·R·C), `muon.ws.{gram,poly}` (kk·min(R,C)²),
//! `muon.ws.{stats,scale}` (kk·max(R,C)) with slices bounded by `kernels::muon::SLICE_ELEMS`:
//! 4 × 7.1 M floats (108 MiB) for d12.

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext, GpuTensor};
use crate::kernels::adamw::{self, adamw_scalars, adamw_step, AdamwHyper, AdamwTensor, HYPER_WORDS};
use crate::kernels::grad_norm::{self, grad_norm, GradNormReport};
use crate::kernels::muon::{self, muon_scalars, muon_step, MuonWorkspace, SCALAR_WORDS, SLICE_ELEMS};
use crate::kernels::Stream;
use crate::model::memory::{Allocator, BufferSource, Category, MemoryPlan, Planner};
use crate::model::{OptGroup, ParamLayout};
use crate::reference::muon::MuonVariant;
use crate::train::Hyper;

/// The AdamW groups in the order of their per-step scalars.
pub const ADAMW_GROUPS: [OptGroup; 6] =
    [OptGroup::Unembedding, OptGroup::Embedding, OptGroup::ValueEmbeds, OptGroup::Resid, OptGroup::X0, OptGroup::Smear];

/// AdamW's eps in every group.
pub const ADAMW_EPS: f64 = 1e-10;

/// (β1, β2, weight decay) of an AdamW group, as nanochat's `setup_optimizer` builds them. The
/// AdamW decays are constants (only Muon's is scheduled and batch-scaled).
pub fn adamw_group_constants(g: OptGroup) -> Option<(f64, f64, f64)> {
    match g {
        OptGroup::Unembedding => Some((0.8, 0.96, 0.01)),
        OptGroup::Embedding => Some((0.8, 0.995, 0.001)),
        OptGroup::ValueEmbeds => Some((0.8, 0.995, 0.01)),
        OptGroup::Resid => Some((0.8, 0.95, 0.05)),
        OptGroup::X0 => Some((0.96, 0.95, 0.0)),
        OptGroup::Smear => Some((0.8, 0.95, 0.0)),
        OptGroup::Muon => None,
    }
}

fn adamw_group_index(g: OptGroup) -> Option<usize> {
    ADAMW_GROUPS.iter().position(|&x| x == g)
}

/// Everything one step needs that changes from step to step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepScalars {
    /// AdamW's bias-correction step t ≥ 1.
    pub adamw_step: u64,
    /// Learning rate of each AdamW group, in [`ADAMW_GROUPS`] order.
    pub adamw_lr: [f64; 6],
    /// Muon's learning rate before the √max(1, rows/cols) factor.
    pub muon_lr: f64,
    pub muon_momentum: f64,
    pub muon_weight_decay: f64,
    /// What the gradients arrive multiplied by: the loss scale S (a power of two; 1 in f32). The
    /// kernels divide it out exactly as they read the gradients (see `train::precision`).
    pub grad_scale: f64,
}

impl StepScalars {
    /// The schedule's values at training step `it` (spec §3.4): every lr × lr_multiplier(it), Muon
    /// momentum and weight decay from their schedules, t = it + 1.
    pub fn scheduled(hyper: &Hyper, it: usize) -> Self {
        let lrm = hyper.lr_multiplier(it);
        StepScalars {
            adamw_step: it as u64 + 1,
            adamw_lr: ADAMW_GROUPS.map(|g| hyper.group_lr(g) * lrm),
            muon_lr: hyper.lr_muon * lrm,
            muon_momentum: hyper.muon_momentum(it),
            muon_weight_decay: hyper.muon_weight_decay_at(it),
            grad_scale: 1.0,
        }
    }

    /// The words of `optim.scalars` for a layout's Muon groups.
    fn words(&self, layout: &ParamLayout) -> Vec<f32> {
        let groups: Vec<AdamwHyper> = ADAMW_GROUPS
            .iter()
            .zip(self.adamw_lr)
            .map(|(&g, lr)| {
                let (beta1, beta2, weight_decay) = adamw_group_constants(g).expect("AdamW group");
                AdamwHyper { lr, beta1, beta2, eps: ADAMW_EPS, weight_decay }
            })
            .collect();
        let mut w = adamw_scalars(&groups, self.adamw_step, self.grad_scale);
        for g in &layout.muon_groups {
            let (mu, lr, wd) = (self.muon_momentum, self.muon_lr, self.muon_weight_decay);
            w.extend(muon_scalars(mu, lr, wd, g.rows, g.cols, self.grad_scale));
        }
        w
    }
}

/// One Muon group's place in the state buffers.
#[derive(Clone, Debug)]
struct MuonSlot {
    k: usize,
    rows: usize,
    cols: usize,
    param_offset: usize,
    momentum_offset: usize,
    second_offset: usize,
}

fn adamw_tensors(layout: &ParamLayout) -> Vec<(String, AdamwTensor)> {
    let mut at = 0;
    let mut out = Vec::new();
    for (spec, &offset) in layout.specs.iter().zip(&layout.offsets) {
        if let Some(group) = adamw_group_index(spec.group) {
            let len = spec.numel();
            out.push((spec.name.clone(), AdamwTensor { param_offset: offset, state_offset: at, len, group }));
            at += len;
        }
    }
    out
}

fn muon_slots(layout: &ParamLayout) -> Vec<MuonSlot> {
    let (mut mom, mut sec) = (0, 0);
    layout
        .muon_groups
        .iter()
        .map(|g| {
            let k = g.members.len();
            let slot = MuonSlot {
                k,
                rows: g.rows,
                cols: g.cols,
                param_offset: g.offset,
                momentum_offset: mom,
                second_offset: sec,
            };
            mom += k * g.rows * g.cols;
            sec += k * g.rows.max(g.cols);
            slot
        })
        .collect()
}

fn norm_segments(layout: &ParamLayout) -> Vec<(usize, usize)> {
    layout.specs.iter().zip(&layout.offsets).map(|(p, &o)| (o, p.numel())).collect()
}

/// Elements of the AdamW moments: one m and one v per AdamW-managed parameter element.
pub fn adamw_elems(layout: &ParamLayout) -> usize {
    layout.specs.iter().filter(|p| p.group != OptGroup::Muon).map(|p| p.numel()).sum()
}

/// Elements of Muon's state: a momentum buffer per matrix element, and NorMuon's second moment
/// per row (rows ≥ cols) or per column.
pub fn muon_elems(layout: &ParamLayout) -> (usize, usize) {
    let mut mom = 0;
    let mut second = 0;
    for g in &layout.muon_groups {
        mom += g.members.len() * g.rows * g.cols;
        second += g.members.len() * if g.rows >= g.cols { g.rows } else { g.cols };
    }
    (mom, second)
}

/// The optimizer's buffers: its state (what a checkpoint holds) and its per-step scalars, tables,
/// norm partials and Muon workspace. Element counts in the plan, tensors once allocated: both
/// from [`OptimizerBuffers::build`], like the model's `ModelBuffers`.
pub struct OptimizerBuffers<T> {
    /// AdamW's moments, packed back to back in `layout.specs` order (see the module docs).
    pub adamw_m: T,
    pub adamw_v: T,
    /// Each Muon group's K·R·C momentum and K·max(R, C) NorMuon second moment.
    pub muon_momentum: T,
    pub muon_second_moment: T,
    /// Per-step values: 8 per AdamW group + 4 per Muon group ([`StepScalars::words`]).
    pub scalars: T,
    /// 8 u32 per AdamW tensor.
    pub adamw_table: T,
    /// 4 u32 per tensor; 2 per 4,096-element block; 2 + 2 per tensor (‖g‖², non-finite count).
    pub grad_norm_table: T,
    pub grad_norm_partials: T,
    pub grad_norm_out: T,
    /// Muon's slice workspace (`kernels::muon::MuonWorkspace`).
    pub muon_x: T,
    pub muon_y: T,
    pub muon_gram: T,
    pub muon_poly: T,
    pub muon_stats: T,
    pub muon_scale: T,
}

impl<T> OptimizerBuffers<T> {
    pub fn build<S: BufferSource<Buf = T>>(src: &mut S, layout: &ParamLayout) -> Result<Self> {
        let n_adamw = adamw_tensors(layout).len();
        let segments = norm_segments(layout);
        let shapes: Vec<(usize, usize, usize)> =
            layout.muon_groups.iter().map(|g| (g.members.len(), g.rows, g.cols)).collect();
        let ws = muon::workspace_lens(&shapes, SLICE_ELEMS);
        let adam = adamw_elems(layout);
        let (mom, second) = muon_elems(layout);
        let mut buf = |name: &str, elems: usize| src.buffer(name, Category::Optimizer, elems);
        Ok(OptimizerBuffers {
            adamw_m: buf("adamw.m", adam)?,
            adamw_v: buf("adamw.v", adam)?,
            muon_momentum: buf("muon.momentum", mom)?,
            muon_second_moment: buf("muon.second_moment", second)?,
            scalars: buf("optim.scalars", HYPER_WORDS * ADAMW_GROUPS.len() + SCALAR_WORDS * layout.muon_groups.len())?,
            adamw_table: buf("adamw.table", adamw::table_len(n_adamw))?,
            grad_norm_table: buf("grad_norm.table", grad_norm::table_len(&segments))?,
            grad_norm_partials: buf("grad_norm.partials", grad_norm::partials_len(&segments))?,
            grad_norm_out: buf("grad_norm.out", 2 + 2 * segments.len())?,
            muon_x: buf("muon.ws.x", ws.matrices)?,
            muon_y: buf("muon.ws.y", ws.matrices)?,
            muon_gram: buf("muon.ws.gram", ws.gram)?,
            muon_poly: buf("muon.ws.poly", ws.gram)?,
            muon_stats: buf("muon.ws.stats", ws.stats)?,
            muon_scale: buf("muon.ws.scale", ws.stats)?,
        })
    }

    /// The state buffers a checkpoint holds, named as [`STATE_ENTRIES`].
    pub fn state(&self) -> [(&'static str, &T); 4] {
        [
            (STATE_ENTRIES[0], &self.adamw_m),
            (STATE_ENTRIES[1], &self.adamw_v),
            (STATE_ENTRIES[2], &self.muon_momentum),
            (STATE_ENTRIES[3], &self.muon_second_moment),
        ]
    }
}

/// The optimizer's part of the memory plan for `layout`.
pub fn plan(layout: &ParamLayout) -> MemoryPlan {
    let mut p = Planner::default();
    OptimizerBuffers::build(&mut p, layout).expect("planning allocates nothing and cannot fail");
    p.plan
}

/// The state buffers a checkpoint holds, in the order [`Optimizer::state`] returns them.
pub const STATE_ENTRIES: [&str; 4] = ["adamw.m", "adamw.v", "muon.momentum", "muon.second_moment"];

/// Dispatches recorded for one pair of parameter/gradient buffers.
struct Recorded {
    key: (wgpu::Buffer, usize, usize, wgpu::Buffer, usize, usize),
    dispatches: Vec<Dispatch>,
}

/// AdamW + Muon + gradient norm for one [`ParamLayout`]; see the module documentation.
pub struct Optimizer<'c> {
    ctx: &'c GpuContext,
    layout: ParamLayout,
    variant: MuonVariant,
    bufs: OptimizerBuffers<GpuTensor>,
    adamw: Vec<(String, AdamwTensor)>,
    muon: Vec<MuonSlot>,
    segments: Vec<(usize, usize)>,
    recorded: Option<Recorded>,
}

impl<'c> Optimizer<'c> {
    /// Allocate the optimizer's buffers for `layout` (state zeroed, as nanochat's lazily created
    /// state).
    pub fn new(ctx: &'c GpuContext, layout: &ParamLayout, variant: MuonVariant) -> Result<Self> {
        let bufs = OptimizerBuffers::build(&mut Allocator(ctx), layout)?;
        Ok(Optimizer {
            ctx,
            layout: layout.clone(),
            variant,
            bufs,
            adamw: adamw_tensors(layout),
            muon: muon_slots(layout),
            segments: norm_segments(layout),
            recorded: None,
        })
    }

    pub fn variant(&self) -> MuonVariant {
        self.variant
    }

    /// One training step with nanochat's schedules at step `it` (see [`StepScalars::scheduled`]) on
    /// gradients carrying `scaler`'s loss scale: the scale divided out, and AdamW's bias correction
    /// counting only the steps that ran (an f32 run passes a disabled scaler: scale 1, none skipped).
    pub fn step(
        &mut self,
        s: &mut Stream<'_>,
        params: &GpuTensor,
        grads: &GpuTensor,
        it: usize,
        hyper: &Hyper,
        scaler: &crate::train::precision::LossScaler,
    ) -> Result<()> {
        let sc = StepScalars {
            adamw_step: scaler.applied(it as u64) + 1,
            grad_scale: scaler.scale,
            ..StepScalars::scheduled(hyper, it)
        };
        self.step_with(s, params, grads, &sc)
    }

    /// One step with explicit per-step values (e.g. `step-check` with no schedule). Writes the
    /// scalars now (they reach the GPU with the next submission: submit `s` before calling this
    /// again) and appends the step's dispatches to `s`.
    pub fn step_with(
        &mut self,
        s: &mut Stream<'_>,
        params: &GpuTensor,
        grads: &GpuTensor,
        sc: &StepScalars,
    ) -> Result<()> {
        if params.len() != self.layout.len || grads.len() != self.layout.len {
            return Err(Error::Shape {
                op: "Optimizer::step",
                message: format!(
                    "params {} and grads {} elements; the layout has {}",
                    params.len(),
                    grads.len(),
                    self.layout.len
                ),
            });
        }
        if sc.adamw_step == 0 {
            return Err(Error::Shape { op: "Optimizer::step", message: "AdamW steps count from 1".into() });
        }
        self.ctx.write(&self.bufs.scalars, &sc.words(&self.layout))?;
        let key = (
            params.buffer().clone(),
            params.offset(),
            params.len(),
            grads.buffer().clone(),
            grads.offset(),
            grads.len(),
        );
        if self.recorded.as_ref().is_none_or(|r| r.key != key) {
            let mut rec = Stream::new(self.ctx);
            self.record(&mut rec, params, grads)?;
            self.recorded = Some(Recorded { key, dispatches: rec.dispatches().to_vec() });
        }
        for d in &self.recorded.as_ref().expect("recorded above").dispatches {
            s.push(d.clone());
        }
        Ok(())
    }

    fn record(&self, s: &mut Stream<'_>, params: &GpuTensor, grads: &GpuTensor) -> Result<()> {
        let b = &self.bufs;
        let out = &b.grad_norm_out;
        grad_norm(s, out, &b.grad_norm_partials, &b.grad_norm_table, grads, &self.segments)?;
        let guard = out.view(1, 1);
        let scalars = &self.bufs.scalars;
        let tensors: Vec<AdamwTensor> = self.adamw.iter().map(|(_, t)| *t).collect();
        let adamw_words = HYPER_WORDS * ADAMW_GROUPS.len();
        adamw_step(
            s,
            params,
            &self.bufs.adamw_m,
            &self.bufs.adamw_v,
            grads,
            &tensors,
            &self.bufs.adamw_table,
            &scalars.view(0, adamw_words),
            &guard,
        )?;
        let ws = MuonWorkspace {
            x: self.bufs.muon_x.clone(),
            y: self.bufs.muon_y.clone(),
            gram: self.bufs.muon_gram.clone(),
            poly: self.bufs.muon_poly.clone(),
            stats: self.bufs.muon_stats.clone(),
            scale: self.bufs.muon_scale.clone(),
            cap: SLICE_ELEMS,
        };
        for (i, m) in self.muon.iter().enumerate() {
            let n = m.k * m.rows * m.cols;
            let nsec = m.k * m.rows.max(m.cols);
            muon_step(
                s,
                &params.view(m.param_offset, n),
                &self.bufs.muon_momentum.view(m.momentum_offset, n),
                &self.bufs.muon_second_moment.view(m.second_offset, nsec),
                &grads.view(m.param_offset, n),
                m.k,
                m.rows,
                m.cols,
                self.variant,
                &ws,
                &scalars.view(adamw_words + SCALAR_WORDS * i, SCALAR_WORDS),
                &guard,
            )?;
        }
        Ok(())
    }

    /// The gradient norm and non-finite count of the last step that ran (waits for the GPU).
    pub fn grad_report(&self) -> Result<GradNormReport> {
        Ok(GradNormReport::from_words(&self.ctx.read(&self.bufs.grad_norm_out)?))
    }

    /// Names of the parameters whose gradients held NaN or ±inf in `report`.
    pub fn nonfinite_tensors(&self, report: &GradNormReport) -> Vec<&str> {
        self.layout
            .specs
            .iter()
            .zip(&report.per_tensor)
            .filter(|(_, &(_, bad))| bad > 0)
            .map(|(p, _)| p.name.as_str())
            .collect()
    }

    /// (name, offset, len) of each AdamW tensor's state inside `adamw.m` and `adamw.v`.
    pub fn adamw_state_ranges(&self) -> Vec<(&str, usize, usize)> {
        self.adamw.iter().map(|(n, t)| (n.as_str(), t.state_offset, t.len)).collect()
    }

    /// The optimizer state for a checkpoint: [`STATE_ENTRIES`] with their values (waits for the GPU).
    pub fn state(&self) -> Result<Vec<(String, Vec<f32>)>> {
        self.bufs.state().into_iter().map(|(n, t)| Ok((n.to_string(), self.ctx.read(t)?))).collect()
    }

    fn state_buf(&self, name: &str) -> &GpuTensor {
        self.bufs.state().into_iter().find(|(n, _)| *n == name).map(|(_, t)| t).expect("a STATE_ENTRIES name")
    }

    /// Restore [`Optimizer::state`]'s output: every entry of [`STATE_ENTRIES`] exactly once, each
    /// with the length this layout needs.
    pub fn load_state(&self, entries: &[(String, Vec<f32>)]) -> Result<()> {
        let bad = |message: String| Err(Error::State { context: "optimizer state".into(), message });
        for name in STATE_ENTRIES {
            let found: Vec<&(String, Vec<f32>)> = entries.iter().filter(|(n, _)| n == name).collect();
            if found.len() != 1 {
                return bad(format!("{name} appears {} times (expected once)", found.len()));
            }
            let want = self.state_buf(name).len();
            if found[0].1.len() != want {
                return bad(format!("{name} has {} values; this model needs {want}", found[0].1.len()));
            }
        }
        if let Some((n, _)) = entries.iter().find(|(n, _)| !STATE_ENTRIES.contains(&n.as_str())) {
            return bad(format!("unknown entry {n}"));
        }
        for (name, values) in entries {
            self.ctx.write(self.state_buf(name), values)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GptConfig;
    use std::collections::BTreeMap;

    #[test]
    fn d12_workspace_and_step_scalars() {
        let layout = ParamLayout::new(&GptConfig::new(12, 6, 6, 768, 32768, 2048, "L").unwrap());
        let e: BTreeMap<String, usize> = plan(&layout).entries.into_iter().map(|e| (e.name, e.elems)).collect();
        // Slices of 12 (768, 768) or 3 (768, 3072)/(3072, 768) matrices; stats for 3 × 3072 rows.
        assert_eq!(e["muon.ws.x"], 12 * 768 * 768);
        assert_eq!(e["muon.ws.gram"], 12 * 768 * 768);
        assert_eq!(e["muon.ws.stats"], 3 * 3072);
        let ws: usize = ["x", "y", "gram", "poly", "stats", "scale"].iter().map(|n| e[&format!("muon.ws.{n}")]).sum();
        assert!(ws * 4 < 110 << 20, "{} MiB", (ws * 4) >> 20);
        // wte, lm_head, 6 value embeddings, resid, x0, smear_gate, smear_lambda, backout_lambda.
        assert_eq!(e["adamw.table"], 8 * 13);
        assert_eq!(e["grad_norm.out"], 2 + 2 * layout.specs.len());

        let sc = StepScalars {
            adamw_step: 2,
            adamw_lr: [0.004, 0.1, 0.05, 0.002, 0.2, 0.2],
            muon_lr: 0.02,
            muon_momentum: 0.95,
            muon_weight_decay: 0.1,
            grad_scale: 1.0,
        };
        let w = sc.words(&layout);
        assert_eq!(w.len(), e["optim.scalars"]);
        // Unembedding: 1 − lr·0.01, lr/(1 − 0.8²), β1, 1 − β1, β2, 1 − β2, 1 − 0.96², eps.
        let want = [1.0 - 0.004 * 0.01, 0.004 / 0.36, 0.8, 0.2, 0.96, 0.04, 1.0 - 0.96f64 * 0.96, 1e-10];
        assert_eq!(&w[..8], &want.map(|x: f64| x as f32));
        // x0 has β1 0.96 and no decay.
        assert_eq!(&w[4 * 8..4 * 8 + 3], &[1.0, (0.2 / (1.0 - 0.96f64 * 0.96)) as f32, 0.96]);
        // Muon: c_fc (3072×768) steps at 2× the lr, decay scaled by it too.
        let fc = layout.muon_groups.iter().position(|g| (g.rows, g.cols) == (3072, 768)).unwrap();
        let at = |g: usize| 48 + SCALAR_WORDS * g;
        assert_eq!(&w[at(fc)..at(fc) + 5], &[0.95, 0.04, 0.004, 0.9, 1.0]);
        let sq = layout.muon_groups.iter().position(|g| (g.rows, g.cols) == (768, 768)).unwrap();
        assert_eq!(w[at(sq) + 1], 0.02);
        // A loss scale of 2^16 is divided out of both moments' increments and Muon's gradient.
        let scaled = StepScalars { grad_scale: 65536.0, ..sc.clone() }.words(&layout);
        assert_eq!(scaled[3], w[3] / 65536.0);
        assert_eq!(scaled[5], w[5] / 65536.0 / 65536.0);
        assert_eq!(scaled[at(fc) + 4], 1.0 / 65536.0);
    }
}
