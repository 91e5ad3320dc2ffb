//! Validation rows for `kernels::matmul` (every SIMT variant) and `kernels::matmul_coop` (its
//! cooperative-matrix variants, same contract and launcher, hence the same rows) against
//! `reference::matmul`: the three layouts at 1×1×1, ragged, exact-tile, batched, offset and GPT sizes.

use super::{upload_at, upload_at_f16};
use crate::error::Result;
use crate::gpu::{GpuContext, Kernel};
use crate::kernels::matmul::{variant_tolerance, Gemm, MatmulPrecision, MatmulVariant, MATMUL_VARIANTS};
use crate::kernels::matmul_coop::{CoopVariant, COOP_VARIANTS};
use crate::kernels::{matmul, Stream};
use crate::reference;
use crate::validate::matmul_tolerance;
use crate::validate::suite::Runner;
use std::time::Instant;

struct MatmulCase {
    g: Gemm,
    alpha: f32,
    beta: f32,
    /// Element offsets of the A, B, C views inside their buffers.
    pads: [usize; 3],
}

pub(super) fn cases(ctx: &GpuContext, r: &mut Runner<'_>, chunked: bool) -> Result<()> {
    let layouts: [(bool, bool); 3] = [(false, true), (false, false), (true, false)];
    for (ta, tb) in layouts {
        let g = |m, n, k| Gemm::new(ta, tb, m, n, k);
        let plain = |g: Gemm| MatmulCase { g, alpha: 1.0, beta: 0.0, pads: [0; 3] };
        let mut cases = Vec::new();
        if !chunked {
            cases.push(plain(g(1, 1, 1)));
            cases.push(plain(g(17, 33, 65)));
            cases.push(plain(g(64, 64, 64)));
            cases.push(plain(g(128, 96, 80)));
            cases.push(MatmulCase { g: g(17, 33, 65), alpha: 0.75, beta: -1.5, pads: [0; 3] });
            cases.push(MatmulCase { g: g(64, 64, 64), alpha: 1.0, beta: 1.0, pads: [0; 3] });
            cases.push(MatmulCase { g: g(33, 20, 64), alpha: 1.0, beta: 0.0, pads: [3, 5, 7] });
            cases.push(plain(g(17, 33, 65).batched(3)));
            cases.push(plain(g(256, 256, 64).batched(12)));
            cases.push(plain(g(64, 128, 256).batched(6)));
            if !r.opts.quick {
                cases.push(plain(g(2048, 768, 768)));
                cases.push(plain(g(2048, 3072, 768)));
            }
        } else {
            cases.push(plain(g(300, 200, 257)));
            // Long K: nt splits M and N into 6-row windows (16 chunks), nn M into 6-row windows
            // and K into four accumulating chunks (16), tn K alone (4); the last K chunk is ragged
            // (kernels::matmul's the_long_k_validation_case_splits_every_layout). K = 5000 made the
            // same kinds of split with 64, 64 and 8 chunks: a minute of each layout's test on lavapipe.
            cases.push(plain(g(24, 24, 2100)));
            cases.push(MatmulCase { g: g(150, 70, 190).batched(5), alpha: 0.5, beta: 2.0, pads: [1, 2, 3] });
        }
        let kernel = format!("matmul_{}{}", g(1, 1, 1).layout().to_lowercase(), if chunked { " chunked" } else { "" });
        if !r.wants(&kernel) {
            continue;
        }
        if !ctx.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            for v in coop_rows(ctx, false) {
                for storage in ["f32", "f16", "f32·f16"] {
                    let label = format!("{} {storage} in", v.name());
                    r.record_not_run(
                        &kernel,
                        &label,
                        "all shapes",
                        "cooperative matrices not available on this adapter",
                        &[Kernel::MatmulCoop],
                    );
                }
            }
        }
        for case in cases {
            // Asked again per case for `first_case_only`.
            if !r.wants(&kernel) {
                break;
            }
            run_matmul_case(ctx, r, &kernel, &case)?;
        }
    }
    Ok(())
}

