//! `wgpt bench core`: what the CORE evaluation costs for a model config.
//!
//! On the CPU, every present CORE task is prepared exactly as `wgpt eval core` prepares it (the
//! same shuffle, few-shot draws, prompts, tokenizer and crop to the model's context) and batched
//! exactly as [`crate::eval::scorer::Scorer::score`] batches it ([`batches`]); from the token slots
//! of each pass and its length t comes the forward FLOP count: 2 per weight of every linear
//! layer per slot, plus attention's 4·H·D·min(window, t) per layer (nanochat's `estimate_flops`,
//! forward third, at the pass's length). Dividing by a sustained rate gives the time on a card
//! whose rate is known (`--tflops`; by default the seed run's 49 TFLOP/s of model FLOPs on the RTX
//! 4070). With `--passes K` the first K passes also run on the GPU (weights at init; token ids
//! taken modulo the vocabulary, which a forward's cost does not depend on), for this adapter's
//! measured rate beside the estimate.
//!
//! The `distinct` column counts the tokens left if each example's options shared the forward of
//! their common prefix (BOS, the few-shot examples and, for multiple choice, the question): what
//! scoring with a prefix computed once per example would process, the bound on that saving.

use crate::config::RunConfig;
use crate::error::Result;
use crate::eval::core::prepare_task;
use crate::eval::scorer::{batches, pass_rows, Scorer, Sequence};
use crate::eval::tasks::CoreSuite;
use crate::gpu::GpuContext;
use crate::model::GptConfig;
use crate::tokenizer::Tokenizer;

/// What to count and run.
pub struct CoreBenchOptions {
    pub max_per_task: Option<usize>,
    pub tokens_per_pass: usize,
    /// Sustained model TFLOP/s to turn FLOPs into seconds.
    pub tflops: f64,
    /// Passes to run on the GPU (0: count only).
    pub passes: usize,
}

/// Forward FLOPs of one token slot in a pass of length t.
pub fn forward_flops_per_slot(cfg: &GptConfig, t: usize) -> f64 {
    let counts = crate::model::params::ParamCounts::of(cfg);
    let attn: usize = cfg.windows.iter().map(|&w| 4 * cfg.n_head * cfg.head_dim * w.min(t)).sum();
    (2 * counts.matmul + attn) as f64
}

/// Tokens of `seqs` counting each one's longest common prefix with the others once.
pub fn distinct_tokens(seqs: &[Sequence]) -> usize {
    let Some(first) = seqs.first() else { return 0 };
    let common = seqs
        .iter()
        .skip(1)
        .fold(first.tokens.len(), |n, s| n.min(first.tokens.iter().zip(&s.tokens).take_while(|(a, b)| a == b).count()));
    common + seqs.iter().map(|s| s.tokens.len() - common).sum::<usize>()
}

