//! Reference for `kernels::attention`: causal self-attention with a sliding window and grouped
//! KV heads, in the flash formulation (the backward recomputes probabilities from the saved
//! log-sum-exp instead of keeping a T×T matrix).
//!
//! Layouts (row n = b·T + t): q and out (B, T, H, D); k and v (B, T, Hkv, D); lse (B, T, H).
//! Query head h reads KV head h / (H / Hkv). Query t sees keys j with t − window ≤ j ≤ t
//! (window + 1 keys, itself included; window ≥ T − 1 is plain causal attention).

use super::Real;
pub use crate::shapes::AttnShape;
use crate::shapes::MatmulPrecision;

struct Dims {
    t: usize,
    h: usize,
    hkv: usize,
    d: usize,
    window: usize,
}

impl Dims {
    fn q(&self, b: usize, t: usize, h: usize) -> usize {
        ((b * self.t + t) * self.h + h) * self.d
    }
    fn kv(&self, b: usize, t: usize, h: usize) -> usize {
        ((b * self.t + t) * self.hkv + h / (self.h / self.hkv)) * self.d
    }
    fn keys(&self, t: usize) -> std::ops::RangeInclusive<usize> {
        t.saturating_sub(self.window)..=t
    }
}

fn dot<R: Real>(a: &[R], b: &[R]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.f() * y.f()).sum()
}

/// The products' inputs as the kernels at `precision` see them: unchanged at f32, rounded to the
/// nearest f16 below it (the coop kernels stage q, k, v and dout as f16).
fn product_inputs<R: Real>(x: &[R], precision: MatmulPrecision) -> Vec<f64> {
    if precision == MatmulPrecision::F32 {
        x.iter().map(|x| x.f()).collect()
    } else {
        x.iter().map(|x| half::f16::from_f64(x.f()).to_f64()).collect()
    }
}

/// out[b,t,h] = Σ_j softmax_j(scale · q[b,t,h]·k[b,j]) v[b,j];  lse[b,t,h] = ln Σ_j exp(scale · q·k_j)
pub fn attention_forward<R: Real>(out: &mut [R], lse: &mut [R], q: &[R], k: &[R], v: &[R], shape: &AttnShape) {
    let AttnShape { b, t, h, hkv, d, window, scale, precision } = *shape;
    let dm = Dims { t, h, hkv, d, window };
    let scale = scale as f64;
    let (q, k, v) = (product_inputs(q, precision), product_inputs(k, precision), product_inputs(v, precision));
    for bi in 0..b {
        for ti in 0..t {
            for hi in 0..h {
                let qo = dm.q(bi, ti, hi);
                let qv = &q[qo..qo + d];
                let scores: Vec<f64> = dm
                    .keys(ti)
                    .map(|j| {
                        let ko = dm.kv(bi, j, hi);
                        scale * dot(qv, &k[ko..ko + d])
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                let l = m + sum.ln();
                lse[(bi * t + ti) * h + hi] = R::of(l);
                let mut acc = vec![0.0f64; d];
                for (s, j) in scores.iter().zip(dm.keys(ti)) {
                    let p = (s - l).exp();
                    let vo = dm.kv(bi, j, hi);
                    for e in 0..d {
                        acc[e] += p * v[vo + e];
                    }
                }
                for e in 0..d {
                    out[qo + e] = R::of(acc[e]);
                }
            }
        }
    }
}

/// Gradients of q, k, v (all written, not accumulated):
/// p_tj = exp(scale·q_t·k_j − lse_t), Δ_t = dout_t·out_t, ds_tj = p_tj (dout_t·v_j − Δ_t),
/// dq_t = scale Σ_j ds_tj k_j,  dk_j = scale Σ_t ds_tj q_t,  dv_j = Σ_t p_tj dout_t,
/// with dk and dv summed over the query heads that share a KV head.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<R: Real>(
    dq: &mut [R],
    dk: &mut [R],
    dv: &mut [R],
    dout: &[R],
    q: &[R],
    k: &[R],
    v: &[R],
    out: &[R],
    lse: &[R],
    shape: &AttnShape,
) {
    let AttnShape { b, t, h, hkv, d, window, scale, precision } = *shape;
    let dm = Dims { t, h, hkv, d, window };
    let scale = scale as f64;
    let (q, k, v) = (product_inputs(q, precision), product_inputs(k, precision), product_inputs(v, precision));
    let dout = product_inputs(dout, precision);
    let mut dk64 = vec![0.0f64; dk.len()];
    let mut dv64 = vec![0.0f64; dv.len()];
    for bi in 0..b {
        for ti in 0..t {
            for hi in 0..h {
                let qo = dm.q(bi, ti, hi);
                let l = lse[(bi * t + ti) * h + hi].f();
                let delta: f64 = dout[qo..qo + d].iter().zip(&out[qo..qo + d]).map(|(g, o)| g * o.f()).sum();
                let mut dq_acc = vec![0.0f64; d];
                for j in dm.keys(ti) {
                    let ko = dm.kv(bi, j, hi);
                    let p = (scale * dot(&q[qo..qo + d], &k[ko..ko + d]) - l).exp();
                    let dp = dot(&dout[qo..qo + d], &v[ko..ko + d]);
                    let ds = p * (dp - delta);
                    for e in 0..d {
                        dq_acc[e] += scale * ds * k[ko + e];
                        dk64[ko + e] += scale * ds * q[qo + e];
                        dv64[ko + e] += p * dout[qo + e];
                    }
                }
                for e in 0..d {
                    dq[qo + e] = R::of(dq_acc[e]);
                }
            }
        }
    }
    for (o, x) in dk.iter_mut().zip(dk64) {
        *o = R::of(x);
    }
    for (o, x) in dv.iter_mut().zip(dv64) {
        *o = R::of(x);
    }
}

/// One decode step: out[h] = Σ_j softmax_j(scale · q[h]·k_cache[j, h/G]) v_cache[j, h/G] over the
/// cached positions pos − window ≤ j ≤ pos (G = H / Hkv), for the single query at position pos.
/// q and out are (H, D); k_cache and v_cache hold at least pos + 1 rows of (Hkv, D), and rows
/// outside the window are never read. This is row pos of [`attention_forward`] with T > pos.
#[allow(clippy::too_many_arguments)]
pub fn attention_decode<R: Real>(
    out: &mut [R],
    q: &[R],
    k_cache: &[R],
    v_cache: &[R],
    pos: usize,
    h: usize,
    hkv: usize,
    d: usize,
    window: usize,
    scale: f32,
) {
    let scale = scale as f64;
    let g = h / hkv;
    let keys = pos.saturating_sub(window)..=pos;
    for hi in 0..h {
        let qv = &q[hi * d..(hi + 1) * d];
        let kv_off = |j: usize| (j * hkv + hi / g) * d;
        let scores: Vec<f64> = keys.clone().map(|j| scale * dot(qv, &k_cache[kv_off(j)..kv_off(j) + d])).collect();
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scores.iter().map(|s| (s - m).exp()).sum();
        let mut acc = vec![0.0f64; d];
        for (s, j) in scores.iter().zip(keys.clone()) {
            let p = (s - m).exp() / sum;
            for (e, a) in acc.iter_mut().enumerate() {
                *a += p * v_cache[kv_off(j) + e].f();
            }
        }
        for (e, a) in acc.into_iter().enumerate() {
            out[hi * d + e] = R::of(a);
        }
    }
}
