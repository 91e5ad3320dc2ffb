//! Reference for `kernels::grad_norm`: per-tensor Σ g² over the finite elements and the count of
//! NaN/±inf elements, over (offset, len) ranges of a gradient arena.

/// per_tensor[i] = (Σ g² over the finite elements of x[o..o+n], number of non-finite elements),
/// for segments[i] = (o, n), in f64. The kernel's totals (out[0], out[1]) are the sums of these.
pub fn grad_norm(per_tensor: &mut [(f64, u64)], x: &[f32], segments: &[(usize, usize)]) {
    assert_eq!(per_tensor.len(), segments.len(), "one output per segment");
    for (slot, &(o, n)) in per_tensor.iter_mut().zip(segments) {
        let s = &x[o..o + n];
        let sum = s.iter().filter(|v| v.is_finite()).map(|&v| (v as f64).powi(2)).sum();
        *slot = (sum, s.iter().filter(|v| !v.is_finite()).count() as u64);
    }
}
