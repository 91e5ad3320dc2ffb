//! Launcher for `shaders/argmax.wgsl`: the first index of each row's largest logit, mirroring
//! `reference::argmax::argmax`. The CORE scorer (`eval::scorer`) runs it on every logits chunk
//! of an evaluation pass, so greedy predictions come back as one i32 per position instead of a
//! row of V logits.

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{DType, GpuTensor, Kernel, Overrides};
use crate::kernels::launch::{expect_dims, expect_len, row_chunks, rows_window, MAX_GROUPS_PER_DIM};
use crate::kernels::Stream;

const WG: usize = 256;

immediates! {
    /// Matches `ArgmaxParams` in the shader.
    pub struct ArgmaxParams {
        rows: u32,
        v: u32,
        vp: u32,
        off_out: u32,
        off_z: u32,
    }
}

/// `out[r]` (i32) = the lowest index c < v holding the largest of `logits[r, 0..v]`, for each of
/// `rows` rows of width `vp` (columns v..vp are padding and never read). `out` and `logits` must
/// be different buffers.
pub fn argmax(s: &mut Stream<'_>, out: &GpuTensor, logits: &GpuTensor, rows: usize, v: usize, vp: usize) -> Result<()> {
    const OP: &str = "argmax";
    expect_dims(OP, &[("rows", rows), ("V", v), ("Vp", vp)], rows * vp)?;
    if v > vp {
        return Err(Error::Shape { op: OP, message: format!("V = {v} exceeds the padded width Vp = {vp}") });
    }
    expect_len(OP, "out", out, rows)?;
    expect_len(OP, "logits", logits, rows * vp)?;
    if out.dtype() != DType::F32 || logits.dtype() != DType::F32 {
        return Err(Error::Shape { op: OP, message: "out (i32) and logits (f32) must be 4-byte tensors".into() });
    }
    let ctx = s.ctx;
    let pipeline = ctx.pipeline(Kernel::Argmax, &Overrides::new().set("WG", WG as f64))?;
    for (lo, hi) in row_chunks(ctx, OP, rows, &[1, vp], MAX_GROUPS_PER_DIM)? {
        let wo = rows_window(ctx, out, lo, hi, 1)?;
        let wz = rows_window(ctx, logits, lo, hi, vp)?;
        let params = ArgmaxParams {
            rows: (hi - lo) as u32,
            v: v as u32,
            vp: vp as u32,
            off_out: wo.elem_offset,
            off_z: wz.elem_offset,
        };
        s.push(ctx.dispatch(Kernel::Argmax, pipeline.clone(), &[wo, wz], &params, [(hi - lo) as u32, 1, 1])?);
    }
    Ok(())
}
