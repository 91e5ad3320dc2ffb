//! Launcher for `shaders/adamw.wgsl`: AdamW (spec §3.2, `reference::adamw::adamw_step`) over any
//! number of tensors of a parameter arena in one dispatch (more only when the operands exceed one
//! storage binding).
//!
//! Each tensor is a range of the parameter arena (the gradient arena has the same layout) and a
//! range of the moment buffers m and v; the table that tells the shader where each tensor lives is
//! written once, when the dispatch is recorded. What changes every step (learning rates, bias
//! corrections) is a small per-group buffer the caller rewrites with [`adamw_scalars`] before each
//! submission, so the recorded dispatch itself is replayed unchanged.

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel, Overrides};
use crate::kernels::grad_norm::{first_blocks, guard_window, plan_blocks, BlockedTensor};
use crate::kernels::launch::chunk_elems;
use crate::kernels::{Stream, MAX_GRID};

const WG: usize = 256;
/// Elements per block: WG invocations × 4 (PER_THREAD in the shader).
pub const BLOCK: usize = WG * 4;
/// u32 words per table row: param offset, state offset, len, first block, group, 3 × 0.
pub const TABLE_WORDS: usize = 8;
/// f32 words per group in the per-step buffer (see [`adamw_scalars`]).
pub const HYPER_WORDS: usize = 8;

immediates! {
    pub struct AdamwParams {
        b0: u32,
        b1: u32,
        n_tensors: u32,
        lo: u32,
        slo: u32,
        off_p: u32,
        off_g: u32,
        off_m: u32,
        off_v: u32,
        off_table: u32,
        off_hyper: u32,
        off_guard: u32,
    }
}

/// One tensor AdamW updates: `len` elements at `param_offset` in the parameter and gradient
/// arenas and at `state_offset` in m and v, with the hyperparameters of group `group`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdamwTensor {
    pub param_offset: usize,
    pub state_offset: usize,
    pub len: usize,
    pub group: usize,
}

/// One group's hyperparameters at the current step (lr already scheduled).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamwHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// The per-step buffer contents for `groups` at AdamW step `step` (t ≥ 1), for gradients that
/// arrive multiplied by `grad_scale` (the loss scale; 1 unscaled): per group 1 − lr·wd,
/// lr/(1 − β1^t), β1, (1 − β1)/S, β2, (1 − β2)/S², 1 − β2^t, eps. The kernel forms
/// ((1 − β1)/S)·g and ((1 − β2)/S²)·g·g, which for a power-of-two S (in [1, 2^48]) are exactly
/// (1 − β1)·(g/S) and (1 − β2)·(g/S)²: unscaling costs no pass and no rounding. Each value is
/// computed in f64 and rounded to f32 once, so the kernel's only roundings are its own arithmetic.
pub fn adamw_scalars(groups: &[AdamwHyper], step: u64, grad_scale: f64) -> Vec<f32> {
    let t = step.min(i32::MAX as u64) as i32;
    groups
        .iter()
        .flat_map(|h| {
            [
                1.0 - h.lr * h.weight_decay,
                h.lr / (1.0 - h.beta1.powi(t)),
                h.beta1,
                (1.0 - h.beta1) / grad_scale,
                h.beta2,
                (1.0 - h.beta2) / (grad_scale * grad_scale),
                1.0 - h.beta2.powi(t),
                h.eps,
            ]
        })
        .map(|x| x as f32)
        .collect()
}

/// Elements of the table buffer [`adamw_step`] writes for `n` tensors.
pub fn table_len(n: usize) -> usize {
    TABLE_WORDS * n
}

