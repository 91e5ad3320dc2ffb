//! Launchers for `shaders/grad_norm.wgsl`: per-tensor Σg² and non-finite counts over an arena, and
//! their totals, in three deterministic passes (no atomics).
//!
//! Also the block planner the optimizer kernels share: tensors are cut into blocks of a fixed
//! number of elements, numbered tensor after tensor, and a dispatch covers a run of blocks whose
//! operands fit one storage binding (see [`plan_blocks`]).

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuTensor, Kernel, Overrides, Window};
use crate::kernels::launch::chunk_elems;
use crate::kernels::{Stream, MAX_GRID};

const WG: usize = 256;
/// Elements per block: WG invocations × 16 (PER_THREAD in the shader).
pub const BLOCK: usize = WG * 16;
/// u32 words per table row: offset, len, first block, output slot.
pub const TABLE_WORDS: usize = 4;

immediates! {
    pub struct GradNormParams {
        b0: u32,
        b1: u32,
        n_tensors: u32,
        n_blocks: u32,
        lo: u32,
        off_out: u32,
        off_x: u32,
        off_table: u32,
    }
}

/// One tensor of a blocked dispatch: its offset in each address space the kernel walks (the
/// arena; for AdamW also the state buffers) and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockedTensor {
    pub offsets: Vec<usize>,
    pub len: usize,
}

/// A run of blocks [b0, b1) and, per address space, the element range [lo, hi) they touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockRun {
    pub b0: usize,
    pub b1: usize,
    pub spans: Vec<(usize, usize)>,
}

/// First block of each tensor and the total number of blocks.
pub(crate) fn first_blocks(lens: impl Iterator<Item = usize>, block: usize) -> (Vec<usize>, usize) {
    let mut at = 0;
    let firsts = lens
        .map(|n| {
            let f = at;
            at += n.div_ceil(block);
            f
        })
        .collect();
    (firsts, at)
}

/// Split the blocks of `tensors` (in order; their offsets must increase in every address space
/// and they must not overlap) into runs whose element range in every address space spans at most
/// `limit` elements, so that each run is one dispatch with one window per operand.
pub(crate) fn plan_blocks(tensors: &[BlockedTensor], block: usize, limit: usize) -> Result<Vec<BlockRun>> {
    if limit < block {
        return Err(Error::Shape {
            op: "plan_blocks",
            message: format!("a storage binding holds {limit} elements, less than one {block}-element block"),
        });
    }
    for w in tensors.windows(2) {
        for s in 0..w[0].offsets.len() {
            if w[1].offsets[s] < w[0].offsets[s] + w[0].len {
                return Err(Error::Shape {
                    op: "plan_blocks",
                    message: format!(
                        "tensors overlap or are out of order in address space {s}: [{}, +{}) then [{}, …)",
                        w[0].offsets[s], w[0].len, w[1].offsets[s]
                    ),
                });
            }
        }
    }
    let mut runs: Vec<BlockRun> = Vec::new();
    let mut b = 0;
    for t in tensors.iter().filter(|t| t.len > 0) {
        for k in 0..t.len.div_ceil(block) {
            let lo = k * block;
            let hi = (lo + block).min(t.len);
            let spans: Vec<(usize, usize)> = t.offsets.iter().map(|&o| (o + lo, o + hi)).collect();
            let fits = |run: &BlockRun| run.spans.iter().zip(&spans).all(|(r, s)| s.1 - r.0 <= limit);
            match runs.last_mut() {
                Some(run) if run.b1 == b && fits(run) => {
                    run.b1 = b + 1;
                    for (r, s) in run.spans.iter_mut().zip(&spans) {
                        r.1 = s.1;
                    }
                }
                _ => runs.push(BlockRun { b0: b, b1: b + 1, spans }),
            }
            b += 1;
        }
    }
    Ok(runs)
}

/// The tensors of a reduction, sorted by offset: (offset, len, output slot = index in `segments`).
fn sorted(segments: &[(usize, usize)]) -> Vec<(usize, usize, usize)> {
    let mut s: Vec<(usize, usize, usize)> = segments.iter().enumerate().map(|(i, &(o, n))| (o, n, i)).collect();
    s.sort();
    s
}

