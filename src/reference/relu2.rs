//! Reference for `kernels::relu2`: the MLP nonlinearity relu(x)².

use super::Real;

/// out = max(inp, 0)²
pub fn relu2_forward<R: Real>(out: &mut [R], inp: &[R]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        let r = x.f().max(0.0);
        *o = R::of(r * r);
    }
}

/// dinp = dout · 2·max(inp, 0)
pub fn relu2_backward<R: Real>(dinp: &mut [R], dout: &[R], inp: &[R]) {
    for i in 0..dinp.len() {
        dinp[i] = R::of(dout[i].f() * 2.0 * inp[i].f().max(0.0));
    }
}
