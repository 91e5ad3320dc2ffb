//! Reference for `kernels::residual`: the per-layer resid/x0 lambda mix that runs before every
//! block, and the backout that subtracts a scaled mid-network residual before the final norm.
//! The GPU kernels read the lambdas from the parameter arena; the references take their values.

use super::Real;

/// out = a·x + b·x0   (a = resid_lambdas[i], b = x0_lambdas[i])
pub fn lambda_mix_forward<R: Real>(out: &mut [R], x: &[R], x0: &[R], a: R, b: R) {
    for i in 0..out.len() {
        out[i] = R::of(a.f() * x[i].f() + b.f() * x0[i].f());
    }
}

/// dx = a·dout (written);  dx0 += b·dout;  da += Σ dout·x;  db += Σ dout·x0
#[allow(clippy::too_many_arguments)]
pub fn lambda_mix_backward<R: Real>(
    dx: &mut [R],
    dx0: &mut [R],
    da: &mut R,
    db: &mut R,
    dout: &[R],
    x: &[R],
    x0: &[R],
    a: R,
    b: R,
) {
    let (mut sa, mut sb) = (0.0f64, 0.0f64);
    for i in 0..dout.len() {
        let g = dout[i].f();
        sa += g * x[i].f();
        sb += g * x0[i].f();
        dx[i] = R::of(a.f() * g);
        dx0[i] = R::of(dx0[i].f() + b.f() * g);
    }
    *da = R::of(da.f() + sa);
    *db = R::of(db.f() + sb);
}

/// out = x − λ·x_mid   (λ = backout_lambda, x_mid = the residual after block L/2)
pub fn backout_forward<R: Real>(out: &mut [R], x: &[R], x_mid: &[R], lambda: R) {
    for i in 0..out.len() {
        out[i] = R::of(x[i].f() - lambda.f() * x_mid[i].f());
    }
}

/// dx_mid += −λ·dout;  dλ += −Σ dout·x_mid   (dx = dout passes through unchanged)
pub fn backout_backward<R: Real>(dx_mid: &mut [R], dlambda: &mut R, dout: &[R], x_mid: &[R], lambda: R) {
    let mut s = 0.0f64;
    for i in 0..dout.len() {
        s += dout[i].f() * x_mid[i].f();
        dx_mid[i] = R::of(dx_mid[i].f() - lambda.f() * dout[i].f());
    }
    *dlambda = R::of(dlambda.f() - s);
}