/// Elements of the partial-sum buffer [`grad_norm`] needs for these tensors: two words per block.
pub fn partials_len(segments: &[(usize, usize)]) -> usize {
    2 * first_blocks(segments.iter().map(|s| s.1), BLOCK).1
}

/// Elements of the table buffer [`grad_norm`] writes.
pub fn table_len(segments: &[(usize, usize)]) -> usize {
    TABLE_WORDS * segments.len()
}

/// out[0] = Σ g² over the finite elements of every tensor, out[1] = number of NaN/±inf elements
/// (as u32 bits), then per tensor i (in `segments` order) out[2 + 2i] = its Σ g² and
/// out[3 + 2i] = its count. `segments` are (offset, len) ranges of `x`, disjoint. `out` has
/// 2 + 2·segments.len() elements; `partials` [`partials_len`] and `table` [`table_len`] are
/// scratch (the table is written here, at record time). The sums are f32; read `out` with
/// [`GradNormReport::from_words`].
pub fn grad_norm(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    partials: &GpuTensor,
    table: &GpuTensor,
    x: &GpuTensor,
    segments: &[(usize, usize)],
) -> Result<()> {
    let n = segments.len();
    let shape = |message: String| Err(Error::Shape { op: "grad_norm", message });
    if n == 0 {
        return shape("no tensors".into());
    }
    if out.len() != 2 + 2 * n || partials.len() < partials_len(segments) || table.len() < table_len(segments) {
        return shape(format!(
            "out has {} elements (needs {}), partials {} (needs {}), table {} (needs {})",
            out.len(),
            2 + 2 * n,
            partials.len(),
            partials_len(segments),
            table.len(),
            table_len(segments)
        ));
    }
    if let Some(&(o, l)) = segments.iter().find(|&&(o, l)| o + l > x.len()) {
        return shape(format!("tensor [{o}, +{l}) runs past the {}-element arena", x.len()));
    }
    if x.len() > u32::MAX as usize {
        return shape("the arena exceeds 2^32 elements".into());
    }
    let ctx = s.ctx;
    let sorted = sorted(segments);
    let (firsts, n_blocks) = first_blocks(sorted.iter().map(|t| t.1), BLOCK);
    let mut words = Vec::with_capacity(TABLE_WORDS * n);
    for (&(o, l, slot), &f) in sorted.iter().zip(&firsts) {
        words.extend_from_slice(&[o as u32, l as u32, f as u32, slot as u32]);
    }
    ctx.write(&table.view(0, words.len()), bytemuck::cast_slice(&words))?;

    let tensors: Vec<BlockedTensor> =
        sorted.iter().map(|&(o, l, _)| BlockedTensor { offsets: vec![o], len: l }).collect();
    let runs = plan_blocks(&tensors, BLOCK, chunk_elems(ctx))?;
    let o = Overrides::new().set("WG", WG as f64);
    let wt = ctx.window(table, 0, words.len())?;
    let base = GradNormParams {
        b0: 0,
        b1: 0,
        n_tensors: n as u32,
        n_blocks: n_blocks as u32,
        lo: 0,
        off_out: 0,
        off_x: 0,
        off_table: wt.elem_offset,
    };
    let p1 = ctx.pipeline(Kernel::GradNormPartial, &o)?;
    for run in &runs {
        let (lo, hi) = run.spans[0];
        let wp = ctx.window(partials, 2 * run.b0, 2 * run.b1)?;
        let wx = ctx.window(x, lo, hi)?;
        let params = GradNormParams {
            b0: run.b0 as u32,
            b1: run.b1 as u32,
            lo: lo as u32,
            off_out: wp.elem_offset,
            off_x: wx.elem_offset,
            ..base
        };
        let groups = (run.b1 - run.b0).min(MAX_GRID) as u32;
        s.push(ctx.dispatch(Kernel::GradNormPartial, p1.clone(), &[wp, wx, wt], &params, [groups, 1, 1])?);
    }
    // Every tensor has at least one block unless it is empty: empty tensors still get their slot
    // written (zero) by the final pass, which then sums an empty range.
    let wo = ctx.window(out, 0, out.len())?;
    if n_blocks > 0 {
        let wp = ctx.window(partials, 0, 2 * n_blocks)?;
        let params = GradNormParams { off_out: wo.elem_offset, off_x: wp.elem_offset, ..base };
        let p2 = ctx.pipeline(Kernel::GradNormFinal, &o)?;
        let groups = n.min(MAX_GRID) as u32;
        s.push(ctx.dispatch(Kernel::GradNormFinal, p2, &[wo, wp, wt], &params, [groups, 1, 1])?);
    } else {
        ctx.write(out, &vec![0.0; out.len()])?;
    }
    let params = GradNormParams { off_out: wo.elem_offset, ..base };
    let p3 = ctx.pipeline(Kernel::GradNormTotal, &o)?;
    s.push(ctx.dispatch(Kernel::GradNormTotal, p3, &[wo], &params, [1, 1, 1])?);
    Ok(())
}

