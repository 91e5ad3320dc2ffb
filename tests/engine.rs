//! The KV-cache engine against the f64 reference model's full forward, generation, refusals, and
//! `wgpt sample` end to end on a checkpoint written the way the trainer writes one.

mod common;

use common::{synthetic_docs, Scratch};
use std::process::Command;
use wgpt::model::engine::{complete, nanochat_samples, positions_needed, Engine, Sampling, NANOCHAT_PROMPTS};
use wgpt::model::{GptConfig, ParamLayout};
use wgpt::reference::model::RefGpt;
use wgpt::testing::gpu;
use wgpt::tokenizer::{train, Tokenizer, TrainOptions};
use wgpt::util::Rng;

/// GQA (2 query heads on 1 KV head, D = 64), value embeddings on layers 0 and 2, sliding windows
/// of 3 and 6 positions (narrower than the prompts), backout after layer 1, vocab 200 padded to 256.
fn config() -> GptConfig {
    let mut cfg = GptConfig::new(3, 2, 1, 128, 200, 32, "SSL").unwrap();
    cfg.windows = vec![3, 6, 32];
    cfg
}

/// Every parameter moved off init (zero projections would hide errors), smear on
/// (smear_lambda = 0.5), and lm_head scaled up so the logits are O(3): the softcap bends them and
/// the logit scale is that of a trained model rather than init's ~1e-3.
fn perturbed(cfg: &GptConfig, seed: u64) -> Vec<f32> {
    let layout = ParamLayout::new(cfg);
    let mut rng = Rng::new(seed);
    let mut p: Vec<f32> =
        layout.init(seed).iter().map(|&x| x + (0.3 * rng.normal() as f32) * (x.abs() + 0.02)).collect();
    p[layout.range("smear_lambda").0] = 0.5;
    let (o, n) = layout.range("lm_head.weight");
    let s = 3.0 / (cfg.n_embd as f64).sqrt();
    for x in &mut p[o..o + n] {
        *x = (s * rng.normal()) as f32;
    }
    p
}

fn tokens(cfg: &GptConfig, n: usize, seed: u64) -> Vec<i32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| (rng.next_u64() % cfg.vocab_size as u64) as i32).collect()
}

/// The reference's softcapped logits at every position of `idx` (one sequence), in f64.
fn reference_logits(cfg: &GptConfig, params: &[f32], idx: &[i32]) -> Vec<Vec<f64>> {
    let layout = ParamLayout::new(cfg);
    let p64: Vec<f64> = params.iter().map(|&x| x as f64).collect();
    let all = RefGpt::new(cfg, &layout, &p64).logits(idx, 1, idx.len());
    all.chunks(cfg.vocab_size).map(|r| r.to_vec()).collect()
}

/// Largest |got − want| over a row, divided by the row's largest |want| (the logit scale).
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max) / scale
}

/// f32 through three blocks of one-row kernels against f64: measured 4.5e-7 of the logit scale
/// (max |logit| ≈ 10) on lavapipe, so 2e-5 leaves a 40× margin (for another driver's rounding),
/// while a missing or misplaced term (a wrong window, RoPE position, smear row or cache row)
/// moves logits by a large fraction of their scale.
const LOGIT_TOL: f64 = 2e-5;

#[test]
fn logits_match_the_reference_forward_at_every_position() {
    let Some(ctx) = gpu() else { return };
    let cfg = config();
    let params = perturbed(&cfg, 5);
    let prompt = tokens(&cfg, 20, 6);
    let want = reference_logits(&cfg, &params, &prompt);
    let scale = want.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(scale > 3.0, "logit scale {scale}: the softcap should be exercised");

    let mut engine = Engine::from_arena(ctx, &cfg, &params, cfg.sequence_len).unwrap();
    let mut worst = 0.0f64;
    let mut last = Vec::new();
    for (pos, &t) in prompt.iter().enumerate() {
        engine.feed(t).unwrap();
        let got = engine.logits().unwrap();
        assert_eq!(got.len(), cfg.vocab_size);
        let e = rel_err(&got, &want[pos]);
        assert!(e <= LOGIT_TOL, "position {pos}: logits off by {e:e} of the logit scale");
        worst = worst.max(e);
        last = got;
    }
    eprintln!(
        "logits vs f64 reference over {} positions: worst {worst:.2e} of the logit scale {scale:.2}",
        prompt.len()
    );

    // The whole prompt in one call runs the same kernels in the same order: the same bits.
    engine.reset();
    engine.feed_tokens(&prompt).unwrap();
    assert_eq!(engine.len(), prompt.len());
    assert!(engine.logits().unwrap() == last, "feed_tokens differs from feeding one by one");
}

