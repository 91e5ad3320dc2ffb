//! Launchers for `shaders/cast.wgsl`, mirroring `reference::cast`: the f16 copy of an f32
//! tensor (taken in binding-sized chunks).

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{DType, GpuTensor, Kernel};
use crate::kernels::launch::launch_1d;
use crate::kernels::Stream;

const WG: usize = 256;

immediates! {
    /// Matches `CastParams` in the shader.
    pub struct CastParams {
        n: u32,
        off_out: u32,
        off_inp: u32,
        _pad: u32,
    }
}

/// out = f16(inp), elementwise; `out` is an f16 tensor, `inp` an f32 one of the same length.
/// Needs SHADER_F16 (the f16 precision that uses it is only resolved where the adapter has it).
pub fn cast_f32_to_f16(s: &mut Stream<'_>, out: &GpuTensor, inp: &GpuTensor) -> Result<()> {
    if out.dtype() != DType::F16 || inp.dtype() != DType::F32 {
        return Err(Error::Shape {
            op: "cast_f32_to_f16",
            message: format!("wants an f16 output and an f32 input, got {:?} and {:?}", out.dtype(), inp.dtype()),
        });
    }
    launch_1d(s, Kernel::CastF32ToF16, "cast_f32_to_f16", WG, &[out, inp], &[], |n, off| CastParams {
        n,
        off_out: off[0],
        off_inp: off[1],
        _pad: 0,
    })
}
