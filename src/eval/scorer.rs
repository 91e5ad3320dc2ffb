//! Batched scoring on the GPU: many token sequences per forward pass, and per sequence only the
//! continuation's losses and greedy predictions read back.
//!
//! A [`Sequence`] is a token list (BOS first) and its continuation span `[start, end)`: the
//! positions whose tokens the model is asked to predict, each from everything before it (so
//! position p's prediction is read at row p − 1, as nanochat's `forward_model` rolls its targets).
//! The scorer packs sequences into batches of B rows × t positions, right-padded with BOS: the
//! attention is causal, so padding after a sequence changes nothing before it, and a row of the
//! batch computes exactly what a forward over that sequence alone computes. The targets are the
//! continuation tokens at their rows and −1 (ignored) everywhere else, so the head's per-token
//! losses ([`GpuModel::read_losses`]) are the continuation's and zero elsewhere, and the argmax
//! kernel's predictions ([`GpuModel::read_argmax`]) are compared only there. Per pass, 2·B·t
//! 4-byte values come back; the logits never leave the GPU.
//!
//! Geometry: a pass holds at most `tokens_per_pass` tokens rounded to whole sequences of the
//! model's length (N = B_max·T). A batch's t is the smallest multiple of 64 (or T) that holds its
//! longest sequence, and B = ⌊N / t⌋ rows ([`pass_rows`]: the last batch of a length only the
//! power of two that holds it): sequences are sorted longest first, so each batch is as tall as
//! its length allows and each row's padding stays below 64 positions (power-of-two lengths padded
//! CORE's tokens by 22%; multiples of 64 by the figure `wgpt bench core` prints). Each (B, t)
//! is one [`GpuModel::for_scoring`] whose buffers are views of one pool sized for N tokens
//! ([`Pool`]): the memory is one scoring plan's, however many geometries run. The parameters are a
//! tensor the caller gives (a checkpoint's, uploaded once, or the training model's arena, read in
//! place), never copied.

use crate::config::MemorySpec;
use crate::error::{Error, Result};
use crate::gpu::{DType, GpuContext, GpuTensor};
use crate::kernels::matmul::MatmulPrecision;
use crate::model::gpu::{GpuModel, Pass};
use crate::model::memory::{BufferSource, Category, Entry, MemoryPlan};
use crate::model::GptConfig;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Tokens per forward pass when the caller does not say: ~0.6 GB of scoring buffers at d12
/// (about 23·C floats per token), beside a training run's 9 GB on a 12 GB card.
pub const DEFAULT_TOKENS_PER_PASS: usize = 8192;

/// Shortest batch length: below it, a pass's fixed costs dominate.
const MIN_T: usize = 64;

/// One sequence to score. `tokens[0]` is BOS; `1 ≤ start ≤ end ≤ tokens.len()` (an empty
/// continuation scores NaN mean loss and a vacuous greedy match, as nanochat's empty slices do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub start: usize,
    pub end: usize,
}

/// What the model says about a sequence's continuation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeqScore {
    /// Σ −log p(token | prefix) over the continuation, summed in f64 from the f32 per-token losses.
    pub sum_loss: f64,
    /// sum_loss / continuation length (nanochat's multiple-choice criterion); NaN when empty.
    pub mean_loss: f64,
    /// Whether the greedy prediction equals every continuation token (the language-modelling one).
    pub greedy_match: bool,
}

/// Counters of what a scorer ran.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScorerStats {
    pub passes: usize,
    /// Real tokens (sequence positions) fed, and padded positions computed.
    pub tokens: usize,
    pub padded: usize,
    pub seconds: f64,
}

/// A [`BufferSource`] that allocates each named buffer once, at the first (largest) request, and
/// answers later requests for that name with a view of its front. A buffer lent up front under a
/// request's name (the parameter arena; during training the idle training model's buffers, by
/// [`MemoryPlan::lend_from`]) is used instead of allocating when its type matches and it is
/// large enough.
pub struct Pool<'c> {
    ctx: &'c GpuContext,
    offered: HashMap<String, GpuTensor>,
    buffers: HashMap<String, GpuTensor>,
}

impl<'c> Pool<'c> {
    pub fn new(ctx: &'c GpuContext, lent: Vec<(String, GpuTensor)>) -> Self {
        Pool { ctx, offered: lent.into_iter().collect(), buffers: HashMap::new() }
    }

