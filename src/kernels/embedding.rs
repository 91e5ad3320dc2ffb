//! Launchers for `shaders/embedding.wgsl`, mirroring `reference::embedding`: the row gather of wte
//! and the value embeddings, and its gradient.
//!
//! The gradient is deterministic without float atomics: the host, which uploads the batch, builds
//! [`EmbeddingBuckets`] from the same token ids (once per batch; wte and every value embedding
//! share them) and uploads them with [`GpuEmbeddingBuckets`]; [`embedding_backward`] then sums each
//! unique token's rows in position order, the order the reference uses.

use crate::error::{Error, Result};
use crate::gpu::immediates::immediates;
use crate::gpu::{GpuContext, GpuTensor, Kernel, Overrides};
use crate::kernels::launch::{
    expect_dims, expect_len, row_chunks, rows_window, usable_binding_elems, whole_window, MAX_GROUPS_PER_DIM,
};
use crate::kernels::{Stream, MAX_GRID};

const WG: usize = 256;

immediates! {
    /// Matches `EmbeddingParams` in the shader.
    #[derive(Default)]
    pub struct EmbeddingParams {
        n: u32,
        w: u32,
        tok_lo: u32,
        tok_hi: u32,
        vocab: u32,
        first_chunk: u32,
        u_lo: u32,
        off_out: u32,
        off_table: u32,
        off_idx: u32,
        _pad: [u32; 2],
    }
}

/// A batch's token ids grouped by token, for the deterministic gradient scatter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddingBuckets {
    /// Positions 0..N sorted by (token, position).
    pub order: Vec<i32>,
    /// `order[starts[u]..starts[u + 1]]` are the positions of unique token u (U + 1 entries).
    pub starts: Vec<i32>,
    /// The distinct token ids, ascending (U entries).
    pub tokens: Vec<i32>,
}

impl EmbeddingBuckets {
    /// Buckets of the N = idx.len() token ids (any values; the launcher checks them against the
    /// table). O(N log N); for a 16K-token batch well under a millisecond.
    pub fn new(idx: &[i32]) -> Self {
        let mut order: Vec<i32> = (0..idx.len() as i32).collect();
        // Stable: positions of equal tokens stay increasing.
        order.sort_by_key(|&r| idx[r as usize]);
        let mut starts = Vec::new();
        let mut tokens = Vec::new();
        for (j, &r) in order.iter().enumerate() {
            let t = idx[r as usize];
            if tokens.last() != Some(&t) {
                tokens.push(t);
                starts.push(j as i32);
            }
        }
        starts.push(order.len() as i32);
        Self { order, starts, tokens }
    }

    /// Positions N.
    pub fn n(&self) -> usize {
        self.order.len()
    }

    /// Distinct tokens U.
    pub fn unique(&self) -> usize {
        self.tokens.len()
    }

    /// The device layout, 3N + 1 i32: [order (N) | starts (U + 1, padded to N + 1 with N) |
    /// tokens (U, zero-padded to N)]. Fixed offsets, so one buffer serves every batch of N; the
    /// padded starts make every slot past U an empty range, which the kernel skips.
    pub fn packed(&self) -> Vec<i32> {
        let n = self.n();
        let mut v = vec![0i32; 3 * n + 1];
        v[..n].copy_from_slice(&self.order);
        v[n..2 * n + 1].fill(n as i32);
        v[n..n + self.starts.len()].copy_from_slice(&self.starts);
        v[2 * n + 1..2 * n + 1 + self.tokens.len()].copy_from_slice(&self.tokens);
        v
    }
}

/// [`EmbeddingBuckets`] on the device, for batches of N positions. The launch geometry depends
/// only on N, so a recorded backward replays on every batch written here.
pub struct GpuEmbeddingBuckets {
    tensor: GpuTensor,
    n: usize,
    /// The smallest and largest token of the batch last written, for the launcher's check of a
    /// call recorded after it (a replay relies on the writer's own check, as `GpuModel::set_batch`
    /// checks every id against the tables).
    span: Option<(i32, i32)>,
}

impl GpuEmbeddingBuckets {
    /// Device room for the buckets of batches of `n` positions (3n + 1 i32), allocated once.
    pub fn alloc(ctx: &GpuContext, n: usize) -> Result<Self> {
        Ok(Self { tensor: ctx.tensor("embedding buckets", 3 * n + 1)?, n, span: None })
    }

