//! Reference for `kernels::argmax`: the greedy prediction of each row of a logits chunk.

use super::Real;

/// For each of `rows` rows of `logits` (rows, vp): `out[r]` = the lowest index c < v whose value is
/// the row's largest over the first v columns (torch.argmax's tie rule).
pub fn argmax<R: Real>(out: &mut [i32], logits: &[R], rows: usize, v: usize, vp: usize) {
    for r in 0..rows {
        let row = &logits[r * vp..r * vp + v];
        let mut best = 0;
        for (c, x) in row.iter().enumerate() {
            if x.f() > row[best].f() {
                best = c;
            }
        }
        out[r] = best as i32;
    }
}
