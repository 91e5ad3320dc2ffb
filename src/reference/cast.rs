//! Reference for `kernels::cast`: rounding f32 values to f16 (round to nearest even, as IEEE and
//! the `half` crate do), the results held as the f32 values they are.

/// out = f16(inp), each value rounded to the nearest f16 (ties to even; ±infinity beyond ±65504).
pub fn cast_f32_to_f16(out: &mut [f32], inp: &[f32]) {
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = half::f16::from_f32(x).to_f32();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rounds_to_nearest_even_and_overflows_to_infinity() {
        let mut out = [0.0f32; 5];
        // 1 + 2^-11 is the tie between 1 and 1 + 2^-10: even is 1.
        super::cast_f32_to_f16(&mut out, &[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 65504.0, 65520.0, -1e6]);
        assert_eq!(out, [1.0, 1.0 + 2.0 * 2f32.powi(-10), 65504.0, f32::INFINITY, f32::NEG_INFINITY]);
    }
}
