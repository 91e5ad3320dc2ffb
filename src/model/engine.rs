//! Text generation with a KV cache on the GPU, batch 1 (nanochat's `Engine`, spec §7.5).
//!
//! [`Engine`] runs the model one position at a time: every token fed goes through the same kernels
//! as training with N = 1 row (attention is the [decode kernel](crate::kernels::attention::attention_decode)
//! over the cache), appends its normalized k and v to each layer's cache and leaves the final
//! normed stream z, from which [`Engine::logits`] computes the next-token logits. So the logits
//! after feeding tokens 0..=t equal row t of the training forward over the same tokens (checked
//! against the f64 reference model in `tests/engine.rs`). A prompt is fed the same way, one
//! position per submission: prefill costs one decode step per prompt token, which suits sampling
//! prompts of a few dozen tokens.
//!
//! Parameters are read from a caller-supplied arena tensor at every dispatch and never written:
//! the trainer passes its live parameter arena ([`crate::model::gpu::GpuModel::params`]) and
//! samples without copying, and the samples always reflect the current weights. The engine owns
//! only its KV cache (2·L·max_len·Hkv·D floats), one-row activations, the RoPE tables for max_len
//! positions and the decode scratch.
//!
//! Per position pos with token id tok (C, H, Hkv, D, V as in llm.c):
//! - e = norm(wte[tok]) into row 1 of a two-row buffer whose row 0 holds the previous position's
//!   e (zeros at pos 0); smear over those two rows gives x0 = e + λσ(⟨w, e[0:24]⟩)·e_prev, the
//!   previous token's pre-smear normalized embedding carried across steps (spec §10.6), and
//!   exactly e at pos 0 (0·g = 0).
//! - Per layer i: x_in = λr_i·x + λ0_i·x0, u = norm(x_in); q, k, v = u·W{q,k,v}ᵀ, v written straight
//!   into cache row pos; on value-embedding layers v += 3σ(u[0:12]·W_gᵀ)·ve_i[tok]; RoPE at pos;
//!   per-head norm ×1.2 (k's written into cache row pos); decode attention over rows
//!   pos − window_i ..= pos; x1 = x_in + att·W_oᵀ; x = x1 + relu(norm(x1)·W_fcᵀ)²·W_projᵀ. After
//!   layer L/2, x_mid = x.
//! - z = norm(x − λ_b·x_mid); logits = z·lm_headᵀ (only when asked for), then softcap
//!   15·tanh(l/15) on the host, in f64, over the first V of the Vp columns read back (the
//!   softcap costs nothing beside the V-float read-back every sampled token needs anyway).

use super::config::{QK_SCALE, SOFTCAP};
use super::{GptConfig, ParamLayout};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::kernels::attention::{attention_decode, attention_decode_scratch_len, MAX_HEAD_DIM};
use crate::kernels::embedding::embedding_forward;
use crate::kernels::matmul::{matmul, Gemm};
use crate::kernels::{elementwise, relu2, residual, rmsnorm, rope, smear, ve_gate, Stream};
use crate::tokenizer::Tokenizer;
use crate::util::Rng;

/// The prompts nanochat's base training samples from (spec §4.3), exactly.
pub const NANOCHAT_PROMPTS: [&str; 7] = [
    "The capital of France is",
    "The chemical symbol of gold is",
    "If yesterday was Friday, then tomorrow will be",
    "The opposite of hot is",
    "The planets of the solar system are:",
    "My favorite color is",
    "If 5*x + 3 = 13, then x is",
];

/// How the next token is chosen from the logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// 0: greedy (argmax, ties to the lowest id). Otherwise softmax(logits / temperature).
    pub temperature: f32,
    /// Sample only among the k largest logits (ties broken towards lower ids). `None`: all.
    pub top_k: Option<usize>,
    /// Seed of the generator that draws the samples (unused when greedy).
    pub seed: u64,
}

impl Sampling {
    /// Argmax decoding, as nanochat's training-time samples.
    pub fn greedy() -> Self {
        Sampling { temperature: 0.0, top_k: None, seed: 42 }
    }

