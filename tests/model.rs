//! The GPU model (f32, every op a WGSL kernel) against the f64 CPU reference model, whose own
//! gradients are checked against finite differences in `reference::model`.
//!
//! Acceptance (issue 3): loss rel err ≤ 1e-5 and, for every parameter tensor,
//! ‖g_gpu − g_ref‖ / ‖g_ref‖ ≤ 1e-4, with every parameter moved off its initial value first so
//! zero-initialised projections and lambdas cannot hide a wrong gradient.

use wgpt::config::{MemorySpec, Recompute};
use wgpt::kernels::matmul::MatmulPrecision;
use wgpt::model::gpu::{GpuModel, Pass};
use wgpt::model::{GptConfig, ParamLayout};
use wgpt::reference::model::RefGpt;
use wgpt::testing::gpu;
use wgpt::util::Rng;

/// Parameters moved off init: each element gets relative noise plus an absolute floor, so zero
/// projections, the zero smear lambda and the constant lambdas all become generic values.
fn perturbed(layout: &ParamLayout, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut p: Vec<f32> =
        layout.init(seed).iter().map(|&x| x + (0.3 * rng.normal() as f32) * (x.abs() + 0.02)).collect();
    p[layout.range("smear_lambda").0] = 0.5;
    p
}

fn batch(cfg: &GptConfig, b: usize, seed: u64, ignore_every: usize) -> (Vec<i32>, Vec<i32>) {
    let mut rng = Rng::new(seed);
    let n = b * cfg.sequence_len;
    let idx = (0..n).map(|_| (rng.next_u64() % cfg.vocab_size as u64) as i32).collect();
    let targets = (0..n)
        .map(|i| {
            if ignore_every > 0 && i % ignore_every == 3 {
                -1
            } else {
                (rng.next_u64() % cfg.vocab_size as u64) as i32
            }
        })
        .collect();
    (idx, targets)
}

/// What a comparison allows: the f32 model's bounds (issue 3), or those of `train.precision = "f16"`.
struct ModelTol {
    loss_rel: f64,
    grad_rel: f64,
}

/// f32 everywhere: loss rel err ≤ 1e-5, every gradient's relative norm error ≤ 1e-4.
const F32_TOL: ModelTol = ModelTol { loss_rel: 1e-5, grad_rel: 1e-4 };

/// `train.precision = "f16"` against the unrounded f64 reference. Every linear layer's inputs, and
/// attention's (q, k, v, dout, and its P and dS before their second products), are rounded to f16 (relative error uniform in ±u, u = 2^−11), so each product's output carries an
/// independent relative perturbation of rms √(2/3)·u ≈ 4.0e-4 (both operands rounded; the f32
/// accumulation adds nothing comparable, see `validate::matmul_coop_tolerance`). A gradient is
/// the end of a chain of such products: at depth 2 the longest, to the first layer's weights,
/// passes through ≈ 18 of them (4 on each layer's path, forward and backward, the head's two and
/// the weight-gradient product), and independent perturbations add in quadrature: √18·4e-4 ≈
/// 1.7e-3 relative. Softmax, ReLU² and RMSNorm pass relative perturbations on with gains of
/// order 1 (ReLU²: 2), so the gradients' relative-norm bound is 5e-3, 3× the quadrature sum.
/// That holds only while the gradients entering the products are f16 normals (≥ 6.1e-5): below,
/// the absolute rounding step 2^−24 makes relative errors grow as 3e-8/|g|. This model's
/// attention gradients are ~1e-6 at a loss gradient of 1/(B·T), so the test scales the loss by
/// 2^10 (as a loss scaler does; the mixed-precision issue makes it dynamic) and divides the
/// gradients back; measured worst 1.04e-3 (attention on the coop kernels too; 1.3e-3 before). The loss is a mean over every position of log-softmax values
/// whose logits carry the head's perturbation (≈ 4e-4 of each logit, logits O(1)), so ≈ 4e-4
/// absolute per position, averaging down over the batch: 1e-3 relative of a loss near ln V ≈ 6
/// holds with a wide margin. Measured values are printed.
const F16_TOL: ModelTol = ModelTol { loss_rel: 1e-3, grad_rel: 5e-3 };

fn check(cfg: &GptConfig, b: usize, recompute: Recompute, seed: u64) {
    check_scaled(cfg, b, recompute, seed, MatmulPrecision::F32, 1.0, &F32_TOL);
}

