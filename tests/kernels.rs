//! Tier 2: GPU kernels against their CPU references (the same suite `wgpt validate` prints), plus
//! the harness's own guarantees: a broken kernel is caught, results are deterministic, bad input
//! is refused before the GPU is touched, autotuning picks a passing variant and caches it.
//!
//! These need an adapter (lavapipe in CI). Without one they fail, unless WGPT_ALLOW_NO_GPU=1.

use wgpt::config::MemorySpec;
use wgpt::gpu::{AutotuneMode, GpuContext, GpuOptions, Shader};
use wgpt::kernels::matmul::{self, Gemm, MatmulVariant};
use wgpt::kernels::{elementwise, reduce, Stream};
use wgpt::model::memory::MemoryPlan;
use wgpt::model::{GptConfig, ParamLayout};
use wgpt::reference::optim::MuonVariant;
use wgpt::testing::{gpu, test_options};
use wgpt::train::optimizer::{Optimizer, StepScalars};
use wgpt::util::Rng;
use wgpt::validate::suite::{self, Row, SuiteOptions};

/// Run the suite rows whose kernel name contains `filter`; fail with every failing row's report.
fn suite_rows(ctx: &GpuContext, filter: &str, quick: bool) -> Vec<Row> {
    let seed = std::env::var("WGPT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(Rng::fresh_seed);
    let opts = SuiteOptions { filter: Some(filter.to_string()), quick, ..SuiteOptions::new(seed) };
    let rows = suite::run(ctx, &opts, &mut |_| {}).expect("suite ran");
    assert!(!rows.is_empty(), "filter {filter} matched nothing");
    eprintln!("seed {seed}: {} rows for {filter}", rows.len());
    rows
}

fn assert_all_pass(filter: &str) {
    assert_rows_pass(filter, false);
}

/// As [`assert_all_pass`], optionally skipping the GPT-size rows (`--quick`).
fn assert_rows_pass(filter: &str, quick: bool) {
    let Some(ctx) = gpu() else { return };
    let rows = suite_rows(ctx, filter, quick);
    let failures: Vec<String> = rows
        .iter()
        .filter(|r| !r.pass)
        .map(|r| format!("{}\n    {}", suite::format_row(r), r.detail.as_deref().unwrap_or("")))
        .collect();
    assert!(failures.is_empty(), "{} failing rows (replay with WGPT_SEED):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn matmul_nt_matches_reference() {
    assert_all_pass("matmul_nt");
}

#[test]
fn matmul_nn_matches_reference() {
    assert_all_pass("matmul_nn");
}

#[test]
fn matmul_tn_matches_reference() {
    assert_all_pass("matmul_tn");
}

#[test]
fn elementwise_matches_reference() {
    for k in ["fill", "copy", "add", "scale", "axpy"] {
        assert_all_pass(k);
    }
}

#[test]
fn sum_squares_matches_reference() {
    assert_all_pass("sum_squares");
}

#[test]
fn adamw_matches_reference() {
    assert_all_pass("adamw");
}

/// Quick: the 768×768 rows need ~40 s of f64 reference per variant in a dev build; `wgpt
/// validate` (and `cargo xtask validate`, a release build) runs them.
#[test]
fn muon_matches_reference() {
    assert_rows_pass("muon", true);
}

#[test]
fn grad_norm_matches_reference() {
    assert_all_pass("grad_norm");
}

#[test]
fn optimizer_matches_reference() {
    assert_all_pass("optimizer");
}

/// The optimizer rows must be able to fail: Muon with its variant switch ignored fails the Plus
/// rows (MuonEq and Muon+ change the update) and only those; AdamW without the second bias
/// correction fails every stepping row.
#[test]
fn broken_optimizer_kernels_are_caught() {
    if gpu().is_none() {
        return;
    }
    let ctx = GpuContext::new(&test_options()).unwrap();
    let muon = Shader::Muon.source();
    let needle = "return (p.flags & 1u) != 0u;";
    assert_eq!(muon.matches(needle).count(), 1, "the variant switch this test breaks has moved");
    ctx.replace_shader_source(Shader::Muon, muon.replace(needle, "return false;"));
    let adamw = Shader::Adamw.source();
    let needle = "sqrt(vi / bc2)";
    assert_eq!(adamw.matches(needle).count(), 1, "the bias correction this test breaks has moved");
    ctx.replace_shader_source(Shader::Adamw, adamw.replace(needle, "sqrt(vi)"));
    // The chunked rows run on a second context with the real shaders, so only rows on `ctx` fail.
    let rows = suite_rows(&ctx, "muon", true);
    let own: Vec<&Row> = rows.iter().filter(|r| r.kernel == "muon").collect();
    assert!(own.iter().filter(|r| r.variant.starts_with("plus dp")).all(|r| !r.pass));
    assert!(own.iter().filter(|r| r.variant.starts_with("seed")).all(|r| r.pass));
    let rows = suite_rows(&ctx, "adamw", true);
    let stepping =
        rows.iter().filter(|r| r.kernel == "adamw" && r.variant.starts_with("t=") && r.variant.ends_with(" p"));
    assert!(stepping.clone().count() == 3 && stepping.clone().all(|r| !r.pass));
}

/// Same inputs, same bits; the state read for a checkpoint loads into a fresh optimizer exactly,
/// and malformed state is refused.
#[test]
fn optimizer_is_deterministic_and_its_state_round_trips() {
    let Some(ctx) = gpu() else { return };
    let cfg = GptConfig::new(2, 2, 1, 64, 300, 16, "L").unwrap();
    let layout = ParamLayout::new(&cfg);
    let plan = MemoryPlan::new(&cfg, 1, &MemorySpec::default());
    let mut rng = Rng::new(5);
    let g: Vec<f32> = (0..layout.len).map(|_| 0.01 * rng.normal() as f32).collect();
    let grads = ctx.upload("grads", &g).unwrap();
    let sc = StepScalars {
        adamw_step: 1,
        adamw_lr: [0.008, 0.3, 0.15, 0.005, 0.5, 0.2],
        muon_lr: 0.02,
        muon_momentum: 0.95,
        muon_weight_decay: 0.28,
    };
    let run = || {
        let mut opt = Optimizer::new(ctx, &plan, &layout, MuonVariant::Plus).unwrap();
        let params = ctx.upload("params", &layout.init(3)).unwrap();
        for t in 1..=2 {
            let mut s = Stream::new(ctx);
            opt.step_with(&mut s, &params, &grads, &StepScalars { adamw_step: t, ..sc.clone() }).unwrap();
            s.run().unwrap();
        }
        (ctx.read(&params).unwrap(), opt)
    };
    let (p1, opt1) = run();
    let (p2, _) = run();
    assert!(p1.iter().zip(&p2).all(|(a, b)| a.to_bits() == b.to_bits()));
    let state = opt1.state().unwrap();
    assert!(state.iter().all(|(_, v)| v.iter().any(|&x| x != 0.0)), "every state buffer was written");
    let fresh = Optimizer::new(ctx, &plan, &layout, MuonVariant::Plus).unwrap();
    fresh.load_state(&state).unwrap();
    assert_eq!(fresh.state().unwrap(), state);
    let mut short = state.clone();
    short[1].1.pop();
    assert!(fresh.load_state(&short).unwrap_err().to_string().contains("adamw.v"));
    assert!(fresh.load_state(&state[1..]).unwrap_err().to_string().contains("adamw.m"));
    // A plan for another model is refused before anything is allocated.
    let other = MemoryPlan::new(&GptConfig::new(1, 2, 1, 64, 300, 16, "L").unwrap(), 1, &MemorySpec::default());
    assert!(Optimizer::new(ctx, &other, &layout, MuonVariant::Seed).is_err());
}

/// An off-by-one at the tile edge (the last column of every 4-wide register tile is never
/// written) must turn rows red: the NaN poison survives in C and the comparator sees it.
#[test]
fn broken_tile_edge_is_caught() {
    if gpu().is_none() {
        return;
    }
    let ctx = GpuContext::new(&test_options()).unwrap();
    let good = Shader::Matmul.source();
    let needle = "if (n0 + j < p.N) {\n                    store_c(";
    assert_eq!(good.matches(needle).count(), 1, "the edge guard this test breaks has moved");
    ctx.replace_shader_source(
        Shader::Matmul,
        good.replace(needle, "if (n0 + j + 1u < p.N) {\n                    store_c("),
    );
    let rows = suite_rows(&ctx, "matmul_nt", true);
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.pass).collect();
    // Every register and tiled row fails (they share store_tile); the naive kernel does not use it.
    assert!(failed.iter().any(|r| r.variant.starts_with("register")));
    assert!(failed.iter().any(|r| r.variant.starts_with("tiled")));
    assert!(rows.iter().filter(|r| r.variant == "naive").all(|r| r.pass));
    // Where C started as NaN poison (beta = 0), the unwritten column shows up as NaN.
    let poisoned = failed.iter().filter(|r| !r.shape.contains("b="));
    assert!(poisoned.clone().count() > 0);
    assert!(poisoned.into_iter().all(|r| r.detail.as_deref().unwrap_or("").contains("got NaN")));
}

/// Same inputs, same bits: no atomics and no scheduling-dependent order anywhere.
#[test]
fn kernels_are_deterministic() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(42);
    let g = Gemm::tn(96, 80, 1000);
    let a = ctx.upload("a", &rng.vec_uniform(g.a_len(), -1.0, 1.0)).unwrap();
    let b = ctx.upload("b", &rng.vec_uniform(g.b_len(), -1.0, 1.0)).unwrap();
    let x = ctx.upload("x", &rng.vec_uniform(1_000_003, -1.0, 1.0)).unwrap();
    let run = || {
        let c = ctx.tensor("c", g.c_len()).unwrap();
        let ss = ctx.tensor("ss", 1).unwrap();
        let mut s = Stream::new(ctx);
        matmul::matmul(&mut s, &c, &a, &b, &g, 1.0, 0.0).unwrap();
        reduce::sum_squares(&mut s, &ss, &x).unwrap();
        s.run().unwrap();
        (ctx.read(&c).unwrap(), ctx.read(&ss).unwrap())
    };
    let (c1, s1) = run();
    let (c2, s2) = run();
    assert!(c1.iter().zip(&c2).all(|(p, q)| p.to_bits() == q.to_bits()));
    assert_eq!(s1[0].to_bits(), s2[0].to_bits());
}

