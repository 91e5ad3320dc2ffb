//! Samples during training: nanochat's seven prompts, greedy, 16 new tokens, through the KV-cache
//! engine reading the training model's parameters in place.

use super::report::SampleRecord;
use crate::gpu::GpuContext;
use crate::model::engine::{nanochat_samples, Engine};
use crate::model::gpu::GpuModel;
use crate::tokenizer::Tokenizer;

/// An engine over the training model's parameter arena (no copy), for the model's full context.
pub fn engine_for<'c>(ctx: &'c GpuContext, model: &GpuModel<'c>) -> crate::Result<Engine<'c>> {
    Engine::new(ctx, &model.cfg, model.params().clone(), model.cfg.sequence_len)
}

pub fn samples(engine: &mut Engine<'_>, tok: &Tokenizer) -> crate::Result<Vec<SampleRecord>> {
    Ok(nanochat_samples(engine, tok, 16)?
        .into_iter()
        .map(|(prompt, completion)| SampleRecord { prompt, completion })
        .collect())
}
