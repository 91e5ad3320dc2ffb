//! Tier 2: GPU kernels against their CPU references (the same suite `wgpt validate` prints), plus
//! the harness's own guarantees: a broken kernel is caught, results are deterministic, bad input
//! is refused before the GPU is touched, autotuning picks a passing variant and caches it.
//!
//! These need an adapter (lavapipe in CI). Without one they fail, unless WGPT_ALLOW_NO_GPU=1.

use wgpt::gpu::{AutotuneMode, DType, GpuContext, GpuOptions, GpuTensor, Shader};
use wgpt::kernels::embedding::{EmbeddingBuckets, GpuEmbeddingBuckets};
use wgpt::kernels::matmul::{self, Gemm, MatmulPrecision, MatmulVariant};
use wgpt::kernels::matmul_coop;
use wgpt::kernels::{attention, cross_entropy, elementwise, embedding, reduce, residual, smear, ve_gate, Stream};
use wgpt::model::memory::Category;
use wgpt::model::{GptConfig, ParamLayout};
use wgpt::reference::muon::MuonVariant;
use wgpt::shapes::AttnShape;
use wgpt::testing::{gpu, test_options};
use wgpt::train::optimizer::{Optimizer, StepScalars};
use wgpt::util::Rng;
use wgpt::validate::suite::{self, Row, SuiteOptions};