/// The words [`grad_norm`] writes, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct GradNormReport {
    /// Σ g² over every finite gradient element, summed on the host in f64 from the per-tensor
    /// f32 sums (the GPU's own f32 total is `gpu_total`).
    pub sum_squares: f64,
    /// The GPU's f32 total (what the guard-free part of the step saw).
    pub gpu_total: f32,
    /// NaN and ±inf elements in the whole arena: non-zero means the step was skipped.
    pub nonfinite: u64,
    /// Per tensor, in the order the tensors were given: (Σ g² of finite elements, non-finite count).
    pub per_tensor: Vec<(f32, u32)>,
}

impl GradNormReport {
    /// Decode `out` as read back with `GpuContext::read` (f32 values holding u32 bits for counts).
    pub fn from_words(words: &[f32]) -> Self {
        let bits = |i: usize| words[i].to_bits();
        let per_tensor: Vec<(f32, u32)> =
            (0..(words.len() - 2) / 2).map(|t| (words[2 + 2 * t], bits(3 + 2 * t))).collect();
        GradNormReport {
            sum_squares: per_tensor.iter().map(|&(s, _)| s as f64).sum(),
            gpu_total: words[0],
            nonfinite: bits(1) as u64,
            per_tensor,
        }
    }

    /// The global gradient norm ‖g‖₂ over the finite elements.
    pub fn norm(&self) -> f64 {
        self.sum_squares.sqrt()
    }
}

/// The window of `out` holding the non-finite count (element 1): the optimizer kernels' guard.
pub(crate) fn guard_window<'a>(s: &Stream<'_>, guard: &'a GpuTensor) -> Result<Window<'a>> {
    s.ctx.window(guard, 0, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_runs_cover_every_block_once_within_the_limit() {
        let tensors = vec![
            BlockedTensor { offsets: vec![0, 0], len: 10 },
            BlockedTensor { offsets: vec![64, 10], len: 1000 },
            BlockedTensor { offsets: vec![1088, 1010], len: 0 },
            BlockedTensor { offsets: vec![1088, 1010], len: 333 },
        ];
        for limit in [64, 100, 500, 10_000] {
            let runs = plan_blocks(&tensors, 64, limit).unwrap();
            let (_, n) = first_blocks(tensors.iter().map(|t| t.len), 64);
            assert_eq!(runs.first().unwrap().b0, 0);
            assert_eq!(runs.last().unwrap().b1, n);
            assert!(runs.windows(2).all(|w| w[0].b1 == w[1].b0));
            assert!(runs.iter().all(|r| r.spans.iter().all(|s| s.1 - s.0 <= limit)));
        }
        assert_eq!(plan_blocks(&tensors, 64, 10_000).unwrap().len(), 1);
        assert!(plan_blocks(&tensors, 64, 32).is_err());
        let overlapping = vec![tensors[1].clone(), tensors[0].clone()];
        assert!(plan_blocks(&overlapping, 64, 10_000).is_err());
    }
}
