//! Validation rows for `kernels::residual` (lambda mix and backout) against `reference::residual`.

use super::{kernel_name, timed, upload_at};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::residual;
use crate::reference;
use crate::validate::suite::Runner;
use crate::validate::{exact_tolerance, residual_tolerance, scalar_grad_tolerance};

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let names = ["lambda_mix_forward", "lambda_mix_backward", "backout_forward", "backout_backward"]
        .map(|k| kernel_name(k, chunked));
    if !names.iter().any(|k| r.wants(k)) {
        return Ok(());
    }
    let sizes: &[(usize, usize)] =
        if chunked { &[(100_003, 1)] } else { &[(1, 0), (1001, 3), (2048 * 768, 0), (4 * 2048 * 768 + 5, 0)] };
    for &(n, pad) in sizes {
        let shape = format!("n={n}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("residual {chunked} {shape}"));
        // A parameter arena and a gradient arena holding the per-layer lambdas at odd offsets, as
        // the model's do: a = resid_lambdas[3], b = x0_lambdas[3], λ = backout_lambda.
        let params: Vec<f32> = rng.vec_uniform(40, -1.0, 1.0);
        let (ia, ib, il) = (3 + 3, 3 + 12 + 3, 37);
        let (a, b, lam) = (params[ia], params[ib], params[il]);
        let grads0: Vec<f32> = rng.vec_uniform(40, -1.0, 1.0);
        let tp = ctx.upload("params", &params)?;
        let x = rng.vec_uniform(n, -2.0, 2.0);
        let x0 = rng.vec_uniform(n, -2.0, 2.0);
        let dout = rng.vec_uniform(n, -1.0, 1.0);
        let tx = upload_at(ctx, "x", &x, pad)?;
        let tx0 = upload_at(ctx, "x0", &x0, 0)?;
        let tdo = upload_at(ctx, "dout", &dout, pad + 2)?;
        let (pa, pb, pl) = (tp.view(ia, 1), tp.view(ib, 1), tp.view(il, 1));
        // |x|, |x0| ≤ 2, |dout|, |dx0|, |dx_mid| ≤ 1 and every lambda ≤ 1 bound every term by 4.
        let tol = residual_tolerance(4.0);
        // The dot products' chain: strided terms per invocation (at most 256 workgroups of 256 per
        // binding-sized chunk), the workgroup tree, the final pass over the partials (strided, then
        // a tree), and the accumulation; 20 covers the extra partials of a chunked vector.
        let chain = n.div_ceil(256 * 256) + 20;
        if r.wants(&names[0]) {
            let mut want = vec![0.0f32; n];
            reference::residual::lambda_mix_forward(&mut want, &x, &x0, a, b);
            let to = upload_at(ctx, "out", &vec![f32::NAN; n], pad + 1)?;
            let secs = timed(ctx, |s| residual::lambda_mix_forward(s, &to, &tx, &tx0, &pa, &pb))?;
            r.record(&names[0], "out", &shape, &ctx.read(&to)?, &want, tol, secs);
        }
        if r.wants(&names[1]) {
            let dx0_0 = rng.vec_uniform(n, -1.0, 1.0);
            let (mut want_dx, mut want_dx0) = (vec![0.0f32; n], dx0_0.clone());
            let (mut want_da, mut want_db) = (grads0[ia], grads0[ib]);
            reference::residual::lambda_mix_backward(
                &mut want_dx,
                &mut want_dx0,
                &mut want_da,
                &mut want_db,
                &dout,
                &x,
                &x0,
                a,
                b,
            );
            let tg = ctx.upload("grads", &grads0)?;
            let tdx = upload_at(ctx, "dx", &vec![f32::NAN; n], pad + 1)?;
            let tdx0 = upload_at(ctx, "dx0", &dx0_0, 0)?;
            let (ga, gb) = (tg.view(ia, 1), tg.view(ib, 1));
            let secs =
                timed(ctx, |s| residual::lambda_mix_backward(s, &tdx, &tdx0, &ga, &gb, &tdo, &tx, &tx0, &pa, &pb))?;
            let k = &names[1];
            r.record(k, "dx", &shape, &ctx.read(&tdx)?, &want_dx, tol, secs);
            r.record(k, "dx0 +=", &shape, &ctx.read(&tdx0)?, &want_dx0, tol, secs);
            let g = ctx.read(&tg)?;
            let tol_a = scalar_grad_tolerance(chain, l2_products(&dout, &x));
            let tol_b = scalar_grad_tolerance(chain, l2_products(&dout, &x0));
            r.record(k, "da +=", &shape, &g[ia..ia + 1], &[want_da], tol_a, secs);
            r.record(k, "db +=", &shape, &g[ib..ib + 1], &[want_db], tol_b, secs);
            // Everything else in the gradient arena is untouched.
            let rest = |v: &[f32]| -> Vec<f32> {
                v.iter().enumerate().filter(|(i, _)| *i != ia && *i != ib).map(|(_, &x)| x).collect()
            };
            r.record(k, "other grads kept", &shape, &rest(&g), &rest(&grads0), exact_tolerance(), secs);
        }
        if r.wants(&names[2]) {
            let mut want = vec![0.0f32; n];
            reference::residual::backout_forward(&mut want, &x, &x0, lam);
            let to = upload_at(ctx, "out", &vec![f32::NAN; n], pad + 1)?;
            let secs = timed(ctx, |s| residual::backout_forward(s, &to, &tx, &tx0, &pl))?;
            r.record(&names[2], "out", &shape, &ctx.read(&to)?, &want, tol, secs);
        }
        if r.wants(&names[3]) {
            let dmid0 = rng.vec_uniform(n, -1.0, 1.0);
            let mut want_dmid = dmid0.clone();
            let mut want_dl = grads0[il];
            reference::residual::backout_backward(&mut want_dmid, &mut want_dl, &dout, &x0, lam);
            let tg = ctx.upload("grads", &grads0)?;
            let tdm = upload_at(ctx, "dx_mid", &dmid0, pad + 1)?;
            let gl = tg.view(il, 1);
            let secs = timed(ctx, |s| residual::backout_backward(s, &tdm, &gl, &tdo, &tx0, &pl))?;
            let k = &names[3];
            r.record(k, "dx_mid +=", &shape, &ctx.read(&tdm)?, &want_dmid, tol, secs);
            let g = ctx.read(&tg)?;
            let tol_l = scalar_grad_tolerance(chain, l2_products(&dout, &x0));
            r.record(k, "dlambda +=", &shape, &g[il..il + 1], &[want_dl], tol_l, secs);
        }
    }
    Ok(())
}

/// √Σ (x_i·y_i)², the scale of a dot product's rounding error (see `scalar_grad_tolerance`).
fn l2_products(x: &[f32], y: &[f32]) -> f64 {
    x.iter().zip(y).map(|(&a, &b)| (a as f64 * b as f64).powi(2)).sum::<f64>().sqrt()
}