/// Run the suite rows whose kernel name contains `filter`; fail with every failing row's report.
fn suite_rows(ctx: &GpuContext, filter: &str, quick: bool) -> Vec<Row> {
    let seed = std::env::var("WGPT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(Rng::fresh_seed);
    // Every variant at every shape but the GPT-size products, where the two per-adapter defaults
    // run (all variants there: `wgpt validate`).
    let opts = SuiteOptions {
        filter: Some(filter.to_string()),
        quick,
        all_variants_at_gpt_shapes: false,
        ..SuiteOptions::new(seed)
    };
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
        .filter(|r| r.failed())
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
    let plan = wgpt::train::optimizer::plan(&layout);
    let mut rng = Rng::new(5);
    let g: Vec<f32> = (0..layout.len).map(|_| 0.01 * rng.normal() as f32).collect();
    let grads = ctx.upload("grads", &g).unwrap();
    let sc = StepScalars {
        adamw_step: 1,
        adamw_lr: [0.008, 0.3, 0.15, 0.005, 0.5, 0.2],
        muon_lr: 0.02,
        muon_momentum: 0.95,
        muon_weight_decay: 0.28,
        grad_scale: 1.0,
    };
    let run_on = |grads: &GpuTensor, grad_scale: f64| {
        let mut opt = Optimizer::new(ctx, &layout, MuonVariant::Plus).unwrap();
        let params = ctx.upload("params", &layout.init(3)).unwrap();
        for t in 1..=2 {
            let mut s = Stream::new(ctx);
            let step = StepScalars { adamw_step: t, grad_scale, ..sc.clone() };
            opt.step_with(&mut s, &params, grads, &step).unwrap();
            s.run().unwrap();
        }
        (ctx.read(&params).unwrap(), opt)
    };
    let run = || run_on(&grads, 1.0);
    let (p1, opt1) = run();
    let (p2, _) = run();
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    assert!(same(&p1, &p2));
    let state = opt1.state().unwrap();
    // Gradients carrying a loss scale of 2^16, divided out by the kernels: the same bits as
    // unscaled gradients (dividing by a power of two is exact), parameters and state alike.
    let scaled = ctx.upload("grads_scaled", &g.iter().map(|x| x * 65536.0).collect::<Vec<_>>()).unwrap();
    let (p3, opt3) = run_on(&scaled, 65536.0);
    assert!(same(&p1, &p3), "a loss scale of 2^16 changed the update");
    for ((n, a), (_, b)) in state.iter().zip(&opt3.state().unwrap()) {
        assert!(same(a, b), "a loss scale of 2^16 changed {n}");
    }
    assert!(state.iter().all(|(_, v)| v.iter().any(|&x| x != 0.0)), "every state buffer was written");
    let fresh = Optimizer::new(ctx, &layout, MuonVariant::Plus).unwrap();
    fresh.load_state(&state).unwrap();
    assert_eq!(fresh.state().unwrap(), state);
    let mut short = state.clone();
    short[1].1.pop();
    assert!(fresh.load_state(&short).unwrap_err().to_string().contains("adamw.v"));
    assert!(fresh.load_state(&state[1..]).unwrap_err().to_string().contains("adamw.m"));
    // The optimizer allocates exactly its plan (own context: the shared one is allocating for
    // parallel tests).
    let own = GpuContext::new(&test_options()).unwrap();
    let before = own.allocated_bytes();
    let _opt = Optimizer::new(&own, &layout, MuonVariant::Seed).unwrap();
    assert_eq!(own.allocated_bytes() - before, plan.total_bytes());
    assert_eq!(plan.total_bytes(), plan.bytes(Category::Optimizer));
}

#[test]
fn cross_entropy_matches_reference() {
    assert_all_pass("cross_entropy");
}

#[test]
fn argmax_matches_reference() {
    assert_all_pass("argmax");
}

#[test]
fn rmsnorm_matches_reference() {
    assert_all_pass("rmsnorm");
}

#[test]
fn embedding_matches_reference() {
    assert_all_pass("embedding");
}

#[test]
fn rope_matches_reference() {
    assert_all_pass("rope");
}

#[test]
fn relu2_matches_reference() {
    assert_all_pass("relu2");
}

#[test]
fn residual_matches_reference() {
    assert_all_pass("lambda_mix");
    assert_all_pass("backout");
}

#[test]
fn ve_gate_matches_reference() {
    assert_all_pass("ve_gate");
}

#[test]
fn smear_matches_reference() {
    assert_all_pass("smear");
}

/// The gradients that sum many contributions into one element (embedding rows of repeated tokens,
/// the lambdas, the smear and gate weights, the cross-entropy's logsumexp) are bit-identical run to
/// run, and identical whether the launchers allocate their temporaries or share one stream
/// workspace, recorded back to back in one stream.
#[test]
fn op_gradients_are_deterministic() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(7);
    // Embedding: 4096 positions over 300 tokens, skewed so some token repeats hundreds of times.
    let (n, vocab, w) = (4096, 300, 256);
    let idx: Vec<i32> = (0..n).map(|_| ((rng.uniform().powi(3) * vocab as f64) as i32).min(vocab as i32 - 1)).collect();
    let buckets = GpuEmbeddingBuckets::upload(ctx, &EmbeddingBuckets::new(&idx)).unwrap();
    let dout = ctx.upload("dout", &rng.vec_uniform(n * w, -1.0, 1.0)).unwrap();
    let dtable0 = rng.vec_uniform(vocab * w, -1.0, 1.0);
    // Lambda mix and backout over a (B·T, C) = (2048, 768) residual stream.
    let m = 2048 * 768;
    let (x, x0, dres) = (rng.vec_uniform(m, -2.0, 2.0), rng.vec_uniform(m, -2.0, 2.0), rng.vec_uniform(m, -1.0, 1.0));
    let (tx, tx0, tdres) =
        (ctx.upload("x", &x).unwrap(), ctx.upload("x0", &x0).unwrap(), ctx.upload("dres", &dres).unwrap());
    let params = ctx.upload("params", &rng.vec_uniform(128, -1.0, 1.0)).unwrap();
    // Smear (B, T, C) = (2, 1024, 768) and the value-embedding gate (N, Hkv, D) = (2048, 6, 128).
    let (b, t, c, hkv, d) = (2, 1024, 768, 6, 128);
    let kv = hkv * d;
    let dkv = ctx.upload("dkv", &rng.vec_uniform(2048 * kv, -1.0, 1.0)).unwrap();
    let ve = ctx.upload("ve", &rng.vec_uniform(2048 * kv, -1.0, 1.0)).unwrap();
    // Cross-entropy over a (64, 32768) logits chunk.
    let (rows, v) = (64, 32768);
    let logits0 = rng.vec_uniform(rows * v, -20.0, 20.0);
    let targets: Vec<i32> = (0..rows).map(|r| if r % 9 == 0 { -1 } else { (r * 511 % v) as i32 }).collect();
    let targets = ctx.upload_i32("targets", &targets).unwrap();
    let gs = ctx.upload("grad scale", &[1.0 / 57.0]).unwrap();

    let run = |workspace: bool| -> Vec<Vec<f32>> {
        let dtable = ctx.upload("dtable", &dtable0).unwrap();
        let grads = ctx.tensor("grads", 128).unwrap();
        let (dx, dx0, dmid) =
            (ctx.tensor("dx", m).unwrap(), ctx.tensor("dx0", m).unwrap(), ctx.tensor("dmid", m).unwrap());
        let de = ctx.tensor("de", m).unwrap();
        let (dve, du) = (ctx.tensor("dve", 2048 * kv).unwrap(), ctx.tensor("du", m).unwrap());
        let (losses, logits) = (ctx.tensor("losses", rows).unwrap(), ctx.upload("logits", &logits0).unwrap());
        let need = [
            residual::lambda_mix_backward_scratch_len(ctx, m),
            residual::backout_backward_scratch_len(ctx, m),
            smear::smear_backward_scratch_len(b, t),
            ve_gate::ve_gate_backward_scratch_len(2048, hkv),
        ];
        let mut s = if workspace {
            Stream::with_workspace(ctx, ctx.tensor("workspace", *need.iter().max().unwrap()).unwrap())
        } else {
            Stream::new(ctx)
        };
        let p = |i: usize, len: usize| params.view(i, len);
        let g = |i: usize, len: usize| grads.view(i, len);
        embedding::embedding_backward(&mut s, &dtable, &dout, &buckets, n, w).unwrap();
        residual::lambda_mix_backward(&mut s, &dx, &dx0, &g(0, 1), &g(1, 1), &tdres, &tx, &tx0, &p(0, 1), &p(1, 1))
            .unwrap();
        residual::backout_backward(&mut s, &dmid, &g(2, 1), &tdres, &tx, &p(2, 1)).unwrap();
        smear::smear_backward(&mut s, &de, &g(3, 24), &g(27, 1), &tdres, &tx0, &p(3, 24), &p(27, 1), b, t, c).unwrap();
        ve_gate::ve_gate_backward(
            &mut s,
            &dve,
            &du,
            &g(28, hkv * 12),
            &dkv,
            &tx,
            &ve,
            &p(28, hkv * 12),
            2048,
            c,
            hkv,
            d,
        )
        .unwrap();
        cross_entropy::cross_entropy(&mut s, &losses, true, &logits, &targets, rows, v, v, 15.0, &gs).unwrap();
        s.run().unwrap();
        [&dtable, &grads, &dx0, &de, &du, &losses, &logits].iter().map(|t| ctx.read(t).unwrap()).collect()
    };
    let bits =
        |v: &[Vec<f32>]| -> Vec<Vec<u32>> { v.iter().map(|x| x.iter().map(|f| f.to_bits()).collect()).collect() };
    let first = bits(&run(false));
    assert!(
        first[1][..28 + hkv * 12].iter().all(|&g| g != 0 && f32::from_bits(g).is_finite()),
        "every scalar gradient was written"
    );
    assert_eq!(first, bits(&run(false)), "second run differs");
    assert_eq!(first, bits(&run(true)), "a shared stream workspace changes the result");
}

