//! Validation rows for `kernels::smear` against `reference::smear`.

use super::{kernel_name, max_abs, timed, tree_chain, upload_at};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::smear;
use crate::model::config::SMEAR_CHANNELS;
use crate::reference;
use crate::validate::suite::Runner;
use crate::validate::{exact_tolerance, gate_tolerance, scalar_grad_tolerance};

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("smear_forward", chunked);
    let bwd = kernel_name("smear_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (b, t, c, pad)
    let cases: Vec<(usize, usize, usize, usize)> = if chunked {
        vec![(2, 150, 100, 0), (3, 61, 300, 1)]
    } else {
        vec![(1, 1, 24, 0), (1, 2, 24, 0), (3, 17, 50, 3), (2, 1024, 768, 0), (8, 256, 256, 0)]
    };
    for (b, t, c, pad) in cases {
        let shape = format!("B={b} T={t} C={c}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("smear {chunked} {shape}"));
        let rows = b * t;
        let e = rng.vec_uniform(rows * c, -2.0, 2.0);
        // smear_gate.weight off its U(0, 0.02) init and smear_lambda off its zero init.
        let params = rng.vec_uniform(SMEAR_CHANNELS + 3, -0.5, 0.5);
        let w = params[..SMEAR_CHANNELS].to_vec();
        let lam = 0.4 + params[SMEAR_CHANNELS + 1];
        let mut params = params;
        params[SMEAR_CHANNELS + 1] = lam;
        let tp = ctx.upload("params", &params)?;
        let (tw, tl) = (tp.view(0, SMEAR_CHANNELS), tp.view(SMEAR_CHANNELS + 1, 1));
        let te = upload_at(ctx, "e", &e, pad)?;
        if r.wants(&fwd) {
            let mut want = vec![0.0f32; rows * c];
            reference::smear::smear_forward(&mut want, &e, &w, lam, b, t, c);
            let to = upload_at(ctx, "out", &vec![f32::NAN; rows * c], pad + 1)?;
            let secs = timed(ctx, |s| smear::smear_forward(s, &to, &te, &tw, &tl, b, t, c))?;
            let tol = gate_tolerance(max_abs(&e) * (1.0 + lam.abs() as f64), 0.0, 0);
            r.record(&fwd, "out", &shape, &ctx.read(&to)?, &want, tol, secs);
        }
        if r.wants(&bwd) {
            let dout = rng.vec_uniform(rows * c, -1.0, 1.0);
            let grads0 = rng.vec_uniform(SMEAR_CHANNELS + 3, -1.0, 1.0);
            let mut want_de = vec![0.0f32; rows * c];
            let mut want_dw = grads0[..SMEAR_CHANNELS].to_vec();
            let mut want_dl = grads0[SMEAR_CHANNELS + 1];
            reference::smear::smear_backward(&mut want_de, &mut want_dw, &mut want_dl, &dout, &e, &w, lam, b, t, c);
            let tg = ctx.upload("grads", &grads0)?;
            let (gw, gl) = (tg.view(0, SMEAR_CHANNELS), tg.view(SMEAR_CHANNELS + 1, 1));
            let tde = upload_at(ctx, "de", &vec![f32::NAN; rows * c], pad + 1)?;
            let tdo = upload_at(ctx, "dout", &dout, 0)?;
            let secs = timed(ctx, |s| smear::smear_backward(s, &tde, &gw, &gl, &tdo, &te, &tw, &tl, b, t, c))?;
            // Error scales from f64 values: dg_t = ⟨dout_t, e_{t−1}⟩ (a dot over C, 256 lanes) feeds
            // de's first 24 channels through ds_t·w, and dw and dλ through sums over all rows
            // (one workgroup each, 256 lanes).
            let lam64 = lam.abs() as f64;
            let (mut dg_max, mut row_l2_max, mut all_l2) = (0.0f64, 0.0f64, 0.0f64);
            for row in (0..rows).filter(|row| row % t != 0) {
                let terms = (0..c).map(|i| dout[row * c + i] as f64 * e[(row - 1) * c + i] as f64);
                let dg: f64 = terms.clone().sum();
                let sq: f64 = terms.map(|x| x * x).sum();
                dg_max = dg_max.max(dg.abs());
                row_l2_max = row_l2_max.max(sq.sqrt());
                all_l2 += sq;
            }
            let all_l2 = all_l2.sqrt();
            let w_max = max_abs(&w);
            let dg_chain = tree_chain(c, 256);
            let de_ymax = max_abs(&dout) * (1.0 + lam64) + lam64 / 4.0 * dg_max * w_max;
            let tol_de = gate_tolerance(de_ymax, lam64 / 4.0 * w_max * row_l2_max, dg_chain);
            r.record(&bwd, "de", &shape, &ctx.read(&tde)?, &want_de, tol_de, secs);
            let g = ctx.read(&tg)?;
            // + the accumulation, and one addition per extra chunk on the small-binding context.
            let chain = dg_chain + tree_chain(rows, 256) + 4;
            let e24_max = (0..rows)
                .flat_map(|row| e[row * c..row * c + SMEAR_CHANNELS].iter())
                .fold(0.0f64, |m, &x| m.max((x as f64).abs()));
            let tol_w = scalar_grad_tolerance(chain, lam64 / 4.0 * e24_max * all_l2);
            let tol_l = scalar_grad_tolerance(chain, all_l2);
            r.record(&bwd, "dw +=", &shape, &g[..SMEAR_CHANNELS], &want_dw, tol_w, secs);
            r.record(&bwd, "dlambda +=", &shape, &g[SMEAR_CHANNELS + 1..SMEAR_CHANNELS + 2], &[want_dl], tol_l, secs);
            r.record(
                &bwd,
                "other grads kept",
                &shape,
                &[g[SMEAR_CHANNELS], g[SMEAR_CHANNELS + 2]],
                &[grads0[SMEAR_CHANNELS], grads0[SMEAR_CHANNELS + 2]],
                exact_tolerance(),
                secs,
            );
        }
    }
    Ok(())
}
