//! Launchers for `shaders/reduce.wgsl`. No atomics: partial sums per workgroup, then one final
//! workgroup, so the result depends only on the input and its length and is bit-identical run to
//! run.
//!
//! Temporaries (the partial sums) come from [`Stream::scratch`]: [`dot_scratch_len`] says how many
//! f32 a model's stream workspace must hold for a [`dot`] or [`sum_squares`] over `n` elements.

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuContext, GpuTensor, Kernel, Overrides};
use crate::kernels::launch::chunk_elems;
use crate::kernels::launch::{expect_at_least, row_chunks, whole_window};
use crate::kernels::{elementwise, Stream};

const WG: usize = 256;
/// Partial sums per chunk: enough workgroups to keep a GPU busy, few enough that the final pass
/// (one workgroup) is negligible.
const GROUPS_PER_CHUNK: usize = 256;

immediates! {
    /// Matches `ReduceParams` in the shader.
    #[derive(Default)]
    pub struct ReduceParams {
        n: u32,
        off_out: u32,
        off_x: u32,
        off_y: u32,
        alpha: f32,
        accumulate: u32,
        ncols: u32,
        nj: u32,
        ldy: u32,
        _pad: [u32; 3],
    }
}

fn one_element(op: &'static str, out: &GpuTensor) -> Result<()> {
    if out.len() != 1 {
        return Err(Error::Shape { op, message: format!("out must have 1 element, has {}", out.len()) });
    }
    Ok(())
}

/// Element ranges of `n` that fit one binding each, and the partial sums each gets.
fn partial_plan(s: &Stream<'_>, n: usize) -> (Vec<(usize, usize)>, Vec<usize>) {
    let step = chunk_elems(s.ctx);
    let chunks: Vec<(usize, usize)> = (0..n.div_ceil(step)).map(|i| (i * step, ((i + 1) * step).min(n))).collect();
    let groups = chunks.iter().map(|(lo, hi)| (hi - lo).div_ceil(WG).min(GROUPS_PER_CHUNK)).collect();
    (chunks, groups)
}

/// F32 of stream workspace a [`dot`] or [`sum_squares`] over `n` elements needs (its partial sums).
pub fn dot_scratch_len(ctx: &GpuContext, n: usize) -> usize {
    let step = chunk_elems(ctx);
    (0..n.div_ceil(step)).map(|i| (((i + 1) * step).min(n) - i * step).div_ceil(WG).min(GROUPS_PER_CHUNK)).sum()
}

/// Partial pass `kernel` over x (and y) into scratch, then the final pass into `out`.
#[allow(clippy::too_many_arguments)]
fn two_pass(
    s: &mut Stream<'_>,
    op: &'static str,
    kernel: Kernel,
    out: &GpuTensor,
    x: &GpuTensor,
    y: Option<&GpuTensor>,
    alpha: f32,
    accumulate: bool,
) -> Result<()> {
    one_element(op, out)?;
    if let Some(y) = y {
        if y.len() != x.len() {
            return Err(Error::Shape { op, message: format!("lengths differ: {} vs {}", x.len(), y.len()) });
        }
    }
    let ctx = s.ctx;
    let n = x.len();
    let (chunks, groups) = partial_plan(s, n);
    let total: usize = groups.iter().sum();
    let partial = s.scratch(op, total)?;
    let o = Overrides::new().set("WG", WG as f64);
    let p1 = ctx.pipeline(kernel, &o)?;
    let mut base = 0;
    for (&(lo, hi), &g) in chunks.iter().zip(&groups) {
        let mut windows = vec![whole_window(ctx, &partial, base, base + g)?, whole_window(ctx, x, lo, hi)?];
        if let Some(y) = y {
            windows.push(whole_window(ctx, y, lo, hi)?);
        }
        let params = ReduceParams {
            n: (hi - lo) as u32,
            off_out: windows[0].elem_offset,
            off_x: windows[1].elem_offset,
            off_y: windows.get(2).map_or(0, |w| w.elem_offset),
            ..Default::default()
        };
        s.push(ctx.dispatch(kernel, p1.clone(), &windows, &params, [g as u32, 1, 1])?);
        base += g;
    }
    // n = 0: no partial pass ran and the final pass sums nothing (the window is bound, not read).
    let p2 = ctx.pipeline(Kernel::ReduceSumFinal, &o)?;
    let wo = whole_window(ctx, out, 0, 1)?;
    let wp = whole_window(ctx, &partial, 0, total.max(1))?;
    let params = ReduceParams {
        n: total as u32,
        off_out: wo.elem_offset,
        off_x: wp.elem_offset,
        alpha,
        accumulate: accumulate as u32,
        ..Default::default()
    };
    s.push(ctx.dispatch(Kernel::ReduceSumFinal, p2, &[wo, wp], &params, [1, 1, 1])?);
    Ok(())
}