#[test]
fn greedy_generation_is_deterministic_and_follows_the_reference_argmax() {
    let Some(ctx) = gpu() else { return };
    let cfg = config();
    let params = perturbed(&cfg, 11);
    let prompt = tokens(&cfg, 9, 12);
    let mut engine = Engine::from_arena(ctx, &cfg, &params, 16).unwrap();
    let out = engine.generate(&prompt, 8, Sampling::greedy()).unwrap();
    assert_eq!(out.len(), 8);
    assert_eq!(engine.generate(&prompt, 8, Sampling::greedy()).unwrap(), out, "greedy generation is not deterministic");

    // Step by step: each new token is the argmax of the reference's logits after the prompt and
    // the tokens before it. Where the reference's top two are closer than the logits' tolerance,
    // either is correct.
    let mut ctx_ids = prompt.clone();
    let mut near_ties = 0;
    for (i, &t) in out.iter().enumerate() {
        let row = reference_logits(&cfg, &params, &ctx_ids).pop().unwrap();
        let best = (0..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        let scale = row.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if t as usize != best {
            let gap = row[best] - row[t as usize];
            assert!(
                gap <= 2.0 * LOGIT_TOL * scale,
                "step {i}: generated {t}, the reference's argmax is {best} (gap {gap})"
            );
            near_ties += 1;
        }
        ctx_ids.push(t);
    }
    assert!(near_ties <= 1, "{near_ties} steps disagree with the reference argmax");

    // Sampling with a seed is reproducible too, and top-k 1 is greedy.
    let hot = Sampling { temperature: 1.5, top_k: Some(20), seed: 7 };
    let a = engine.generate(&prompt, 6, hot).unwrap();
    assert_eq!(engine.generate(&prompt, 6, hot).unwrap(), a);
    let top1 = Sampling { temperature: 0.8, top_k: Some(1), seed: 1 };
    assert_eq!(engine.generate(&prompt, 8, top1).unwrap(), out);
}

#[test]
fn too_long_prompts_and_bad_input_are_refused() {
    let Some(ctx) = gpu() else { return };
    let cfg = config();
    let params = perturbed(&cfg, 3);
    let mut engine = Engine::from_arena(ctx, &cfg, &params, 8).unwrap();
    let err = |r: wgpt::Result<Vec<i32>>| r.unwrap_err().to_string();
    let e = err(engine.generate(&tokens(&cfg, 9, 1), 1, Sampling::greedy()));
    assert!(e.contains("the prompt has 9 tokens, longer than the 8 positions"), "{e}");
    let e = err(engine.generate(&tokens(&cfg, 6, 1), 4, Sampling::greedy()));
    assert!(e.contains("needs 9 positions") && e.contains("at most 3 new tokens"), "{e}");
    // Exactly full: 6 + 3 − 1 = 8 positions.
    assert_eq!(engine.generate(&tokens(&cfg, 6, 1), 3, Sampling::greedy()).unwrap().len(), 3);
    let e = engine.feed(0).unwrap_err().to_string();
    assert!(e.contains("max_len = 8"), "{e}");
    engine.reset();
    let e = engine.feed(200).unwrap_err().to_string();
    assert!(e.contains("token id 200 outside"), "{e}");
    assert!(engine.logits().unwrap_err().to_string().contains("no tokens fed"));
    let e = Engine::from_arena(ctx, &cfg, &params, 33).err().unwrap().to_string();
    assert!(e.contains("max_len 33 must be in [1, sequence_len = 32]"), "{e}");
    let e = Engine::from_arena(ctx, &cfg, &params[1..], 8).err().unwrap().to_string();
    assert!(e.contains("parameter arena"), "{e}");
}

/// A tokenizer of 300 ids trained on generated text, saved as `tokenizer.json` under `dir`.
fn tiny_tokenizer(dir: &std::path::Path) -> (Tokenizer, std::path::PathBuf) {
    let docs = synthetic_docs(1, 60);
    let (tok, _) =
        train(docs.into_iter().map(Ok), &TrainOptions { vocab_size: 300, ..TrainOptions::default() }).unwrap();
    let (path, _) = tok.save(dir).unwrap();
    (tok, path)
}

/// Run the binary with autotuning off: the in-process engine it is compared with uses the
/// adapter's default matmul variants (the test context does not autotune), so both run the same
/// kernels, bit for bit.
fn wgpt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).env("WGPT_AUTOTUNE", "off").output().unwrap()
}

