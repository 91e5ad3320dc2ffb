//! The launcher toolkit every kernel family shares: shape checks that name the operand, row
//! chunking so that every operand's binding window fits the adapter's storage-binding limit, and
//! the chunked 1-D grid-stride launch of the elementwise families ([`launch_1d`]).
//!
//! The ops are row-structured: operand `i` holds `row_elems[i]` contiguous elements per row (an
//! elementwise op is the case `row_elems = 1`). A chunk of rows `[lo, hi)` of operand `i` is the
//! element range `[lo·row_elems[i], hi·row_elems[i])`, which `GpuTensor::window` binds.

use crate::error::{Error, Result};
use crate::gpu::immediates::Immediates;
use crate::gpu::tensor::window_slack;
use crate::gpu::{GpuContext, GpuTensor, Kernel, Overrides, Window};
use crate::kernels::{Stream, MAX_GRID};

/// Most workgroups one grid dimension may have on every adapter (WebGPU's guaranteed minimum).
pub(crate) const MAX_GROUPS_PER_DIM: usize = 65_535;

/// `Err(Shape)` unless `t` has exactly `want` elements.
pub(crate) fn expect_len(op: &'static str, name: &str, t: &GpuTensor, want: usize) -> Result<()> {
    if t.len() != want {
        return Err(Error::Shape { op, message: format!("{name} has {} elements, expected {want}", t.len()) });
    }
    Ok(())
}

/// `Err(Shape)` unless `t` has at least `want` elements.
pub(crate) fn expect_at_least(op: &'static str, name: &str, t: &GpuTensor, want: usize) -> Result<()> {
    if t.len() < want {
        return Err(Error::Shape { op, message: format!("{name} has {} elements, needs at least {want}", t.len()) });
    }
    Ok(())
}

/// `Err(Shape)` if any of the dimensions is 0 or any element count overflows u32 (shader indices).
pub(crate) fn expect_dims(op: &'static str, dims: &[(&str, usize)], total: usize) -> Result<()> {
    if let Some((name, _)) = dims.iter().find(|(_, v)| *v == 0) {
        return Err(Error::Shape { op, message: format!("{name} must be >= 1") });
    }
    if total > u32::MAX as usize {
        return Err(Error::Shape { op, message: format!("{total} elements exceed the 2^32 a shader can index") });
    }
    Ok(())
}

/// Elements one window may span: the binding limit less the window's alignment slack.
pub(crate) fn usable_binding_elems(ctx: &GpuContext) -> usize {
    (ctx.max_binding_bytes().saturating_sub(window_slack(ctx.storage_align())) / 4) as usize
}

/// Elements per chunk of a vector taken in binding-sized chunks: a 64-element multiple, so that
/// consecutive windows start on fresh alignment, and below 2^31 (shader indices).
pub(crate) fn chunk_elems(ctx: &GpuContext) -> usize {
    (usable_binding_elems(ctx) / 64 * 64).max(64).min(u32::MAX as usize / 2)
}

/// Record a 1-D grid-stride kernel over `vectors` (equal lengths, bound first at 0, 1, …, taken in
/// chunks of [`chunk_elems`]), then `whole` tensors bound entire after them. `params(n, offsets)`
/// builds the kernel's parameter struct for a chunk of `n` elements from the element offsets of
/// every binding, in binding order. Nothing to record for empty vectors.
pub(crate) fn launch_1d<P: Immediates>(
    s: &mut Stream<'_>,
    kernel: Kernel,
    op: &'static str,
    wg: usize,
    vectors: &[&GpuTensor],
    whole: &[&GpuTensor],
    params: impl Fn(u32, &[u32]) -> P,
) -> Result<()> {
    let n = vectors[0].len();
    if let Some(t) = vectors.iter().find(|t| t.len() != n) {
        return Err(Error::Shape { op, message: format!("lengths differ: {n} vs {}", t.len()) });
    }
    if n == 0 {
        return Ok(());
    }
    let ctx = s.ctx;
    let pipeline = ctx.pipeline(kernel, &Overrides::new().set("WG", wg as f64))?;
    let fixed = whole.iter().map(|t| ctx.window(t, 0, t.len())).collect::<Result<Vec<_>>>()?;
    let step = chunk_elems(ctx);
    let mut lo = 0;
    while lo < n {
        let hi = (lo + step).min(n);
        let mut windows = vectors.iter().map(|t| ctx.window(t, lo, hi)).collect::<Result<Vec<_>>>()?;
        windows.extend_from_slice(&fixed);
        let offsets: Vec<u32> = windows.iter().map(|w| w.elem_offset).collect();
        let p = params((hi - lo) as u32, &offsets);
        let groups = (hi - lo).div_ceil(wg).min(MAX_GRID) as u32;
        s.push(ctx.dispatch(kernel, pipeline.clone(), &windows, &p, [groups, 1, 1])?);
        lo = hi;
    }
    Ok(())
}

/// Split `rows` rows into consecutive chunks `[lo, hi)` so that, for every operand with
/// `row_elems[k]` elements per row, the chunk's window fits one binding, and no chunk has more than
/// `max_rows` rows (a grid-dimension limit). Fails when a single row does not fit a binding.
pub(crate) fn row_chunks(
    ctx: &GpuContext,
    op: &'static str,
    rows: usize,
    row_elems: &[usize],
    max_rows: usize,
) -> Result<Vec<(usize, usize)>> {
    row_chunks_halo(ctx, op, rows, row_elems, max_rows, 0)
}

/// [`row_chunks`] for kernels that also read `halo` rows beyond the chunk (a neighbour row on
/// either side): the windows of chunk + halo rows fit one binding.
pub(crate) fn row_chunks_halo(
    ctx: &GpuContext,
    op: &'static str,
    rows: usize,
    row_elems: &[usize],
    max_rows: usize,
    halo: usize,
) -> Result<Vec<(usize, usize)>> {
    let widest = row_elems.iter().copied().max().unwrap_or(1).max(1);
    let fit = usable_binding_elems(ctx) / widest;
    if fit <= halo {
        return Err(Error::Shape {
            op,
            message: format!(
                "{} rows of {widest} f32 do not fit a {}-byte storage binding",
                halo + 1,
                ctx.max_binding_bytes()
            ),
        });
    }
    let step = (fit - halo).min(max_rows).max(1);
    Ok((0..rows.div_ceil(step)).map(|i| (i * step, ((i + 1) * step).min(rows))).collect())
}

/// The window of rows `[lo, hi)` of a tensor with `row_elems` elements per row.
pub(crate) fn rows_window<'t>(
    ctx: &GpuContext,
    t: &'t GpuTensor,
    lo: usize,
    hi: usize,
    row_elems: usize,
) -> Result<Window<'t>> {
    whole_window(ctx, t, lo * row_elems, hi * row_elems)
}

/// The window of elements `[lo, hi)` of `t`.
pub(crate) fn whole_window<'t>(ctx: &GpuContext, t: &'t GpuTensor, lo: usize, hi: usize) -> Result<Window<'t>> {
    ctx.window(t, lo, hi)
}
