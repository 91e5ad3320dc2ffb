//! Reference for `kernels::elementwise`.

/// out[i] = value
pub fn fill(out: &mut [f32], value: f32) {
    for o in out.iter_mut() {
        *o = value;
    }
}

/// out[i] = x[i]
pub fn copy(out: &mut [f32], x: &[f32]) {
    out.copy_from_slice(x);
}

/// out[i] = x[i] + y[i]
pub fn add(out: &mut [f32], x: &[f32], y: &[f32]) {
    assert!(out.len() == x.len() && x.len() == y.len());
    for i in 0..out.len() {
        out[i] = (x[i] as f64 + y[i] as f64) as f32;
    }
}

/// x[i] = alpha * x[i]
pub fn scale(x: &mut [f32], alpha: f32) {
    for v in x.iter_mut() {
        *v = (alpha as f64 * *v as f64) as f32;
    }
}

/// y[i] = alpha * x[i] + y[i]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    assert!(y.len() == x.len());
    for i in 0..y.len() {
        y[i] = (alpha as f64 * x[i] as f64 + y[i] as f64) as f32;
    }
}
