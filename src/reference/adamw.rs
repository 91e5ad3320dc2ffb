//! Reference for `kernels::adamw` (spec §3.2): one AdamW step per tensor, exactly as nanochat's
//! `MuonAdamW` steps its AdamW groups, in f64.

use super::Real;

/// One AdamW step (torch.optim.AdamW semantics, decoupled decay multiplied by lr):
/// p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
/// p ← p − lr/(1−β1^t) · m / (√(v/(1−β2^t)) + eps).   `step` is t ≥ 1.
#[allow(clippy::too_many_arguments)]
pub fn adamw_step<R: Real>(
    p: &mut [R],
    m: &mut [R],
    v: &mut [R],
    g: &[R],
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: u64,
) {
    let bc1 = 1.0 - beta1.powi(step as i32);
    let bc2 = 1.0 - beta2.powi(step as i32);
    for i in 0..p.len() {
        let gi = g[i].f();
        let mut pi = p[i].f() * (1.0 - lr * weight_decay);
        let mi = beta1 * m[i].f() + (1.0 - beta1) * gi;
        let vi = beta2 * v[i].f() + (1.0 - beta2) * gi * gi;
        pi -= lr / bc1 * mi / ((vi / bc2).sqrt() + eps);
        p[i] = R::of(pi);
        m[i] = R::of(mi);
        v[i] = R::of(vi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_first_step_moves_by_lr_times_sign() {
        // With bias correction, the first step is lr·g/(|g| + eps) ≈ lr·sign(g), after decay.
        let mut p = vec![1.0f64, -2.0, 0.5];
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        let g = vec![0.3, -0.1, 0.0];
        adamw_step(&mut p, &mut m, &mut v, &g, 0.01, 0.8, 0.95, 1e-10, 0.1, 1);
        assert!((p[0] - (1.0 * (1.0 - 0.001) - 0.01)).abs() < 1e-9);
        assert!((p[1] - (-2.0 * (1.0 - 0.001) + 0.01)).abs() < 1e-9);
        assert!((p[2] - 0.5 * (1.0 - 0.001)).abs() < 1e-12);
    }
}