    fn get(&mut self, name: &str, elems: usize, dtype: DType) -> Result<GpuTensor> {
        if !self.buffers.contains_key(name) {
            if let Some(t) = self.offered.get(name).filter(|t| t.dtype() == dtype && t.len() >= elems) {
                self.buffers.insert(name.to_string(), t.clone());
            }
        }
        if let Some(t) = self.buffers.get(name) {
            if t.dtype() != dtype || t.len() < elems {
                return Err(Error::Shape {
                    op: "scorer pool",
                    message: format!(
                        "{name}: {elems} {dtype:?} elements asked, the pool holds {} {:?} (the largest geometry must be \
                         built first)",
                        t.len(),
                        t.dtype()
                    ),
                });
            }
            return Ok(t.view(0, elems));
        }
        let t = match dtype {
            DType::F32 => self.ctx.tensor(name, elems)?,
            DType::F16 => self.ctx.tensor_f16(name, elems)?,
        };
        self.buffers.insert(name.to_string(), t.clone());
        Ok(t)
    }
}

impl BufferSource for Pool<'_> {
    type Buf = GpuTensor;
    fn buffer(&mut self, name: &str, _: Category, elems: usize) -> Result<GpuTensor> {
        self.get(name, elems, DType::F32)
    }
    fn buffer_f16(&mut self, name: &str, _: Category, elems: usize) -> Result<GpuTensor> {
        self.get(name, elems, DType::F16)
    }
}

/// Scores [`Sequence`]s in batches. See the module documentation.
pub struct Scorer<'c> {
    ctx: &'c GpuContext,
    cfg: GptConfig,
    mem: MemorySpec,
    precision: MatmulPrecision,
    bos: u32,
    /// Rows of the model's full length per pass: every pass holds b_max·T token slots.
    b_max: usize,
    pool: Pool<'c>,
    /// One scoring model per geometry (B rows, length t): see [`pass_rows`].
    models: BTreeMap<(usize, usize), GpuModel<'c>>,
    pub stats: ScorerStats,
}

