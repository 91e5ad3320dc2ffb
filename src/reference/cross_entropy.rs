//! Reference for `kernels::cross_entropy`: logit softcap fused with cross-entropy, forward and
//! backward in one pass over a chunk of rows of (unsoftcapped) logits z (rows, Vp). Only the first
//! V columns are real; the padding columns get no probability and zero gradient.

use super::Real;

/// For each row: l = cap·tanh(z[0:V]/cap), lse = ln Σ_c exp(l_c), losses[r] = lse − l[target]
/// (0 when target < 0, ignore_index). With `dlogits`, also
/// dz[r, c] = grad_scale·(softmax(l)_c − [c = target])·(1 − (l_c/cap)²) for c < V, 0 for c ≥ V, and
/// an all-zero row for an ignored target. grad_scale is 1/(valid targets · grad accumulation).
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy<R: Real>(
    losses: &mut [R],
    mut dlogits: Option<&mut [R]>,
    logits: &[R],
    targets: &[i32],
    rows: usize,
    v: usize,
    vp: usize,
    softcap: f32,
    grad_scale: f32,
) {
    let cap = softcap as f64;
    for r in 0..rows {
        let z = &logits[r * vp..r * vp + v];
        let l: Vec<f64> = z.iter().map(|x| cap * (x.f() / cap).tanh()).collect();
        let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + l.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        let tgt = targets[r];
        losses[r] = R::of(if tgt >= 0 { lse - l[tgt as usize] } else { 0.0 });
        if let Some(dz) = dlogits.as_deref_mut() {
            let row = &mut dz[r * vp..(r + 1) * vp];
            for (c, o) in row.iter_mut().enumerate() {
                *o = if tgt < 0 || c >= v {
                    R::of(0.0)
                } else {
                    let p = (l[c] - lse).exp() - if c == tgt as usize { 1.0 } else { 0.0 };
                    R::of(grad_scale as f64 * p * (1.0 - (l[c] / cap).powi(2)))
                };
            }
        }
    }
}
