//! Launcher for `shaders/cross_entropy.wgsl`: softcap fused with cross-entropy, mirroring
//! `reference::cross_entropy::cross_entropy`.
//!
//! The gradient overwrites the logits chunk in place (`dlogits = true`), so the caller never holds
//! both; `grad_scale` is a 1-element tensor (an element of the trainer's step-scalars buffer,
//! rewritten each step with 1/(valid targets · grad accumulation)), read on the GPU so a recorded
//! step stays valid from step to step.

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel, Overrides};
use crate::kernels::launch::{expect_dims, expect_len, row_chunks, rows_window, whole_window, MAX_GROUPS_PER_DIM};
use crate::kernels::Stream;

const WG: usize = 256;

/// Largest softcap the kernel accepts: it shifts the logsumexp by the cap, and e^(−2·cap) must
/// stay a normal f32 (e^(−80) ≈ 1.8e−35 does; the model uses 15).
pub const MAX_SOFTCAP: f32 = 40.0;

immediates! {
    /// Matches `CrossEntropyParams` in the shader.
    pub struct CrossEntropyParams {
        rows: u32,
        v: u32,
        vp: u32,
        off_loss: u32,
        off_z: u32,
        off_tgt: u32,
        off_gs: u32,
        softcap: f32,
    }
}

/// For each of `rows` rows of unsoftcapped logits (rows × vp, only the first v columns real):
/// `losses[r] = logsumexp(l) − l[target]`, `l = softcap·tanh(z/softcap)`, 0 for target −1 (written).
/// With `dlogits`, the logits are overwritten with
/// `dz = grad_scale[0]·(softmax(l) − onehot(target))·(1 − (l/softcap)²)`, zero in the padding columns
/// and on ignored rows. `targets` is an i32 tensor (`GpuContext::upload_i32`); a target ≥ v gives a
/// NaN loss and gradient row. losses, logits, targets and grad_scale must be four different
/// buffers, except that targets and grad_scale (both read-only) may share one.
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy(
    s: &mut Stream<'_>,
    losses: &GpuTensor,
    dlogits: bool,
    logits: &GpuTensor,
    targets: &GpuTensor,
    rows: usize,
    v: usize,
    vp: usize,
    softcap: f32,
    grad_scale: &GpuTensor,
) -> Result<()> {
    const OP: &str = "cross_entropy";
    expect_dims(OP, &[("rows", rows), ("V", v), ("Vp", vp)], rows * vp)?;
    if v > vp {
        return Err(Error::Shape { op: OP, message: format!("V = {v} exceeds the padded width Vp = {vp}") });
    }
    // Written so that NaN fails too.
    if !(softcap > 0.0 && softcap <= MAX_SOFTCAP) {
        return Err(Error::Shape { op: OP, message: format!("softcap must be in (0, {MAX_SOFTCAP}], got {softcap}") });
    }
    expect_len(OP, "losses", losses, rows)?;
    expect_len(OP, "logits", logits, rows * vp)?;
    expect_len(OP, "targets", targets, rows)?;
    expect_len(OP, "grad_scale", grad_scale, 1)?;
    let ctx = s.ctx;
    let pipeline = ctx.pipeline(Kernel::CrossEntropy, &Overrides::new().set("WG", WG as f64).flag("GRAD", dlogits))?;
    let wg = whole_window(ctx, grad_scale, 0, 1)?;
    for (lo, hi) in row_chunks(ctx, OP, rows, &[1, vp, 1], MAX_GROUPS_PER_DIM)? {
        let wl = rows_window(ctx, losses, lo, hi, 1)?;
        let wz = rows_window(ctx, logits, lo, hi, vp)?;
        let wt = rows_window(ctx, targets, lo, hi, 1)?;
        let params = CrossEntropyParams {
            rows: (hi - lo) as u32,
            v: v as u32,
            vp: vp as u32,
            off_loss: wl.elem_offset,
            off_z: wz.elem_offset,
            off_tgt: wt.elem_offset,
            off_gs: wg.elem_offset,
            softcap,
        };
        let groups = [(hi - lo) as u32, 1, 1];
        s.push(ctx.dispatch(Kernel::CrossEntropy, pipeline.clone(), &[wl, wz, wt, wg], &params, groups)?);
    }
    Ok(())
}