fn run_matmul_case(ctx: &GpuContext, r: &mut Runner<'_>, kernel: &str, case: &MatmulCase) -> Result<()> {
    let g = &case.g;
    let mut shape =
        if g.batch > 1 { format!("{}x({}x{}x{})", g.batch, g.m, g.n, g.k) } else { format!("{}x{}x{}", g.m, g.n, g.k) };
    if case.beta != 0.0 || case.alpha != 1.0 {
        shape += &format!(" a={} b={}", case.alpha, case.beta);
    }
    if case.pads != [0; 3] {
        shape += " +off";
    }
    let mut rng = r.rng(&format!("{kernel} {shape}"));
    // Linear-layer scaling (see matmul_tolerance): A in [-1, 1], B in [-1, 1]/sqrt(K).
    let a = rng.vec_uniform(g.a_len(), -1.0, 1.0);
    let s = 1.0 / (g.k as f32).sqrt();
    let b = rng.vec_uniform(g.b_len(), -s, s);
    let c0 = if case.beta == 0.0 { vec![f32::NAN; g.c_len()] } else { rng.vec_uniform(g.c_len(), -1.0, 1.0) };
    let mut want = c0.clone();
    reference::matmul::matmul(&mut want, &a, &b, g, case.alpha, case.beta);
    let ta = upload_at(ctx, "A", &a, case.pads[0])?;
    let tb = upload_at(ctx, "B", &b, case.pads[1])?;
    let tc = upload_at(ctx, "C", &c0, case.pads[2])?;
    let gpt_size = g.m * g.n * g.k >= 1 << 30;
    let defaults = [MatmulVariant::CPU_DEFAULT, MatmulVariant::GPU_DEFAULT];
    let run_all = r.opts.all_variants_at_gpt_shapes || !gpt_size;
    for v in MATMUL_VARIANTS.iter().filter(|v| v.fits(ctx) && (run_all || defaults.contains(v))) {
        ctx.write(&tc, &c0)?;
        let t0 = Instant::now();
        let mut st = Stream::new(ctx);
        matmul::matmul_variant(&mut st, *v, &tc, &ta, &tb, g, case.alpha, case.beta)?;
        st.run()?;
        let got = ctx.read(&tc)?;
        r.record(kernel, &v.name(), &shape, &got, &want, matmul_tolerance(g.k), t0.elapsed().as_secs_f64());
    }
    if !ctx.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Ok(());
    }
    // The coop variants, on the same inputs, against the reference on f16-rounded inputs; with
    // the operands stored in f32 (rounded while staging), in f16, and A in f32 with B in f16 (the
    // model's products under f16 precision: f32 activations or gradients, f16 weight copies).
    let g16 = g.with_precision(MatmulPrecision::F16Acc);
    let mut want16 = c0.clone();
    reference::matmul::matmul(&mut want16, &a, &b, &g16, case.alpha, case.beta);
    let a16 = upload_at_f16(ctx, "A f16", &a, case.pads[0])?;
    let b16 = upload_at_f16(ctx, "B f16", &b, case.pads[1])?;
    let defaults_only = gpt_size && !r.opts.all_variants_at_gpt_shapes;
    let storages = [("f32", &ta, &tb), ("f16", &a16, &b16), ("f32·f16", &ta, &b16)];
    for v in coop_rows(ctx, defaults_only) {
        for &(storage, ta, tb) in storages.iter().filter(|s| !defaults_only || s.0 == "f32·f16") {
            ctx.write(&tc, &c0)?;
            let t0 = Instant::now();
            let mut st = Stream::new(ctx);
            matmul::matmul_variant(&mut st, MatmulVariant::Coop(v), &tc, ta, tb, &g16, case.alpha, case.beta)?;
            st.run()?;
            let got = ctx.read(&tc)?;
            let unadvertised = if v.advertised(ctx) { "" } else { " (unadvertised)" };
            let label = format!("{} {storage} in{unadvertised}", v.name());
            let tol = variant_tolerance(MatmulVariant::Coop(v), g.k);
            r.record(kernel, &label, &shape, &got, &want16, tol, t0.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

/// The coop variants the suite runs on this adapter: every one that fits, or with `defaults_only`
/// (the GPT-size products under `cargo test`, to keep CI short) the first f32-accumulating one of
/// each tile size (`wgpt validate` runs them all there).
fn coop_rows(ctx: &GpuContext, defaults_only: bool) -> Vec<CoopVariant> {
    let sg = crate::kernels::matmul_coop::subgroup_size(ctx);
    let fitting = COOP_VARIANTS.iter().copied().filter(|v| v.fits(ctx, sg));
    let mut out: Vec<CoopVariant> = Vec::new();
    for v in fitting {
        if !defaults_only || (v.flush == 0 && !out.iter().any(|o| o.tile == v.tile)) {
            out.push(v);
        }
    }
    if out.is_empty() && !ctx.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        // Name what would have run, for the not-run rows.
        let mut seen: Vec<CoopVariant> = Vec::new();
        for &v in COOP_VARIANTS {
            if !seen.iter().any(|o| o.tile == v.tile && (o.flush == 0) == (v.flush == 0)) {
                seen.push(v);
            }
        }
        return seen;
    }
    out
}