/// Bad shapes, an undersized workspace and token ids outside the table are refused before
/// anything is recorded.
#[test]
fn op_launchers_refuse_bad_input() {
    let Some(ctx) = gpu() else { return };
    let t = |n: usize| ctx.tensor("t", n).unwrap();
    let mut s = Stream::new(ctx);
    let err = cross_entropy::cross_entropy(&mut s, &t(4), true, &t(4 * 64), &t(4), 4, 65, 64, 15.0, &t(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceeds the padded width"), "{err}");
    let err = cross_entropy::cross_entropy(&mut s, &t(4), true, &t(4 * 64), &t(4), 4, 64, 64, 0.0, &t(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("softcap"), "{err}");
    let err = cross_entropy::cross_entropy(&mut s, &t(3), true, &t(4 * 64), &t(4), 4, 64, 64, 15.0, &t(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("losses has 3 elements"), "{err}");
    let buckets = GpuEmbeddingBuckets::upload(ctx, &EmbeddingBuckets::new(&[3, 1, 9])).unwrap();
    let err = embedding::embedding_backward(&mut s, &t(9 * 4), &t(3 * 4), &buckets, 3, 4).unwrap_err().to_string();
    assert!(err.contains("outside the table"), "{err}");
    let mut small = Stream::with_workspace(ctx, t(10));
    let err = residual::backout_backward(&mut small, &t(1 << 20), &t(1), &t(1 << 20), &t(1 << 20), &t(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("workspace"), "{err}");
    assert!(s.dispatches().is_empty() && small.dispatches().is_empty(), "nothing may be recorded for refused input");
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
    let failed: Vec<&Row> = rows.iter().filter(|r| r.failed()).collect();
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
    let v = matmul::choose_variant(&ctx, &g, DType::F32).unwrap();
    let class = matmul::shape_class(&ctx, &g, DType::F32);
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
    assert_eq!(
        matmul::choose_variant(&off, &g, DType::F32).unwrap(),
        MatmulVariant::default_for(&off, MatmulPrecision::F32, DType::F32).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a first run prints about tuning (to the reporter, stderr by default), and what it may
/// skip: one notice naming the cache file, one line per class; a second class of the same layout
/// times only the first one's top three and those within 1.5× of its winner; a class too small to
/// time takes the checked default; once the budget is spent a new class gets the default and is
/// not cached, so a later run still tunes it.
#[test]
fn autotune_announces_itself_reports_each_class_and_keeps_to_its_budget() {
    if gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgpt-autotune-notice-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("autotune.json");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let capture = |ctx: &GpuContext| {
        let lines = lines.clone();
        ctx.autotune.set_reporter(move |l| lines.lock().unwrap().push(l.to_string()));
    };
    let taken = || std::mem::take(&mut *lines.lock().unwrap());
    let opts = GpuOptions { autotune: AutotuneMode::On, cache_dir: Some(dir.clone()), ..test_options() };
    let ctx = GpuContext::new(&opts).unwrap();
    capture(&ctx);
    let (g1, g2) = (Gemm::nt(256, 192, 128), Gemm::nt(256, 320, 128));
    let tiny = Gemm::nt(4, 4, 12).batched(2);
    assert_ne!(matmul::shape_class(&ctx, &g1, DType::F32), matmul::shape_class(&ctx, &g2, DType::F32));
    matmul::choose_variant(&ctx, &g1, DType::F32).unwrap();
    matmul::choose_variant(&ctx, &g2, DType::F32).unwrap();
    let v_tiny = matmul::choose_variant(&ctx, &tiny, DType::F32).unwrap();
    // Cached now: no more lines.
    matmul::choose_variant(&ctx, &g1, DType::F32).unwrap();
    let got = taken();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got[0], format!("first run on this adapter: timing kernel variants (cached in {})", file.display()));
    assert!(got[1].starts_with("  tuned matmul nt 256x192x128 f32: ") && got[1].contains("GFLOP/s"), "{got:#?}");
    assert!(got[2].starts_with("  tuned matmul nt 256x320x128 f32: ") && got[2].ends_with(" s"), "{got:#?}");
    assert!(got[3].starts_with("  tuned matmul nt 4x4x12 (batch 2) f32: ") && got[3].contains("too small"), "{got:#?}");
    let c1 = ctx.autotune.lookup(&matmul::shape_class(&ctx, &g1, DType::F32)).unwrap();
    let c2 = ctx.autotune.lookup(&matmul::shape_class(&ctx, &g2, DType::F32)).unwrap();
    let best1 = c1.measured[0].1;
    let close: Vec<&String> = c1
        .measured
        .iter()
        .enumerate()
        .filter(|(i, m)| *i < matmul::SHORT_LIST_TOP || m.1 * 1.5 >= best1)
        .map(|(_, m)| &m.0)
        .collect();
    assert!(c2.measured.iter().all(|m| close.contains(&&m.0)), "{c2:?} should time only {close:?}");
    assert!(c2.measured.len() < c1.measured.len(), "the short list is shorter: {c1:?} / {c2:?}");
    assert!(c1.measured.iter().all(|m| m.0 != "naive"), "the naive kernel is only a fallback: {c1:?}");
    // A layout's first class takes its short list from the layouts already timed: every
    // candidate is timed once per adapter, not once per layout.
    let g_nn = Gemm::nn(512, 192, 128);
    matmul::choose_variant(&ctx, &g_nn, DType::F32).unwrap();
    let cn = ctx.autotune.lookup(&matmul::shape_class(&ctx, &g_nn, DType::F32)).unwrap();
    assert!(cn.measured.len() < c1.measured.len(), "NN's first class is short-listed: {c1:?} / {cn:?}");
    taken();
    let off = GpuContext::new(&GpuOptions { autotune: AutotuneMode::Off, cache_dir: None, ..test_options() }).unwrap();
    let default = MatmulVariant::default_for(&off, MatmulPrecision::F32, DType::F32).unwrap();
    assert_eq!(v_tiny, default);
    let ct = ctx.autotune.lookup(&matmul::shape_class(&ctx, &tiny, DType::F32)).unwrap();
    assert!(ct.measured.is_empty(), "{ct:?}");
    assert!(ctx.autotune.spent() > std::time::Duration::ZERO);

    // A later process on the same adapter with no budget left: cached classes keep their choice,
    // a new class gets the default, uncached, and the budget note comes once.
    let spent = GpuContext::new(&GpuOptions { autotune_budget: std::time::Duration::ZERO, ..opts.clone() }).unwrap();
    capture(&spent);
    assert_eq!(matmul::choose_variant(&spent, &g1, DType::F32).unwrap().name(), c1.variant);
    let g3 = Gemm::nn(256, 192, 128);
    let class3 = matmul::shape_class(&spent, &g3, DType::F32);
    assert_eq!(matmul::choose_variant(&spent, &g3, DType::F32).unwrap(), default);
    assert_eq!(matmul::choose_variant(&spent, &g3, DType::F32).unwrap(), default);
    let got = taken();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].contains("budget spent") && got[0].contains("not cached"), "{got:#?}");
    assert_eq!(spent.autotune.lookup(&class3), None);
    assert!(!std::fs::read_to_string(&file).unwrap().contains(&class3));

    // With budget, the new class is tuned; the notice now says this adapter was seen before.
    let again = GpuContext::new(&opts).unwrap();
    capture(&again);
    matmul::choose_variant(&again, &g3, DType::F32).unwrap();
    let got = taken();
    assert!(got[0].starts_with("new shapes on this adapter: timing kernel variants (cached in "), "{got:#?}");
    assert!(std::fs::read_to_string(&file).unwrap().contains(&class3));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Autotuning ranks only variants whose precision the caller accepts: an f32 product never gets a
/// coop kernel, whatever is fastest; one that accepts f16 gets one wherever the adapter uses
/// them (never an f32 kernel there), and its choice is cached under its own class. Where cooperative matrices are not in use, an
/// f16-accepting product gets an f32 kernel, and f16 operands are refused with the reason.
#[test]
fn autotune_respects_the_accepted_precision() {
    if gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgpt-autotune-prec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = GpuOptions { autotune: AutotuneMode::On, cache_dir: Some(dir.clone()), ..test_options() };
    let ctx = GpuContext::new(&opts).unwrap();
    let g = Gemm::nt(96, 64, 80);
    let g16 = g.with_precision(MatmulPrecision::F16);
    assert!(matmul::candidates(&ctx, &g, DType::F32).iter().all(|v| v.precision() == MatmulPrecision::F32));
    assert_eq!(matmul::choose_variant(&ctx, &g, DType::F32).unwrap().precision(), MatmulPrecision::F32);
    assert_ne!(matmul::shape_class(&ctx, &g, DType::F32), matmul::shape_class(&ctx, &g16, DType::F32));
    let coop = matmul_coop::coop_status(&ctx).is_available();
    let cands16 = matmul::candidates(&ctx, &g16, DType::F32);
    assert_eq!(cands16.iter().any(|v| v.precision() == MatmulPrecision::F16), coop);
    assert!(cands16.iter().all(|v| v.precision() <= MatmulPrecision::F16), "no f16 accumulation unless asked");
    assert!(
        !coop || cands16.iter().all(|v| v.precision() == MatmulPrecision::F16),
        "an f16 product runs on the f16 kernels wherever the adapter has them: {cands16:?}"
    );
    let v16 = matmul::choose_variant(&ctx, &g16, DType::F32).unwrap();
    assert!(cands16.contains(&v16));
    let off = GpuContext::new(&GpuOptions { autotune: AutotuneMode::Off, cache_dir: None, ..test_options() }).unwrap();
    let d16 = MatmulVariant::default_for(&off, MatmulPrecision::F16, DType::F32).unwrap();
    assert_eq!(
        d16.precision() == MatmulPrecision::F16,
        coop,
        "the f16 default is a coop kernel exactly where coop is in use"
    );
    let r = MatmulVariant::default_for(&off, MatmulPrecision::F16, DType::F16);
    if coop {
        assert!(matches!(r.unwrap(), MatmulVariant::Coop(_)));
    } else {
        let err = r.unwrap_err().to_string();
        assert!(err.contains("cooperative-matrix") && err.contains("not used"), "{err}");
    }
    if expect_coop() {
        assert!(coop, "WGPT_EXPECT_COOP=1 but {}", matmul_coop::coop_status(&ctx).describe());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Set where the adapter is known to have cooperative matrices (`cargo xtask lavapipe` sets it),
/// so a driver that silently loses them fails the run instead of skipping the coop rows.
fn expect_coop() -> bool {
    std::env::var("WGPT_EXPECT_COOP").is_ok_and(|v| v == "1")
}

/// The coop rows: on an adapter with cooperative matrices every row runs and passes, in both tile
/// sizes (16×16 unadvertised on lavapipe) and the three operand storages (f32, f16, and f32 A
/// with f16 B, the model's f16 weight copies); without them each says "not
/// available on this adapter" and counts as not run, never as passed.
#[test]
fn coop_rows_run_where_available_and_are_not_run_elsewhere() {
    let Some(ctx) = gpu() else { return };
    let rows = suite_rows(ctx, "matmul_nn", true);
    let coop: Vec<&Row> = rows.iter().filter(|r| r.variant.starts_with("coop")).collect();
    assert!(!coop.is_empty());
    if ctx.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        assert!(coop.iter().all(|r| r.ran() && r.pass), "failing coop rows");
        for tile in ["coop8_", "coop16_"] {
            for storage in [" f32 in", " f16 in", " f32·f16 in"] {
                assert!(
                    coop.iter().any(|r| r.variant.starts_with(tile) && r.variant.contains(storage)),
                    "{tile}{storage}"
                );
            }
        }
    } else {
        assert!(!expect_coop(), "WGPT_EXPECT_COOP=1 but the adapter has no cooperative matrices");
        assert!(coop.iter().all(|r| !r.ran() && !r.pass && !r.failed()));
        assert!(coop
            .iter()
            .all(|r| r.not_run.as_deref() == Some("cooperative matrices not available on this adapter")));
    }
}

/// The f16 weight copies change nothing but the bytes read: a coop product whose B is the f16
/// copy `cast_f32_to_f16` made on the GPU equals, bit for bit, the same variant staging the f32
/// weights (both convert with the same `f16(x)`), in the three layouts the model runs, at shapes
/// that are multiples of no tile and with B a view at an odd offset into its buffer.
#[test]
fn products_on_f16_weight_copies_equal_staging_the_f32_weights() {
    use wgpt::kernels::cast;
    let Some(ctx) = gpu() else { return };
    if !matmul_coop::coop_status(ctx).is_available() {
        assert!(!expect_coop(), "WGPT_EXPECT_COOP=1 but {}", matmul_coop::coop_status(ctx).describe());
        return;
    }
    let v = MatmulVariant::default_for(ctx, MatmulPrecision::F16, DType::F16).unwrap();
    let mut rng = Rng::new(77);
    for g in [Gemm::nt(70, 37, 45), Gemm::nn(33, 50, 29), Gemm::nt(9, 130, 64)] {
        let g = g.with_precision(MatmulPrecision::F16);
        let a = rng.vec_uniform(g.a_len(), -1.0, 1.0);
        let w = rng.vec_uniform(g.b_len(), -0.2, 0.2);
        let ta = ctx.upload("A", &a).unwrap();
        let tw = ctx.upload("W", &w).unwrap();
        let w16 = ctx.tensor_f16("W f16", g.b_len() + 1).unwrap().view(1, g.b_len());
        let mut s = Stream::new(ctx);
        cast::cast_f32_to_f16(&mut s, &w16, &tw).unwrap();
        s.run().unwrap();
        let mut out = Vec::new();
        for b in [&tw, &w16] {
            let tc = ctx.upload("C", &vec![f32::NAN; g.c_len()]).unwrap();
            let mut s = Stream::new(ctx);
            matmul::matmul_variant(&mut s, v, &tc, &ta, b, &g, 1.0, 0.0).unwrap();
            s.run().unwrap();
            out.push(ctx.read(&tc).unwrap());
        }
        assert!(out[0].iter().all(|x| x.is_finite()), "{g:?}");
        let same = out[0].iter().zip(&out[1]).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{}: the product on the f16 copy differs from staging the f32 weights ({g:?})", v.name());
    }
}

/// One staging index off in the coop kernel (A's k offset) must fail its rows, in both tile
/// sizes and all layouts, and the start-up self-test must then refuse cooperative matrices.
#[test]
fn broken_coop_staging_is_caught() {
    let Some(shared) = gpu() else { return };
    if !shared.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return;
    }
    let ctx = GpuContext::new(&test_options()).unwrap();
    let good = Shader::MatmulCoop.source();
    let needle = "return f16(a[a0 + m * p.lda + k]);";
    assert_eq!(good.matches(needle).count(), 1, "the staging load this test breaks has moved");
    ctx.replace_shader_source(Shader::MatmulCoop, good.replace(needle, "return f16(a[a0 + m * p.lda + k + 1u]);"));
    for layout in ["matmul_nt", "matmul_nn"] {
        let rows = suite_rows(&ctx, layout, true);
        // The chunked rows run on a second context, with the real shaders.
        let coop: Vec<&Row> = rows
            .iter()
            .filter(|r| r.variant.starts_with("coop") && r.shape != "1x1x1" && !r.kernel.contains("chunked"))
            .collect();
        assert!(!coop.is_empty());
        let passed: Vec<String> = coop.iter().filter(|r| !r.failed()).map(|r| suite::format_row(r)).collect();
        assert!(passed.is_empty(), "{layout}: coop rows passed with a broken staging index:\n{}", passed.join("\n"));
        assert!(rows.iter().filter(|r| !r.variant.starts_with("coop")).all(|r| r.pass), "f32 rows are unaffected");
    }
    assert!(!matmul_coop::coop_status(&ctx).is_available(), "the self-test must refuse the broken kernel");
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

#[test]
fn attention_matches_reference() {
    assert_all_pass("attention");
}

/// Random q/k/v/dout for an attention problem (q, k unit-RMS ×1.2 per head as the model feeds them).
fn attention_inputs(rng: &mut Rng, b: usize, t: usize, h: usize, hkv: usize, d: usize) -> [Vec<f32>; 4] {
    let rows = |rng: &mut Rng, n: usize, gain: f32| {
        let mut x = rng.vec_uniform(n * d, -1.0, 1.0);
        for row in x.chunks_mut(d) {
            let rms = (row.iter().map(|e| e * e).sum::<f32>() / d as f32).sqrt();
            row.iter_mut().for_each(|e| *e *= gain / rms);
        }
        x
    };
    let q = rows(rng, b * t * h, 1.2);
    let k = rows(rng, b * t * hkv, 1.2);
    let v = rows(rng, b * t * hkv, 1.0);
    let dout = rng.vec_uniform(b * t * h * d, -1.0, 1.0);
    [q, k, v, dout]
}

/// Forward then backward on `ctx`; returns out, lse, dq, dk, dv.
#[allow(clippy::too_many_arguments)]
fn attention_run(
    ctx: &GpuContext,
    inputs: &[Vec<f32>; 4],
    b: usize,
    t: usize,
    h: usize,
    hkv: usize,
    d: usize,
    window: usize,
    precision: MatmulPrecision,
) -> [Vec<f32>; 5] {
    let up = |x: &[f32]| ctx.upload("x", x).unwrap();
    let (q, k, v, dout) = (up(&inputs[0]), up(&inputs[1]), up(&inputs[2]), up(&inputs[3]));
    let (nq, nkv) = (b * t * h * d, b * t * hkv * d);
    let out = ctx.tensor("out", nq).unwrap();
    let lse = ctx.tensor("lse", b * t * h).unwrap();
    let (dq, dk, dv) = (ctx.tensor("dq", nq).unwrap(), ctx.tensor("dk", nkv).unwrap(), ctx.tensor("dv", nkv).unwrap());
    let scale = 1.0 / (d as f32).sqrt();
    let shape = AttnShape { b, t, h, hkv, d, window, scale, precision };
    let mut s = Stream::new(ctx);
    attention::attention_forward(&mut s, &out, &lse, &q, &k, &v, &shape).unwrap();
    attention::attention_backward(&mut s, &dq, &dk, &dv, &dout, &q, &k, &v, &out, &lse, &shape).unwrap();
    s.run().unwrap();
    [&out, &lse, &dq, &dk, &dv].map(|x| ctx.read(x).unwrap())
}

fn bitwise_equal(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()))
}

/// The backward sums dk/dv over queries and heads in a fixed order (no atomics): two runs agree
/// to the bit, in f32 and on the coop kernels (f16, where the adapter uses them; there the
/// results must also differ from f32's, or the coop kernels did not run).
#[test]
fn attention_is_deterministic() {
    let Some(ctx) = gpu() else { return };
    let (b, t, h, hkv, d) = (2, 150, 4, 2, 64);
    let inputs = attention_inputs(&mut Rng::new(7), b, t, h, hkv, d);
    let mut results = Vec::new();
    for precision in [MatmulPrecision::F32, MatmulPrecision::F16] {
        let first = attention_run(ctx, &inputs, b, t, h, hkv, d, 40, precision);
        let second = attention_run(ctx, &inputs, b, t, h, hkv, d, 40, precision);
        assert!(first.iter().all(|x| x.iter().all(|e| e.is_finite())), "{precision:?}");
        assert!(bitwise_equal(&first, &second), "two runs of attention differ ({precision:?})");
        results.push(first);
    }
    if matmul_coop::coop_status(ctx).is_available() {
        assert!(!bitwise_equal(&results[0], &results[1]), "f16 attention gave f32's bits: coop kernels not used?");
    }
}

/// Batches are independent: a context whose storage binding holds only a couple of batch rows
/// splits the problem into chunks, and the results are bit-identical to the unsplit run.
#[test]
fn attention_chunks_over_batches() {
    let Some(ctx) = gpu() else { return };
    let (b, t, h, hkv, d) = (5, 45, 2, 1, 64);
    let inputs = attention_inputs(&mut Rng::new(11), b, t, h, hkv, d);
    // One batch row of q is 45·2·64·4 = 23,040 bytes: a 64 KiB binding holds two.
    let small = GpuContext::new(&GpuOptions { max_binding_bytes: Some(64 << 10), ..test_options() }).unwrap();
    for precision in [MatmulPrecision::F32, MatmulPrecision::F16] {
        let whole = attention_run(ctx, &inputs, b, t, h, hkv, d, 20, precision);
        let split = attention_run(&small, &inputs, b, t, h, hkv, d, 20, precision);
        assert!(bitwise_equal(&whole, &split), "chunked attention differs from the unchunked run ({precision:?})");
    }
}

#[test]
fn attention_refuses_bad_input_before_dispatch() {
    let Some(ctx) = gpu() else { return };
    let (b, t, h, hkv, d) = (1, 8, 4, 2, 64);
    let t4 = |n: usize| ctx.tensor("x", n).unwrap();
    let (q, k, v, out, lse) =
        (t4(b * t * h * d), t4(b * t * hkv * d), t4(b * t * hkv * d), t4(b * t * h * d), t4(b * t * h));
    let mut s = Stream::new(ctx);
    let err = |r: wgpt::Result<()>| r.unwrap_err().to_string();
    let e = err(attention::attention_forward(
        &mut s,
        &out,
        &lse,
        &q,
        &k,
        &v,
        &AttnShape { b, t, h, hkv: 3, d, window: t, scale: 0.1, precision: MatmulPrecision::F32 },
    ));
    assert!(e.contains("not a multiple of Hkv"), "{e}");
    let e = err(attention::attention_forward(
        &mut s,
        &out,
        &lse,
        &q,
        &k,
        &v,
        &AttnShape { b, t, h, hkv, d: 66, window: t, scale: 0.1, precision: MatmulPrecision::F32 },
    ));
    assert!(e.contains("multiple of 4"), "{e}");
    // f16 v: only the coop kernels read it, and an f32 shape never runs them; f16 q: nothing does.
    let shape = AttnShape { b, t, h, hkv, d, window: t, scale: 0.1, precision: MatmulPrecision::F32 };
    let v16 = ctx.tensor_f16("v16", b * t * hkv * d).unwrap();
    let e = err(attention::attention_forward(&mut s, &out, &lse, &q, &k, &v16, &shape));
    assert!(e.contains("only the cooperative-matrix kernels read f16"), "{e}");
    let q16 = ctx.tensor_f16("q16", b * t * h * d).unwrap();
    let e = err(attention::attention_forward(&mut s, &out, &lse, &q16, &k, &v, &shape));
    assert!(e.contains("q is F16; attention reads and writes it as f32"), "{e}");
    let e = err(attention::attention_forward(
        &mut s,
        &out,
        &lse,
        &q,
        &k,
        &v,
        &AttnShape { b, t: t + 1, h, hkv, d, window: t, scale: 0.1, precision: MatmulPrecision::F32 },
    ));
    assert!(e.contains("out has 2048 elements, the shape needs 2304"), "{e}");
    // A view that starts off a multiple of 4 cannot be read as vec4 rows.
    let odd = t4(b * t * h * d + 1).view(1, b * t * h * d);
    let e = err(attention::attention_forward(
        &mut s,
        &odd,
        &lse,
        &q,
        &k,
        &v,
        &AttnShape { b, t, h, hkv, d, window: t, scale: 0.1, precision: MatmulPrecision::F32 },
    ));
    assert!(e.contains("starts at element 1"), "{e}");
    // An output in the same buffer as an input: wgpu would reject the dispatch.
    let shared = t4(2 * b * t * h * d);
    let (q2, out2) = (shared.view(0, b * t * h * d), shared.view(b * t * h * d, b * t * h * d));
    let e = err(attention::attention_forward(
        &mut s,
        &out2,
        &lse,
        &q2,
        &k,
        &v,
        &AttnShape { b, t, h, hkv, d, window: t, scale: 0.1, precision: MatmulPrecision::F32 },
    ));
    assert!(e.contains("share a buffer"), "{e}");
    let e = err(attention::attention_backward(
        &mut s,
        &q,
        &k,
        &v,
        &out,
        &q,
        &k,
        &v,
        &out,
        &lse,
        &AttnShape { b, t, h, hkv, d, window: t, scale: f32::NAN, precision: MatmulPrecision::F32 },
    ));
    assert!(e.contains("scale must be finite"), "{e}");
    assert!(s.dispatches().is_empty(), "nothing may be recorded for refused input");
}

#[test]
fn attention_decode_matches_reference() {
    assert_all_pass("attention_decode");
}

/// Decoding position t against caches holding the k and v rows of a sequence gives row t of the
/// full forward over it (to the attention tolerance: the two kernels sum in different orders),
/// inside the first key block, at its edge and beyond, with a window; and two runs agree to the bit.
#[test]
fn attention_decode_agrees_with_the_forward_rows() {
    let Some(ctx) = gpu() else { return };
    let (t, h, hkv, d, window) = (140, 4, 2, 64, 100);
    let [q, k, v, _] = attention_inputs(&mut Rng::new(3), 1, t, h, hkv, d);
    let scale = 1.0 / (d as f32).sqrt();
    let up = |x: &[f32]| ctx.upload("x", x).unwrap();
    let (tq, tk, tv) = (up(&q), up(&k), up(&v));
    let (out, lse) = (ctx.tensor("out", t * h * d).unwrap(), ctx.tensor("lse", t * h).unwrap());
    let mut s = Stream::new(ctx);
    attention::attention_forward(
        &mut s,
        &out,
        &lse,
        &tq,
        &tk,
        &tv,
        &AttnShape { b: 1, t, h, hkv, d, window, scale, precision: MatmulPrecision::F32 },
    )
    .unwrap();
    s.run().unwrap();
    let full = ctx.read(&out).unwrap();
    let decode = |pos: usize| {
        let q_row = up(&q[pos * h * d..(pos + 1) * h * d]);
        let o = ctx.tensor("o", h * d).unwrap();
        let mut s = Stream::new(ctx);
        attention::attention_decode(&mut s, &o, &q_row, &tk, &tv, pos, h, hkv, d, window, scale).unwrap();
        s.run().unwrap();
        ctx.read(&o).unwrap()
    };
    for pos in [0, 1, 63, 64, 100, 101, 139] {
        let got = decode(pos);
        let want = &full[pos * h * d..(pos + 1) * h * d];
        if let Err(stats) = wgpt::validate::compare(&got, want, wgpt::validate::attention_tolerance()) {
            panic!("position {pos}: decode differs from the forward's row: {stats}");
        }
        assert!(bitwise_equal(&[got], &[decode(pos)]), "position {pos}: two decode runs differ");
    }
}

#[test]
fn attention_decode_refuses_bad_input_before_dispatch() {
    let Some(ctx) = gpu() else { return };
    let (rows, h, hkv, d) = (8, 4, 2, 64);
    let t4 = |n: usize| ctx.tensor("x", n).unwrap();
    let (q, out, k, v) = (t4(h * d), t4(h * d), t4(rows * hkv * d), t4(rows * hkv * d));
    let mut s = Stream::new(ctx);
    let err = |r: wgpt::Result<()>| r.unwrap_err().to_string();
    let e = err(attention::attention_decode(&mut s, &out, &q, &k, &v, rows, h, hkv, d, 100, 0.1));
    assert!(e.contains("position 8 needs at least 9 rows"), "{e}");
    let e = err(attention::attention_decode(&mut s, &out, &q, &k, &v, 3, h, 3, d, 100, 0.1));
    assert!(e.contains("not a multiple of Hkv"), "{e}");
    let e = err(attention::attention_decode(&mut s, &k.view(0, h * d), &q, &k, &v, 3, h, hkv, d, 100, 0.1));
    assert!(e.contains("share a buffer"), "{e}");
    // A workspace too small for the partials of 9 keys (4 heads × 1 block × (64 + 4)).
    let mut small = Stream::with_workspace(ctx, t4(100));
    let e = err(attention::attention_decode(&mut small, &out, &q, &k, &v, 7, h, hkv, d, 100, 0.1));
    assert!(e.contains("272 f32 of stream workspace"), "{e}");
    assert!(s.dispatches().is_empty() && small.dispatches().is_empty(), "nothing may be recorded for refused input");
}

/// A launcher cannot pass another family's parameter struct: the dispatch is refused (rather than
/// the shader reading misplaced immediates), so the only structs that reach a shader are those
/// the kernel table names and `tests/shaders.rs` checks.
#[test]
fn dispatch_refuses_parameters_of_another_shader() {
    use wgpt::gpu::Kernel;
    let Some(ctx) = gpu() else { return };
    let x = ctx.tensor("x", 4).unwrap();
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let w = x.window(0, 4, align, ctx.max_binding_bytes()).unwrap();
    let pipeline = ctx.pipeline(Kernel::ElementwiseFill, &wgpt::gpu::Overrides::new()).unwrap();
    let rope: wgpt::kernels::rope::RopeParams = bytemuck::Zeroable::zeroed();
    let err = ctx.dispatch(Kernel::ElementwiseFill, pipeline.clone(), &[w], &rope, [1, 1, 1]).unwrap_err().to_string();
    assert!(err.contains("immediates are RopeParams but shaders/elementwise.wgsl declares ElementwiseParams"), "{err}");
    let right: wgpt::kernels::elementwise::ElementwiseParams = bytemuck::Zeroable::zeroed();
    ctx.dispatch(Kernel::ElementwiseFill, pipeline, &[w], &right, [1, 1, 1]).unwrap();
}

/// Every `Kernel` is checked against its reference by at least one validation row: a row is
/// credited with the kernels its contexts ran for it (`Row::kernels`; a row that cannot run on
/// this adapter, with those it would have run). Runs each row name's first case only, a subset of
/// the suite, so a kernel covered here is covered by `wgpt validate`; on its own contexts, so
/// that parallel tests' dispatches are not credited to its rows.
#[test]
fn every_kernel_has_validation_rows() {
    use std::collections::BTreeMap;
    use wgpt::gpu::Kernel;
    if gpu().is_none() {
        return;
    }
    let ctx = GpuContext::new(&test_options()).unwrap();
    let opts =
        SuiteOptions { quick: true, all_variants_at_gpt_shapes: false, first_case_only: true, ..SuiteOptions::new(1) };
    let rows = suite::run(&ctx, &opts, &mut |_| {}).expect("suite ran");
    let mut by_kernel: BTreeMap<Kernel, Vec<&str>> = BTreeMap::new();
    for r in &rows {
        for &k in &r.kernels {
            by_kernel.entry(k).or_default().push(&r.kernel);
        }
    }
    for (k, names) in &by_kernel {
        let mut names = names.clone();
        names.dedup();
        eprintln!("{k:?}: {}", names.join(", "));
    }
    let missing: Vec<&Kernel> = Kernel::ALL.iter().filter(|k| !by_kernel.contains_key(k)).collect();
    assert!(missing.is_empty(), "kernels without a validation row: {missing:?} ({} rows ran)", rows.len());
}

/// `WGPT_MATMUL_VARIANT` is read once into `GpuOptions` and checked when the context opens, not
/// at the first product: a bad name fails `GpuContext::new` naming the variable and the choices;
/// a good one is what every product whose precision admits it gets.
#[test]
fn forced_matmul_variant_is_checked_when_the_context_opens() {
    if gpu().is_none() {
        return;
    }
    let bad = GpuOptions { matmul_variant: Some("bogus_8x8".into()), ..test_options() };
    let err = GpuContext::new(&bad).err().expect("a bad variant name is refused").to_string();
    assert!(
        err.starts_with("environment variable WGPT_MATMUL_VARIANT: `bogus_8x8` is not a variant this adapter can run")
            && err.contains("choose from: naive, "),
        "{err}"
    );
    let ctx = GpuContext::new(&GpuOptions { matmul_variant: Some("naive".into()), ..test_options() }).unwrap();
    assert_eq!(ctx.forced_matmul_variant(), Some(MatmulVariant::Naive));
    let g = Gemm::new(false, true, 8, 8, 8);
    assert_eq!(matmul::choose_variant(&ctx, &g, DType::F32).unwrap(), MatmulVariant::Naive);
}
