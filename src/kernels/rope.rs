//! Launchers for `shaders/rope.wgsl`, mirroring `reference::rope`: rotary embeddings in place on
//! q or k, split halves, −θ convention. The cos/sin tables are `reference::rope::rope_tables`
//! (computed on the host in f64) uploaded as f32, (positions × D/2) each.

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel, Overrides};
use crate::kernels::launch::{expect_dims, expect_len, row_chunks, rows_window};
use crate::kernels::{Stream, MAX_GRID};

const WG: usize = 256;

immediates! {
    /// Matches `RopeParams` in the shader.
    pub struct RopeParams {
        n: u32,
        nh: u32,
        half: u32,
        t_len: u32,
        row_lo: u32,
        off_x: u32,
        off_cos: u32,
        off_sin: u32,
    }
}

/// In place: for each of n rows (row r at position pos0 + r mod t_len) and each of nh heads of d,
/// y1 = x1·cos + x2·sin, y2 = −x1·sin + x2·cos with x1, x2 the halves. x may not share a buffer
/// with the tables.
#[allow(clippy::too_many_arguments)]
pub fn rope_forward(
    s: &mut Stream<'_>,
    x: &GpuTensor,
    cos: &GpuTensor,
    sin: &GpuTensor,
    n: usize,
    t_len: usize,
    pos0: usize,
    nh: usize,
    d: usize,
) -> Result<()> {
    launch(s, Kernel::RopeForward, x, cos, sin, n, t_len, pos0, nh, d)
}

/// The transpose, in place on the gradient: dx1 = dy1·cos − dy2·sin, dx2 = dy1·sin + dy2·cos.
#[allow(clippy::too_many_arguments)]
pub fn rope_backward(
    s: &mut Stream<'_>,
    dx: &GpuTensor,
    cos: &GpuTensor,
    sin: &GpuTensor,
    n: usize,
    t_len: usize,
    pos0: usize,
    nh: usize,
    d: usize,
) -> Result<()> {
    launch(s, Kernel::RopeBackward, dx, cos, sin, n, t_len, pos0, nh, d)
}

#[allow(clippy::too_many_arguments)]
fn launch(
    s: &mut Stream<'_>,
    kernel: Kernel,
    x: &GpuTensor,
    cos: &GpuTensor,
    sin: &GpuTensor,
    n: usize,
    t_len: usize,
    pos0: usize,
    nh: usize,
    d: usize,
) -> Result<()> {
    let op = if kernel == Kernel::RopeForward { "rope_forward" } else { "rope_backward" };
    expect_dims(op, &[("n", n), ("t_len", t_len), ("nh", nh), ("d", d)], n * nh * d)?;
    if !d.is_multiple_of(2) {
        return Err(Error::Shape { op, message: format!("head dim {d} must be even") });
    }
    let half = d / 2;
    expect_len(op, "x", x, n * nh * d)?;
    if cos.len() != sin.len() || !cos.len().is_multiple_of(half) || cos.len() / half < pos0 + t_len {
        return Err(Error::Shape {
            op,
            message: format!(
                "cos/sin have {} and {} elements; positions {pos0}..{} of D/2 = {half} need tables of at least {}",
                cos.len(),
                sin.len(),
                pos0 + t_len,
                (pos0 + t_len) * half
            ),
        });
    }
    let ctx = s.ctx;
    let pipeline = ctx.pipeline(kernel, &Overrides::new().set("WG", WG as f64))?;
    let wc = rows_window(ctx, cos, pos0, pos0 + t_len, half)?;
    let ws = rows_window(ctx, sin, pos0, pos0 + t_len, half)?;
    for (lo, hi) in row_chunks(ctx, op, n, &[nh * d], usize::MAX)? {
        let wx = rows_window(ctx, x, lo, hi, nh * d)?;
        let params = RopeParams {
            n: (hi - lo) as u32,
            nh: nh as u32,
            half: half as u32,
            t_len: t_len as u32,
            row_lo: lo as u32,
            off_x: wx.elem_offset,
            off_cos: wc.elem_offset,
            off_sin: ws.elem_offset,
        };
        let groups = ((hi - lo) * nh * half).div_ceil(WG).min(MAX_GRID) as u32;
        s.push(ctx.dispatch(kernel, pipeline.clone(), &[wx, wc, ws], &params, [groups, 1, 1])?);
    }
    Ok(())
}