    fn check(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::Config {
                message: format!("temperature must be a finite number >= 0 (0 = greedy), got {}", self.temperature),
            });
        }
        if self.top_k == Some(0) {
            return Err(Error::Config {
                message: "top-k must be at least 1 (leave it unset to sample from all)".into(),
            });
        }
        Ok(())
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Self::greedy()
    }
}

/// The next token id from softcapped logits (length V). Greedy: the first index of the largest
/// logit. Otherwise: keep the top-k (or all) logits, p ∝ exp((l − max)/temperature) in f64, and
/// invert one uniform draw of `rng` over the cumulative sum, candidates in decreasing logit order.
pub fn sample_next(logits: &[f32], sampling: &Sampling, rng: &mut Rng) -> Result<i32> {
    sampling.check()?;
    if logits.is_empty() {
        return Err(Error::Shape { op: "sample", message: "no logits to sample from".into() });
    }
    if let Some(i) = logits.iter().position(|l| !l.is_finite()) {
        return Err(Error::Shape {
            op: "sample",
            message: format!("logit {i} is {} (the weights hold a NaN or infinity?)", logits[i]),
        });
    }
    let argmax = || {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        best as i32
    };
    if sampling.temperature == 0.0 {
        return Ok(argmax());
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Stable: equal logits keep increasing ids.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(sampling.top_k.unwrap_or(order.len()).min(order.len()));
    let t = sampling.temperature as f64;
    let top = logits[order[0]] as f64;
    let weights: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - top) / t).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut r = rng.uniform() * total;
    for (&i, &w) in order.iter().zip(&weights) {
        if r < w {
            return Ok(i as i32);
        }
        r -= w;
    }
    // Only reachable through rounding of the running difference: the last candidate.
    Ok(*order.last().unwrap() as i32)
}

/// The engine's own device buffers: one-row activations, the caches, the RoPE tables.
struct Buffers {
    /// Token ids by position, i32 (max_len): embedding lookups read one row of it.
    tokens: GpuTensor,
    /// Raw embedding row (C).
    raw: GpuTensor,
    /// [e_prev, e] (2, C): the normalized embeddings of the previous and current position.
    e_pair: GpuTensor,
    /// Staging for the shift e → e_prev (a dispatch cannot read and write one buffer).
    e_tmp: GpuTensor,
    /// smear over e_pair (2, C); row 1 is x0.
    x_pair: GpuTensor,
    x: GpuTensor,
    x_in: GpuTensor,
    u: GpuTensor,
    x1: GpuTensor,
    x_mid: GpuTensor,
    xf: GpuTensor,
    z: GpuTensor,
    /// rstd outputs of the norms of C-rows, q heads and k heads (never read back).
    rstd: GpuTensor,
    rstd_q: GpuTensor,
    rstd_k: GpuTensor,
    q: GpuTensor,
    qn: GpuTensor,
    k: GpuTensor,
    ve: GpuTensor,
    att: GpuTensor,
    hid: GpuTensor,
    act: GpuTensor,
    /// (Vp): lm_head output.
    logits: GpuTensor,
    cos: GpuTensor,
    sin: GpuTensor,
    /// Per layer, (max_len, Hkv, D): normalized k (×1.2) and gated v by position.
    k_cache: Vec<GpuTensor>,
    v_cache: Vec<GpuTensor>,
    /// Stream workspace: the decode attention's partials.
    workspace: GpuTensor,
}

/// Batch-1 inference with a KV cache. See the module documentation.
pub struct Engine<'c> {
    ctx: &'c GpuContext,
    cfg: GptConfig,
    layout: ParamLayout,
    params: GpuTensor,
    max_len: usize,
    /// Positions filled in the cache (the next token goes to this position).
    len: usize,
    bufs: Buffers,
}

