//! Launchers for `shaders/elementwise.wgsl`: fill, add, scale, axpy over f32 vectors of any length.
//! A vector longer than one storage binding is processed in consecutive chunks.

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::tensor::window_slack;
use crate::gpu::{GpuContext, GpuTensor, Kernel, Overrides, Window};
use crate::kernels::{Stream, MAX_GRID};

const WG: usize = 256;

immediates! {
    /// Per-dispatch parameters; matches `ElementwiseParams` in the shader.
    pub struct ElementwiseParams {
        n: u32,
        off_out: u32,
        off_x: u32,
        off_y: u32,
        alpha: f32,
        value: f32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// Elements per chunk so that a window of that many elements fits one binding.
pub(crate) fn chunk_elems(ctx: &GpuContext) -> usize {
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let usable = ctx.max_binding_bytes().saturating_sub(window_slack(align)) / 4;
    // Keep chunk starts 64-element aligned so consecutive windows start on fresh alignment.
    ((usable as usize) / 64 * 64).max(64).min(u32::MAX as usize / 2)
}

fn same_len(op: &'static str, a: &GpuTensor, b: &GpuTensor) -> Result<()> {
    if a.len() != b.len() {
        return Err(Error::Shape { op, message: format!("lengths differ: {} vs {}", a.len(), b.len()) });
    }
    Ok(())
}

/// Record one elementwise kernel over `n` elements; `operands` are the tensors bound at 0, 1, 2.
fn launch(s: &mut Stream<'_>, kernel: Kernel, operands: &[&GpuTensor], alpha: f32, value: f32) -> Result<()> {
    let ctx = s.ctx;
    let n = operands[0].len();
    if n == 0 {
        return Ok(());
    }
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let step = chunk_elems(ctx);
    let pipeline = ctx.pipeline(kernel, &Overrides::new().set("WG", WG as f64))?;
    let mut lo = 0;
    while lo < n {
        let hi = (lo + step).min(n);
        let windows: Vec<Window<'_>> =
            operands.iter().map(|t| t.window(lo, hi, align, ctx.max_binding_bytes())).collect::<Result<_>>()?;
        let off = |i: usize| windows.get(i).map_or(0, |w| w.elem_offset);
        let params = ElementwiseParams {
            n: (hi - lo) as u32,
            off_out: off(0),
            off_x: off(1),
            off_y: off(2),
            alpha,
            value,
            _pad0: 0,
            _pad1: 0,
        };
        let groups = (hi - lo).div_ceil(WG).min(MAX_GRID) as u32;
        let d = ctx.dispatch(kernel, pipeline.clone(), &windows, &params, [groups, 1, 1])?;
        s.push(d);
        lo = hi;
    }
    Ok(())
}

/// out[i] = value
pub fn fill(s: &mut Stream<'_>, out: &GpuTensor, value: f32) -> Result<()> {
    launch(s, Kernel::ElementwiseFill, &[out], 0.0, value)
}

/// out[i] = x[i]
pub fn copy(s: &mut Stream<'_>, out: &GpuTensor, x: &GpuTensor) -> Result<()> {
    same_len("copy", out, x)?;
    launch(s, Kernel::ElementwiseCopy, &[out, x], 0.0, 0.0)
}

/// out[i] = x[i] + y[i]
pub fn add(s: &mut Stream<'_>, out: &GpuTensor, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
    same_len("add", out, x)?;
    same_len("add", out, y)?;
    launch(s, Kernel::ElementwiseAdd, &[out, x, y], 0.0, 0.0)
}

/// x[i] = alpha * x[i]
pub fn scale(s: &mut Stream<'_>, x: &GpuTensor, alpha: f32) -> Result<()> {
    launch(s, Kernel::ElementwiseScale, &[x], alpha, 0.0)
}

/// y[i] = alpha * x[i] + y[i]
pub fn axpy(s: &mut Stream<'_>, y: &GpuTensor, alpha: f32, x: &GpuTensor) -> Result<()> {
    same_len("axpy", y, x)?;
    launch(s, Kernel::ElementwiseAxpy, &[y, x], alpha, 0.0)
}
