//! Validation rows for the optimizer kernels: AdamW, Muon (both variants), the gradient norm with
//! its non-finite count, and the [`Optimizer`] that composes them for a model's layout.
//!
//! Every comparison is one step from the GPU's own f32 state: the f64 reference is run on the
//! state the kernel started from, so an error never compounds across steps and each row measures
//! exactly one step's rounding (the acceptance criterion is "per step").

use super::suite::{upload_at, Runner};
use super::{adamw_tolerance, grad_norm_tolerance, muon_state_tolerance, muon_tolerance, Tol};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::kernels::adamw::{adamw_scalars, adamw_step, AdamwHyper, AdamwTensor};
use crate::kernels::grad_norm::{self, grad_norm, GradNormReport};
use crate::kernels::muon::{muon_scalars, muon_step, MuonWorkspace, SLICE_ELEMS};
use crate::kernels::Stream;
use crate::model::{GptConfig, ParamLayout};
use crate::reference::optim::{adamw_step as ref_adamw, muon_step as ref_muon, MuonVariant};
use crate::train::optimizer::{adamw_group_constants, Optimizer, StepScalars, ADAMW_EPS, ADAMW_GROUPS};
use crate::train::Hyper;
use std::time::Instant;

/// All optimizer rows; `small` is the context whose storage bindings are limited to a few KiB.
pub(crate) fn run(ctx: &GpuContext, small: &GpuContext, r: &mut Runner<'_>) -> Result<()> {
    adamw_cases(ctx, r, "adamw")?;
    adamw_cases(small, r, "adamw chunked")?;
    grad_norm_cases(ctx, r, "grad_norm")?;
    grad_norm_cases(small, r, "grad_norm chunked")?;
    muon_cases(ctx, r, false)?;
    muon_cases(small, r, true)?;
    optimizer_cases(ctx, r)?;
    Ok(())
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

/// `x / scale`, elementwise.
fn unit(x: &[f32], scale: f64) -> Vec<f32> {
    let s = scale.max(f64::MIN_POSITIVE);
    x.iter().map(|&v| (v as f64 / s) as f32).collect()
}

fn zero_guard(ctx: &GpuContext) -> Result<GpuTensor> {
    ctx.upload("guard", &[0.0])
}

/// A guard holding the count 1 (u32 bits).
fn set_guard(ctx: &GpuContext) -> Result<GpuTensor> {
    ctx.upload("guard", &[f32::from_bits(1)])
}

// ---- AdamW --------------------------------------------------------------------------------------

/// The seed run's effective AdamW learning rates (spec Appendix A), one per group.
const SEED_LRS: [f64; 6] = [0.0028284, 0.1060660, 0.0530330, 0.0017678, 0.1767767, 0.2];

fn adamw_groups() -> Vec<AdamwHyper> {
    ADAMW_GROUPS
        .iter()
        .zip(SEED_LRS)
        .map(|(&g, lr)| {
            let (beta1, beta2, weight_decay) = adamw_group_constants(g).expect("AdamW group");
            AdamwHyper { lr, beta1, beta2, eps: ADAMW_EPS, weight_decay }
        })
        .collect()
}

/// Ragged tensors of every group at gapped, unaligned arena offsets, state packed after a pad;
/// three steps (t = 1, 2, 3) so the bias corrections change; then a step with the guard set.
fn adamw_cases(ctx: &GpuContext, r: &mut Runner<'_>, kernel: &str) -> Result<()> {
    if !r.wants(kernel) {
        return Ok(());
    }
    let chunked = kernel.ends_with("chunked");
    let lens: &[usize] =
        if chunked { &[5, 30_001, 1, 20_000, 77] } else { &[1, 3, 1000, 4097, 70_001, 12, 262_145, 24] };
    let mut rng = r.rng(kernel);
    let mut tensors = Vec::new();
    let (mut at, mut sat) = (3, 0);
    for (i, &len) in lens.iter().enumerate() {
        at += (rng.next_u64() % 70) as usize;
        tensors.push(AdamwTensor { param_offset: at, state_offset: sat, len, group: i % 6 });
        at += len;
        sat += len;
    }
    let arena = at + 11;
    let shape = format!("{} tensors, {} elems", lens.len(), sat);
    let mut p = rng.vec_uniform(arena, -1.0, 1.0);
    let tp = upload_at(ctx, "p", &p, 1)?;
    let tg = ctx.tensor("g", arena)?;
    let tm = upload_at(ctx, "m", &vec![0.0; sat], 5)?;
    let tv = upload_at(ctx, "v", &vec![0.0; sat], 7)?;
    let table = ctx.tensor("table", crate::kernels::adamw::table_len(tensors.len()))?;
    let groups = adamw_groups();
    let hyper = ctx.tensor("hyper", adamw_scalars(&groups, 1).len())?;
    let (mut m, mut v) = (vec![0.0f32; sat], vec![0.0f32; sat]);
    for step in 1..=4u64 {
        let guarded = step == 4;
        // Gradients of different scales per step; zeros between tensors are never read.
        let scale = [1.0, 0.01, 3.0, 0.5][step as usize - 1];
        let g: Vec<f32> = (0..arena).map(|_| rng.uniform_f32(-1.0, 1.0) * scale).collect();
        ctx.write(&tg, &g)?;
        ctx.write(&hyper, &adamw_scalars(&groups, step))?;
        let guard = if guarded { set_guard(ctx)? } else { zero_guard(ctx)? };
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        adamw_step(&mut st, &tp, &tm, &tv, &tg, &tensors, &table, &hyper, &guard)?;
        st.run()?;
        let (gp, gm, gv) = (ctx.read(&tp)?, ctx.read(&tm)?, ctx.read(&tv)?);
        let secs = t0.elapsed().as_secs_f64();
        // The reference step from the same f32 state.
        let (mut wp, mut wm, mut wv) = (p.clone(), m.clone(), v.clone());
        if !guarded {
            for t in &tensors {
                let h = &groups[t.group];
                let (a, s) = (t.param_offset, t.state_offset);
                let mut pp = f64s(&wp[a..a + t.len]);
                let mut mm = f64s(&wm[s..s + t.len]);
                let mut vv = f64s(&wv[s..s + t.len]);
                let gg = f64s(&g[a..a + t.len]);
                ref_adamw(&mut pp, &mut mm, &mut vv, &gg, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, step);
                wp[a..a + t.len].copy_from_slice(&f32s(&pp));
                wm[s..s + t.len].copy_from_slice(&f32s(&mm));
                wv[s..s + t.len].copy_from_slice(&f32s(&vv));
            }
        }
        let variant = if guarded { "guard set".to_string() } else { format!("t={step}") };
        let tol = |w: &[f32]| if guarded { Tol { atol: 0.0, rtol: 0.0 } } else { adamw_tolerance(rms(w)) };
        r.record(kernel, &format!("{variant} p"), &shape, &gp, &wp, tol(&wp), secs);
        r.record(kernel, &format!("{variant} m"), &shape, &gm, &wm, tol(&wm), 0.0);
        r.record(kernel, &format!("{variant} v"), &shape, &gv, &wv, tol(&wv), 0.0);
        (p, m, v) = (gp, gm, gv);
    }
    Ok(())
}

// ---- gradient norm ------------------------------------------------------------------------------

/// Per tensor (Σ g² over finite elements, non-finite count), in f64: the reference.
fn norm_reference(x: &[f32], segments: &[(usize, usize)]) -> Vec<(f64, u64)> {
    segments
        .iter()
        .map(|&(o, n)| {
            let s = &x[o..o + n];
            let sum = s.iter().filter(|v| v.is_finite()).map(|&v| (v as f64).powi(2)).sum();
            (sum, s.iter().filter(|v| !v.is_finite()).count() as u64)
        })
        .collect()
}

/// Tensors of ragged sizes (one empty, one of exactly one block, one a block plus one) listed out
/// of arena order, NaN and ±inf inside some and in the gaps between them (which must not count).
fn grad_norm_cases(ctx: &GpuContext, r: &mut Runner<'_>, kernel: &str) -> Result<()> {
    if !r.wants(kernel) {
        return Ok(());
    }
    let chunked = kernel.ends_with("chunked");
    let lens: &[usize] = if chunked {
        &[20_000, 3, 50_001]
    } else {
        &[1, 5000, grad_norm::BLOCK, grad_norm::BLOCK + 1, 0, 100_003, 1_000_000]
    };
    let mut rng = r.rng(kernel);
    let mut spans = Vec::new();
    let mut at = 0;
    for &len in lens {
        at += 1 + (rng.next_u64() % 50) as usize;
        spans.push((at, len));
        at += len;
    }
    let arena = at + 5;
    let mut x: Vec<f32> = (0..arena).map(|_| rng.normal() as f32).collect();
    // Poison the gaps: a kernel reading outside its tensors would count these.
    for w in spans.windows(2) {
        x[w[0].0 + w[0].1] = f32::NAN;
    }
    x[spans[1].0 + 17] = f32::NAN;
    x[spans[1].0 + 18] = f32::INFINITY;
    let last = spans[spans.len() - 1];
    x[last.0 + last.1 - 1] = f32::NEG_INFINITY;
    // Out of arena order, so slots and table rows differ.
    spans.reverse();
    let want = norm_reference(&x, &spans);
    let tx = upload_at(ctx, "x", &x, 3)?;
    let out = upload_at(ctx, "out", &vec![f32::NAN; 2 + 2 * spans.len()], 1)?;
    let partials = ctx.tensor("partials", grad_norm::partials_len(&spans))?;
    let table = ctx.tensor("table", grad_norm::table_len(&spans))?;
    let t0 = Instant::now();
    let mut st = Stream::new(ctx);
    grad_norm(&mut st, &out, &partials, &table, &tx, &spans)?;
    st.run()?;
    let rep = GradNormReport::from_words(&ctx.read(&out)?);
    let secs = t0.elapsed().as_secs_f64();
    let shape = format!("{} tensors, {} elems", spans.len(), lens.iter().sum::<usize>());
    let total: f64 = want.iter().map(|w| w.0).sum();
    let mut got_sums: Vec<f32> = rep.per_tensor.iter().map(|t| t.0).collect();
    let mut want_sums: Vec<f32> = want.iter().map(|w| w.0 as f32).collect();
    got_sums.push(rep.gpu_total);
    want_sums.push(total as f32);
    r.record(kernel, "sum g^2", &shape, &got_sums, &want_sums, grad_norm_tolerance(), secs);
    let mut got_counts: Vec<f32> = rep.per_tensor.iter().map(|t| t.1 as f32).collect();
    let mut want_counts: Vec<f32> = want.iter().map(|w| w.1 as f32).collect();
    got_counts.push(rep.nonfinite as f32);
    want_counts.push(want.iter().map(|w| w.1).sum::<u64>() as f32);
    r.record(kernel, "non-finite count", &shape, &got_counts, &want_counts, Tol { atol: 0.0, rtol: 0.0 }, 0.0);
    Ok(())
}

// ---- Muon ---------------------------------------------------------------------------------------

/// Compare a Muon step's parameters by their update Δ = p_new − p_0 (the parameter itself is 30–300×
/// larger than one step's change, so comparing p would hide errors in the update). Where the
/// reference update U is within the tolerance of zero, the cautious-decay mask [U·P ≥ 0] may
/// legitimately flip on f32 rounding; there the kernel may match either mask.
#[allow(clippy::too_many_arguments)]
fn muon_delta(p0: &[f32], got: &[f32], want: &[f64], lr_eff: f64, weight_decay: f64, tol: Tol) -> (Vec<f32>, Vec<f32>) {
    let mut dg = Vec::with_capacity(p0.len());
    let mut dw = Vec::with_capacity(p0.len());
    for i in 0..p0.len() {
        let (a, w, g) = (p0[i] as f64, want[i], got[i] as f64);
        let delta = w - a;
        // Recover U from Δ = −lr_eff·U − lr_eff·wd·P·mask: with mask on, U has P's sign.
        let decay = lr_eff * weight_decay * a;
        let u_on = (-delta - decay) / lr_eff;
        let (u, mask) = if a != 0.0 && u_on * a >= 0.0 { (u_on, true) } else { (-delta / lr_eff, false) };
        let mut want_delta = delta;
        if (lr_eff * u).abs() <= tol.atol + tol.rtol * delta.abs() {
            let alt = -lr_eff * u - if mask { 0.0 } else { decay };
            if ((g - a) - alt).abs() < ((g - a) - delta).abs() {
                want_delta = alt;
            }
        }
        dg.push((g - a) as f32);
        dw.push(want_delta as f32);
    }
    (dg, dw)
}

struct MuonCase {
    k: usize,
    rows: usize,
    cols: usize,
    /// Slice bound for the workspace (forces several slices when small).
    cap: usize,
}

fn muon_cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let kernel = if chunked { "muon chunked" } else { "muon" };
    if !r.wants(kernel) {
        return Ok(());
    }
    let case = |k, rows, cols| MuonCase { k, rows, cols, cap: SLICE_ELEMS };
    let mut cases = Vec::new();
    if chunked {
        // 96×64 matrices: a slice of all three would exceed the 64 KiB binding, so they run in
        // two slices, and the 96×96 Gram products chunk inside the matmul.
        cases.push(case(3, 96, 64));
    } else {
        cases.push(case(3, 24, 12));
        cases.push(case(2, 12, 24));
        cases.push(MuonCase { cap: 2 * 16 * 16, ..case(4, 16, 16) });
        cases.push(case(1, 6, 12));
        cases.push(case(2, 100, 36));
        if !r.opts.quick {
            cases.push(case(2, 768, 768));
        }
    }
    for c in &cases {
        for variant in [MuonVariant::Seed, MuonVariant::Plus] {
            run_muon_case(ctx, r, kernel, c, variant)?;
        }
    }
    if !chunked {
        muon_guard_case(ctx, r)?;
    }
    Ok(())
}

