//! Validation rows for `kernels::cast` against `reference::cast`.

use super::{kernel_name, timed, upload_at};
use crate::error::Result;
use crate::gpu::{GpuContext, Kernel};
use crate::kernels::cast;
use crate::reference;
use crate::validate::cast_tolerance;
use crate::validate::suite::Runner;

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let name = kernel_name("cast_f32_to_f16", chunked);
    if !r.wants(&name) {
        return Ok(());
    }
    if !ctx.features.contains(wgpu::Features::SHADER_F16) {
        r.record_not_run(
            &name,
            "out",
            "all shapes",
            "SHADER_F16 not available on this adapter",
            &[Kernel::CastF32ToF16],
        );
        return Ok(());
    }
    // Odd offsets put the f16 output's first element in the middle of a 32-bit word, which is
    // where a driver writing halves as words would corrupt its neighbour.
    let sizes: &[(usize, usize)] =
        if chunked { &[(100_003, 1)] } else { &[(1, 0), (1000, 3), (65_537, 1), (768 * 3072, 0)] };
    for &(n, pad) in sizes {
        let shape = format!("n={n}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("cast {chunked} {shape}"));
        // Weight-like values (uniform in ±1/√768), then every tenth one spread over f16's whole
        // finite range including its subnormals (2^-26 .. 2^15), and exact ties between two f16s.
        let inp: Vec<f32> = (0..n)
            .map(|i| {
                let w = rng.uniform_f32(-0.036, 0.036);
                match i % 10 {
                    0 => (w.signum() as f64 * 2f64.powf(-26.0 + 41.0 * rng.uniform())) as f32,
                    1 => 1.0 + (2 * (i % 1024) + 1) as f32 * 2f32.powi(-11),
                    _ => w,
                }
            })
            .collect();
        let ti = upload_at(ctx, "inp", &inp, pad)?;
        let mut want = vec![0.0f32; n];
        reference::cast::cast_f32_to_f16(&mut want, &inp);
        // Poisoned whole (host writes of f16 start and end on 32-bit words), then viewed at `pad`.
        let len = (n + pad + 2).next_multiple_of(2);
        let whole = ctx.tensor_f16("out", len)?;
        ctx.write(&whole, &vec![f32::NAN; len])?;
        let to = whole.view(pad, n);
        let secs = timed(ctx, |s| cast::cast_f32_to_f16(s, &to, &ti))?;
        r.record(&name, "out", &shape, &ctx.read(&to)?, &want, cast_tolerance(), secs);
    }
    Ok(())
}