/// out[0] = Σ x[i]²   (`out` is a 1-element tensor; an empty x gives 0)
pub fn sum_squares(s: &mut Stream<'_>, out: &GpuTensor, x: &GpuTensor) -> Result<()> {
    two_pass(s, "sum_squares", Kernel::ReduceSumSquaresPartial, out, x, None, 1.0, false)
}

/// out[0] = alpha·Σ x[i]·y[i], or out[0] += that with `accumulate`. `out` is a 1-element tensor
/// (typically one element of the gradient arena); it may not share a buffer with x or y.
pub fn dot(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    x: &GpuTensor,
    y: &GpuTensor,
    alpha: f32,
    accumulate: bool,
) -> Result<()> {
    two_pass(s, "dot", Kernel::ReduceDotPartial, out, x, Some(y), alpha, accumulate)
}

/// out[0] = alpha·Σ x[i], or out[0] += that with `accumulate`, in one workgroup per binding-sized
/// chunk: for short vectors (per-row coefficients, ~1e5 elements), which need no workspace. An
/// empty x gives 0 (or leaves an accumulated out unchanged).
pub fn sum_short(s: &mut Stream<'_>, out: &GpuTensor, x: &GpuTensor, alpha: f32, accumulate: bool) -> Result<()> {
    one_element("sum_short", out)?;
    let ctx = s.ctx;
    let n = x.len();
    let o = Overrides::new().set("WG", WG as f64);
    let pipeline = ctx.pipeline(Kernel::ReduceSumFinal, &o)?;
    if n == 0 {
        return if accumulate { Ok(()) } else { elementwise::fill(s, out, 0.0) };
    }
    let wo = whole_window(ctx, out, 0, 1)?;
    for (k, (lo, hi)) in row_chunks(ctx, "sum_short", n, &[1], usize::MAX)?.into_iter().enumerate() {
        let wx = whole_window(ctx, x, lo, hi)?;
        let params = ReduceParams {
            n: (hi - lo) as u32,
            off_out: wo.elem_offset,
            off_x: wx.elem_offset,
            alpha,
            // Later chunks add to what the first one stored.
            accumulate: (accumulate || k > 0) as u32,
            ..Default::default()
        };
        s.push(ctx.dispatch(Kernel::ReduceSumFinal, pipeline.clone(), &[wo, wx], &params, [1, 1, 1])?);
    }
    Ok(())
}

/// out[j·ncols + i] (+)= Σ_{r < rows} coef[r·nj + j] · y[r·ldy + i]   for j < nj, i < ncols:
/// column sums of the first `ncols` columns of a row-major y (rows × ldy), weighted by `nj`
/// per-row coefficients. One workgroup per output; a y larger than one binding is taken in row
/// chunks that add in order. `out` may not share a buffer with coef or y.
#[allow(clippy::too_many_arguments)]
pub fn weighted_cols(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    coef: &GpuTensor,
    y: &GpuTensor,
    rows: usize,
    nj: usize,
    ncols: usize,
    ldy: usize,
    accumulate: bool,
) -> Result<()> {
    const OP: &str = "weighted_cols";
    if nj == 0 || ncols == 0 || ncols > ldy {
        return Err(Error::Shape {
            op: OP,
            message: format!("need 1 <= ncols <= ldy and nj >= 1, got {nj}, {ncols}, {ldy}"),
        });
    }
    if out.len() != nj * ncols {
        return Err(Error::Shape {
            op: OP,
            message: format!("out has {} elements, expected {}", out.len(), nj * ncols),
        });
    }
    if rows == 0 {
        return if accumulate { Ok(()) } else { elementwise::fill(s, out, 0.0) };
    }
    expect_at_least(OP, "coef", coef, rows * nj)?;
    expect_at_least(OP, "y", y, (rows - 1) * ldy + ncols)?;
    let ctx = s.ctx;
    let o = Overrides::new().set("WG", WG as f64);
    let pipeline = ctx.pipeline(Kernel::ReduceWeightedCols, &o)?;
    let wo = whole_window(ctx, out, 0, nj * ncols)?;
    for (k, (lo, hi)) in row_chunks(ctx, OP, rows, &[nj, ldy], usize::MAX)?.into_iter().enumerate() {
        let wc = whole_window(ctx, coef, lo * nj, hi * nj)?;
        let wy = whole_window(ctx, y, lo * ldy, (hi - 1) * ldy + ncols)?;
        let params = ReduceParams {
            n: (hi - lo) as u32,
            off_out: wo.elem_offset,
            off_x: wc.elem_offset,
            off_y: wy.elem_offset,
            alpha: 1.0,
            accumulate: (accumulate || k > 0) as u32,
            ncols: ncols as u32,
            nj: nj as u32,
            ldy: ldy as u32,
            ..Default::default()
        };
        let groups = [(nj * ncols) as u32, 1, 1];
        s.push(ctx.dispatch(Kernel::ReduceWeightedCols, pipeline.clone(), &[wo, wc, wy], &params, groups)?);
    }
    Ok(())
}
