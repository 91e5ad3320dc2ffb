//! `wgpt sample`: generate from a checkpoint with the KV-cache [`Engine`].
//!
//! The checkpoint is a run directory (its `checkpoints/latest` is used), that `checkpoints/`
//! folder, or one `step_NNNNNN` directory; the model config is the `model_config` of its
//! `meta.json`, the weights its `model.safetensors`. The tokenizer is `--tokenizer`, or else the
//! path the trainer recorded under `"tokenizer"` in the meta (relative paths are tried from the
//! current directory, then from the checkpoint directory). BOS is prepended to every prompt, as
//! nanochat does.

use crate::cli::GpuArgs;
use crate::model::checkpoint::{load_meta, load_weights};
use crate::model::engine::{complete, positions_needed, Engine, Sampling, NANOCHAT_PROMPTS};
use crate::model::ParamLayout;
use crate::tokenizer::Tokenizer;
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A run directory (uses checkpoints/latest), its checkpoints/ folder, or a step_NNNNNN directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text to continue (repeatable). Default: nanochat's seven sample prompts.
    #[arg(long = "prompt")]
    pub prompts: Vec<String>,
    /// New tokens per prompt.
    #[arg(long, default_value_t = 16)]
    pub max_tokens: usize,
    /// 0 is greedy (argmax); otherwise sample from softmax(logits / temperature).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample only among the K most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampler (each prompt starts from it).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// tokenizer.json to use instead of the one recorded in the checkpoint's meta.json.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// The checkpoint directory `dir` names: itself if it holds a meta.json, else the one its
/// `latest` file (a checkpoints/ folder) or its `checkpoints/latest` (a run directory) names.
pub fn resolve_checkpoint(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.join("meta.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    if let Some(step) = crate::train::checkpoint::latest(dir)? {
        return Ok(step);
    }
    let latest = dir.join("latest");
    if latest.is_file() {
        let name = std::fs::read_to_string(&latest).with_context(|| format!("reading {}", latest.display()))?;
        let step = dir.join(name.trim());
        if step.join("meta.json").is_file() {
            return Ok(step);
        }
        bail!("{} names {}, which has no meta.json", latest.display(), step.display());
    }
    bail!(
        "{} is not a checkpoint: expected a step_NNNNNN directory (meta.json, model.safetensors) or a run directory \
         with checkpoints/latest",
        dir.display()
    )
}

/// `--tokenizer` (`flag`), or the path recorded under "tokenizer" in the meta.
pub fn tokenizer_path(flag: Option<&Path>, ckpt: &Path, meta: &serde_json::Value) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let Some(recorded) = meta.get("tokenizer").and_then(|v| v.as_str()) else {
        bail!(
            "{} records no tokenizer (no \"tokenizer\" path in meta.json)\n  HINT: pass --tokenizer PATH/tokenizer.json",
            ckpt.join("meta.json").display()
        );
    };
    let p = PathBuf::from(recorded);
    if p.is_relative() && !p.exists() && ckpt.join(&p).exists() {
        return Ok(ckpt.join(p));
    }
    if !p.exists() {
        bail!(
            "the tokenizer recorded in {} ({}) does not exist\n  HINT: pass --tokenizer PATH/tokenizer.json",
            ckpt.join("meta.json").display(),
            p.display()
        );
    }
    Ok(p)
}

