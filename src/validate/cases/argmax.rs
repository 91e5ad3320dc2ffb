//! Validation rows for `kernels::argmax` (greedy predictions of a logits chunk) against
//! `reference::argmax`. Indices are compared exactly (as f32, which holds every index below 2^24).

use super::{kernel_name, timed, upload_at};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::argmax;
use crate::reference;
use crate::validate::exact_tolerance;
use crate::validate::suite::Runner;

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let kernel = kernel_name("argmax", chunked);
    if !r.wants(&kernel) {
        return Ok(());
    }
    // (rows, V, Vp, ties, pad): ties draws logits from 8 values, so most rows hold several copies
    // of their maximum and only the lowest index is right.
    let cases: &[(usize, usize, usize, bool, usize)] = if chunked {
        &[(40, 1000, 1024, false, 0), (23, 3000, 3008, true, 3)]
    } else {
        &[
            (1, 1, 1, false, 0),
            (1, 5, 64, true, 0),
            (7, 300, 320, false, 5),
            (33, 1000, 1024, true, 0),
            (16, 4099, 4160, false, 0),
            (64, 32768, 32768, false, 0),
            (20, 32768, 32768, true, 1),
        ]
    };
    for &(rows, v, vp, ties, pad) in cases {
        let mut shape = format!("{rows}x{v}/{vp}");
        if ties {
            shape += " ties";
        }
        if pad > 0 {
            shape += " +off";
        }
        let mut rng = r.rng(&format!("{kernel} {shape}"));
        // Padding columns hold +inf: a kernel that read them would return a padding index.
        let mut z = vec![f32::INFINITY; rows * vp];
        for row in 0..rows {
            for col in 0..v {
                z[row * vp + col] =
                    if ties { (rng.uniform() * 8.0).floor() as f32 - 4.0 } else { (rng.normal() * 4.0) as f32 };
            }
        }
        let mut want = vec![0i32; rows];
        reference::argmax::argmax(&mut want, &z, rows, v, vp);
        // Poisoned with an index no row can produce.
        let out = upload_at(ctx, "argmax.out", &vec![0.0; rows], pad)?;
        ctx.write_i32(&out, &vec![-7; rows])?;
        let logits = upload_at(ctx, "logits", &z, pad)?;
        let secs = timed(ctx, |s| argmax::argmax(s, &out, &logits, rows, v, vp))?;
        let got: Vec<f32> = ctx.read_i32(&out)?.iter().map(|&i| i as f32).collect();
        let want: Vec<f32> = want.iter().map(|&i| i as f32).collect();
        r.record(&kernel, "index", &shape, &got, &want, exact_tolerance(), secs);
    }
    Ok(())
}
