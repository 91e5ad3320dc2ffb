//! Validation rows for `kernels::cross_entropy` (softcap fused with cross-entropy) against
//! `reference::cross_entropy`.

use super::{kernel_name, timed, upload_at};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::cross_entropy;
use crate::model::config::SOFTCAP;
use crate::reference;
use crate::validate::suite::Runner;
use crate::validate::{cross_entropy_grad_tolerance, cross_entropy_loss_tolerance, exact_tolerance};

struct CeCase {
    rows: usize,
    v: usize,
    vp: usize,
    /// Fraction of targets set to −1 (1.0: the all-ignored micro-batch).
    ignore: f64,
    grad: bool,
    pad: usize,
}

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let kernel = kernel_name("cross_entropy", chunked);
    if !r.wants(&kernel) {
        return Ok(());
    }
    let c = |rows, v, vp, ignore, grad, pad| CeCase { rows, v, vp, ignore, grad, pad };
    let cases = if chunked {
        vec![c(40, 1000, 1024, 0.1, true, 0), c(23, 3000, 3008, 0.0, true, 3)]
    } else {
        vec![
            c(1, 1, 1, 0.0, true, 0),
            c(1, 5, 64, 0.0, true, 0),
            c(7, 300, 320, 0.2, true, 5),
            c(33, 1000, 1024, 0.1, true, 0),
            c(16, 1000, 1024, 1.0, true, 0),
            c(16, 512, 512, 0.0, true, 0),
            c(24, 4096, 4096, 0.05, true, 0),
            c(64, 32768, 32768, 0.05, true, 0),
            c(20, 32768, 32768, 0.0, false, 0),
        ]
    };
    for cs in cases {
        let (rows, v, vp) = (cs.rows, cs.v, cs.vp);
        let mut shape = format!("{rows}x{v}/{vp}");
        if cs.ignore == 1.0 {
            shape += " all ignored";
        } else if cs.ignore > 0.0 {
            shape += " some -1";
        }
        if !cs.grad {
            shape += " loss only";
        }
        if cs.pad > 0 {
            shape += " +off";
        }
        let mut rng = r.rng(&format!("{kernel} {shape}"));
        // Logits N(0, 4²) with 1% of them far out (|z| up to 60) where the softcap saturates; the
        // padding columns hold NaN, which the kernel must never let into a loss or gradient.
        let mut z = vec![f32::NAN; rows * vp];
        for row in 0..rows {
            for col in 0..v {
                let far = rng.uniform() < 0.01;
                z[row * vp + col] = if far { rng.uniform_f32(-60.0, 60.0) } else { (rng.normal() * 4.0) as f32 };
            }
        }
        let targets: Vec<i32> =
            (0..rows).map(|_| if rng.uniform() < cs.ignore { -1 } else { (rng.uniform() * v as f64) as i32 }).collect();
        let valid = targets.iter().filter(|&&t| t >= 0).count();
        // 1/(valid targets), as the trainer computes it: +inf for the all-ignored micro-batch, which
        // must still give zero gradients (ignored rows never multiply by it), not NaN.
        let grad_scale = 1.0 / valid as f32;
        let mut want_loss = vec![0.0f32; rows];
        let mut want_dz = vec![0.0f32; rows * vp];
        reference::cross_entropy::cross_entropy(
            &mut want_loss,
            cs.grad.then_some(want_dz.as_mut_slice()),
            &z,
            &targets,
            rows,
            v,
            vp,
            SOFTCAP,
            grad_scale,
        );
        let losses = upload_at(ctx, "losses", &vec![f32::NAN; rows], cs.pad)?;
        let logits = upload_at(ctx, "logits", &z, cs.pad)?;
        let tt = ctx.upload_i32("targets", &targets)?;
        let gs = ctx.upload("step scalars", &[grad_scale])?;
        let secs =
            timed(ctx, |s| cross_entropy::cross_entropy(s, &losses, cs.grad, &logits, &tt, rows, v, vp, SOFTCAP, &gs))?;
        r.record(
            &kernel,
            "losses",
            &shape,
            &ctx.read(&losses)?,
            &want_loss,
            cross_entropy_loss_tolerance(v, SOFTCAP),
            secs,
        );
        if cs.grad {
            let tol = cross_entropy_grad_tolerance(v, SOFTCAP, grad_scale.min(1.0));
            r.record(&kernel, "dlogits", &shape, &ctx.read(&logits)?, &want_dz, tol, secs);
        } else {
            // Loss only: the logits must come back untouched (NaN padding included).
            r.record(&kernel, "logits kept", &shape, &ctx.read(&logits)?, &z, exact_tolerance(), secs);
        }
    }
    Ok(())
}