impl<'c> Engine<'c> {
    /// An engine reading the parameter arena `params` (laid out by [`ParamLayout`] for `cfg`; e.g.
    /// the training model's, which it never writes) with room for `max_len` ≤ T positions.
    pub fn new(ctx: &'c GpuContext, cfg: &GptConfig, params: GpuTensor, max_len: usize) -> Result<Self> {
        let layout = ParamLayout::new(cfg);
        let bad = |message: String| Err(Error::Config { message });
        if params.len() != layout.len {
            return bad(format!(
                "the parameter arena has {} elements; the model config lays out {}",
                params.len(),
                layout.len
            ));
        }
        if max_len == 0 || max_len > cfg.sequence_len {
            return bad(format!(
                "max_len {max_len} must be in [1, sequence_len = {}] (the context the model was trained for)",
                cfg.sequence_len
            ));
        }
        let (c, h, hkv, d) = (cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim);
        if !d.is_multiple_of(4) || d > MAX_HEAD_DIM {
            return bad(format!("head dim {d}: the attention kernels need a multiple of 4, at most {MAX_HEAD_DIM}"));
        }
        let kvd = hkv * d;
        let t = |label: &str, len: usize| ctx.tensor(&format!("engine {label}"), len);
        let (cos, sin) = crate::reference::rope::rope_tables(max_len, d);
        let f32s = |x: Vec<f64>| x.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
        let bufs = Buffers {
            tokens: t("tokens", max_len)?,
            raw: t("raw", c)?,
            e_pair: t("e_pair", 2 * c)?,
            e_tmp: t("e_tmp", c)?,
            x_pair: t("x_pair", 2 * c)?,
            x: t("x", c)?,
            x_in: t("x_in", c)?,
            u: t("u", c)?,
            x1: t("x1", c)?,
            x_mid: t("x_mid", c)?,
            xf: t("xf", c)?,
            z: t("z", c)?,
            rstd: t("rstd", 1)?,
            rstd_q: t("rstd_q", h)?,
            rstd_k: t("rstd_k", hkv)?,
            q: t("q", h * d)?,
            qn: t("qn", h * d)?,
            k: t("k", kvd)?,
            ve: t("ve", kvd)?,
            att: t("att", h * d)?,
            hid: t("hid", cfg.hidden())?,
            act: t("act", cfg.hidden())?,
            logits: t("logits", cfg.padded_vocab)?,
            cos: ctx.upload("engine rope cos", &f32s(cos))?,
            sin: ctx.upload("engine rope sin", &f32s(sin))?,
            k_cache: (0..cfg.n_layer).map(|i| t(&format!("k_cache {i}"), max_len * kvd)).collect::<Result<_>>()?,
            v_cache: (0..cfg.n_layer).map(|i| t(&format!("v_cache {i}"), max_len * kvd)).collect::<Result<_>>()?,
            workspace: t("workspace", attention_decode_scratch_len(max_len, h, d))?,
        };
        Ok(Engine { ctx, cfg: cfg.clone(), layout, params, max_len, len: 0, bufs })
    }