fn run_muon_case(ctx: &GpuContext, r: &mut Runner<'_>, kernel: &str, c: &MuonCase, variant: MuonVariant) -> Result<()> {
    let (k, rows, cols) = (c.k, c.rows, c.cols);
    let (n, nsec) = (k * rows * cols, k * rows.max(cols));
    let mut shape = format!("{k}x({rows}x{cols})");
    // Slices as the launcher will cut them: by the workspace bound and by the binding limit.
    let cap = c.cap.min(crate::kernels::launch::chunk_elems(ctx));
    let slices = k.div_ceil(crate::kernels::muon::slice_matrices(k, rows * cols, cap));
    if slices > 1 {
        shape += &format!(" {slices} slices");
    }
    let vname = format!("{variant:?}").to_lowercase();
    let mut rng = r.rng(&format!("{kernel} {shape} {vname}"));
    // Mid-run state: weights at init scale, a momentum buffer and a NorMuon second moment of the
    // size an orthogonalised update gives (≈ 1/max(R, C) per element).
    let p0 = rng.vec_uniform(n, -0.1, 0.1);
    let g: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let mom0: Vec<f32> = (0..n).map(|_| 0.5 * rng.normal() as f32).collect();
    let sec0 = rng.vec_uniform(nsec, 0.5, 1.5).iter().map(|v| v / rows.max(cols) as f32).collect::<Vec<_>>();
    let (mu, lr, wd) = (0.9, 0.02, 0.2);
    let tp = upload_at(ctx, "p", &p0, 3)?;
    let tmom = upload_at(ctx, "momentum", &mom0, 1)?;
    let tsec = upload_at(ctx, "second", &sec0, 2)?;
    let tg = upload_at(ctx, "g", &g, 5)?;
    let ws = MuonWorkspace::alloc(ctx, &[(k, rows, cols)], c.cap)?;
    let scalars = ctx.upload("scalars", &muon_scalars(mu, lr, wd, rows, cols))?;
    let guard = zero_guard(ctx)?;
    let t0 = Instant::now();
    let mut st = Stream::new(ctx);
    muon_step(&mut st, &tp, &tmom, &tsec, &tg, k, rows, cols, variant, &ws, &scalars, &guard)?;
    st.run()?;
    let (gp, gmom, gsec) = (ctx.read(&tp)?, ctx.read(&tmom)?, ctx.read(&tsec)?);
    let secs = t0.elapsed().as_secs_f64();

    let (mut wp, mut wmom, mut wsec) = (f64s(&p0), f64s(&mom0), f64s(&sec0));
    ref_muon(&mut wp, &mut wmom, &mut wsec, &f64s(&g), k, rows, cols, lr, mu, wd, variant);
    let lr_eff = lr * (rows as f64 / cols as f64).max(1.0).sqrt();
    let wd_delta: Vec<f32> = wp.iter().zip(&p0).map(|(w, &a)| (w - a as f64) as f32).collect();
    let scale = rms(&wd_delta);
    let (dg, dw) = muon_delta(&p0, &gp, &wp, lr_eff, wd, muon_tolerance(scale));
    // Recorded in units of the update's RMS, so the error columns read as relative errors.
    let (dg, dw) = (unit(&dg, scale), unit(&dw, scale));
    r.record(kernel, &format!("{vname} dp/rms"), &shape, &dg, &dw, muon_tolerance(1.0), secs);
    let wmom = f32s(&wmom);
    r.record(kernel, &format!("{vname} momentum"), &shape, &gmom, &wmom, adamw_tolerance(rms(&wmom)), 0.0);
    let wsec = f32s(&wsec);
    r.record(kernel, &format!("{vname} second"), &shape, &gsec, &wsec, muon_state_tolerance(rms(&wsec)), 0.0);
    Ok(())
}