/// Counts (and, with `opts.passes`, times) the CORE evaluation of `rc`'s model; lines to `out`.
pub fn bench(
    ctx: Option<&GpuContext>,
    rc: &RunConfig,
    tok: &Tokenizer,
    suite: &CoreSuite,
    opts: &CoreBenchOptions,
    out: &mut dyn FnMut(&str),
) -> Result<()> {
    let cfg = &rc.model;
    let t_max = cfg.sequence_len;
    out(&format!(
        "model: depth {} · C {} · vocab {} · T {}; {} CORE tasks, max {} examples each; {} token slots per pass",
        cfg.n_layer,
        cfg.n_embd,
        cfg.vocab_size,
        t_max,
        suite.tasks.len(),
        opts.max_per_task.map_or("all".into(), |n| n.to_string()),
        (opts.tokens_per_pass / t_max).max(1) * t_max
    ));
    out(&format!(
        "{:<34} {:>8} {:>9} {:>11} {:>11} {:>11} {:>7} {:>10} {:>9}",
        "task", "examples", "sequences", "tokens", "distinct", "slots", "passes", "fwd TFLOP", "est. s"
    ));
    let mut all: Vec<Sequence> = Vec::new();
    let (mut tokens, mut distinct, mut slots, mut passes, mut flops) = (0usize, 0usize, 0usize, 0usize, 0.0f64);
    for spec in &suite.tasks {
        let p = prepare_task(spec, tok, t_max, opts.max_per_task)?;
        let lens: Vec<usize> = p.seqs.iter().map(|s| s.tokens.len()).collect();
        let bs = batches(&lens, t_max, opts.tokens_per_pass);
        let per_pass = (opts.tokens_per_pass / t_max).max(1) * t_max;
        let pass_slots = |t: usize, n: usize| pass_rows(n, t, per_pass) * t;
        let task_slots: usize = bs.iter().map(|(t, b)| pass_slots(*t, b.len())).sum();
        let task_flops: f64 =
            bs.iter().map(|(t, b)| pass_slots(*t, b.len()) as f64 * forward_flops_per_slot(cfg, *t)).sum();
        let task_tokens: usize = lens.iter().sum();
        let task_distinct: usize = p.first.windows(2).map(|w| distinct_tokens(&p.seqs[w[0]..w[1]])).sum();
        out(&format!(
            "{:<34} {:>8} {:>9} {:>11} {:>11} {:>11} {:>7} {:>10.2} {:>9.1}",
            spec.label,
            p.items.len(),
            p.seqs.len(),
            task_tokens,
            task_distinct,
            task_slots,
            bs.len(),
            task_flops / 1e12,
            task_flops / (opts.tflops * 1e12)
        ));
        tokens += task_tokens;
        distinct += task_distinct;
        slots += task_slots;
        passes += bs.len();
        flops += task_flops;
        all.extend(p.seqs);
    }
    out(&format!(
        "distinct: {distinct} tokens ({:.0}% of all) if each example's shared prefix ran once",
        100.0 * distinct as f64 / tokens.max(1) as f64
    ));
    out(&format!(
        "total: {tokens} tokens in {slots} slots ({:.0}% padding), {passes} passes, {:.1} TFLOP forward: {:.1} s \
         ({:.1} min) at {} TFLOP/s",
        100.0 * (1.0 - tokens as f64 / slots.max(1) as f64),
        flops / 1e12,
        flops / (opts.tflops * 1e12),
        flops / (opts.tflops * 1e12) / 60.0,
        opts.tflops
    ));
    let Some(ctx) = ctx.filter(|_| opts.passes > 0) else { return Ok(()) };
    // The first passes of the whole set, as the scorer would batch it, at init weights.
    let v = cfg.vocab_size as u32;
    for s in &mut all {
        for x in &mut s.tokens {
            *x %= v;
        }
    }
    let lens: Vec<usize> = all.iter().map(|s| s.tokens.len()).collect();
    let run: Vec<Sequence> = batches(&lens, t_max, opts.tokens_per_pass)
        .into_iter()
        .take(opts.passes)
        .flat_map(|(_, b)| b.into_iter().map(|i| all[i].clone()).collect::<Vec<_>>())
        .collect();
    let layout = crate::model::ParamLayout::new(cfg);
    let params = ctx.upload("params", &layout.init(rc.train().seed))?;
    let precision = crate::train::precision::resolve(ctx, rc.train().precision)?;
    let bos = tok.bos_id()? % v;
    let mut scorer =
        Scorer::new(ctx, cfg, &rc.file.memory, precision.matmul, params, vec![], opts.tokens_per_pass, bos)?;
    // One warm-up pass (pipelines, recordings), then the timed ones.
    let first = batches(&lens, t_max, opts.tokens_per_pass).into_iter().next().map_or(0, |(_, b)| b.len());
    scorer.score(&run[..first.min(run.len())])?;
    let warm = scorer.stats;
    scorer.score(&run)?;
    let st = scorer.stats;
    let (secs, real) = (st.seconds - warm.seconds, st.tokens - warm.tokens);
    let slots_run = (st.tokens + st.padded) - (warm.tokens + warm.padded);
    let run_flops: f64 = batches(&run.iter().map(|s| s.tokens.len()).collect::<Vec<_>>(), t_max, opts.tokens_per_pass)
        .iter()
        .map(|(t, b)| (pass_rows(b.len(), *t, scorer.tokens_per_pass()) * t) as f64 * forward_flops_per_slot(cfg, *t))
        .sum();
    out(&format!(
        "measured on {} ({}): {} passes, {real} tokens ({slots_run} slots) in {secs:.2} s: {:.0} tokens/s, {:.3} \
         TFLOP/s of model FLOPs; the whole set at that rate: {:.1} min",
        ctx.info.name,
        precision.name(),
        st.passes - warm.passes,
        real as f64 / secs.max(1e-9),
        run_flops / secs.max(1e-9) / 1e12,
        flops / (run_flops / secs.max(1e-9)) / 60.0
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_tokens_count_the_common_prefix_once() {
        let s = |t: &[u32]| Sequence { tokens: t.to_vec(), start: 1, end: t.len() };
        assert_eq!(distinct_tokens(&[]), 0);
        assert_eq!(distinct_tokens(&[s(&[0, 1, 2])]), 3);
        // Prefix [0, 5] shared by all three: 2 + 2 + 1 + 3.
        assert_eq!(distinct_tokens(&[s(&[0, 5, 1, 2]), s(&[0, 5, 3]), s(&[0, 5, 4, 4, 4])]), 8);
        // Options that differ from the first token on share nothing.
        assert_eq!(distinct_tokens(&[s(&[1, 2]), s(&[3, 2])]), 4);
    }
}
