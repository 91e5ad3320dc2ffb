//! Launchers for `shaders/rmsnorm.wgsl`, mirroring `reference::rmsnorm`: RMSNorm without a gain,
//! eps = FLT_EPSILON, with an output scale (1 at the five model sites, 1.2 for the per-head QK
//! norm with c = D).

use crate::error::Result;
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel, Overrides};
use crate::kernels::launch::{expect_dims, expect_len, row_chunks, rows_window, MAX_GROUPS_PER_DIM};
use crate::kernels::Stream;
use crate::model::config::RMS_EPS;

const WG: usize = 256;

immediates! {
    /// Matches `RmsnormParams` in the shader (`off_out` locates `dinp` in the backward).
    #[derive(Default)]
    pub struct RmsnormParams {
        rows: u32,
        c: u32,
        off_out: u32,
        off_rstd: u32,
        off_inp: u32,
        off_dout: u32,
        scale: f32,
        eps: f32,
        accumulate: u32,
        _pad: [u32; 3],
    }
}

/// Invocations per row: a power of two giving each about 4 elements, at most a workgroup.
/// c = 768 → 256 (one row per workgroup); D = 128 → 32 (8 rows); D = 64 → 16 (16 rows).
fn threads_per_row(c: usize) -> usize {
    c.div_ceil(4).next_power_of_two().min(WG)
}

/// `out[r, :] = scale · inp[r, :] · rstd[r]`,  `rstd[r] = 1/√(mean_c inp[r, c]² + eps)`, for `rows`
/// rows of `c` elements. out, rstd and inp must be three different buffers (out and rstd may share
/// one).
pub fn rmsnorm_forward(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    rstd: &GpuTensor,
    inp: &GpuTensor,
    rows: usize,
    c: usize,
    scale: f32,
) -> Result<()> {
    launch(s, Kernel::RmsnormForward, &[out, rstd, inp], rows, c, scale, false)
}

/// dinp = scale · (rstd · dout − rstd³/C · inp · ⟨dout, inp⟩) per row, written or, with
/// `accumulate`, added. rstd is the forward's. dinp may not share a buffer with an input.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward(
    s: &mut Stream<'_>,
    dinp: &GpuTensor,
    dout: &GpuTensor,
    inp: &GpuTensor,
    rstd: &GpuTensor,
    rows: usize,
    c: usize,
    scale: f32,
    accumulate: bool,
) -> Result<()> {
    launch(s, Kernel::RmsnormBackward, &[dinp, dout, inp, rstd], rows, c, scale, accumulate)
}

/// `ops` in binding order; every operand has c elements per row except rstd (1).
fn launch(
    s: &mut Stream<'_>,
    kernel: Kernel,
    ops: &[&GpuTensor],
    rows: usize,
    c: usize,
    scale: f32,
    accumulate: bool,
) -> Result<()> {
    let forward = kernel == Kernel::RmsnormForward;
    let op = if forward { "rmsnorm_forward" } else { "rmsnorm_backward" };
    expect_dims(op, &[("rows", rows), ("c", c)], rows * c)?;
    let names: &[&str] = if forward { &["out", "rstd", "inp"] } else { &["dinp", "dout", "inp", "rstd"] };
    let rstd_slot = if forward { 1 } else { 3 };
    let row_elems: Vec<usize> = (0..ops.len()).map(|k| if k == rstd_slot { 1 } else { c }).collect();
    for ((t, name), &re) in ops.iter().zip(names).zip(&row_elems) {
        expect_len(op, name, t, rows * re)?;
    }
    let ctx = s.ctx;
    let tpr = threads_per_row(c);
    let rows_per_group = WG / tpr;
    let pipeline = ctx.pipeline(kernel, &Overrides::new().set("WG", WG as f64).set("TPR", tpr as f64))?;
    for (lo, hi) in row_chunks(ctx, op, rows, &row_elems, MAX_GROUPS_PER_DIM * rows_per_group)? {
        let windows =
            ops.iter().zip(&row_elems).map(|(t, &re)| rows_window(ctx, t, lo, hi, re)).collect::<Result<Vec<_>>>()?;
        let off = |k: usize| windows[k].elem_offset;
        let params = RmsnormParams {
            rows: (hi - lo) as u32,
            c: c as u32,
            off_out: off(0),
            off_rstd: off(rstd_slot),
            off_inp: off(2),
            off_dout: if forward { 0 } else { off(1) },
            scale,
            eps: RMS_EPS,
            accumulate: accumulate as u32,
            ..Default::default()
        };
        let groups = [(hi - lo).div_ceil(rows_per_group) as u32, 1, 1];
        s.push(ctx.dispatch(kernel, pipeline.clone(), &windows, &params, groups)?);
    }
    Ok(())
}
