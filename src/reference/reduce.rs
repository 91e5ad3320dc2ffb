//! Reference for `kernels::reduce`.

/// out[0] = Σ x[i]², accumulated in f64.
pub fn sum_squares(out: &mut [f32], x: &[f32]) {
    assert!(out.len() == 1);
    let mut acc = 0.0f64;
    for &v in x {
        acc += v as f64 * v as f64;
    }
    out[0] = acc as f32;
}