/// With the guard set, parameters, momentum and second moment must come back bit for bit.
fn muon_guard_case(ctx: &GpuContext, r: &mut Runner<'_>) -> Result<()> {
    let (k, rows, cols) = (2, 20, 12);
    let mut rng = r.rng("muon guard");
    let p0 = rng.vec_uniform(k * rows * cols, -0.1, 0.1);
    let mom0 = rng.vec_uniform(k * rows * cols, -1.0, 1.0);
    let sec0 = rng.vec_uniform(k * rows, 0.01, 0.1);
    let mut g = rng.vec_uniform(k * rows * cols, -1.0, 1.0);
    g[7] = f32::NAN;
    let (tp, tmom, tsec, tg) =
        (ctx.upload("p", &p0)?, ctx.upload("momentum", &mom0)?, ctx.upload("second", &sec0)?, ctx.upload("g", &g)?);
    let ws = MuonWorkspace::alloc(ctx, &[(k, rows, cols)], SLICE_ELEMS)?;
    let scalars = ctx.upload("scalars", &muon_scalars(0.9, 0.02, 0.2, rows, cols))?;
    let t0 = Instant::now();
    let mut st = Stream::new(ctx);
    muon_step(&mut st, &tp, &tmom, &tsec, &tg, k, rows, cols, MuonVariant::Plus, &ws, &scalars, &set_guard(ctx)?)?;
    st.run()?;
    let mut got = ctx.read(&tp)?;
    got.extend(ctx.read(&tmom)?);
    got.extend(ctx.read(&tsec)?);
    let want: Vec<f32> = p0.iter().chain(&mom0).chain(&sec0).copied().collect();
    let exact = Tol { atol: 0.0, rtol: 0.0 };
    r.record(
        "muon",
        "guard set: unchanged",
        &format!("{k}x({rows}x{cols})"),
        &got,
        &want,
        exact,
        t0.elapsed().as_secs_f64(),
    );
    Ok(())
}

// ---- the optimizer ------------------------------------------------------------------------------

/// A small nanochat model's whole layout through [`Optimizer`]: two scheduled steps against the
/// references applied group by group, then a step whose gradients hold a NaN.
fn optimizer_cases(ctx: &GpuContext, r: &mut Runner<'_>) -> Result<()> {
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
            opt.step(&mut s, &params, &grads, it, &hyper)?;
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
