//! Validation rows for `kernels::grad_norm` against `reference::grad_norm`.

use super::upload_at;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::grad_norm::{self, grad_norm, GradNormReport};
use crate::kernels::Stream;
use crate::validate::suite::Runner;
use crate::validate::{grad_norm_tolerance, Tol};
use std::time::Instant;

/// Tensors of ragged sizes (one empty, one of exactly one block, one a block plus one) listed out
/// of arena order, NaN and ±inf inside some and in the gaps between them (which must not count).
pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, kernel: &str) -> Result<()> {
    if !r.wants(kernel) {
        return Ok(());
    }
    let chunked = kernel.ends_with("chunked");
    let lens: &[usize] = if chunked {
        &[20_000, 3, 50_001]
    } else {
        &[1, 5000, grad_norm::BLOCK, grad_norm::BLOCK + 1, 0, 100_003, 1_000_000]
    };
    let mut rng = r.rng(kernel);
    let mut spans = Vec::new();
    let mut at = 0;
    for &len in lens {
        at += 1 + (rng.next_u64() % 50) as usize;
        spans.push((at, len));
        at += len;
    }
    let arena = at + 5;
    let mut x: Vec<f32> = (0..arena).map(|_| rng.normal() as f32).collect();
    // Poison the gaps: a kernel reading outside its tensors would count these.
    for w in spans.windows(2) {
        x[w[0].0 + w[0].1] = f32::NAN;
    }
    x[spans[1].0 + 17] = f32::NAN;
    x[spans[1].0 + 18] = f32::INFINITY;
    let last = spans[spans.len() - 1];
    x[last.0 + last.1 - 1] = f32::NEG_INFINITY;
    // Out of arena order, so slots and table rows differ.
    spans.reverse();
    let mut want = vec![(0.0, 0); spans.len()];
    crate::reference::grad_norm::grad_norm(&mut want, &x, &spans);
    let tx = upload_at(ctx, "x", &x, 3)?;
    let out = upload_at(ctx, "out", &vec![f32::NAN; 2 + 2 * spans.len()], 1)?;
    let partials = ctx.tensor("partials", grad_norm::partials_len(&spans))?;
    let table = ctx.tensor("table", grad_norm::table_len(&spans))?;
    let t0 = Instant::now();
    let mut st = Stream::new(ctx);
    grad_norm(&mut st, &out, &partials, &table, &tx, &spans)?;
    st.run()?;
    let rep = GradNormReport::from_words(&ctx.read(&out)?);
    let secs = t0.elapsed().as_secs_f64();
    let shape = format!("{} tensors, {} elems", spans.len(), lens.iter().sum::<usize>());
    let total: f64 = want.iter().map(|w| w.0).sum();
    let mut got_sums: Vec<f32> = rep.per_tensor.iter().map(|t| t.0).collect();
    let mut want_sums: Vec<f32> = want.iter().map(|w| w.0 as f32).collect();
    got_sums.push(rep.gpu_total);
    want_sums.push(total as f32);
    r.record(kernel, "sum g^2", &shape, &got_sums, &want_sums, grad_norm_tolerance(), secs);
    let mut got_counts: Vec<f32> = rep.per_tensor.iter().map(|t| t.1 as f32).collect();
    let mut want_counts: Vec<f32> = want.iter().map(|w| w.1 as f32).collect();
    got_counts.push(rep.nonfinite as f32);
    want_counts.push(want.iter().map(|w| w.1).sum::<u64>() as f32);
    r.record(kernel, "non-finite count", &shape, &got_counts, &want_counts, Tol { atol: 0.0, rtol: 0.0 }, 0.0);
    Ok(())
}
