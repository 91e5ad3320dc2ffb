//! Validation rows for `train::optimizer::Optimizer`: a small model's whole layout through the
//! optimizer that composes AdamW, Muon and the gradient norm, against the references group by group.

use super::muon::muon_delta;
use super::{f32s, f64s, rms, unit};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::Stream;
use crate::model::{GptConfig, ParamLayout};
use crate::reference::adamw::adamw_step as ref_adamw;
use crate::reference::muon::{muon_step as ref_muon, MuonVariant};
use crate::train::optimizer::{adamw_group_constants, Optimizer, StepScalars, ADAMW_EPS, ADAMW_GROUPS};
use crate::train::Hyper;
use crate::validate::suite::Runner;
use crate::validate::{adamw_tolerance, grad_norm_tolerance, muon_state_tolerance, muon_tolerance, Tol};
use std::time::Instant;

/// A small nanochat model's whole layout through [`Optimizer`]: two scheduled steps against the
/// references applied group by group, then a step whose gradients hold a NaN.
pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>) -> Result<()> {
    let kernel = "optimizer";
    if !r.wants(kernel) {
        return Ok(());
    }
    let cfg = GptConfig::new(2, 2, 1, 64, 300, 16, "L")?;
    let layout = ParamLayout::new(&cfg);
    let hyper = Hyper {
        num_iterations: 100,
        horizon_source: "validation".into(),
        total_tokens: 0,
        tokens_per_param: 0.0,
        total_flops: 0.0,
        batch_lr_scale: 1.0,
        dmodel_lr_scale: 1.0,
        lr_unembedding: 0.008,
        lr_embedding: 0.3,
        lr_value_embeds: 0.15,
        lr_resid: 0.005,
        lr_x0: 0.5,
        lr_smear: 0.2,
        lr_muon: 0.02,
        muon_weight_decay: 0.28,
        warmup_steps: 2,
        warmdown_steps: 50,
        final_lr_frac: 0.05,
        warnings: Vec::new(),
    };
    for variant in [MuonVariant::Seed, MuonVariant::Plus] {
        let vname = format!("{variant:?}").to_lowercase();
        let mut rng = r.rng(&format!("{kernel} {vname}"));
        let mut opt = Optimizer::new(ctx, &layout, variant)?;
        // f32 gradients: scale 1, no step skipped (AdamW counts it + 1 steps, as before).
        let unscaled = crate::train::precision::LossScaler::new(false, 1.0);
        let params = ctx.upload("params", &layout.init(7))?;
        let grads = ctx.tensor("grads", layout.len)?;
        let shape = format!("d2 c64, {} tensors", layout.specs.len());
        for it in 0..3 {
            let guarded = it == 2;
            let mut g: Vec<f32> = (0..layout.len).map(|_| 0.01 * rng.normal() as f32).collect();
            if guarded {
                let (o, _) = layout.range("transformer.h.1.mlp.c_fc.weight");
                g[o + 5] = f32::NAN;
            }
            ctx.write(&grads, &g)?;
            let p_before = ctx.read(&params)?;
            let state_before = opt.state()?;
            let t0 = Instant::now();
            let mut s = Stream::new(ctx);
            opt.step(&mut s, &params, &grads, it, &hyper, &unscaled)?;
            s.run()?;
            let report = opt.grad_report()?;
            let p_after = ctx.read(&params)?;
            let state_after = opt.state()?;
            let secs = t0.elapsed().as_secs_f64();
            let exact = Tol { atol: 0.0, rtol: 0.0 };
            if guarded {
                let names = opt.nonfinite_tensors(&report);
                let flagged = (report.nonfinite == 1 && names == ["transformer.h.1.mlp.c_fc.weight"]) as u8 as f32;
                let mut got = p_after.clone();
                let mut want = p_before.clone();
                for ((_, a), (_, b)) in state_after.iter().zip(&state_before) {
                    got.extend(a);
                    want.extend(b);
                }
                got.push(flagged);
                want.push(1.0);
                r.record(kernel, &format!("{vname} nan skips"), &shape, &got, &want, exact, secs);
                continue;
            }
            // Over the tensors only: the alignment gaps between them are not gradients.
            let want_norm: f64 = layout
                .specs
                .iter()
                .zip(&layout.offsets)
                .flat_map(|(p, &o)| &g[o..o + p.numel()])
                .map(|&v| (v as f64).powi(2))
                .sum();
            r.record(
                kernel,
                &format!("{vname} it={it} norm"),
                &shape,
                &[report.sum_squares as f32, report.nonfinite as f32],
                &[want_norm as f32, 0.0],
                grad_norm_tolerance(),
                0.0,
            );
            // The references, group by group, from the state the step started from.
            let sc = StepScalars::scheduled(&hyper, it);
            let st: std::collections::BTreeMap<&str, &Vec<f32>> =
                state_before.iter().map(|(n, v)| (n.as_str(), v)).collect();
            let (mut wm, mut wv) = (st["adamw.m"].clone(), st["adamw.v"].clone());
            let (mut wmom, mut wsec) = (st["muon.momentum"].clone(), st["muon.second_moment"].clone());
            let (mut adam_got, mut adam_want) = (Vec::new(), Vec::new());
            for ((name, so, len), spec) in opt
                .adamw_state_ranges()
                .into_iter()
                .zip(layout.specs.iter().filter(|s| s.group != crate::model::OptGroup::Muon))
            {
                let (o, _) = layout.range(name);
                let gi = ADAMW_GROUPS.iter().position(|&x| x == spec.group).expect("AdamW group");
                let (b1, b2, wdc) = adamw_group_constants(spec.group).expect("AdamW group");
                let mut pp = f64s(&p_before[o..o + len]);
                let (mut mm, mut vv) = (f64s(&wm[so..so + len]), f64s(&wv[so..so + len]));
                ref_adamw(
                    &mut pp,
                    &mut mm,
                    &mut vv,
                    &f64s(&g[o..o + len]),
                    sc.adamw_lr[gi],
                    b1,
                    b2,
                    ADAMW_EPS,
                    wdc,
                    sc.adamw_step,
                );
                wm[so..so + len].copy_from_slice(&f32s(&mm));
                wv[so..so + len].copy_from_slice(&f32s(&vv));
                adam_got.extend_from_slice(&p_after[o..o + len]);
                adam_want.extend(f32s(&pp));
            }
            let (mut muon_got, mut muon_want) = (Vec::new(), Vec::new());
            let (mut mo, mut so) = (0, 0);
            for grp in &layout.muon_groups {
                let (k, rows, cols) = (grp.members.len(), grp.rows, grp.cols);
                let (n, ns) = (k * rows * cols, k * rows.max(cols));
                let o = grp.offset;
                let mut pp = f64s(&p_before[o..o + n]);
                let (mut mm, mut ss) = (f64s(&wmom[mo..mo + n]), f64s(&wsec[so..so + ns]));
                let (mu, lr, wdm) = (sc.muon_momentum, sc.muon_lr, sc.muon_weight_decay);
                ref_muon(&mut pp, &mut mm, &mut ss, &f64s(&g[o..o + n]), k, rows, cols, lr, mu, wdm, variant);
                wmom[mo..mo + n].copy_from_slice(&f32s(&mm));
                wsec[so..so + ns].copy_from_slice(&f32s(&ss));
                let want_d: Vec<f32> =
                    pp.iter().zip(&p_before[o..o + n]).map(|(w, &a)| (w - a as f64) as f32).collect();
                let tol = muon_tolerance(rms(&want_d));
                let lr_eff = lr * (rows as f64 / cols as f64).max(1.0).sqrt();
                let (dg, dw) = muon_delta(&p_before[o..o + n], &p_after[o..o + n], &pp, lr_eff, wdm, tol);
                // Each group's Δ in units of its own RMS: groups' updates differ by √(rows/cols).
                let s = rms(&want_d);
                muon_got.extend(unit(&dg, s));
                muon_want.extend(unit(&dw, s));
                mo += n;
                so += ns;
            }
            let sa: std::collections::BTreeMap<&str, &Vec<f32>> =
                state_after.iter().map(|(n, v)| (n.as_str(), v)).collect();
            r.record(
                kernel,
                &format!("{vname} it={it} adamw p"),
                &shape,
                &adam_got,
                &adam_want,
                adamw_tolerance(rms(&adam_want)),
                secs,
            );
            r.record(
                kernel,
                &format!("{vname} it={it} adamw m"),
                &shape,
                sa["adamw.m"],
                &wm,
                adamw_tolerance(rms(&wm)),
                0.0,
            );
            r.record(
                kernel,
                &format!("{vname} it={it} adamw v"),
                &shape,
                sa["adamw.v"],
                &wv,
                adamw_tolerance(rms(&wv)),
                0.0,
            );
            r.record(
                kernel,
                &format!("{vname} it={it} muon dp/rms"),
                &shape,
                &muon_got,
                &muon_want,
                muon_tolerance(1.0),
                0.0,
            );
            r.record(
                kernel,
                &format!("{vname} it={it} muon mom"),
                &shape,
                sa["muon.momentum"],
                &wmom,
                adamw_tolerance(rms(&wmom)),
                0.0,
            );
            r.record(
                kernel,
                &format!("{vname} it={it} muon 2nd"),
                &shape,
                sa["muon.second_moment"],
                &wsec,
                muon_state_tolerance(rms(&wsec)),
                0.0,
            );
        }
    }
    Ok(())
}
