//! Validation rows for `kernels::rope` against `reference::rope`.

use super::{kernel_name, max_abs, timed, upload_at};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::rope;
use crate::reference;
use crate::validate::rope_tolerance;
use crate::validate::suite::Runner;

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("rope_forward", chunked);
    let bwd = kernel_name("rope_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (n, t_len, pos0, nh, d, pad)
    let cases: Vec<(usize, usize, usize, usize, usize, usize)> = if chunked {
        vec![(300, 100, 0, 2, 64, 0), (150, 50, 7, 3, 130, 1)]
    } else {
        vec![
            (1, 1, 0, 1, 2, 0),
            (111, 37, 5, 3, 64, 3),
            (2048, 1024, 0, 6, 128, 0),
            (2048, 2048, 0, 1, 128, 0),
            (512, 256, 1000, 4, 64, 0),
        ]
    };
    for (n, t_len, pos0, nh, d, pad) in cases {
        let mut shape = format!("N={n} T={t_len} {nh}x{d}");
        if pos0 > 0 {
            shape += &format!(" pos0={pos0}");
        }
        if pad > 0 {
            shape += " +off";
        }
        let mut rng = r.rng(&format!("rope {chunked} {shape}"));
        let (cos64, sin64) = reference::rope::rope_tables(pos0 + t_len, d);
        let cos: Vec<f32> = cos64.iter().map(|&v| v as f32).collect();
        let sin: Vec<f32> = sin64.iter().map(|&v| v as f32).collect();
        let tc = upload_at(ctx, "cos", &cos, pad)?;
        let ts = upload_at(ctx, "sin", &sin, 0)?;
        for (kernel, forward) in [(&fwd, true), (&bwd, false)] {
            if !r.wants(kernel) {
                continue;
            }
            let x = rng.vec_uniform(n * nh * d, -3.0, 3.0);
            let mut want = x.clone();
            let tx = upload_at(ctx, "x", &x, pad + 1)?;
            let secs = if forward {
                reference::rope::rope_forward(&mut want, &cos, &sin, n, t_len, pos0, nh, d);
                timed(ctx, |s| rope::rope_forward(s, &tx, &tc, &ts, n, t_len, pos0, nh, d))?
            } else {
                reference::rope::rope_backward(&mut want, &cos, &sin, n, t_len, pos0, nh, d);
                timed(ctx, |s| rope::rope_backward(s, &tx, &tc, &ts, n, t_len, pos0, nh, d))?
            };
            let variant = if forward { "x (in place)" } else { "dx (in place)" };
            r.record(kernel, variant, &shape, &ctx.read(&tx)?, &want, rope_tolerance(max_abs(&x)), secs);
        }
    }
    Ok(())
}