#[allow(clippy::too_many_arguments)]
fn check_scaled(
    cfg: &GptConfig,
    b: usize,
    recompute: Recompute,
    seed: u64,
    matmul: MatmulPrecision,
    loss_scale: f32,
    tol: &ModelTol,
) -> f64 {
    let Some(ctx) = gpu() else { return 0.0 };
    let layout = ParamLayout::new(cfg);
    let params = perturbed(&layout, seed);
    let (idx, targets) = batch(cfg, b, seed + 1, 37);

    let p64: Vec<f64> = params.iter().map(|&x| x as f64).collect();
    let reference = RefGpt::new(cfg, &layout, &p64);
    let fw = reference.forward(&idx, &targets, b, cfg.sequence_len);
    let want = reference.backward(&fw, &idx, &targets, b, cfg.sequence_len, 1.0 / fw.valid as f64);
    // The same reference evaluated in f32 (plain loops, f32 rounding): how far from the f64
    // gradient any f32 computation lands on each tensor, i.e. the tensor's conditioning.
    let ref32 = RefGpt::new(cfg, &layout, &params);
    let fw32 = ref32.forward(&idx, &targets, b, cfg.sequence_len);
    let want32 = ref32.backward(&fw32, &idx, &targets, b, cfg.sequence_len, 1.0 / fw32.valid as f64);

    let mem = MemorySpec { recompute, logits_chunk_rows: 100 }; // several chunks, a ragged last one
    let mut model = GpuModel::new(ctx, cfg, b, &mem).unwrap().with_matmul(matmul).unwrap();
    model.loss_scale = loss_scale;
    model.write_params(&params).unwrap();
    model.set_batch(&idx, &targets, 1).unwrap();
    model.zero_grads().unwrap();
    let loss = model.forward_backward().unwrap();
    let got: Vec<f32> = model.read_grads().unwrap().iter().map(|g| g / loss_scale).collect();

    let rel = (loss - fw.loss).abs() / fw.loss.abs();
    eprintln!("{recompute:?} {matmul:?}: loss gpu {loss:.8} ref {:.8} rel err {rel:.2e}", fw.loss);
    assert!(rel <= tol.loss_rel, "loss rel err {rel:e}");
    let mut worst = (0.0f64, String::new());
    for (spec, &off) in layout.specs.iter().zip(&layout.offsets) {
        let r = off..off + spec.numel();
        let num: f64 = got[r.clone()].iter().zip(&want[r.clone()]).map(|(&g, &w)| (g as f64 - w).powi(2)).sum();
        let den: f64 = want[r].iter().map(|w| w * w).sum();
        // A gradient that is analytically zero has no relative error. One exists by construction
        // when the backout layer (L/2) is the last block (depth ≤ 2): x_mid is then the final
        // stream, x_f = (1 − λ)·x feeds a scale-invariant RMSNorm, and ∂loss/∂λ vanishes up to
        // eps (the f64 reference gives ~1e-9). Such a tensor is held to an absolute bound instead.
        if den.sqrt() < 1e-8 {
            // With f16 inputs the ~0 gradient is ~0 up to the same relative perturbation of the
            // terms it cancels (O(1) each): 1e-8 for f32, 1e-5 for f16.
            let abs_bound = if matmul == MatmulPrecision::F32 { 1e-8 } else { 1e-5 };
            assert!(num.sqrt() < abs_bound, "{}: analytically ~0 gradient, got error {:e}", spec.name, num.sqrt());
            eprintln!(
                "{recompute:?}: {} gradient is analytically ~0 ({:.1e}); abs err {:.1e}",
                spec.name,
                den.sqrt(),
                num.sqrt()
            );
            continue;
        }
        let e = (num / den).sqrt();
        if e > worst.0 {
            worst = (e, spec.name.clone());
        }
        // A gradient that cancels heavily (depth 4's backout λ: x_f = x − λ·x_mid feeds a
        // scale-invariant RMSNorm, so Σ dx·x_mid nearly vanishes) is inexact in any f32
        // evaluation: the f32 reference itself errs by 3.6e-5 there, 100× its error elsewhere.
        // The GPU rounds in other orders (tree reductions, the driver's exp and inverseSqrt),
        // measured 3–5× the f32 reference's error on every tensor, so a tensor is held to
        // max(bound, 8 × the f32 reference's error): the floor acts only where f32 itself cannot
        // meet the bound, and the f16 bound already covers f32's conditioning.
        let r = off..off + spec.numel();
        let n32: f64 = want32[r.clone()].iter().zip(&want[r]).map(|(&g, &w)| (g as f64 - w).powi(2)).sum();
        let e32 = (n32 / den).sqrt();
        let bound = if matmul == MatmulPrecision::F32 { tol.grad_rel.max(8.0 * e32) } else { tol.grad_rel };
        if bound > tol.grad_rel {
            eprintln!(
                "  {}: ill-conditioned in f32 (f32 reference err {e32:.2e}): bound {bound:.2e}, got {e:.2e}",
                spec.name
            );
        }
        assert!(e <= bound, "{}: ‖g_gpu − g_ref‖/‖g_ref‖ = {e:e} (bound {bound:e})", spec.name);
    }
    eprintln!("{recompute:?} {matmul:?} x{loss_scale}: worst gradient rel err {:.2e} ({})", worst.0, worst.1);
    worst.0
}

