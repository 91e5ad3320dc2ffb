//! Launchers for `shaders/activation.wgsl`, mirroring `reference::activation`: relu(x)² and its
//! gradient, over vectors of any length (taken in binding-sized chunks).

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel, Overrides};
use crate::kernels::rows::{row_chunks, rows_window};
use crate::kernels::{Stream, MAX_GRID};

const WG: usize = 256;

immediates! {
    /// Matches `ActivationParams` in the shader.
    pub struct ActivationParams {
        n: u32,
        off_out: u32,
        off_a: u32,
        off_b: u32,
    }
}

/// out = max(inp, 0)². out may not share a buffer with inp.
pub fn relu2_forward(s: &mut Stream<'_>, out: &GpuTensor, inp: &GpuTensor) -> Result<()> {
    launch(s, Kernel::ActivationRelu2Forward, "relu2_forward", &[out, inp])
}

/// dinp = dout · 2·max(inp, 0) (written). dinp may not share a buffer with dout or inp.
pub fn relu2_backward(s: &mut Stream<'_>, dinp: &GpuTensor, dout: &GpuTensor, inp: &GpuTensor) -> Result<()> {
    launch(s, Kernel::ActivationRelu2Backward, "relu2_backward", &[dinp, dout, inp])
}

fn launch(s: &mut Stream<'_>, kernel: Kernel, op: &'static str, ops: &[&GpuTensor]) -> Result<()> {
    let n = ops[0].len();
    if let Some(t) = ops.iter().find(|t| t.len() != n) {
        return Err(Error::Shape { op, message: format!("lengths differ: {} vs {}", n, t.len()) });
    }
    if n > u32::MAX as usize {
        return Err(Error::Shape { op, message: format!("{n} elements exceed the 2^32 a shader can index") });
    }
    let ctx = s.ctx;
    let pipeline = ctx.pipeline(kernel, &Overrides::new().set("WG", WG as f64))?;
    for (lo, hi) in row_chunks(ctx, op, n, &[1], usize::MAX)? {
        let windows = ops.iter().map(|t| rows_window(ctx, t, lo, hi, 1)).collect::<Result<Vec<_>>>()?;
        let params = ActivationParams {
            n: (hi - lo) as u32,
            off_out: windows[0].elem_offset,
            off_a: windows[1].elem_offset,
            off_b: windows.get(2).map_or(0, |w| w.elem_offset),
        };
        let groups = (hi - lo).div_ceil(WG).min(MAX_GRID) as u32;
        s.push(ctx.dispatch(kernel, pipeline.clone(), &windows, &params, [groups, 1, 1])?);
    }
    Ok(())
}
