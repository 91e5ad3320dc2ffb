//! Samples during training: nanochat's seven prompts, greedy, 16 new tokens, through the KV-cache
//! engine reading the training model's parameters in place.

use super::report::SampleRecord;
use crate::gpu::GpuContext;
use crate::model::engine::{complete, Engine, Sampling, NANOCHAT_PROMPTS};
use crate::model::gpu::GpuModel;
use crate::tokenizer::Tokenizer;

/// New tokens per prompt, as nanochat's base_train samples.
pub const SAMPLE_TOKENS: usize = 16;

/// An engine over the training model's parameter arena (no copy) with a KV cache for the model's
/// full context: prompt plus continuation never exceed it.
pub fn engine_for<'c>(ctx: &'c GpuContext, model: &GpuModel<'c>) -> crate::Result<Engine<'c>> {
    Engine::new(ctx, &model.cfg, model.params().clone(), model.cfg.sequence_len)
}

/// Greedy continuations of the seven prompts. A model whose context is too short for a prompt and
/// 16 tokens (tiny test models) continues as far as its context allows; samples never stop a run.
pub fn samples(engine: &mut Engine<'_>, tok: &Tokenizer) -> crate::Result<Vec<SampleRecord>> {
    let mut out = Vec::with_capacity(NANOCHAT_PROMPTS.len());
    for prompt in NANOCHAT_PROMPTS {
        let used = 1 + tok.encode(prompt)?.len(); // BOS + prompt
        let room = engine.max_len().saturating_sub(used);
        let completion = if room == 0 {
            String::from(" (the prompt fills the model's context)")
        } else {
            complete(engine, tok, prompt, SAMPLE_TOKENS.min(room), Sampling::greedy())?
        };
        out.push(SampleRecord { prompt: prompt.to_string(), completion });
    }
    Ok(out)
}
