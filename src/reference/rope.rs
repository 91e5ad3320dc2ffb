//! Reference for `kernels::rope`: rotary embeddings, nanochat's convention: split halves (not
//! interleaved), rotation by −θ, base 100,000. Works in place on q (H heads) or k (Hkv heads):
//! x has N = B·T rows of nh heads of D; the row n is at position pos0 + n mod T.

use super::Real;
use crate::model::config::ROPE_BASE;

/// cos[t, j] and sin[t, j] of the angle t · base^(−2j/D), t < positions, j < D/2, in f64.
/// The GPU gets these tables (rounded to f32) rather than evaluating sin of large angles in f32.
pub fn rope_tables(positions: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
    let half = d / 2;
    let mut cos = vec![0.0; positions * half];
    let mut sin = vec![0.0; positions * half];
    for t in 0..positions {
        for j in 0..half {
            let inv_freq = ROPE_BASE.powf(-2.0 * j as f64 / d as f64);
            let a = t as f64 * inv_freq;
            cos[t * half + j] = a.cos();
            sin[t * half + j] = a.sin();
        }
    }
    (cos, sin)
}

/// x1 = x[..D/2], x2 = x[D/2..]:  y1 = x1·cos + x2·sin,  y2 = −x1·sin + x2·cos   (in place)
#[allow(clippy::too_many_arguments)]
pub fn rope_forward<R: Real>(
    x: &mut [R],
    cos: &[R],
    sin: &[R],
    n: usize,
    t_len: usize,
    pos0: usize,
    nh: usize,
    d: usize,
) {
    rotate(x, cos, sin, n, t_len, pos0, nh, d, 1.0);
}

/// The transpose (a +θ rotation):  dx1 = dy1·cos − dy2·sin,  dx2 = dy1·sin + dy2·cos   (in place)
#[allow(clippy::too_many_arguments)]
pub fn rope_backward<R: Real>(
    dx: &mut [R],
    cos: &[R],
    sin: &[R],
    n: usize,
    t_len: usize,
    pos0: usize,
    nh: usize,
    d: usize,
) {
    rotate(dx, cos, sin, n, t_len, pos0, nh, d, -1.0);
}

#[allow(clippy::too_many_arguments)]
fn rotate<R: Real>(
    x: &mut [R],
    cos: &[R],
    sin: &[R],
    n: usize,
    t_len: usize,
    pos0: usize,
    nh: usize,
    d: usize,
    sign: f64,
) {
    let half = d / 2;
    for r in 0..n {
        let t = pos0 + r % t_len;
        for h in 0..nh {
            let base = (r * nh + h) * d;
            for j in 0..half {
                let (c, s) = (cos[t * half + j].f(), sign * sin[t * half + j].f());
                let (x1, x2) = (x[base + j].f(), x[base + half + j].f());
                x[base + j] = R::of(x1 * c + x2 * s);
                x[base + half + j] = R::of(-x1 * s + x2 * c);
            }
        }
    }
}
