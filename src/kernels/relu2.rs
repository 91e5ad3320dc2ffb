//! Launchers for `shaders/relu2.wgsl`, mirroring `reference::relu2`: relu(x)² and its
//! gradient, over vectors of any length (taken in binding-sized chunks).

use crate::error::Result;
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel};
use crate::kernels::launch::launch_1d;
use crate::kernels::Stream;

const WG: usize = 256;

immediates! {
    /// Matches `Relu2Params` in the shader.
    pub struct Relu2Params {
        n: u32,
        off_out: u32,
        off_a: u32,
        off_b: u32,
    }
}

/// out = max(inp, 0)². out may not share a buffer with inp.
pub fn relu2_forward(s: &mut Stream<'_>, out: &GpuTensor, inp: &GpuTensor) -> Result<()> {
    launch(s, Kernel::Relu2Forward, "relu2_forward", &[out, inp])
}

/// dinp = dout · 2·max(inp, 0) (written). dinp may not share a buffer with dout or inp.
pub fn relu2_backward(s: &mut Stream<'_>, dinp: &GpuTensor, dout: &GpuTensor, inp: &GpuTensor) -> Result<()> {
    launch(s, Kernel::Relu2Backward, "relu2_backward", &[dinp, dout, inp])
}

fn launch(s: &mut Stream<'_>, kernel: Kernel, op: &'static str, ops: &[&GpuTensor]) -> Result<()> {
    launch_1d(s, kernel, op, WG, ops, &[], |n, off| Relu2Params {
        n,
        off_out: off[0],
        off_a: off[1],
        off_b: off.get(2).copied().unwrap_or(0),
    })
}
