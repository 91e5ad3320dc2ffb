//! Reference for `kernels::rmsnorm`: RMSNorm without a gain (nanochat's `F.rms_norm`, eps =
//! FLT_EPSILON), with an output scale so the same kernel serves the per-head QK norm (× 1.2).
//! Rows of C elements; used at the embedding, before attention, before the MLP, on q and k per
//! head (C = D), and before lm_head.

use super::Real;
use crate::model::config::RMS_EPS;

/// out[r, :] = scale · inp[r, :] · rstd[r],   rstd[r] = 1 / √(mean_c inp[r, c]² + eps)
pub fn rmsnorm_forward<R: Real>(out: &mut [R], rstd: &mut [R], inp: &[R], rows: usize, c: usize, scale: f32) {
    for r in 0..rows {
        let x = &inp[r * c..(r + 1) * c];
        let ms = x.iter().map(|v| v.f() * v.f()).sum::<f64>() / c as f64;
        let rs = 1.0 / (ms + RMS_EPS as f64).sqrt();
        rstd[r] = R::of(rs);
        for i in 0..c {
            out[r * c + i] = R::of(scale as f64 * x[i].f() * rs);
        }
    }
}

/// dinp = scale · (rstd · dout − rstd³ / C · inp · ⟨dout, inp⟩), written or, with `accumulate`,
/// added (the residual stream collects gradient from several consumers).
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward<R: Real>(
    dinp: &mut [R],
    dout: &[R],
    inp: &[R],
    rstd: &[R],
    rows: usize,
    c: usize,
    scale: f32,
    accumulate: bool,
) {
    for r in 0..rows {
        let x = &inp[r * c..(r + 1) * c];
        let dy = &dout[r * c..(r + 1) * c];
        let rs = rstd[r].f();
        let dot: f64 = (0..c).map(|i| dy[i].f() * x[i].f()).sum();
        for i in 0..c {
            let g = scale as f64 * (rs * dy[i].f() - rs * rs * rs / c as f64 * x[i].f() * dot);
            let d = &mut dinp[r * c + i];
            *d = R::of(if accumulate { d.f() + g } else { g });
        }
    }
}