impl<'c> Scorer<'c> {
    /// A scorer for `cfg` reading the parameter arena `params` (laid out by `ParamLayout` for
    /// `cfg`), with about `tokens_per_pass` tokens per forward pass (at least one full-length
    /// sequence), padding with `bos`. `shared` offers buffers to use instead of allocating (the
    /// idle training model's, [`GpuModel::named_buffers`]; see [`Pool`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &'c GpuContext,
        cfg: &GptConfig,
        mem: &MemorySpec,
        precision: MatmulPrecision,
        params: GpuTensor,
        shared: Vec<(Entry, GpuTensor)>,
        tokens_per_pass: usize,
        bos: u32,
    ) -> Result<Self> {
        let layout = crate::model::ParamLayout::new(cfg);
        if params.len() != layout.len || params.dtype() != DType::F32 {
            return Err(Error::Shape {
                op: "Scorer",
                message: format!(
                    "the parameter arena has {} elements; the model config lays out {} f32",
                    params.len(),
                    layout.len
                ),
            });
        }
        if bos as usize >= cfg.vocab_size {
            return Err(Error::Shape {
                op: "Scorer",
                message: format!("BOS id {bos} is outside the model's vocabulary of {}", cfg.vocab_size),
            });
        }
        let b_max = (tokens_per_pass / cfg.sequence_len).max(1);
        let entry = |name: &str, category, t: &GpuTensor| Entry {
            name: name.to_string(),
            category,
            elems: t.len(),
            elem_bytes: t.dtype().bytes(),
        };
        let mut offers = vec![(entry("params", Category::Params, &params), params)];
        offers.extend(shared);
        let base: Vec<Entry> = offers.iter().map(|(e, _)| e.clone()).collect();
        let plan = Self::plan(cfg, mem, precision, tokens_per_pass);
        let lent = plan
            .entries
            .iter()
            .zip(plan.lend_from(&base))
            .filter_map(|(e, l)| Some((e.name.clone(), offers[l?].1.clone())))
            .collect();
        let mut scorer = Scorer {
            ctx,
            cfg: cfg.clone(),
            mem: mem.clone(),
            precision,
            bos,
            b_max,
            pool: Pool::new(ctx, lent),
            models: BTreeMap::new(),
            stats: ScorerStats::default(),
        };
        // The full-length geometry first: it asks every buffer at its largest.
        scorer.model(b_max, cfg.sequence_len)?;
        Ok(scorer)
    }

    /// The buffers the scorer uses (the parameters included, as if its own). Those a [`Pool`]
    /// finds offered are [`MemoryPlan::not_in`] the offering plan.
    pub fn plan(cfg: &GptConfig, mem: &MemorySpec, precision: MatmulPrecision, tokens_per_pass: usize) -> MemoryPlan {
        let b = (tokens_per_pass / cfg.sequence_len).max(1);
        MemoryPlan::scoring(cfg, b, cfg.sequence_len, mem, precision)
    }

    /// The model's context: the longest sequence the scorer takes.
    pub fn sequence_len(&self) -> usize {
        self.cfg.sequence_len
    }

    /// Token slots per forward pass.
    pub fn tokens_per_pass(&self) -> usize {
        self.b_max * self.cfg.sequence_len
    }

    fn model(&mut self, b: usize, t: usize) -> Result<()> {
        if !self.models.contains_key(&(b, t)) {
            let m = GpuModel::for_scoring(self.ctx, &self.cfg, b, t, &self.mem, self.precision, &mut self.pool)?;
            self.models.insert((b, t), m);
        }
        Ok(())
    }

    fn check(&self, i: usize, s: &Sequence) -> Result<()> {
        let bad = |message: String| Err(Error::Shape { op: "Scorer", message: format!("sequence {i}: {message}") });
        let t = self.cfg.sequence_len;
        if s.tokens.len() > t {
            return bad(format!("{} tokens, longer than the model's {t} (crop it first)", s.tokens.len()));
        }
        if !(1 <= s.start && s.start <= s.end && s.end <= s.tokens.len()) {
            return bad(format!("continuation [{}, {}) is not within 1..={}", s.start, s.end, s.tokens.len()));
        }
        if let Some(tok) = s.tokens.iter().find(|&&x| x as usize >= self.cfg.vocab_size) {
            return bad(format!("token id {tok} is outside the model's vocabulary of {}", self.cfg.vocab_size));
        }
        Ok(())
    }

    /// Scores every sequence, batched as the module documentation says; results in input order.
    /// The weights are read as they are now (f16 copies refreshed first).
    pub fn score(&mut self, seqs: &[Sequence]) -> Result<Vec<SeqScore>> {
        for (i, s) in seqs.iter().enumerate() {
            self.check(i, s)?;
        }
        // Whoever owns the parameters may have changed them since the last call.
        for m in self.models.values() {
            m.params();
        }
        let lens: Vec<usize> = seqs.iter().map(|s| s.tokens.len()).collect();
        let mut out = vec![None; seqs.len()];
        for (t, batch) in batches(&lens, self.cfg.sequence_len, self.tokens_per_pass()) {
            for (i, score) in batch.iter().zip(self.run_batch(seqs, &batch, t)?) {
                out[*i] = Some(score);
            }
        }
        Ok(out.into_iter().map(|s| s.expect("every sequence is in one batch")).collect())
    }

    /// Scores each sequence alone, in a model of exactly its length with one row: the direct
    /// computation [`Scorer::score`] is checked against (`tests/eval.rs`).
    pub fn score_unbatched(&mut self, seqs: &[Sequence]) -> Result<Vec<SeqScore>> {
        let mut out = Vec::with_capacity(seqs.len());
        for (i, s) in seqs.iter().enumerate() {
            self.check(i, s)?;
            let t = s.tokens.len();
            let mut single = Pool::new(self.ctx, vec![("params".to_string(), self.pool.offered["params"].clone())]);
            let mut m = GpuModel::for_scoring(self.ctx, &self.cfg, 1, t, &self.mem, self.precision, &mut single)?;
            out.push(run(&mut m, seqs, &[i], 1, t, self.bos, &mut self.stats)?[0]);
        }
        Ok(out)
    }

    fn run_batch(&mut self, seqs: &[Sequence], batch: &[usize], t: usize) -> Result<Vec<SeqScore>> {
        let b = pass_rows(batch.len(), t, self.tokens_per_pass());
        self.model(b, t)?;
        let m = self.models.get_mut(&(b, t)).expect("made above");
        run(m, seqs, batch, b, t, self.bos, &mut self.stats)
    }
}

/// Rows of a pass of length `t` holding `n` sequences: all ⌊slots / t⌋ of a full batch, and for
/// the last (partial) batch of a length the power of two ≥ n below that, so a task's tail does not
/// compute a pass of padding rows (a few geometries more, each a view of the same pool).
pub fn pass_rows(n: usize, t: usize, tokens_per_pass: usize) -> usize {
    let full = (tokens_per_pass / t).max(1);
    n.next_power_of_two().min(full)
}