/// The `sample: "…"` lines of `wgpt sample`'s output.
fn sample_lines(out: &std::process::Output) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wgpt sample failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().filter_map(|l| l.strip_prefix("sample: ").map(str::to_string)).collect()
}

#[test]
fn wgpt_sample_generates_from_a_checkpoint() {
    let Some(ctx) = gpu() else { return };
    let dir = Scratch::new("sample-cli");
    let (tok, tok_path) = tiny_tokenizer(dir.path());
    let cfg = GptConfig::new(2, 2, 1, 64, tok.vocab_size(), 64, "SL").unwrap();
    let layout = ParamLayout::new(&cfg);
    let params = perturbed(&cfg, 21);
    let run = dir.join("run");
    let meta = serde_json::json!({
        "step": 7,
        "model_config": cfg.nanochat_json(),
        "tokenizer": tok_path.to_str().unwrap(),
    });
    let step_dir = wgpt::train::checkpoint::save(&run, 7, &layout, &params, &[], &meta).unwrap();

    // What the library generates in this process: nanochat's prompts, greedy, 16 tokens.
    // Sized as the trainer sizes its engine: exactly the positions the seven prompts need.
    let needed = positions_needed(&tok, &NANOCHAT_PROMPTS, 16).unwrap();
    assert!(needed <= cfg.sequence_len, "{needed} positions");
    let mut engine = Engine::from_arena(ctx, &cfg, &params, needed).unwrap();
    let samples = nanochat_samples(&mut engine, &tok, 16).unwrap();
    assert_eq!(samples.len(), 7);
    for ((p, _), want) in samples.iter().zip(NANOCHAT_PROMPTS) {
        assert_eq!(p, want);
    }
    let custom = "qu ka the";
    let want_custom = complete(&mut engine, &tok, custom, 5, Sampling::greedy()).unwrap();

    // The run directory: checkpoints/latest, the tokenizer recorded in meta.json; no --prompt:
    // nanochat's seven.
    let got = sample_lines(&wgpt(&["sample", "--checkpoint", run.to_str().unwrap()]));
    let want: Vec<String> = samples.iter().map(|(_, c)| format!("{c:?}")).collect();
    assert_eq!(got, want);

    // A step directory with --tokenizer; top-k 1 sampling is greedy whatever the temperature.
    let args = [
        "sample",
        "--checkpoint",
        step_dir.to_str().unwrap(),
        "--tokenizer",
        tok_path.to_str().unwrap(),
        "--prompt",
        custom,
        "--prompt",
        NANOCHAT_PROMPTS[0],
        "--max-tokens",
        "5",
        "--temperature",
        "0.9",
        "--top-k",
        "1",
        "--seed",
        "3",
    ];
    let got = sample_lines(&wgpt(&args));
    let first = complete(&mut engine, &tok, NANOCHAT_PROMPTS[0], 5, Sampling::greedy()).unwrap();
    assert_eq!(got, vec![format!("{want_custom:?}"), format!("{first:?}")]);

    // No tokenizer recorded and none given: refused, naming the flag, before any GPU work.
    let bare = dir.join("bare");
    let meta = serde_json::json!({ "step": 1, "model_config": cfg.nanochat_json() });
    wgpt::train::checkpoint::save(&bare, 1, &layout, &params, &[], &meta).unwrap();
    let out = wgpt(&["sample", "--checkpoint", bare.to_str().unwrap(), "--prompt", "hi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--tokenizer"), "{stderr}");
    // Not a checkpoint at all.
    let out =
        wgpt(&["sample", "--checkpoint", dir.path().to_str().unwrap(), "--tokenizer", tok_path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("not a checkpoint"), "{stderr}");
}
