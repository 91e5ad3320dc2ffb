//! Reference for `kernels::embedding`: row gather and its gradient, for wte and the value
//! embeddings. Rows are W wide; the table has Vp rows; idx holds N token ids in [0, Vp).

use super::Real;

/// out[n, :] = table[idx[n], :]
pub fn embedding_forward<R: Real>(out: &mut [R], table: &[R], idx: &[i32], n: usize, w: usize) {
    for r in 0..n {
        let t = idx[r] as usize;
        out[r * w..(r + 1) * w].copy_from_slice(&table[t * w..(t + 1) * w]);
    }
}

/// dtable[v, :] += Σ_{n : idx[n] = v} dout[n, :], summing positions in increasing n (the order
/// the GPU kernel uses, so the result is deterministic there too).
pub fn embedding_backward<R: Real>(dtable: &mut [R], dout: &[R], idx: &[i32], n: usize, w: usize) {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&r| (idx[r], r));
    let mut i = 0;
    while i < n {
        let tok = idx[order[i]] as usize;
        let mut j = i;
        let mut acc = vec![0.0f64; w];
        while j < n && idx[order[j]] as usize == tok {
            for c in 0..w {
                acc[c] += dout[order[j] * w + c].f();
            }
            j += 1;
        }
        for c in 0..w {
            let d = &mut dtable[tok * w + c];
            *d = R::of(d.f() + acc[c]);
        }
        i = j;
    }
}