    /// An engine over its own copy of a host arena (e.g. loaded from a checkpoint).
    pub fn from_arena(ctx: &'c GpuContext, cfg: &GptConfig, arena: &[f32], max_len: usize) -> Result<Self> {
        let expected = ParamLayout::new(cfg).len;
        if arena.len() != expected {
            return Err(Error::Config {
                message: format!(
                    "the parameter arena has {} elements; the model config lays out {expected}",
                    arena.len()
                ),
            });
        }
        let params = ctx.upload("engine params", arena)?;
        Self::new(ctx, cfg, params, max_len)
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// Positions the cache holds.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokens fed since the last [`reset`](Self::reset).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget the context; the next token fed is position 0.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Append one token at the next position.
    pub fn feed(&mut self, token: i32) -> Result<()> {
        self.feed_tokens(&[token])
    }

    /// Append tokens at the next positions: the same as feeding them one by one. Tokens that do
    /// not fit or an id outside [0, V) are refused with the context intact; a device error after
    /// that loses the context (the engine is reset).
    pub fn feed_tokens(&mut self, tokens: &[i32]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        if self.len + tokens.len() > self.max_len {
            return Err(Error::Config {
                message: format!(
                    "the context would hold {} tokens; this engine has room for max_len = {}",
                    self.len + tokens.len(),
                    self.max_len
                ),
            });
        }
        let v = self.cfg.vocab_size as i32;
        if let Some(bad) = tokens.iter().find(|&&x| x < 0 || x >= v) {
            return Err(Error::Shape { op: "engine", message: format!("token id {bad} outside [0, V = {v})") });
        }
        let (start, end) = (self.len, self.len + tokens.len());
        // Whatever happens next, positions from `start` on are being overwritten: until this call
        // succeeds the context is not a valid one (a failed call leaves the engine reset).
        self.len = 0;
        self.ctx.write_i32(&self.bufs.tokens.view(start, tokens.len()), tokens)?;
        for pos in start..end {
            // One submission per position keeps the recorded bind groups few; the queue runs them in order.
            let mut s = self.stream();
            self.record_position(&mut s, pos)?;
            s.submit();
        }
        self.ctx.wait()?;
        self.len = end;
        Ok(())
    }

    /// The softcapped logits (length V) of the next token after everything fed so far.
    pub fn logits(&self) -> Result<Vec<f32>> {
        if self.len == 0 {
            return Err(Error::Config {
                message: "no tokens fed yet: the logits predict the token after a context".into(),
            });
        }
        let (c, vp, v) = (self.cfg.n_embd, self.cfg.padded_vocab, self.cfg.vocab_size);
        let mut s = self.stream();
        matmul(&mut s, &self.bufs.logits, &self.bufs.z, &self.p("lm_head.weight"), &Gemm::nt(1, vp, c), 1.0, 0.0)?;
        s.run()?;
        let raw = self.ctx.read(&self.bufs.logits.view(0, v))?;
        let cap = SOFTCAP as f64;
        Ok(raw.into_iter().map(|z| (cap * (z as f64 / cap).tanh()) as f32).collect())
    }

    /// From a fresh context: feed `prompt`, then choose `max_new` tokens one after another, each
    /// from the logits after the previous one (which is fed in turn). Returns the new tokens.
    /// The prompt and all but the last new token must fit the cache.
    pub fn generate(&mut self, prompt: &[i32], max_new: usize, sampling: Sampling) -> Result<Vec<i32>> {
        sampling.check()?;
        if prompt.is_empty() {
            return Err(Error::Config { message: "an empty prompt: prepend at least the BOS token".into() });
        }
        if prompt.len() > self.max_len {
            return Err(Error::Config {
                message: format!(
                    "the prompt has {} tokens, longer than the {} positions this engine holds (max_len; at most the \
                     model's sequence_len {})",
                    prompt.len(),
                    self.max_len,
                    self.cfg.sequence_len
                ),
            });
        }
        let needed = prompt.len() + max_new.saturating_sub(1);
        if needed > self.max_len {
            return Err(Error::Config {
                message: format!(
                    "a {}-token prompt plus {max_new} new tokens needs {needed} positions; this engine holds {} \
                     (max_len; at most the model's sequence_len {}). Ask for at most {} new tokens",
                    prompt.len(),
                    self.max_len,
                    self.cfg.sequence_len,
                    self.max_len + 1 - prompt.len()
                ),
            });
        }
        self.reset();
        self.feed_tokens(prompt)?;
        let mut rng = Rng::new(sampling.seed);
        let mut out = Vec::with_capacity(max_new);
        for i in 0..max_new {
            let next = sample_next(&self.logits()?, &sampling, &mut rng)?;
            out.push(next);
            if i + 1 < max_new {
                self.feed(next)?;
            }
        }
        Ok(out)
    }

    fn stream(&self) -> Stream<'c> {
        Stream::with_workspace(self.ctx, self.bufs.workspace.clone())
    }

    fn p(&self, name: &str) -> GpuTensor {
        let (o, n) = self.layout.range(name);
        self.params.view(o, n)
    }

    /// Element i of a per-layer vector parameter.
    fn pi(&self, name: &str, i: usize) -> GpuTensor {
        let (o, _) = self.layout.range(name);
        self.params.view(o + i, 1)
    }

    fn w(&self, i: usize, s: &str) -> GpuTensor {
        self.p(&format!("transformer.h.{i}.{s}"))
    }

