//! Validation rows for `kernels::muon` (both variants) against `reference::muon`.

use super::{f32s, f64s, rms, set_guard, unit, upload_at, zero_guard};
use crate::error::Result;
use crate::gpu::GpuContext;
use crate::kernels::muon::{muon_scalars, muon_step, MuonWorkspace, SLICE_ELEMS};
use crate::kernels::Stream;
use crate::reference::muon::{muon_step as ref_muon, MuonVariant};
use crate::validate::suite::Runner;
use crate::validate::{adamw_tolerance, muon_state_tolerance, muon_tolerance, Tol};
use std::time::Instant;

/// Compare a Muon step's parameters by their update Δ = p_new − p_0 (the parameter itself is 30–300×
/// larger than one step's change, so comparing p would hide errors in the update). Where the
/// reference update U is within the tolerance of zero, the cautious-decay mask [U·P ≥ 0] may
/// legitimately flip on f32 rounding; there the kernel may match either mask.
#[allow(clippy::too_many_arguments)]
pub(super) fn muon_delta(
    p0: &[f32],
    got: &[f32],
    want: &[f64],
    lr_eff: f64,
    weight_decay: f64,
    tol: Tol,
) -> (Vec<f32>, Vec<f32>) {
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

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
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
    let scalars = ctx.upload("scalars", &muon_scalars(mu, lr, wd, rows, cols, 1.0))?;
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
    let scalars = ctx.upload("scalars", &muon_scalars(0.9, 0.02, 0.2, rows, cols, 1.0))?;
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
