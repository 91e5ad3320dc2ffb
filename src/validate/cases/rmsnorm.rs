//! Validation rows for `kernels::rmsnorm` against `reference::rmsnorm`.

use super::{kernel_name, max_abs, rows_at_scales, timed, upload_at};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::rmsnorm;
use crate::model::config::QK_SCALE;
use crate::reference;
use crate::validate::suite::Runner;
use crate::validate::{rmsnorm_backward_tolerance, rmsnorm_forward_tolerance};

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("rmsnorm_forward", chunked);
    let bwd = kernel_name("rmsnorm_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (rows, c, scale, accumulate, pad)
    let cases: Vec<(usize, usize, f32, bool, usize)> = if chunked {
        vec![(300, 100, 1.0, false, 0), (1000, 64, QK_SCALE, true, 3)]
    } else {
        vec![
            (1, 1, 1.0, false, 0),
            (1, 768, 1.0, false, 0),
            (37, 100, 1.0, true, 5),
            (2048, 768, 1.0, false, 0),
            (2048, 768, 1.0, true, 0),
            (2048 * 6, 128, QK_SCALE, false, 0),
            (2048 * 4, 64, QK_SCALE, true, 0),
            (333, 130, QK_SCALE, false, 7),
        ]
    };
    for (rows, c, scale, acc, pad) in cases {
        let shape =
            format!("{rows}x{c}{}{}", if scale != 1.0 { " x1.2" } else { "" }, if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("rmsnorm {chunked} {shape} {acc}"));
        // Forward: rows from 0.03 to 30 in magnitude, so rstd spans three decades.
        let inp = rows_at_scales(&mut rng, rows, c, 1.5);
        if r.wants(&fwd) && !acc {
            let mut want_out = vec![0.0f32; rows * c];
            let mut want_rstd = vec![0.0f32; rows];
            reference::rmsnorm::rmsnorm_forward(&mut want_out, &mut want_rstd, &inp, rows, c, scale);
            let ti = upload_at(ctx, "inp", &inp, pad)?;
            let to = upload_at(ctx, "out", &vec![f32::NAN; rows * c], pad + 1)?;
            let tr = upload_at(ctx, "rstd", &vec![f32::NAN; rows], pad)?;
            let secs = timed(ctx, |s| rmsnorm::rmsnorm_forward(s, &to, &tr, &ti, rows, c, scale))?;
            r.record(&fwd, "out", &shape, &ctx.read(&to)?, &want_out, rmsnorm_forward_tolerance(c), secs);
            r.record(&fwd, "rstd", &shape, &ctx.read(&tr)?, &want_rstd, rmsnorm_forward_tolerance(c), secs);
        }
        if r.wants(&bwd) {
            // Backward: rows within a factor 2 of unit scale (the forward covers the range of rstd;
            // the backward's error is relative to k = scale·rstd, see its tolerance).
            let inp = rows_at_scales(&mut rng, rows, c, 0.3);
            let mut rstd = vec![0.0f32; rows];
            reference::rmsnorm::rmsnorm_forward(&mut vec![0.0f32; rows * c], &mut rstd, &inp, rows, c, scale);
            let dout = rng.vec_uniform(rows * c, -1.0, 1.0);
            let dinp0 = if acc { rng.vec_uniform(rows * c, -1.0, 1.0) } else { vec![f32::NAN; rows * c] };
            let mut want = dinp0.clone();
            reference::rmsnorm::rmsnorm_backward(&mut want, &dout, &inp, &rstd, rows, c, scale, acc);
            let ti = upload_at(ctx, "inp", &inp, pad)?;
            let td = upload_at(ctx, "dinp", &dinp0, pad + 2)?;
            let tdo = upload_at(ctx, "dout", &dout, pad)?;
            let tr = upload_at(ctx, "rstd", &rstd, pad)?;
            let secs = timed(ctx, |s| rmsnorm::rmsnorm_backward(s, &td, &tdo, &ti, &tr, rows, c, scale, acc))?;
            let variant = if acc { "dinp +=" } else { "dinp" };
            let tol = rmsnorm_backward_tolerance(c, scale as f64 * max_abs(&rstd));
            r.record(&bwd, variant, &shape, &ctx.read(&td)?, &want, tol, secs);
        }
    }
    Ok(())
}