#[test]
fn bad_shapes_are_refused_before_dispatch() {
    let Some(ctx) = gpu() else { return };
    let a = ctx.tensor("a", 10).unwrap();
    let b = ctx.tensor("b", 10).unwrap();
    let c = ctx.tensor("c", 10).unwrap();
    let mut s = Stream::new(ctx);
    let err = matmul::matmul(&mut s, &c, &a, &b, &Gemm::nt(4, 4, 4), 1.0, 0.0).unwrap_err().to_string();
    assert!(err.contains("A has 10 elements") && err.contains("needs 16"), "{err}");
    let err = matmul::matmul(&mut s, &c, &a, &b, &Gemm::nt(0, 1, 1), 1.0, 0.0).unwrap_err().to_string();
    assert!(err.contains(">= 1"), "{err}");
    let err = elementwise::add(&mut s, &c, &a, &ctx.tensor("d", 3).unwrap()).unwrap_err().to_string();
    assert!(err.contains("lengths differ"), "{err}");
    assert!(s.dispatches().is_empty(), "nothing may be recorded for refused input");
    let too_big = ctx.limits.max_buffer_size / 4 + 1;
    let err = ctx.tensor("huge", too_big as usize).unwrap_err().to_string();
    assert!(err.contains("huge") && err.contains("at most"), "{err}");
}

