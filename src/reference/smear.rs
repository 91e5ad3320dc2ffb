//! Reference for `kernels::smear`: nanochat's bigram "smear". Each token mixes in the previous
//! token's (pre-smear) normalized embedding through a gate computed from its own first 24
//! channels: x_0 = e_0; x_t = e_t + λ·σ(⟨w, e_t[0:24]⟩)·e_{t−1} for t ≥ 1. Layout (B, T, C).

use super::{sigmoid, Real};
use crate::model::config::SMEAR_CHANNELS;

/// out = smear(e) with gate weights w (24,) and gate scale λ.
#[allow(clippy::too_many_arguments)]
pub fn smear_forward<R: Real>(out: &mut [R], e: &[R], w: &[R], lambda: R, b: usize, t: usize, c: usize) {
    for bi in 0..b {
        for ti in 0..t {
            let row = (bi * t + ti) * c;
            if ti == 0 {
                out[row..row + c].copy_from_slice(&e[row..row + c]);
                continue;
            }
            let s: f64 = (0..SMEAR_CHANNELS).map(|i| w[i].f() * e[row + i].f()).sum();
            let g = lambda.f() * sigmoid(s);
            for i in 0..c {
                out[row + i] = R::of(e[row + i].f() + g * e[row - c + i].f());
            }
        }
    }
}

/// de (written) = dout + g_{t+1}·dout_{t+1} + ds_t·w (first 24 channels);
/// dw += Σ_t ds_t·e_t[0:24];  dλ += Σ_t σ_t·dg_t;  where dg_t = ⟨dout_t, e_{t−1}⟩ and
/// ds_t = λ·σ_t(1 − σ_t)·dg_t.
#[allow(clippy::too_many_arguments)]
pub fn smear_backward<R: Real>(
    de: &mut [R],
    dw: &mut [R],
    dlambda: &mut R,
    dout: &[R],
    e: &[R],
    w: &[R],
    lambda: R,
    b: usize,
    t: usize,
    c: usize,
) {
    let lam = lambda.f();
    let mut dw64 = [0.0f64; SMEAR_CHANNELS];
    let mut dl = 0.0f64;
    for bi in 0..b {
        for ti in 0..t {
            let row = (bi * t + ti) * c;
            let mut acc: Vec<f64> = (0..c).map(|i| dout[row + i].f()).collect();
            if ti + 1 < t {
                // x_{t+1} reads e_t through its own gate g_{t+1}.
                let nrow = row + c;
                let s: f64 = (0..SMEAR_CHANNELS).map(|i| w[i].f() * e[nrow + i].f()).sum();
                let g = lam * sigmoid(s);
                for i in 0..c {
                    acc[i] += g * dout[nrow + i].f();
                }
            }
            if ti >= 1 {
                let s: f64 = (0..SMEAR_CHANNELS).map(|i| w[i].f() * e[row + i].f()).sum();
                let sg = sigmoid(s);
                let dg: f64 = (0..c).map(|i| dout[row + i].f() * e[row - c + i].f()).sum();
                dl += sg * dg;
                let ds = lam * sg * (1.0 - sg) * dg;
                for i in 0..SMEAR_CHANNELS {
                    dw64[i] += ds * e[row + i].f();
                    acc[i] += ds * w[i].f();
                }
            }
            for i in 0..c {
                de[row + i] = R::of(acc[i]);
            }
        }
    }
    for i in 0..SMEAR_CHANNELS {
        dw[i] = R::of(dw[i].f() + dw64[i]);
    }
    *dlambda = R::of(dlambda.f() + dl);
}