    /// Use an already allocated tensor of at least 3n + 1 elements (a memory-plan entry).
    pub fn from_tensor(tensor: GpuTensor, n: usize) -> Result<Self> {
        if tensor.len() < 3 * n + 1 {
            return Err(Error::Shape {
                op: "embedding buckets",
                message: format!("a batch of {n} positions needs {} i32, the tensor has {}", 3 * n + 1, tensor.len()),
            });
        }
        Ok(Self { tensor: tensor.view(0, 3 * n + 1), n, span: None })
    }

    /// Allocate and write in one go.
    pub fn upload(ctx: &GpuContext, b: &EmbeddingBuckets) -> Result<Self> {
        let mut g = Self::alloc(ctx, b.n())?;
        g.write(ctx, b)?;
        Ok(g)
    }

    /// Replace the contents with the next batch's buckets (same N), ordered before the next
    /// submission like any queue write. The caller checks the token ids against the tables the
    /// backward will scatter into (a token past a table's rows adds nothing anywhere).
    pub fn write(&mut self, ctx: &GpuContext, b: &EmbeddingBuckets) -> Result<()> {
        if b.n() != self.n {
            return Err(Error::Shape {
                op: "embedding buckets",
                message: format!("allocated for N = {}, the batch has {}", self.n, b.n()),
            });
        }
        ctx.write_i32(&self.tensor, &b.packed())?;
        self.span = b.tokens.first().zip(b.tokens.last()).map(|(&lo, &hi)| (lo, hi));
        Ok(())
    }

    /// The packed i32 tensor (3N + 1 elements).
    pub fn tensor(&self) -> &GpuTensor {
        &self.tensor
    }

    pub fn n(&self) -> usize {
        self.n
    }
}

/// Table rows per chunk so a chunk of the table (rows of w) fits one binding.
fn table_rows_per_chunk(ctx: &GpuContext, op: &'static str, w: usize) -> Result<usize> {
    let fit = usable_binding_elems(ctx) / w;
    if fit == 0 {
        return Err(Error::Shape { op, message: format!("one row of {w} f32 does not fit a storage binding") });
    }
    Ok(fit)
}

/// out[r, :] = table[idx[r], :] for r < n, rows of w. `idx` is an i32 tensor of n token ids
/// (`GpuContext::upload_i32`); a token outside the table gives a NaN row. out may not share a buffer
/// with table or idx.
pub fn embedding_forward(
    s: &mut Stream<'_>,
    out: &GpuTensor,
    table: &GpuTensor,
    idx: &GpuTensor,
    n: usize,
    w: usize,
) -> Result<()> {
    const OP: &str = "embedding_forward";
    expect_dims(OP, &[("n", n), ("w", w), ("table", table.len())], (n * w).max(table.len()))?;
    expect_len(OP, "out", out, n * w)?;
    expect_len(OP, "idx", idx, n)?;
    if !table.len().is_multiple_of(w) {
        return Err(Error::Shape { op: OP, message: format!("table has {} elements, not rows of {w}", table.len()) });
    }
    let ctx = s.ctx;
    let vocab = table.len() / w;
    let step = table_rows_per_chunk(ctx, OP, w)?;
    let pipeline = ctx.pipeline(Kernel::EmbeddingForward, &Overrides::new().set("WG", WG as f64))?;
    for (lo, hi) in row_chunks(ctx, OP, n, &[w, 1], usize::MAX)? {
        let wo = rows_window(ctx, out, lo, hi, w)?;
        let wi = rows_window(ctx, idx, lo, hi, 1)?;
        let mut v_lo = 0;
        while v_lo < vocab {
            let v_hi = (v_lo + step).min(vocab);
            let wt = rows_window(ctx, table, v_lo, v_hi, w)?;
            let params = EmbeddingParams {
                n: (hi - lo) as u32,
                w: w as u32,
                tok_lo: v_lo as u32,
                tok_hi: v_hi as u32,
                vocab: vocab as u32,
                first_chunk: (v_lo == 0) as u32,
                off_out: wo.elem_offset,
                off_table: wt.elem_offset,
                off_idx: wi.elem_offset,
                ..Default::default()
            };
            let groups = ((hi - lo) * w).div_ceil(WG).min(MAX_GRID) as u32;
            s.push(ctx.dispatch(Kernel::EmbeddingForward, pipeline.clone(), &[wo, wt, wi], &params, [groups, 1, 1])?);
            v_lo = v_hi;
        }
    }
    Ok(())
}