/// (a) depth 2, head dim 64, vocab 512, T 64, B 2, windows "SL".
fn config_a() -> GptConfig {
    let mut cfg = GptConfig::new(2, 2, 2, 128, 512, 64, "SL").unwrap();
    // At T = 64 nanochat's short window (a quarter context rounded up to 128) covers everything;
    // use a real sliding window so the windowed path is exercised.
    cfg.windows[0] = 16;
    cfg
}

#[test]
fn depth2_matches_reference() {
    check(&config_a(), 2, Recompute::None, 10);
}

/// `train.precision = "f16"`: every linear layer's three products and attention's (Q·Kᵀ, P·V and
/// their gradients) on the cooperative-matrix kernels (f16 inputs, f32 accumulation and softmax),
/// the rest of the model unchanged, against the same f64
/// reference; the bound is derived at [`F16_TOL`]. Where the adapter has no cooperative matrices
/// the f32 kernels run (the model logs it) and the bound holds trivially; CI runs this under
/// Mesa 26 lavapipe, where they exist, and `WGPT_EXPECT_COOP=1` makes their absence a failure.
#[test]
fn depth2_matches_reference_with_f16_matmuls() {
    let Some(ctx) = gpu() else { return };
    let coop = wgpt::kernels::matmul_coop::coop_status(ctx).is_available();
    if std::env::var("WGPT_EXPECT_COOP").is_ok_and(|v| v == "1") {
        assert!(coop, "WGPT_EXPECT_COOP=1 but cooperative matrices are not in use");
    }
    eprintln!("cooperative matrices: {}", wgpt::kernels::matmul_coop::coop_status(ctx).describe());
    let scaled = check_scaled(&config_a(), 2, Recompute::None, 10, MatmulPrecision::F16, 1024.0, &F16_TOL);
    check_scaled(&config_a(), 2, Recompute::Block, 30, MatmulPrecision::F16, 1024.0, &F16_TOL);
    if coop {
        // Unscaled, the small attention gradients fall into f16's subnormals (see F16_TOL): the
        // same products then err about ten times more, which is what loss scaling is for.
        let loose = ModelTol { loss_rel: F16_TOL.loss_rel, grad_rel: 1.0 };
        let unscaled = check_scaled(&config_a(), 2, Recompute::None, 10, MatmulPrecision::F16, 1.0, &loose);
        assert!(unscaled > 3.0 * scaled, "unscaled {unscaled:e} vs scaled {scaled:e}: f16 rounding did not happen?");
    }
}

#[test]
fn depth2_matches_reference_with_mlp_recompute() {
    check(&config_a(), 2, Recompute::Mlp, 20);
}

#[test]
fn depth2_matches_reference_with_block_recompute() {
    check(&config_a(), 2, Recompute::Block, 30);
}

/// (b) depth 4, head dim 128, 2 query heads and 1 KV head, vocab 1000 (padded to 1024), T 256,
/// B 2, windows "SSL" (the last layer forced L).
#[test]
fn depth4_gqa_matches_reference() {
    let cfg = GptConfig::new(4, 2, 1, 256, 1000, 256, "SSL").unwrap();
    assert_eq!(cfg.windows, vec![128, 128, 256, 256]);
    assert_eq!(cfg.padded_vocab, 1024);
    check(&cfg, 2, Recompute::Mlp, 40);
}