    /// Every dispatch of one position: embedding and smear, the blocks, z.
    fn record_position(&self, s: &mut Stream<'_>, pos: usize) -> Result<()> {
        let cfg = &self.cfg;
        let b = &self.bufs;
        let (c, h, hkv, d) = (cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim);
        let (hd, kvd) = (h * d, hkv * d);
        let tok = b.tokens.view(pos, 1);
        let (e_prev, e_cur) = (b.e_pair.view(0, c), b.e_pair.view(c, c));
        if pos == 0 {
            elementwise::fill(s, &e_prev, 0.0)?;
        } else {
            elementwise::copy(s, &b.e_tmp, &e_cur)?;
            elementwise::copy(s, &e_prev, &b.e_tmp)?;
        }
        embedding_forward(s, &b.raw, &self.p("transformer.wte.weight"), &tok, 1, c)?;
        rmsnorm::rmsnorm_forward(s, &e_cur, &b.rstd, &b.raw, 1, c, 1.0)?;
        smear::smear_forward(s, &b.x_pair, &b.e_pair, &self.p("smear_gate.weight"), &self.p("smear_lambda"), 1, 2, c)?;
        let x0 = b.x_pair.view(c, c);
        let scale = 1.0 / (d as f32).sqrt();
        for i in 0..cfg.n_layer {
            let x_prev = if i == 0 { &x0 } else { &b.x };
            residual::lambda_mix_forward(
                s,
                &b.x_in,
                x_prev,
                &x0,
                &self.pi("resid_lambdas", i),
                &self.pi("x0_lambdas", i),
            )?;
            rmsnorm::rmsnorm_forward(s, &b.u, &b.rstd, &b.x_in, 1, c, 1.0)?;
            let k_row = b.k_cache[i].view(pos * kvd, kvd);
            let v_row = b.v_cache[i].view(pos * kvd, kvd);
            matmul(s, &b.q, &b.u, &self.w(i, "attn.c_q.weight"), &Gemm::nt(1, hd, c), 1.0, 0.0)?;
            matmul(s, &b.k, &b.u, &self.w(i, "attn.c_k.weight"), &Gemm::nt(1, kvd, c), 1.0, 0.0)?;
            matmul(s, &v_row, &b.u, &self.w(i, "attn.c_v.weight"), &Gemm::nt(1, kvd, c), 1.0, 0.0)?;
            if cfg.has_value_embed(i) {
                embedding_forward(s, &b.ve, &self.p(&format!("value_embeds.{i}.weight")), &tok, 1, kvd)?;
                ve_gate::ve_gate_forward(s, &v_row, &b.u, &b.ve, &self.w(i, "attn.ve_gate.weight"), 1, c, hkv, d)?;
            }
            rope::rope_forward(s, &b.q, &b.cos, &b.sin, 1, 1, pos, h, d)?;
            rope::rope_forward(s, &b.k, &b.cos, &b.sin, 1, 1, pos, hkv, d)?;
            rmsnorm::rmsnorm_forward(s, &b.qn, &b.rstd_q, &b.q, h, d, QK_SCALE)?;
            rmsnorm::rmsnorm_forward(s, &k_row, &b.rstd_k, &b.k, hkv, d, QK_SCALE)?;
            attention_decode(s, &b.att, &b.qn, &b.k_cache[i], &b.v_cache[i], pos, h, hkv, d, cfg.windows[i], scale)?;
            elementwise::copy(s, &b.x1, &b.x_in)?;
            matmul(s, &b.x1, &b.att, &self.w(i, "attn.c_proj.weight"), &Gemm::nt(1, c, hd), 1.0, 1.0)?;
            rmsnorm::rmsnorm_forward(s, &b.u, &b.rstd, &b.x1, 1, c, 1.0)?;
            matmul(s, &b.hid, &b.u, &self.w(i, "mlp.c_fc.weight"), &Gemm::nt(1, cfg.hidden(), c), 1.0, 0.0)?;
            relu2::relu2_forward(s, &b.act, &b.hid)?;
            elementwise::copy(s, &b.x, &b.x1)?;
            matmul(s, &b.x, &b.act, &self.w(i, "mlp.c_proj.weight"), &Gemm::nt(1, c, cfg.hidden()), 1.0, 1.0)?;
            if i == cfg.backout_layer() {
                elementwise::copy(s, &b.x_mid, &b.x)?;
            }
        }
        residual::backout_forward(s, &b.xf, &b.x, &b.x_mid, &self.p("backout_lambda"))?;
        rmsnorm::rmsnorm_forward(s, &b.z, &b.rstd, &b.xf, 1, c, 1.0)
    }
}