/// One AdamW step on every tensor in `tensors` (disjoint ranges). `p`/`g` are the parameter and
/// gradient arenas, `m`/`v` the moments, `table` scratch of [`table_len`] elements (written here,
/// at record time), `hyper` the per-step buffer ([`adamw_scalars`], HYPER_WORDS per group),
/// `guard` one u32 that skips the step when non-zero (the non-finite count of
/// `grad_norm`; a zero tensor to always step).
#[allow(clippy::too_many_arguments)]
pub fn adamw_step(
    s: &mut Stream<'_>,
    p: &GpuTensor,
    m: &GpuTensor,
    v: &GpuTensor,
    g: &GpuTensor,
    tensors: &[AdamwTensor],
    table: &GpuTensor,
    hyper: &GpuTensor,
    guard: &GpuTensor,
) -> Result<()> {
    let shape = |message: String| Err(Error::Shape { op: "adamw_step", message });
    if p.len() != g.len() || m.len() != v.len() {
        return shape(format!("params {} vs grads {}, m {} vs v {}", p.len(), g.len(), m.len(), v.len()));
    }
    if table.len() < table_len(tensors.len()) || guard.len() != 1 {
        return shape(format!(
            "table has {} elements for {} tensors; guard {}",
            table.len(),
            tensors.len(),
            guard.len()
        ));
    }
    if p.len() > u32::MAX as usize || m.len() > u32::MAX as usize {
        return shape("an arena exceeds 2^32 elements".into());
    }
    for t in tensors {
        if t.param_offset + t.len > p.len() || t.state_offset + t.len > m.len() {
            return shape(format!("tensor {t:?} runs past the arena ({}) or the state ({})", p.len(), m.len()));
        }
        if (t.group + 1) * HYPER_WORDS > hyper.len() {
            return shape(format!("group {} has no hyperparameters ({} words)", t.group, hyper.len()));
        }
    }
    let mut sorted: Vec<AdamwTensor> = tensors.iter().copied().filter(|t| t.len > 0).collect();
    sorted.sort_by_key(|t| t.param_offset);
    if sorted.is_empty() {
        return Ok(());
    }
    let ctx = s.ctx;
    let (firsts, _) = first_blocks(sorted.iter().map(|t| t.len), BLOCK);
    let mut words = Vec::with_capacity(TABLE_WORDS * sorted.len());
    for (t, &f) in sorted.iter().zip(&firsts) {
        words.extend_from_slice(&[
            t.param_offset as u32,
            t.state_offset as u32,
            t.len as u32,
            f as u32,
            t.group as u32,
            0,
            0,
            0,
        ]);
    }
    ctx.write(&table.view(0, words.len()), bytemuck::cast_slice(&words))?;

    // The state must follow the arena's order (plan_blocks checks), so one window per operand
    // covers a run of blocks in both.
    let blocked: Vec<BlockedTensor> =
        sorted.iter().map(|t| BlockedTensor { offsets: vec![t.param_offset, t.state_offset], len: t.len }).collect();
    let runs = plan_blocks(&blocked, BLOCK, chunk_elems(ctx))?;
    let wt = ctx.window(table, 0, words.len())?;
    let wh = ctx.window(hyper, 0, hyper.len())?;
    let wguard = guard_window(s, guard)?;
    let pipeline = ctx.pipeline(Kernel::AdamwStep, &Overrides::new().set("WG", WG as f64))?;
    for run in runs {
        let ((lo, hi), (slo, shi)) = (run.spans[0], run.spans[1]);
        let wp = ctx.window(p, lo, hi)?;
        let wg = ctx.window(g, lo, hi)?;
        let wm = ctx.window(m, slo, shi)?;
        let wv = ctx.window(v, slo, shi)?;
        let params = AdamwParams {
            b0: run.b0 as u32,
            b1: run.b1 as u32,
            n_tensors: sorted.len() as u32,
            lo: lo as u32,
            slo: slo as u32,
            off_p: wp.elem_offset,
            off_g: wg.elem_offset,
            off_m: wm.elem_offset,
            off_v: wv.elem_offset,
            off_table: wt.elem_offset,
            off_hyper: wh.elem_offset,
            off_guard: wguard.elem_offset,
        };
        let groups = (run.b1 - run.b0).min(MAX_GRID) as u32;
        s.push(ctx.dispatch(
            Kernel::AdamwStep,
            pipeline.clone(),
            &[wp, wg, wm, wv, wt, wh, wguard],
            &params,
            [groups, 1, 1],
        )?);
    }
    Ok(())
}
