//! Reference for `kernels::ve_gate`: the value-embedding gate (ResFormer-style value residual).
//! v[n, h, :] += g[n, h]·ve[n, h, :] with g = 3·σ(⟨wg[h, :], u[n, 0:12]⟩), one gate per KV head,
//! read from the first 12 channels of the normalized block input u (N, C). v and ve are
//! (N, Hkv, D); wg is (Hkv, 12).

use super::{sigmoid, Real};
use crate::model::config::VE_GATE_CHANNELS;

fn gate_logit<R: Real>(u: &[R], wg: &[R], n: usize, c: usize, h: usize) -> f64 {
    (0..VE_GATE_CHANNELS).map(|i| wg[h * VE_GATE_CHANNELS + i].f() * u[n * c + i].f()).sum()
}

/// v += g ⊙ ve   (in place)
#[allow(clippy::too_many_arguments)]
pub fn ve_gate_forward<R: Real>(v: &mut [R], u: &[R], ve: &[R], wg: &[R], n: usize, c: usize, hkv: usize, d: usize) {
    for r in 0..n {
        for h in 0..hkv {
            let g = 3.0 * sigmoid(gate_logit(u, wg, r, c, h));
            let o = (r * hkv + h) * d;
            for e in 0..d {
                v[o + e] = R::of(v[o + e].f() + g * ve[o + e].f());
            }
        }
    }
}

/// dve = g·dv (written);  with ds = ⟨dv_h, ve_h⟩·3σ(1 − σ):  dwg[h] += Σ_n ds·u[n, 0:12] and
/// du[n, 0:12] += Σ_h ds·wg[h]   (dv itself passes through the addition unchanged).
#[allow(clippy::too_many_arguments)]
pub fn ve_gate_backward<R: Real>(
    dve: &mut [R],
    du: &mut [R],
    dwg: &mut [R],
    dv: &[R],
    u: &[R],
    ve: &[R],
    wg: &[R],
    n: usize,
    c: usize,
    hkv: usize,
    d: usize,
) {
    let mut dwg64 = vec![0.0f64; hkv * VE_GATE_CHANNELS];
    for r in 0..n {
        let mut du_acc = [0.0f64; VE_GATE_CHANNELS];
        for h in 0..hkv {
            let sg = sigmoid(gate_logit(u, wg, r, c, h));
            let g = 3.0 * sg;
            let o = (r * hkv + h) * d;
            let mut dg = 0.0f64;
            for e in 0..d {
                dg += dv[o + e].f() * ve[o + e].f();
                dve[o + e] = R::of(g * dv[o + e].f());
            }
            let ds = dg * 3.0 * sg * (1.0 - sg);
            for i in 0..VE_GATE_CHANNELS {
                dwg64[h * VE_GATE_CHANNELS + i] += ds * u[r * c + i].f();
                du_acc[i] += ds * wg[h * VE_GATE_CHANNELS + i].f();
            }
        }
        for i in 0..VE_GATE_CHANNELS {
            du[r * c + i] = R::of(du[r * c + i].f() + du_acc[i]);
        }
    }
    for (o, x) in dwg.iter_mut().zip(dwg64) {
        *o = R::of(o.f() + x);
    }
}
