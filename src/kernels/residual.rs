//! Launchers for `shaders/residual.wgsl`, mirroring `reference::residual`: the resid/x0 lambda mix
//! and the backout, with their gradients.
//!
//! The lambdas are 1-element views of the parameter arena (`params.view(off + layer, 1)`), read on
//! the GPU; their gradients are 1-element views of the gradient arena, accumulated (+=) through
//! [`reduce::dot`]'s deterministic two-pass reduction. The partial sums use the stream's scratch:
//! size a model's workspace with [`lambda_mix_backward_scratch_len`] /
//! [`backout_backward_scratch_len`].

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuContext, GpuTensor, Kernel};
use crate::kernels::launch::{expect_len, launch_1d};
use crate::kernels::{reduce, Stream};

const WG: usize = 256;

immediates! {
    /// Matches `ResidualParams` in the shader: the element offsets of bindings 0..5.
    #[derive(Default)]
    pub struct ResidualParams {
        n: u32,
        off: [u32; 5],
        _pad: [u32; 2],
    }
}

/// out = a·x + b·x0, a and b read from 1-element tensors (the parameter arena). out may not share a
/// buffer with any input.
pub fn lambda_mix_forward(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    x: &GpuTensor,
    x0: &GpuTensor,
    a: &GpuTensor,
    b: &GpuTensor,
) -> Result<()> {
    launch(s, Kernel::ResidualLambdaMixForward, "lambda_mix_forward", &[out, x, x0], &[a, b])
}

/// dx = a·dout (written); dx0 += b·dout; da += Σ dout·x; db += Σ dout·x0. da and db are
/// 1-element tensors (the gradient arena); dx and dx0 may share a buffer, which may not hold an
/// input; da and db may share one (the gradient arena) that holds no input.
#[allow(clippy::too_many_arguments)]
pub fn lambda_mix_backward(
    s: &mut Stream<'_>,
    dx: &GpuTensor,
    dx0: &GpuTensor,
    da: &GpuTensor,
    db: &GpuTensor,
    dout: &GpuTensor,
    x: &GpuTensor,
    x0: &GpuTensor,
    a: &GpuTensor,
    b: &GpuTensor,
) -> Result<()> {
    const OP: &str = "lambda_mix_backward";
    let n = dout.len();
    expect_len(OP, "x", x, n)?;
    expect_len(OP, "x0", x0, n)?;
    expect_len(OP, "da", da, 1)?;
    expect_len(OP, "db", db, 1)?;
    // Refuse an undersized workspace before recording anything.
    s.check_scratch(OP, reduce::dot_scratch_len(s.ctx, n))?;
    launch(s, Kernel::ResidualLambdaMixBackward, OP, &[dx, dx0, dout], &[a, b])?;
    reduce::dot(s, da, dout, x, 1.0, true)?;
    reduce::dot(s, db, dout, x0, 1.0, true)
}

/// out = x − λ·x_mid, λ read from a 1-element tensor. out may not share a buffer with any input.
pub fn backout_forward(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    x: &GpuTensor,
    x_mid: &GpuTensor,
    lambda: &GpuTensor,
) -> Result<()> {
    launch(s, Kernel::ResidualBackoutForward, "backout_forward", &[out, x, x_mid], &[lambda])
}

/// dx_mid += −λ·dout;  dλ += −Σ dout·x_mid  (dx = dout passes through: nothing to record).
/// dλ is a 1-element tensor (the gradient arena); neither output may share a buffer with an input.
pub fn backout_backward(
    s: &mut Stream<'_>,
    dx_mid: &GpuTensor,
    dlambda: &GpuTensor,
    dout: &GpuTensor,
    x_mid: &GpuTensor,
    lambda: &GpuTensor,
) -> Result<()> {
    const OP: &str = "backout_backward";
    expect_len(OP, "x_mid", x_mid, dout.len())?;
    expect_len(OP, "dlambda", dlambda, 1)?;
    s.check_scratch(OP, reduce::dot_scratch_len(s.ctx, dout.len()))?;
    launch(s, Kernel::ResidualBackoutBackward, OP, &[dx_mid, dout], &[lambda])?;
    reduce::dot(s, dlambda, dout, x_mid, -1.0, true)
}

/// F32 of stream workspace [`lambda_mix_backward`] needs for `n` elements.
pub fn lambda_mix_backward_scratch_len(ctx: &GpuContext, n: usize) -> usize {
    reduce::dot_scratch_len(ctx, n)
}

/// F32 of stream workspace [`backout_backward`] needs for `n` elements.
pub fn backout_backward_scratch_len(ctx: &GpuContext, n: usize) -> usize {
    reduce::dot_scratch_len(ctx, n)
}

/// One elementwise kernel: `vectors` (equal lengths, taken in chunks) bound first, then the
/// 1-element `scalars`.
fn launch(
    s: &mut Stream<'_>,
    kernel: Kernel,
    op: &'static str,
    vectors: &[&GpuTensor],
    scalars: &[&GpuTensor],
) -> Result<()> {
    if let Some(t) = scalars.iter().find(|t| t.len() != 1) {
        return Err(Error::Shape { op, message: format!("a lambda must be a 1-element tensor, got {}", t.len()) });
    }
    launch_1d(s, kernel, op, WG, vectors, scalars, |n, offsets| {
        let mut p = ResidualParams { n, ..Default::default() };
        p.off[..offsets.len()].copy_from_slice(offsets);
        p
    })
}
