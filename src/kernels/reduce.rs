//! Launchers for `shaders/reduce.wgsl`. Two passes, no atomics: the result depends only on the
//! input and its length, so it is bit-identical run to run.

use crate::error::{Error, Result};
use crate::gpu::{GpuTensor, Kernel, Overrides};
use crate::kernels::elementwise::chunk_elems;
use crate::kernels::Stream;

const WG: usize = 256;
/// Partial sums per chunk: enough workgroups to keep a GPU busy, few enough that the final pass
/// (one workgroup) is negligible.
const GROUPS_PER_CHUNK: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    n: u32,
    off_out: u32,
    off_x: u32,
    _pad0: u32,
}

/// out[0] = Σ x[i]²   (`out` is a 1-element tensor; an empty x gives 0)
pub fn sum_squares(s: &mut Stream<'_>, out: &GpuTensor, x: &GpuTensor) -> Result<()> {
    if out.len() != 1 {
        return Err(Error::Shape { op: "sum_squares", message: format!("out must have 1 element, has {}", out.len()) });
    }
    let ctx = s.ctx;
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let max = ctx.max_binding_bytes();
    let step = chunk_elems(ctx);
    let n = x.len();
    let chunks: Vec<(usize, usize)> = (0..n.div_ceil(step)).map(|i| (i * step, ((i + 1) * step).min(n))).collect();
    let groups: Vec<usize> = chunks.iter().map(|(lo, hi)| (hi - lo).div_ceil(WG).min(GROUPS_PER_CHUNK)).collect();
    let total: usize = groups.iter().sum::<usize>().max(1);
    // Scratch for the partial sums; small (256 floats per chunk), allocated per call.
    let partial = ctx.tensor("sum_squares partials", total)?;
    let o = Overrides::new().set("WG", WG as f64);
    let p1 = ctx.pipeline(Kernel::ReduceSumSquaresPartial, &o)?;
    let mut base = 0;
    for (&(lo, hi), &g) in chunks.iter().zip(&groups) {
        let wp = partial.window(base, base + g, align, max)?;
        let wx = x.window(lo, hi, align, max)?;
        let params = ReduceParams { n: (hi - lo) as u32, off_out: wp.elem_offset, off_x: wx.elem_offset, _pad0: 0 };
        let d = ctx.dispatch(
            Kernel::ReduceSumSquaresPartial,
            p1.clone(),
            &[wp, wx],
            bytemuck::bytes_of(&params),
            [g as u32, 1, 1],
        )?;
        s.push(d);
        base += g;
    }
    if n == 0 {
        // No partial pass ran: the final pass sums the single zero-initialised partial.
        s.ctx.write(&partial, &[0.0])?;
    }
    let p2 = ctx.pipeline(Kernel::ReduceSumFinal, &o)?;
    let wo = out.window(0, 1, align, max)?;
    let wp = partial.window(0, total, align, max)?;
    let params = ReduceParams { n: total as u32, off_out: wo.elem_offset, off_x: wp.elem_offset, _pad0: 0 };
    let d = ctx.dispatch(Kernel::ReduceSumFinal, p2, &[wo, wp], bytemuck::bytes_of(&params), [1, 1, 1])?;
    s.push(d);
    Ok(())
}