/// Run `wgpt sample`: print each prompt and its continuation (both quoted and escaped, one line
/// each, so that generated newlines stay visible).
pub fn run(gpu: &GpuArgs, args: &SampleArgs) -> anyhow::Result<i32> {
    let sampling = Sampling { temperature: args.temperature, top_k: args.top_k, seed: args.seed };
    // Everything from disk is read and checked before the GPU is touched.
    let ckpt = resolve_checkpoint(&args.checkpoint)?;
    let (cfg, meta) = load_meta(&ckpt.join("meta.json"))?;
    let tok_path = tokenizer_path(args.tokenizer.as_deref(), &ckpt, &meta)?;
    let tok = Tokenizer::from_file(&tok_path)?;
    tok.check_vocab_size(cfg.vocab_size)?;
    let layout = ParamLayout::new(&cfg);
    let arena = load_weights(&ckpt.join("model.safetensors"), &layout)?;
    let prompts: Vec<String> = if args.prompts.is_empty() {
        NANOCHAT_PROMPTS.iter().map(|s| s.to_string()).collect()
    } else {
        args.prompts.clone()
    };
    // Room for the longest prompt (with BOS) and its continuation, within the model's context (a
    // prompt that does not fit is refused by the engine, with the numbers).
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let max_len = positions_needed(&tok, &texts, args.max_tokens)?.min(cfg.sequence_len);

    let ctx = gpu.open()?;
    let mut engine = Engine::from_arena(&ctx, &cfg, &arena, max_len)?;
    let step = meta.get("step").map(|s| s.to_string()).unwrap_or_else(|| "?".into());
    println!("checkpoint: {} (step {step})", ckpt.display());
    println!(
        "model: depth {} · C {} · {} heads ({} KV) of {} · vocab {} · T {}; tokenizer {}",
        cfg.n_layer,
        cfg.n_embd,
        cfg.n_head,
        cfg.n_kv_head,
        cfg.head_dim,
        cfg.vocab_size,
        cfg.sequence_len,
        tok_path.display()
    );
    if sampling.temperature == 0.0 {
        println!("sampling: greedy, {} new tokens, BOS prepended", args.max_tokens);
    } else {
        let k = args.top_k.map(|k| k.to_string()).unwrap_or_else(|| "all".into());
        println!(
            "sampling: temperature {} · top-k {k} · seed {}, {} new tokens, BOS prepended",
            sampling.temperature, sampling.seed, args.max_tokens
        );
    }
    for p in &prompts {
        let text =
            complete(&mut engine, &tok, p, args.max_tokens, sampling).with_context(|| format!("prompt {p:?}"))?;
        println!("\nprompt: {p:?}");
        println!("sample: {text:?}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GptConfig;

    #[test]
    fn checkpoints_resolve_from_run_checkpoints_and_step_directories() {
        let root = std::env::temp_dir().join(format!("wgpt-sample-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cfg = GptConfig::new(1, 1, 1, 32, 64, 8, "L").unwrap();
        let layout = ParamLayout::new(&cfg);
        let run = root.join("run");
        let meta = serde_json::json!({ "model_config": cfg.nanochat_json(), "tokenizer": "tok/tokenizer.json" });
        crate::train::checkpoint::save(&run, 3, &layout, &layout.init(1), &[], &meta).unwrap();
        let step = crate::train::checkpoint::save(&run, 5, &layout, &layout.init(1), &[], &meta).unwrap();
        assert_eq!(resolve_checkpoint(&run).unwrap(), step);
        assert_eq!(resolve_checkpoint(&run.join("checkpoints")).unwrap(), step);
        let older = run.join("checkpoints/step_000003");
        assert_eq!(resolve_checkpoint(&older).unwrap(), older);
        let e = resolve_checkpoint(&root).unwrap_err().to_string();
        assert!(e.contains("is not a checkpoint"), "{e}");

        // The recorded tokenizer: relative to the current directory, else to the checkpoint.
        let args = |tokenizer: Option<PathBuf>| SampleArgs {
            checkpoint: run.clone(),
            prompts: vec![],
            max_tokens: 1,
            temperature: 0.0,
            top_k: None,
            seed: 0,
            tokenizer,
        };
        let e = tokenizer_path(args(None).tokenizer.as_deref(), &step, &meta).unwrap_err().to_string();
        assert!(e.contains("does not exist") && e.contains("--tokenizer"), "{e}");
        std::fs::create_dir_all(step.join("tok")).unwrap();
        std::fs::write(step.join("tok/tokenizer.json"), "{}").unwrap();
        assert_eq!(
            tokenizer_path(args(None).tokenizer.as_deref(), &step, &meta).unwrap(),
            step.join("tok/tokenizer.json")
        );
        let flag = PathBuf::from("elsewhere.json");
        assert_eq!(tokenizer_path(args(Some(flag.clone())).tokenizer.as_deref(), &step, &meta).unwrap(), flag);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
