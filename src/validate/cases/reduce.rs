//! Validation rows for `kernels::reduce` against `reference::reduce`: `sum_squares` and `dot`
//! (two passes through partial sums), `sum_short` (one workgroup per binding-sized chunk) and
//! `weighted_cols` (one workgroup per output, rows in binding-sized chunks), at empty, single,
//! one-off-a-workgroup and multi-chunk lengths, accumulating and not, with a random alpha.

use super::tree_chain;
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::launch::{chunk_elems, row_chunks};
use crate::kernels::{reduce, Stream};
use crate::reference;
use crate::util::Rng;
use crate::validate::suite::Runner;
use crate::validate::{reduce_sum_tolerance, reduce_tolerance};
use std::time::Instant;

/// Invocations per workgroup of every reduce kernel (`WG` in the launcher), and the most
/// workgroups a partial pass gives one chunk.
const WG: usize = 256;
const GROUPS_PER_CHUNK: usize = 256;

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    sum_squares_cases(ctx, r, chunked)?;
    dot_cases(ctx, r, chunked)?;
    sum_short_cases(ctx, r, chunked)?;
    weighted_cols_cases(ctx, r, chunked)
}

fn name(base: &str, chunked: bool) -> String {
    if chunked {
        format!("{base} chunked")
    } else {
        base.to_string()
    }
}

fn sum_squares_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let sizes: &[usize] = if chunked { &[100_003, 1_000_003] } else { &[0, 1, 255, 257, 100_003, 3_000_001] };
    let kernel = name("sum_squares", chunked);
    for &n in sizes {
        if !r.wants(&kernel) {
            return Ok(());
        }
        let mut rng = r.rng(&format!("{kernel} {n}"));
        let x = rng.vec_uniform(n, -1.0, 1.0);
        let tx = ctx.upload("x", &x)?;
        let tout = ctx.upload("out", &[f32::NAN])?;
        let mut want = [0.0f32];
        reference::reduce::sum_squares(&mut want, &x);
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        reduce::sum_squares(&mut st, &tout, &tx)?;
        st.run()?;
        let got = ctx.read(&tout)?;
        r.record(&kernel, "-", &format!("n={n}"), &got, &want, reduce_tolerance(), t0.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The output's start value: NaN when it is written (so an unwritten one fails), random when the
/// kernel accumulates onto it.
fn prior(rng: &mut Rng, len: usize, accumulate: bool) -> Vec<f32> {
    if accumulate {
        rng.vec_uniform(len, -1.0, 1.0)
    } else {
        vec![f32::NAN; len]
    }
}

fn variant(alpha: f32, accumulate: bool) -> String {
    format!("a={alpha:.3}{}", if accumulate { " +=" } else { "" })
}

/// Root-sum-square of `terms` and |Σ terms|, in f64.
fn l2_and_sum(terms: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut sq, mut sum) = (0.0, 0.0);
    for t in terms {
        sq += t * t;
        sum += t;
    }
    (sq.sqrt(), sum.abs())
}

fn dot_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let sizes: &[usize] = if chunked { &[100_003] } else { &[0, 1, 255, 257, 100_003, 1_000_003] };
    let kernel = name("dot", chunked);
    for (k, &n) in sizes.iter().enumerate() {
        if !r.wants(&kernel) {
            return Ok(());
        }
        let mut rng = r.rng(&format!("{kernel} {n}"));
        let accumulate = k % 2 == 1;
        let alpha = rng.uniform_f32(-2.0, 2.0);
        let x = rng.vec_uniform(n, -1.0, 1.0);
        let y = rng.vec_uniform(n, -1.0, 1.0);
        let out0 = prior(&mut rng, 1, accumulate);
        let mut want = out0.clone();
        reference::reduce::dot(&mut want, &x, &y, alpha, accumulate);
        // Partial pass: a chunk's terms strided over up to 256 workgroups of 256, then a tree;
        // final pass: the partials strided over one workgroup, then a tree.
        let chunk = n.min(chunk_elems(ctx));
        let lanes = chunk.div_ceil(WG).clamp(1, GROUPS_PER_CHUNK) * WG;
        let chain =
            chunk.div_ceil(lanes) + WG.trailing_zeros() as usize + tree_chain(reduce::dot_scratch_len(ctx, n), WG);
        let (l2, sum) = l2_and_sum(x.iter().zip(&y).map(|(&a, &b)| alpha as f64 * a as f64 * b as f64));
        let tx = ctx.upload("x", &x)?;
        let ty = ctx.upload("y", &y)?;
        let tout = ctx.upload("out", &out0)?;
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        reduce::dot(&mut st, &tout, &tx, &ty, alpha, accumulate)?;
        st.run()?;
        let got = ctx.read(&tout)?;
        let tol = reduce_sum_tolerance(chain, l2, sum);
        r.record(&kernel, &variant(alpha, accumulate), &format!("n={n}"), &got, &want, tol, t0.elapsed().as_secs_f64());
    }
    Ok(())
}

