//! Launchers for `shaders/elementwise.wgsl`: fill, add, scale, axpy over f32 vectors of any length.
//! A vector longer than one storage binding is processed in consecutive chunks.

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel};
use crate::kernels::launch::launch_1d;
use crate::kernels::Stream;

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

fn same_len(op: &'static str, a: &GpuTensor, b: &GpuTensor) -> Result<()> {
    if a.len() != b.len() {
        return Err(Error::Shape { op, message: format!("lengths differ: {} vs {}", a.len(), b.len()) });
    }
    Ok(())
}

/// Record one elementwise kernel; `operands` are the tensors bound at 0, 1, 2.
fn launch(s: &mut Stream<'_>, kernel: Kernel, operands: &[&GpuTensor], alpha: f32, value: f32) -> Result<()> {
    launch_1d(s, kernel, kernel.entry(), WG, operands, &[], |n, off| ElementwiseParams {
        n,
        off_out: off[0],
        off_x: off.get(1).copied().unwrap_or(0),
        off_y: off.get(2).copied().unwrap_or(0),
        alpha,
        value,
        _pad0: 0,
        _pad1: 0,
    })
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
