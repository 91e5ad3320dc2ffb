//! Samples during training: nanochat's seven prompts, greedy, 16 new tokens, through the KV-cache
//! engine reading the training model's parameters in place.

use super::report::SampleRecord;
use crate::gpu::GpuContext;
use crate::model::engine::{nanochat_samples, positions_needed, Engine, NANOCHAT_PROMPTS};
use crate::model::gpu::GpuModel;
use crate::tokenizer::Tokenizer;

/// An engine over the training model's parameter arena (no copy), its KV cache sized for the
/// longest prompt plus the 16 new tokens.
pub fn engine_for<'c>(ctx: &'c GpuContext, model: &GpuModel<'c>, tok: &Tokenizer) -> crate::Result<Engine<'c>> {
    let max_len = positions_needed(tok, &NANOCHAT_PROMPTS, 16)?.min(model.cfg.sequence_len);
    Engine::new(ctx, &model.cfg, model.params().clone(), max_len)
}

pub fn samples(engine: &mut Engine<'_>, tok: &Tokenizer) -> crate::Result<Vec<SampleRecord>> {
    Ok(nanochat_samples(engine, tok, 16)?
        .into_iter()
        .map(|(prompt, completion)| SampleRecord { prompt, completion })
        .collect())
}