/// A micro-batch whose targets are all ignored: loss 0 and zero gradient, never NaN.
#[test]
fn all_ignored_targets_give_zero_loss_and_gradient() {
    let Some(ctx) = gpu() else { return };
    let cfg = config_a();
    let layout = ParamLayout::new(&cfg);
    let mut model = GpuModel::new(ctx, &cfg, 1, &MemorySpec::default()).unwrap();
    model.write_params(&perturbed(&layout, 5)).unwrap();
    let (idx, _) = batch(&cfg, 1, 6, 0);
    model.set_batch(&idx, &vec![-1; cfg.sequence_len], 1).unwrap();
    model.zero_grads().unwrap();
    assert_eq!(model.forward_backward().unwrap(), 0.0);
    assert!(model.read_losses().unwrap().iter().all(|&l| l == 0.0));
    assert!(model.read_grads().unwrap().iter().all(|&g| g == 0.0));
}

/// Same parameters and batch, same bits: the whole step is deterministic.
#[test]
fn forward_backward_is_deterministic() {
    let Some(ctx) = gpu() else { return };
    let cfg = config_a();
    let layout = ParamLayout::new(&cfg);
    let mut model = GpuModel::new(ctx, &cfg, 2, &MemorySpec::default()).unwrap();
    model.write_params(&perturbed(&layout, 8)).unwrap();
    let (idx, targets) = batch(&cfg, 2, 9, 0);
    model.set_batch(&idx, &targets, 1).unwrap();
    let run = || {
        model.zero_grads().unwrap();
        let l = model.forward_backward().unwrap();
        (l, model.read_grads().unwrap())
    };
    let (l1, g1) = run();
    let (l2, g2) = run();
    assert_eq!(l1.to_bits(), l2.to_bits());
    assert!(g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// The micro-step is recorded once and replayed for every batch: replaying it on a second batch
/// (other tokens, so other embedding buckets, and other ignored targets) gives bit for bit the
/// losses and gradients of a recording made afresh for that batch, in each recompute mode.
#[test]
fn replayed_micro_step_equals_a_fresh_recording() {
    let Some(ctx) = gpu() else { return };
    let cfg = config_a();
    let layout = ParamLayout::new(&cfg);
    let params = perturbed(&layout, 11);
    let (idx1, targets1) = batch(&cfg, 2, 12, 0);
    let (idx2, mut targets2) = batch(&cfg, 2, 13, 0);
    targets2[3] = -1;
    assert_ne!(idx1, idx2);
    for recompute in [Recompute::None, Recompute::Mlp, Recompute::Block] {
        let mem = MemorySpec { recompute, logits_chunk_rows: 100 };
        let run = |replay: bool| {
            let mut model = GpuModel::new(ctx, &cfg, 2, &mem).unwrap();
            model.write_params(&params).unwrap();
            if replay {
                model.set_batch(&idx1, &targets1, 1).unwrap();
                model.zero_grads().unwrap();
                model.forward_backward().unwrap();
            }
            model.set_batch(&idx2, &targets2, 1).unwrap();
            model.zero_grads().unwrap();
            let loss = if replay {
                model.forward_backward().unwrap()
            } else {
                let fresh = model.record_micro_step(Pass::Train).unwrap();
                ctx.run(&fresh).unwrap();
                model.read_loss().unwrap()
            };
            (loss, model.read_losses().unwrap(), model.read_grads().unwrap())
        };
        let (l_replay, losses_replay, g_replay) = run(true);
        let (l_fresh, losses_fresh, g_fresh) = run(false);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(l_replay.to_bits(), l_fresh.to_bits(), "{recompute:?}: loss {l_replay} vs {l_fresh}");
        assert_eq!(bits(&losses_replay), bits(&losses_fresh), "{recompute:?}: per-token losses");
        assert!(bits(&g_replay) == bits(&g_fresh), "{recompute:?}: gradients differ");
        assert!(g_replay.iter().any(|&g| g != 0.0));
    }
}

/// `wgpt info`'s memory plan is what the model allocates: every plan entry of the model's
/// categories, byte for byte (the optimizer allocates the Optimizer entries), in f32 and, where
/// the adapter has cooperative matrices, in f16 with its weight copies and f16 v and attention
/// output.
#[test]
fn memory_plan_is_what_the_model_allocates() {
    use wgpt::gpu::GpuContext;
    use wgpt::model::memory::{Category, MemoryPlan};
    if gpu().is_none() {
        return;
    }
    let ctx = GpuContext::new(&wgpt::testing::test_options()).unwrap();
    let cfg = GptConfig::new(4, 4, 2, 256, 4096, 256, "SL").unwrap();
    for recompute in [Recompute::None, Recompute::Mlp, Recompute::Block] {
        let mem = MemorySpec { recompute, logits_chunk_rows: 0 };
        let before = ctx.allocated_bytes();
        let model = GpuModel::new(&ctx, &cfg, 4, &mem).unwrap();
        let allocated = ctx.allocated_bytes() - before;
        let plan = MemoryPlan::model(&cfg, 4, &mem, wgpt::kernels::matmul::MatmulPrecision::F32);
        assert_eq!(allocated, plan.total_bytes(), "{recompute:?}");
        assert_eq!(plan.bytes(Category::Optimizer), 0);
        assert_eq!(plan.bytes(Category::WeightCopies), 0);
        drop(model);
    }
    if !wgpt::kernels::matmul_coop::coop_status(&ctx).is_available() {
        return;
    }
    use wgpt::kernels::matmul::MatmulPrecision::{F16, F32};
    let (c, l, vp) = (cfg.n_embd as u64, cfg.n_layer as u64, cfg.padded_vocab as u64);
    let (hd, kv) = ((cfg.n_head * cfg.head_dim) as u64, (cfg.n_kv_head * cfg.head_dim) as u64);
    let n = 4 * cfg.sequence_len as u64;
    for recompute in [Recompute::Mlp, Recompute::Block] {
        let mem = MemorySpec { recompute, logits_chunk_rows: 0 };
        let before = ctx.allocated_bytes();
        let model = GpuModel::new_at(&ctx, &cfg, 4, &mem, F16).unwrap();
        let allocated = ctx.allocated_bytes() - before;
        let plan = MemoryPlan::model(&cfg, 4, &mem, F16);
        assert_eq!(allocated, plan.total_bytes(), "{recompute:?}");
        assert_eq!(model.plan.total_bytes(), plan.total_bytes(), "{recompute:?}");
        // 2 bytes per weight of the 6 block matrices (q and its output projection H·D×C, k and v
        // Hkv·D×C, the MLP's two 4C×C) and lm_head.
        assert_eq!(plan.bytes(Category::WeightCopies), 2 * ((2 * hd * c + 2 * kv * c + 8 * c * c) * l + vp * c));
        // v (N×Hkv·D) and the attention output (N×H·D) at 2 bytes instead of 4: per layer where
        // each layer keeps them, once (the workspace's) under block recompute.
        let f32_plan = MemoryPlan::model(&cfg, 4, &mem, F32);
        let (cat, copies) =
            if recompute == Recompute::Block { (Category::Workspace, 1) } else { (Category::Activations, l) };
        assert_eq!(f32_plan.bytes(cat) - plan.bytes(cat), 2 * n * (kv + hd) * copies, "{recompute:?}");
        drop(model);
    }
}

/// `wgpt step-check` on files written the way any reference implementation would write them
/// prints the same loss the model computes in-process, and writes every gradient by name.
#[test]
fn step_check_cli_reads_nanochat_files_and_writes_gradients() {
    use std::process::Command;
    use wgpt::model::checkpoint;
    if gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgpt-step-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config_a();
    let layout = ParamLayout::new(&cfg);
    let params = perturbed(&layout, 12);
    checkpoint::save_weights(&dir.join("w.safetensors"), &layout, &params).unwrap();
    // The meta's window pattern: config_a overrides windows, so use a plain "L" model here.
    let plain = GptConfig::new(2, 2, 2, 128, 512, 64, "L").unwrap();
    checkpoint::save_meta(&dir.join("meta.json"), &plain, serde_json::json!({})).unwrap();
    let (idx, targets) = batch(&plain, 2, 13, 0);
    let as_f32 = |v: &[i32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (ib, tb) = (as_f32(&idx), as_f32(&targets));
    let views = vec![
        ("idx".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![2, 64], &ib).unwrap()),
        (
            "targets".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![2, 64], &tb).unwrap(),
        ),
    ];
    std::fs::write(dir.join("batch.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["step-check", "--weights"])
        .arg(dir.join("w.safetensors"))
        .arg("--meta")
        .arg(dir.join("meta.json"))
        .arg("--batch")
        .arg(dir.join("batch.safetensors"))
        .arg("--grads-out")
        .arg(dir.join("g.safetensors"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let p64: Vec<f64> = params.iter().map(|&x| x as f64).collect();
    let want = RefGpt::new(&plain, &layout, &p64).forward(&idx, &targets, 2, 64).loss;
    let got = last["loss"].as_f64().unwrap();
    assert!((got - want).abs() / want < 1e-5, "step-check loss {got} vs reference {want}");
    let grads = checkpoint::load_weights(&dir.join("g.safetensors"), &layout).unwrap();
    assert!(grads.iter().any(|&g| g != 0.0) && grads.iter().all(|g| g.is_finite()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `step-check --steps K`: the GPU model and optimizer, stepped K times on one batch, give the
/// losses of the f64 reference model stepped by the reference AdamW and Muon with the same
/// hyperparameters (nanochat's setup_optimizer from the flags, momentum 0.95, no schedule).
#[test]
fn step_check_steps_match_the_reference_optimizers() {
    use std::process::Command;
    use wgpt::model::{checkpoint, OptGroup};
    use wgpt::reference::adamw::adamw_step;
    use wgpt::reference::muon::{muon_step, MuonVariant};
    use wgpt::train::optimizer::adamw_group_constants;
    if gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgpt-step-k-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = GptConfig::new(2, 2, 1, 128, 512, 64, "L").unwrap();
    let layout = ParamLayout::new(&cfg);
    let params = perturbed(&layout, 21);
    checkpoint::save_weights(&dir.join("w.safetensors"), &layout, &params).unwrap();
    checkpoint::save_meta(&dir.join("meta.json"), &cfg, serde_json::json!({})).unwrap();
    let (idx, targets) = batch(&cfg, 2, 22, 0);
    let bytes = |v: &[i32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (ib, tb) = (bytes(&idx), bytes(&targets));
    let views = vec![
        ("idx".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![2, 64], &ib).unwrap()),
        (
            "targets".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![2, 64], &tb).unwrap(),
        ),
    ];
    std::fs::write(dir.join("batch.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    let (k, mlr, elr, ulr, slr, wd) = (3, 0.02, 0.3, 0.008, 0.5, 0.28);
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["step-check", "--steps", "3", "--weights"])
        .arg(dir.join("w.safetensors"))
        .arg("--meta")
        .arg(dir.join("meta.json"))
        .arg("--batch")
        .arg(dir.join("batch.safetensors"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let got: Vec<f64> = v["losses"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();

    // The reference: f64 model, AdamW per tensor, Muon per stacked shape group.
    let mut p: Vec<f64> = params.iter().map(|&x| x as f64).collect();
    let (mut m, mut vv) = (vec![0.0f64; p.len()], vec![0.0f64; p.len()]);
    let mut mom = vec![0.0f64; p.len()];
    let mut second: Vec<Vec<f64>> =
        layout.muon_groups.iter().map(|g| vec![0.0; g.members.len() * g.rows.max(g.cols)]).collect();
    let dmodel = (cfg.n_embd as f64 / 768.0).powf(-0.5);
    let lr = |g: OptGroup| match g {
        OptGroup::Unembedding => ulr * dmodel,
        OptGroup::Embedding => elr * dmodel,
        OptGroup::ValueEmbeds => elr * dmodel * 0.5,
        OptGroup::Resid => slr * 0.01,
        OptGroup::X0 => slr,
        OptGroup::Smear => 0.2,
        OptGroup::Muon => mlr,
    };
    let mut want = Vec::new();
    for step in 0..k {
        let model = RefGpt::new(&cfg, &layout, &p);
        let fw = model.forward(&idx, &targets, 2, 64);
        want.push(fw.loss);
        let g = model.backward(&fw, &idx, &targets, 2, 64, 1.0 / fw.valid as f64);
        for (spec, &off) in layout.specs.iter().zip(&layout.offsets) {
            if spec.group == OptGroup::Muon {
                continue;
            }
            let r = off..off + spec.numel();
            let (b1, b2, d) = adamw_group_constants(spec.group).unwrap();
            let (pp, mm, vs) = (&mut p[r.clone()], &mut m[r.clone()], &mut vv[r.clone()]);
            adamw_step(pp, mm, vs, &g[r.clone()], lr(spec.group), b1, b2, 1e-10, d, step as u64 + 1);
        }
        for (gi, grp) in layout.muon_groups.iter().enumerate() {
            let r = grp.offset..grp.offset + grp.members.len() * grp.rows * grp.cols;
            let (pp, mo) = (&mut p[r.clone()], &mut mom[r.clone()]);
            muon_step(
                pp,
                mo,
                &mut second[gi],
                &g[r.clone()],
                grp.members.len(),
                grp.rows,
                grp.cols,
                mlr,
                0.95,
                wd,
                MuonVariant::Seed,
            );
        }
    }
    eprintln!("step-check --steps 3: gpu {got:?}\n                      ref {want:?}");
    assert_eq!(got.len(), k);
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() / b <= 1e-4, "loss {a} vs reference {b}");
    }
    assert!(got[2] < got[0], "three steps on one batch lower the loss");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The files `wgpt step-check` reads, for `cfg` with `params`: weights, meta and a B=2 batch.
fn step_check_files(dir: &std::path::Path, cfg: &GptConfig, params: &[f32]) -> Vec<std::ffi::OsString> {
    use wgpt::model::checkpoint;
    std::fs::create_dir_all(dir).unwrap();
    checkpoint::save_weights(&dir.join("w.safetensors"), &ParamLayout::new(cfg), params).unwrap();
    checkpoint::save_meta(&dir.join("meta.json"), cfg, serde_json::json!({})).unwrap();
    let (idx, targets) = batch(cfg, 2, 31, 0);
    let bytes = |v: &[i32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (ib, tb) = (bytes(&idx), bytes(&targets));
    let shape = vec![2, cfg.sequence_len];
    let views = vec![
        ("idx".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::I32, shape.clone(), &ib).unwrap()),
        ("targets".to_string(), safetensors::tensor::TensorView::new(safetensors::Dtype::I32, shape, &tb).unwrap()),
    ];
    std::fs::write(dir.join("batch.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    ["--weights", "w.safetensors", "--meta", "meta.json", "--batch", "batch.safetensors"]
        .iter()
        .enumerate()
        .map(|(i, a)| if i % 2 == 1 { dir.join(a).into_os_string() } else { a.into() })
        .collect()
}

/// Weights holding a NaN or an infinity are refused before the GPU is opened (so no adapter is
/// needed), with a non-zero exit and every offending tensor named.
#[test]
fn step_check_refuses_non_finite_weights_naming_the_tensors() {
    let dir = std::env::temp_dir().join(format!("wgpt-step-nan-{}", std::process::id()));
    let cfg = GptConfig::new(2, 2, 2, 128, 512, 64, "L").unwrap();
    let layout = ParamLayout::new(&cfg);
    let mut params = perturbed(&layout, 30);
    params[layout.range("transformer.h.1.attn.c_q.weight").0 + 5] = f32::NAN;
    params[layout.range("lm_head.weight").0] = f32::INFINITY;
    let files = step_check_files(&dir, &cfg, &params);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .arg("step-check")
        .args(&files)
        // An adapter that cannot exist: the refusal must come before any GPU is looked for.
        .env("WGPT_ADAPTER", "no-such-adapter")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit 0 on NaN weights; stdout:\n{}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("the weights hold non-finite values"), "{err}");
    assert!(err.contains("transformer.h.1.attn.c_q.weight [128, 128]: 1 of 16384 values are not finite"), "{err}");
    assert!(err.contains("(the first, element 5, is NaN)"), "{err}");
    assert!(err.contains("lm_head.weight [512, 128]: 1 of 65536 values are not finite (the first, element 0, is inf)"));
    assert!(!err.contains("no-such-adapter"), "the GPU was looked for: {err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("loss"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Finite weights so large that the forward overflows: the loss is NaN, and step-check says so
/// and exits non-zero instead of printing {"loss": null} with exit 0.
#[test]
fn step_check_exits_non_zero_on_a_non_finite_loss() {
    if gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgpt-step-overflow-{}", std::process::id()));
    let cfg = GptConfig::new(2, 2, 2, 128, 512, 64, "L").unwrap();
    let layout = ParamLayout::new(&cfg);
    let mut params = perturbed(&layout, 32);
    // ±3e38 in lm_head: products with the normalised residual overflow to ±inf, and the sums of
    // opposite infinities are NaN.
    let (o, n) = layout.range("lm_head.weight");
    for (i, w) in params[o..o + n].iter_mut().enumerate() {
        *w = if i % 2 == 0 { 3e38 } else { -3e38 };
    }
    let files = step_check_files(&dir, &cfg, &params);
    for steps in ["0", "2"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(["step-check", "--steps", steps])
            .args(&files)
            .env("WGPT_AUTOTUNE", "off")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("--steps {steps}: {}", err.lines().filter(|l| !l.starts_with('[')).collect::<Vec<_>>().join("\n"));
        assert!(!out.status.success(), "--steps {steps}: exit 0; stdout:\n{}", String::from_utf8_lossy(&out.stdout));
        assert!(err.contains("the loss is not finite (NaN)") && err.contains("HINT:"), "--steps {steps}:\n{err}");
        if steps != "0" {
            assert!(err.contains("step 0: the loss is not finite"), "{err}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The f16 weight copies never lag the master weights: after the master weights change (a new
/// upload, or a write through the tensor `params()` hands out, which is how the optimizer
/// updates them), the next pass reads fresh copies, so its loss and gradients are those of a
/// fresh model given the new weights, bit for bit; and they differ from the old weights' ones.
#[test]
fn f16_weight_copies_follow_the_master_weights() {
    let Some(ctx) = gpu() else { return };
    if !wgpt::kernels::matmul_coop::coop_status(ctx).is_available() {
        return;
    }
    let cfg = config_a();
    let layout = ParamLayout::new(&cfg);
    let (idx, targets) = batch(&cfg, 2, 4, 0);
    let mem = MemorySpec { recompute: Recompute::Mlp, logits_chunk_rows: 100 };
    let f16 = MatmulPrecision::F16;
    let run = |m: &GpuModel| -> (f64, Vec<f32>) {
        m.zero_grads().unwrap();
        let loss = m.forward_backward().unwrap();
        (loss, m.read_grads().unwrap())
    };
    let (p1, p2, p3) = (perturbed(&layout, 5), perturbed(&layout, 6), perturbed(&layout, 7));
    let mut model = GpuModel::new(ctx, &cfg, 2, &mem).unwrap().with_matmul(f16).unwrap();
    model.set_batch(&idx, &targets, 1).unwrap();
    model.write_params(&p1).unwrap();
    let first = run(&model);
    model.write_params(&p2).unwrap();
    let second = run(&model);
    // A write through the handed-out tensor, then an evaluation pass (no zero_grads before it).
    ctx.write(model.params(), &p3).unwrap();
    model.run_micro_step(Pass::Eval).unwrap();
    let third = model.read_loss().unwrap();
    for (p, (loss, grads)) in [(&p2, &second), (&p3, &(third, Vec::new()))] {
        let mut fresh = GpuModel::new(ctx, &cfg, 2, &mem).unwrap().with_matmul(f16).unwrap();
        fresh.set_batch(&idx, &targets, 1).unwrap();
        fresh.write_params(p).unwrap();
        let (want_loss, want_grads) = run(&fresh);
        assert_eq!(loss.to_bits(), want_loss.to_bits(), "loss after new weights: {loss} vs fresh {want_loss}");
        if !grads.is_empty() {
            assert!(grads.iter().zip(&want_grads).all(|(a, b)| a.to_bits() == b.to_bits()), "gradients differ");
        }
    }
    assert_ne!(first.0, second.0, "different weights, same loss: the copies were not refreshed");
    assert_ne!(second.0, third, "different weights, same loss: the copies were not refreshed");
}

/// An f16 forward overflow is named: with block 0's c_fc scaled up, ReLU² of the MLP's
/// pre-activation passes f16's ±65504, the f16 product that reads it makes the loss non-finite,
/// and `diagnose_forward` names that activation. The same weights in f32 give a finite loss and
/// no culprit (nothing in them is out of f32's range).
#[test]
fn f16_forward_overflow_is_named() {
    let Some(ctx) = gpu() else { return };
    let cfg = config_a();
    let layout = ParamLayout::new(&cfg);
    let mut params = perturbed(&layout, 3);
    let (o, n) = layout.range("transformer.h.0.mlp.c_fc.weight");
    for x in &mut params[o..o + n] {
        *x *= 300.0;
    }
    let (idx, targets) = batch(&cfg, 2, 4, 0);
    let mem = MemorySpec { recompute: Recompute::None, logits_chunk_rows: 100 };
    for precision in [MatmulPrecision::F32, MatmulPrecision::F16] {
        let mut model = GpuModel::new(ctx, &cfg, 2, &mem).unwrap().with_matmul(precision).unwrap();
        model.write_params(&params).unwrap();
        model.set_batch(&idx, &targets, 1).unwrap();
        model.zero_grads().unwrap();
        model.run_micro_step(Pass::Eval).unwrap();
        let loss = model.read_loss().unwrap();
        let culprit = model.diagnose_forward().unwrap();
        eprintln!("{precision:?}: loss {loss}, culprit {culprit:?}");
        let coop = wgpt::kernels::matmul_coop::coop_status(ctx).is_available();
        if precision == MatmulPrecision::F32 || !coop {
            assert!(loss.is_finite(), "{precision:?}: loss {loss}");
            assert_eq!(culprit, None);
        } else {
            assert!(!loss.is_finite(), "f16: loss {loss} is finite although relu(h)² passes 65504");
            let c = culprit.expect("a culprit");
            assert!(c.starts_with("block 0 MLP activation relu(h)²") && c.contains("beyond f16's ±65504"), "{c}");
        }
    }
}