/// The text `engine` generates after `prompt` (BOS prepended, as nanochat does), decoded.
pub fn complete(
    engine: &mut Engine<'_>,
    tok: &Tokenizer,
    prompt: &str,
    max_new: usize,
    sampling: Sampling,
) -> Result<String> {
    let mut ids = vec![tok.bos_id()? as i32];
    ids.extend(tok.encode(prompt)?.into_iter().map(|t| t as i32));
    let out = engine.generate(&ids, max_new, sampling)?;
    tok.decode(&out.iter().map(|&t| t as u32).collect::<Vec<_>>())
}

/// Cache positions that generating `max_new` tokens after each of `prompts` (BOS prepended)
/// needs: the longest prompt plus all but the last new token. Size an [`Engine`] with it (capped
/// at the model's sequence_len), e.g. `positions_needed(tok, &NANOCHAT_PROMPTS, 16)` for
/// [`nanochat_samples`].
pub fn positions_needed(tok: &Tokenizer, prompts: &[&str], max_new: usize) -> Result<usize> {
    let mut longest = 0;
    for p in prompts {
        longest = longest.max(1 + tok.encode(p)?.len());
    }
    Ok(longest + max_new.saturating_sub(1))
}

/// nanochat's training-time samples (spec §4.3): each of the seven prompts with BOS prepended,
/// `max_new` tokens (nanochat: 16) greedily. Returns (prompt, continuation) pairs.
pub fn nanochat_samples(engine: &mut Engine<'_>, tok: &Tokenizer, max_new: usize) -> Result<Vec<(String, String)>> {
    NANOCHAT_PROMPTS
        .iter()
        .map(|&p| Ok((p.to_string(), complete(engine, tok, p, max_new, Sampling::greedy())?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut rng = Rng::new(1);
        let l = [0.5, 2.0, -1.0, 2.0];
        assert_eq!(sample_next(&l, &Sampling::greedy(), &mut rng).unwrap(), 1);
        // top-k 1 at any temperature is greedy, ties included.
        let s = Sampling { temperature: 1.7, top_k: Some(1), seed: 3 };
        assert_eq!(sample_next(&l, &s, &mut rng).unwrap(), 1);
    }

    #[test]
    fn sampling_follows_the_tempered_softmax_within_top_k() {
        let l = [1.0f32, 0.0, 3.0, 2.0, -5.0];
        let s = Sampling { temperature: 2.0, top_k: Some(3), seed: 9 };
        let mut rng = Rng::new(s.seed);
        let mut counts = [0usize; 5];
        let n = 40_000;
        for _ in 0..n {
            counts[sample_next(&l, &s, &mut rng).unwrap() as usize] += 1;
        }
        assert_eq!((counts[1], counts[4]), (0, 0), "outside the top 3: {counts:?}");
        // p ∝ exp(l/2) over ids 2, 3, 0.
        let w = [(3.0f64 / 2.0).exp(), 1.0f64.exp(), 0.5f64.exp()];
        let total: f64 = w.iter().sum();
        for (id, wi) in [2usize, 3, 0].into_iter().zip(w) {
            let got = counts[id] as f64 / n as f64;
            let want = wi / total;
            // 5 standard deviations of a binomial proportion.
            let sd = (want * (1.0 - want) / n as f64).sqrt();
            assert!((got - want).abs() < 5.0 * sd, "id {id}: {got} vs {want}");
        }
    }

    #[test]
    fn bad_sampling_and_non_finite_logits_are_refused() {
        let mut rng = Rng::new(1);
        let e = sample_next(&[1.0], &Sampling { temperature: -1.0, ..Sampling::greedy() }, &mut rng).unwrap_err();
        assert!(e.to_string().contains("temperature"), "{e}");
        let e = sample_next(&[1.0], &Sampling { top_k: Some(0), ..Sampling::greedy() }, &mut rng).unwrap_err();
        assert!(e.to_string().contains("top-k"), "{e}");
        let e = sample_next(&[1.0, f32::NAN], &Sampling::greedy(), &mut rng).unwrap_err();
        assert!(e.to_string().contains("logit 1"), "{e}");
    }
}