/// How [`Scorer::score`] batches sequences of lengths `lens` (each ≤ `seq_len`) with
/// `tokens_per_pass` slots per pass (rounded down to whole rows of `seq_len`): per pass its length
/// t and the sequences it holds (indices into `lens`), B = slots / t rows of them at most.
/// Longest first, equal lengths in input order, so the batches are deterministic.
pub fn batches(lens: &[usize], seq_len: usize, tokens_per_pass: usize) -> Vec<(usize, Vec<usize>)> {
    let slots = (tokens_per_pass / seq_len).max(1) * seq_len;
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
    let mut out = Vec::new();
    let mut next = 0;
    while next < order.len() {
        let t = lens[order[next]].max(MIN_T).next_multiple_of(MIN_T).min(seq_len);
        let b = slots / t;
        let batch = order[next..(next + b).min(order.len())].to_vec();
        next += batch.len();
        out.push((t, batch));
    }
    out
}

/// One pass of `m` (b rows × t) over the sequences `batch` (indices into `seqs`), rows beyond
/// them all padding.
#[allow(clippy::too_many_arguments)]
fn run(
    m: &mut GpuModel<'_>,
    seqs: &[Sequence],
    batch: &[usize],
    b: usize,
    t: usize,
    bos: u32,
    stats: &mut ScorerStats,
) -> Result<Vec<SeqScore>> {
    let t0 = Instant::now();
    let mut idx = vec![bos as i32; b * t];
    let mut targets = vec![-1i32; b * t];
    for (row, &i) in batch.iter().enumerate() {
        let s = &seqs[i];
        let base = row * t;
        for (p, &tok) in s.tokens.iter().enumerate() {
            idx[base + p] = tok as i32;
        }
        for p in s.start - 1..s.end - 1 {
            targets[base + p] = s.tokens[p + 1] as i32;
        }
        stats.tokens += s.tokens.len();
    }
    stats.padded += b * t - batch.iter().map(|&i| seqs[i].tokens.len()).sum::<usize>();
    m.set_batch(&idx, &targets, 1)?;
    m.run_micro_step(Pass::Eval)?;
    let losses = m.read_losses()?;
    let pred = m.read_argmax()?;
    let mut out = Vec::with_capacity(batch.len());
    for (row, &i) in batch.iter().enumerate() {
        let s = &seqs[i];
        let base = row * t;
        let rows = base + s.start - 1..base + s.end - 1;
        if let Some(p) = rows.clone().find(|&p| !losses[p].is_finite()) {
            return Err(Error::Shape {
                op: "Scorer",
                message: format!(
                    "sequence {i}: the loss at position {} is {} (the weights hold a NaN or infinity?)",
                    p - base,
                    losses[p]
                ),
            });
        }
        let sum_loss: f64 = rows.clone().map(|p| losses[p] as f64).sum();
        let greedy_match = rows.clone().all(|p| pred[p] == targets[p]);
        out.push(SeqScore { sum_loss, mean_loss: sum_loss / (s.end - s.start) as f64, greedy_match });
    }
    stats.passes += 1;
    stats.seconds += t0.elapsed().as_secs_f64();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sequence lands in exactly one batch, longest first; each batch's length is the
    /// smallest multiple of 64 (or the model's length) that holds its longest sequence, and its
    /// rows fit the pass's slots.
    #[test]
    fn batches_cover_every_sequence_once_at_multiples_of_64() {
        let mut rng = crate::util::Rng::new(5);
        let lens: Vec<usize> = (0..500).map(|_| 2 + (rng.next_u64() as usize) % 399).collect();
        let (seq_len, tokens) = (400, 1600);
        let bs = batches(&lens, seq_len, tokens);
        let mut seen = vec![0; lens.len()];
        let mut prev_t = usize::MAX;
        for (t, batch) in &bs {
            let longest = batch.iter().map(|&i| lens[i]).max().unwrap();
            let want = if longest > 384 { 400 } else { longest.max(64).next_multiple_of(64) };
            assert_eq!(*t, want, "batch of longest {longest}");
            assert!(batch.len() * t <= tokens && !batch.is_empty());
            assert!(*t <= prev_t);
            prev_t = *t;
            for &i in batch {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        // Full batches but the last of each length: ⌊slots / t⌋ rows.
        for w in bs.windows(2) {
            if w[0].0 == w[1].0 {
                assert_eq!(w[0].1.len(), tokens / w[0].0);
            }
        }
    }
}
