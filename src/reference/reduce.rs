//! Reference for `kernels::reduce`: the deterministic sums the backward kernels build on.

/// out[0] = Σ x[i]², accumulated in f64.
pub fn sum_squares(out: &mut [f32], x: &[f32]) {
    assert!(out.len() == 1);
    let mut acc = 0.0f64;
    for &v in x {
        acc += v as f64 * v as f64;
    }
    out[0] = acc as f32;
}

/// out[0] = alpha·Σ x[i]·y[i], or out[0] += that with `accumulate`; the sum in f64.
pub fn dot(out: &mut [f32], x: &[f32], y: &[f32], alpha: f32, accumulate: bool) {
    assert!(out.len() == 1 && x.len() == y.len());
    let sum: f64 = x.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum();
    let prior = if accumulate { out[0] as f64 } else { 0.0 };
    out[0] = (prior + alpha as f64 * sum) as f32;
}

/// out[0] = alpha·Σ x[i], or out[0] += that with `accumulate`; the sum in f64.
pub fn sum_short(out: &mut [f32], x: &[f32], alpha: f32, accumulate: bool) {
    assert!(out.len() == 1);
    let sum: f64 = x.iter().map(|&a| a as f64).sum();
    let prior = if accumulate { out[0] as f64 } else { 0.0 };
    out[0] = (prior + alpha as f64 * sum) as f32;
}

/// out[j·ncols + i] (+)= Σ_{r < rows} coef[r·nj + j] · y[r·ldy + i]   for j < nj, i < ncols, each
/// output's sum in f64.
#[allow(clippy::too_many_arguments)]
pub fn weighted_cols(
    out: &mut [f32],
    coef: &[f32],
    y: &[f32],
    rows: usize,
    nj: usize,
    ncols: usize,
    ldy: usize,
    accumulate: bool,
) {
    assert!(out.len() == nj * ncols && ncols <= ldy);
    for j in 0..nj {
        for i in 0..ncols {
            let sum: f64 = (0..rows).map(|r| coef[r * nj + j] as f64 * y[r * ldy + i] as f64).sum();
            let o = &mut out[j * ncols + i];
            *o = (if accumulate { *o as f64 } else { 0.0 } + sum) as f32;
        }
    }
}