/// dtable[v, :] += Σ_{r : idx[r] = v} dout[r, :], positions summed in increasing r, for the n
/// positions the buckets were built from (their token ids take the place of the reference's
/// `idx`). Bit-identical for identical inputs. dout (n × w) must fit one storage binding (the
/// table is taken in chunks); dtable may not share a buffer with dout or the buckets.
pub fn embedding_backward(
    s: &mut Stream<'_>,
    dtable: &GpuTensor,
    dout: &GpuTensor,
    buckets: &GpuEmbeddingBuckets,
    n: usize,
    w: usize,
) -> Result<()> {
    const OP: &str = "embedding_backward";
    expect_dims(OP, &[("n", n), ("w", w), ("dtable", dtable.len())], (n * w).max(dtable.len()))?;
    expect_len(OP, "dout", dout, n * w)?;
    if buckets.n != n {
        return Err(Error::Shape { op: OP, message: format!("the buckets are for N = {}, not {n}", buckets.n) });
    }
    if !dtable.len().is_multiple_of(w) {
        return Err(Error::Shape { op: OP, message: format!("dtable has {} elements, not rows of {w}", dtable.len()) });
    }
    let vocab = dtable.len() / w;
    if let Some((first, last)) = buckets.span.filter(|&(lo, hi)| lo < 0 || hi as usize >= vocab) {
        return Err(Error::Shape {
            op: OP,
            message: format!("token ids span [{first}, {last}], outside the table's {vocab} rows"),
        });
    }
    let ctx = s.ctx;
    let step = table_rows_per_chunk(ctx, OP, w)?;
    let pipeline = ctx.pipeline(Kernel::EmbeddingBackward, &Overrides::new().set("WG", WG as f64))?;
    let wd = whole_window(ctx, dout, 0, n * w)?;
    let wb = whole_window(ctx, &buckets.tensor, 0, buckets.tensor.len())?;
    let col_blocks = w.div_ceil(WG) as u32;
    let mut v_lo = 0;
    while v_lo < vocab {
        let v_hi = (v_lo + step).min(vocab);
        // Every bucket slot, whatever the batch: the kernel skips the empty ones and the tokens
        // outside this chunk.
        let mut u = 0;
        while u < n {
            let u_end = (u + MAX_GROUPS_PER_DIM).min(n);
            let wt = rows_window(ctx, dtable, v_lo, v_hi, w)?;
            let params = EmbeddingParams {
                n: n as u32,
                w: w as u32,
                tok_lo: v_lo as u32,
                tok_hi: v_hi as u32,
                vocab: vocab as u32,
                u_lo: u as u32,
                off_out: wt.elem_offset,
                off_table: wd.elem_offset,
                off_idx: wb.elem_offset,
                ..Default::default()
            };
            s.push(ctx.dispatch(
                Kernel::EmbeddingBackward,
                pipeline.clone(),
                &[wt, wd, wb],
                &params,
                [(u_end - u) as u32, col_blocks, 1],
            )?);
            u = u_end;
        }
        v_lo = v_hi;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::EmbeddingBuckets;

    #[test]
    fn buckets_group_positions_by_token_in_position_order() {
        let b = EmbeddingBuckets::new(&[5, 2, 5, 0, 2, 5]);
        assert_eq!(b.tokens, [0, 2, 5]);
        assert_eq!(b.starts, [0, 1, 3, 6]);
        assert_eq!(b.order, [3, 1, 4, 0, 2, 5]);
        assert_eq!(b.packed(), [3, 1, 4, 0, 2, 5, 0, 1, 3, 6, 6, 6, 6, 0, 2, 5, 0, 0, 0]);
        let empty = EmbeddingBuckets::new(&[]);
        assert_eq!((empty.n(), empty.unique(), empty.packed()), (0, 0, vec![0]));
    }
}
