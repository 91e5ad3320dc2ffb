//! Validation rows for `kernels::ve_gate` (the value-embedding gate) against `reference::ve_gate`.

use super::{kernel_name, lanes_per_row, max_abs, timed, tree_chain, upload_at};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::ve_gate;
use crate::model::config::VE_GATE_CHANNELS;
use crate::reference;
use crate::validate::suite::Runner;
use crate::validate::{gate_tolerance, scalar_grad_tolerance};

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let fwd = kernel_name("ve_gate_forward", chunked);
    let bwd = kernel_name("ve_gate_backward", chunked);
    if !r.wants(&fwd) && !r.wants(&bwd) {
        return Ok(());
    }
    // (n, c, hkv, d, pad)
    let cases: Vec<(usize, usize, usize, usize, usize)> = if chunked {
        vec![(300, 100, 2, 32, 0), (200, 12, 3, 130, 1)]
    } else {
        vec![
            (1, 12, 1, 2, 0),
            (37, 100, 3, 20, 3),
            (2048, 768, 6, 128, 0),
            (2048, 256, 4, 64, 0),
            (1024, 256, 1, 128, 0),
        ]
    };
    for (n, c, hkv, d, pad) in cases {
        let shape = format!("N={n} C={c} {hkv}x{d}{}", if pad > 0 { " +off" } else { "" });
        let mut rng = r.rng(&format!("ve_gate {chunked} {shape}"));
        let kv = hkv * d;
        let u = rng.vec_uniform(n * c, -2.0, 2.0);
        let ve = rng.vec_uniform(n * kv, -1.0, 1.0);
        // Gate weights moved off their U(0, 0.02) init so the gates spread over (0, 3).
        let wg = rng.vec_uniform(hkv * VE_GATE_CHANNELS, -0.5, 0.5);
        let tu = upload_at(ctx, "u", &u, pad)?;
        let tve = upload_at(ctx, "ve", &ve, 0)?;
        let tw = upload_at(ctx, "wg", &wg, pad + 2)?;
        if r.wants(&fwd) {
            let v = rng.vec_uniform(n * kv, -1.0, 1.0);
            let mut want = v.clone();
            reference::ve_gate::ve_gate_forward(&mut want, &u, &ve, &wg, n, c, hkv, d);
            let tv = upload_at(ctx, "v", &v, pad + 1)?;
            let secs = timed(ctx, |s| ve_gate::ve_gate_forward(s, &tv, &tu, &tve, &tw, n, c, hkv, d))?;
            let tol = gate_tolerance(max_abs(&v) + 3.0 * max_abs(&ve), 0.0, 0);
            r.record(&fwd, "v (in place)", &shape, &ctx.read(&tv)?, &want, tol, secs);
        }
        if r.wants(&bwd) {
            let dv = rng.vec_uniform(n * kv, -1.0, 1.0);
            let du0 = rng.vec_uniform(n * c, -1.0, 1.0);
            let dwg0 = rng.vec_uniform(hkv * VE_GATE_CHANNELS, -1.0, 1.0);
            let mut want_dve = vec![0.0f32; n * kv];
            let (mut want_du, mut want_dwg) = (du0.clone(), dwg0.clone());
            reference::ve_gate::ve_gate_backward(
                &mut want_dve,
                &mut want_du,
                &mut want_dwg,
                &dv,
                &u,
                &ve,
                &wg,
                n,
                c,
                hkv,
                d,
            );
            let tdve = upload_at(ctx, "dve", &vec![f32::NAN; n * kv], pad + 1)?;
            let tdu = upload_at(ctx, "du", &du0, 0)?;
            let tdwg = upload_at(ctx, "dwg", &dwg0, pad)?;
            let tdv = upload_at(ctx, "dv", &dv, 0)?;
            let secs =
                timed(ctx, |s| ve_gate::ve_gate_backward(s, &tdve, &tdu, &tdwg, &tdv, &tu, &tve, &tw, n, c, hkv, d))?;
            // Error scales, from the f64 gate values: ds[n, h] = ⟨dv, ve⟩·3σ(1 − σ) is a dot over D
            // (lanes_per_row(d) lanes); du sums Hkv of them per element, dwg N of them per output.
            let lanes = lanes_per_row(d);
            let mut ds_max = vec![0.0f64; n]; // Σ_h |ds[n, h]|
            let mut du_l2 = 0.0f64; // max_n √Σ_{h,e} (dv·ve)²
            let mut dwg_l2 = vec![0.0f64; hkv]; // Σ_{n,e} (dv·ve)² per head
            for i in 0..n {
                let mut row_l2 = 0.0;
                for h in 0..hkv {
                    let logit: f64 =
                        (0..VE_GATE_CHANNELS).map(|k| wg[h * VE_GATE_CHANNELS + k] as f64 * u[i * c + k] as f64).sum();
                    let sg = reference::sigmoid(logit);
                    let o = (i * hkv + h) * d;
                    let dg: f64 = (0..d).map(|e| dv[o + e] as f64 * ve[o + e] as f64).sum();
                    let sq: f64 = (0..d).map(|e| (dv[o + e] as f64 * ve[o + e] as f64).powi(2)).sum();
                    ds_max[i] += (dg * 3.0 * sg * (1.0 - sg)).abs();
                    row_l2 += sq;
                    dwg_l2[h] += sq;
                }
                du_l2 = du_l2.max(row_l2.sqrt());
            }
            let wg_max = max_abs(&wg);
            let ds_chain = tree_chain(d, lanes);
            r.record(
                &bwd,
                "dve",
                &shape,
                &ctx.read(&tdve)?,
                &want_dve,
                gate_tolerance(3.0 * max_abs(&dv), 0.0, 0),
                secs,
            );
            let du_ymax = max_abs(&du0) + wg_max * ds_max.iter().cloned().fold(0.0, f64::max);
            let tol_du = gate_tolerance(du_ymax, 0.75 * wg_max * du_l2, ds_chain + hkv + 1);
            r.record(&bwd, "du +=", &shape, &ctx.read(&tdu)?, &want_du, tol_du, secs);
            let dwg_chain = ds_chain + tree_chain(n, 256) + 2;
            let dwg_scale = 0.75 * max_abs(&u) * dwg_l2.iter().cloned().fold(0.0, f64::max).sqrt();
            let tol_dwg = scalar_grad_tolerance(dwg_chain, dwg_scale);
            r.record(&bwd, "dwg +=", &shape, &ctx.read(&tdwg)?, &want_dwg, tol_dwg, secs);
        }
    }
    Ok(())
}