#[test]
fn shader_errors_name_file_and_entry_point() {
    if gpu().is_none() {
        return;
    }
    let ctx = GpuContext::new(&test_options()).unwrap();
    ctx.replace_shader_source(Shader::Elementwise, "fn broken( {".into());
    let x = ctx.tensor("x", 4).unwrap();
    let err = elementwise::scale(&mut Stream::new(&ctx), &x, 2.0).unwrap_err().to_string();
    assert!(err.contains("shaders/elementwise.wgsl") && err.contains("elementwise_scale"), "{err}");
}

#[test]
fn unknown_adapter_lists_the_available_ones() {
    if gpu().is_none() {
        return;
    }
    let opts = GpuOptions { adapter: Some("no-such-adapter-xyz".into()), ..test_options() };
    let err = GpuContext::new(&opts).err().expect("must fail").to_string();
    assert!(err.contains("no-such-adapter-xyz") && err.contains("[0]"), "{err}");
}

#[test]
fn autotune_picks_a_passing_variant_and_caches_it() {
    if gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgpt-autotune-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = GpuOptions { autotune: AutotuneMode::On, cache_dir: Some(dir.clone()), ..test_options() };
    let g = Gemm::nt(256, 192, 128);
    let ctx = GpuContext::new(&opts).unwrap();
    let v = matmul::choose_variant(&ctx, &g).unwrap();
    let class = matmul::shape_class(&g);
    let choice = ctx.autotune.lookup(&class).expect("choice recorded");
    assert_eq!(choice.variant, v.name());
    assert!(choice.measured.windows(2).all(|w| w[0].1 >= w[1].1), "ranked best first");
    if ctx.is_cpu() {
        // On a CPU driver a barrier is a thread switch: the naive kernel must never win.
        assert_ne!(v, MatmulVariant::Naive);
    }
    let text = std::fs::read_to_string(dir.join("autotune.json")).unwrap();
    assert!(text.contains(&class) && text.contains(ctx.autotune.adapter_key()));
    // A new context on the same adapter reads the choice back without re-tuning.
    let ctx2 = GpuContext::new(&opts).unwrap();
    assert_eq!(ctx2.autotune.lookup(&class), Some(choice));
    // Autotune off: the per-adapter default, no timing.
    let off = GpuContext::new(&GpuOptions { autotune: AutotuneMode::Off, cache_dir: None, ..test_options() }).unwrap();
    assert_eq!(matmul::choose_variant(&off, &g).unwrap(), MatmulVariant::default_for(&off));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Timestamps inside passes give one duration per dispatch (lavapipe and every Vulkan GPU
/// with timestamp support).
#[test]
fn profile_times_every_dispatch() {
    let Some(ctx) = gpu() else { return };
    let x = ctx.tensor("x", 1 << 16).unwrap();
    let mut s = Stream::new(ctx);
    elementwise::fill(&mut s, &x, 1.0).unwrap();
    elementwise::scale(&mut s, &x, 2.0).unwrap();
    match ctx.profile(s.dispatches()).unwrap() {
        Some(times) => assert_eq!(times.len(), 2),
        None => assert!(!ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)),
    }
    assert!(ctx.read(&x).unwrap().iter().all(|&v| v == 2.0));
}
