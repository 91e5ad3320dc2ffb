//! Validation rows for `kernels::embedding` against `reference::embedding`.

use super::{kernel_name, max_abs, skewed_tokens, timed, upload_at};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::embedding;
use crate::kernels::embedding::{EmbeddingBuckets, GpuEmbeddingBuckets};
use crate::reference;
use crate::validate::suite::Runner;
use crate::validate::{embedding_backward_tolerance, exact_tolerance};

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("embedding_forward", chunked);
    let bwd = kernel_name("embedding_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (n, vocab, w, pad)
    let cases: Vec<(usize, usize, usize, usize)> = if chunked {
        vec![(100, 500, 100, 0), (20, 37, 700, 3)]
    } else {
        vec![(1, 1, 1, 0), (37, 50, 100, 5), (2048, 32768, 768, 0), (4096, 4096, 256, 0), (2048, 1000, 64, 3)]
    };
    for (n, vocab, w, pad) in cases {
        let shape = format!("N={n} {vocab}x{w}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("embedding {chunked} {shape}"));
        let idx = skewed_tokens(&mut rng, n, vocab);
        let ti = ctx.upload_i32("idx", &idx)?;
        if r.wants(&fwd) {
            // wte init scale (N(0, 0.8²)); uniform is as good a test and much cheaper to draw.
            let table = rng.vec_uniform(vocab * w, -1.4, 1.4);
            let mut want = vec![0.0f32; n * w];
            reference::embedding::embedding_forward(&mut want, &table, &idx, n, w);
            let tt = upload_at(ctx, "table", &table, pad)?;
            let to = upload_at(ctx, "out", &vec![f32::NAN; n * w], pad + 1)?;
            let secs = timed(ctx, |s| embedding::embedding_forward(s, &to, &tt, &ti, n, w))?;
            r.record(&fwd, "out", &shape, &ctx.read(&to)?, &want, exact_tolerance(), secs);
        }
        if r.wants(&bwd) {
            let dout = rng.vec_uniform(n * w, -1.0, 1.0);
            let dtable0 = rng.vec_uniform(vocab * w, -1.0, 1.0);
            let mut want = dtable0.clone();
            reference::embedding::embedding_backward(&mut want, &dout, &idx, n, w);
            let buckets = EmbeddingBuckets::new(&idx);
            let longest = buckets.starts.windows(2).map(|p| (p[1] - p[0]) as usize).max().unwrap_or(0);
            let gb = GpuEmbeddingBuckets::upload(ctx, &buckets)?;
            let td = upload_at(ctx, "dtable", &dtable0, pad)?;
            let tdo = upload_at(ctx, "dout", &dout, pad + 2)?;
            let secs = timed(ctx, |s| embedding::embedding_backward(s, &td, &tdo, &gb, n, w))?;
            let variant = format!("dtable += ({longest} max)");
            let tol = embedding_backward_tolerance(longest, max_abs(&dout));
            r.record(&bwd, &variant, &shape, &ctx.read(&td)?, &want, tol, secs);
        }
    }
    Ok(())
}