fn sum_short_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let sizes: &[usize] = if chunked { &[100_003] } else { &[0, 1, 255, 257, 10_000, 100_003] };
    let kernel = name("sum_short", chunked);
    for (k, &n) in sizes.iter().enumerate() {
        if !r.wants(&kernel) {
            return Ok(());
        }
        let mut rng = r.rng(&format!("{kernel} {n}"));
        let accumulate = k % 2 == 1;
        let alpha = rng.uniform_f32(-2.0, 2.0);
        let x = rng.vec_uniform(n, -1.0, 1.0);
        let out0 = prior(&mut rng, 1, accumulate);
        let mut want = out0.clone();
        reference::reduce::sum_short(&mut want, &x, alpha, accumulate);
        // One workgroup per chunk; each later chunk adds to what the first stored.
        let chunks = row_chunks(ctx, "sum_short", n, &[1], usize::MAX)?;
        let longest = chunks.iter().map(|(lo, hi)| hi - lo).max().unwrap_or(0);
        let chain = tree_chain(longest, WG) + chunks.len();
        let (l2, sum) = l2_and_sum(x.iter().map(|&a| alpha as f64 * a as f64));
        let tx = ctx.upload("x", &x)?;
        let tout = ctx.upload("out", &out0)?;
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        reduce::sum_short(&mut st, &tout, &tx, alpha, accumulate)?;
        st.run()?;
        let got = ctx.read(&tout)?;
        let tol = reduce_sum_tolerance(chain, l2, sum);
        r.record(&kernel, &variant(alpha, accumulate), &format!("n={n}"), &got, &want, tol, t0.elapsed().as_secs_f64());
    }
    Ok(())
}

fn weighted_cols_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    // (rows, nj, ncols, ldy): tiny, ragged, smear's dw (24 of 768 columns, one coefficient per
    // row), the value-embedding gate's dwg (Hkv = 6 coefficients per row, 12 columns).
    let shapes: &[(usize, usize, usize, usize)] = if chunked {
        &[(300, 2, 24, 768)]
    } else {
        &[(0, 1, 3, 3), (1, 1, 1, 1), (37, 3, 5, 7), (2048, 1, 24, 768), (2048, 6, 12, 768)]
    };
    let kernel = name("weighted_cols", chunked);
    for (k, &(rows, nj, ncols, ldy)) in shapes.iter().enumerate() {
        if !r.wants(&kernel) {
            return Ok(());
        }
        let shape = format!("{rows}x{nj} · {rows}x{ncols}/{ldy}");
        let mut rng = r.rng(&format!("{kernel} {shape}"));
        let accumulate = k % 2 == 1;
        let coef = rng.vec_uniform(rows * nj, -1.0, 1.0);
        let y = rng.vec_uniform(rows * ldy, -1.0, 1.0);
        let out0 = prior(&mut rng, nj * ncols, accumulate);
        let mut want = out0.clone();
        reference::reduce::weighted_cols(&mut want, &coef, &y, rows, nj, ncols, ldy, accumulate);
        let chunks = row_chunks(ctx, "weighted_cols", rows, &[nj, ldy], usize::MAX)?;
        let longest = chunks.iter().map(|(lo, hi)| hi - lo).max().unwrap_or(0);
        let chain = tree_chain(longest, WG) + chunks.len();
        // The widest output's bound serves the whole row.
        let (mut l2, mut sum) = (0.0f64, 0.0f64);
        for j in 0..nj {
            for i in 0..ncols {
                let (a, b) = l2_and_sum((0..rows).map(|q| coef[q * nj + j] as f64 * y[q * ldy + i] as f64));
                l2 = l2.max(a);
                sum = sum.max(b);
            }
        }
        let tc = ctx.upload("coef", &coef)?;
        let ty = ctx.upload("y", &y)?;
        let tout = ctx.upload("out", &out0)?;
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        reduce::weighted_cols(&mut st, &tout, &tc, &ty, rows, nj, ncols, ldy, accumulate)?;
        st.run()?;
        let got = ctx.read(&tout)?;
        let tol = reduce_sum_tolerance(chain, l2, sum);
        let v = if accumulate { "+=" } else { "-" };
        r.record(&kernel, v, &shape, &got, &want, tol, t0.elapsed().as_secs_f64());
    }
    Ok(())
}
