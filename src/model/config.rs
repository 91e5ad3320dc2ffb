//! Model shape: derived from depth as nanochat derives it (`build_model_meta` in base_train), or
//! read from a nanochat `meta_*.json` `model_config`.
//!
//! Dimension names follow llm.c: L layers, C channels, H query heads, Hkv key/value heads, D head
//! dim, V vocab, Vp padded vocab, T sequence length.

use crate::config::KeyDoc;
use crate::error::{Error, Result};
use crate::kernels::attention::MAX_HEAD_DIM;
use serde::{Deserialize, Serialize};

/// The `[model]` table of a config file: what a user sets. [`GptConfig::from_spec`] derives the
/// rest. What each field means is in [`MODEL_KEYS`] (printed by `wgpt config keys`; a unit test
/// keeps its keys equal to these fields).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub depth: usize,
    #[serde(default = "default_aspect_ratio")]
    pub aspect_ratio: usize,
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    #[serde(default)]
    pub n_kv_head: Option<usize>,
    pub vocab_size: usize,
    pub sequence_len: usize,
    #[serde(default = "default_window_pattern")]
    pub window_pattern: String,
}

/// The `[model]` keys and what they mean.
pub const MODEL_KEYS: &[KeyDoc] = &[
    KeyDoc::required("depth", "Number of transformer blocks L, e.g. 12. The width follows from it."),
    KeyDoc::optional(
        "aspect_ratio",
        "Width per layer: C = depth · aspect_ratio rounded up to a multiple of head_dim (nanochat: 64).",
    ),
    KeyDoc::optional(
        "head_dim",
        "D, a multiple of 4 up to 128 (the attention kernels' limit), e.g. 128 (nanochat's); smaller for tests.",
    ),
    KeyDoc::optional(
        "n_kv_head",
        "Hkv, the key/value heads; unset = the number of query heads (no GQA, as base_train). Must divide H.",
    ),
    KeyDoc::required(
        "vocab_size",
        "V, the tokenizer's vocabulary, e.g. 32768. Padded to a multiple of 64 for the embedding tables.",
    ),
    KeyDoc::required("sequence_len", "T, tokens per sequence, e.g. 2048."),
    KeyDoc::optional(
        "window_pattern",
        "Per-layer attention windows, `L` (full context) and `S` (quarter context) tiled over the layers; the \
         last layer is always `L`. e.g. \"L\" or \"SSSL\".",
    ),
];

impl ModelSpec {
    /// The required keys as given and every optional one at the default a file that omits it
    /// gets (the same functions serde uses).
    pub fn with_defaults(depth: usize, vocab_size: usize, sequence_len: usize) -> Self {
        ModelSpec {
            depth,
            aspect_ratio: default_aspect_ratio(),
            head_dim: default_head_dim(),
            n_kv_head: None,
            vocab_size,
            sequence_len,
            window_pattern: default_window_pattern(),
        }
    }
}

fn default_aspect_ratio() -> usize {
    64
}
fn default_head_dim() -> usize {
    128
}
fn default_window_pattern() -> String {
    "L".into()
}

/// The fully derived model shape that every other part of wgpt uses.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GptConfig {
    /// L
    pub n_layer: usize,
    /// C
    pub n_embd: usize,
    /// H
    pub n_head: usize,
    /// Hkv
    pub n_kv_head: usize,
    /// D
    pub head_dim: usize,
    /// V (the tokenizer's)
    pub vocab_size: usize,
    /// Vp = V rounded up to a multiple of 64 (rows of wte, lm_head and the value embeddings)
    pub padded_vocab: usize,
    /// T
    pub sequence_len: usize,
    pub window_pattern: String,
    /// Per layer: how far back a query may look (a window w sees w + 1 keys, itself included).
    pub windows: Vec<usize>,
}

/// Channels of the normalized block input the value-embedding gate reads.
pub const VE_GATE_CHANNELS: usize = 12;
/// Channels of the embedding the smear gate reads.
pub const SMEAR_CHANNELS: usize = 24;
/// Logit softcap: logits = 15·tanh(z/15).
pub const SOFTCAP: f32 = 15.0;
/// RMSNorm epsilon: PyTorch's default for f32, FLT_EPSILON.
pub const RMS_EPS: f32 = f32::EPSILON;
/// q and k are multiplied by this after the per-head RMSNorm.
pub const QK_SCALE: f32 = 1.2;
/// RoPE base θ.
pub const ROPE_BASE: f64 = 100_000.0;

impl GptConfig {
    pub fn from_spec(spec: &ModelSpec) -> Result<Self> {
        Self::from_spec_with_origin(spec, &|_| String::new())
    }

    /// [`Self::from_spec`], each refusal naming the key, its value, `origin(key)` (where the value
    /// came from, e.g. " (from --set model.head_dim=6)") and a fix. The shapes the GPU kernels
    /// cannot run are refused here, not when the first kernel is dispatched.
    pub fn from_spec_with_origin(spec: &ModelSpec, origin: &dyn Fn(&str) -> String) -> Result<Self> {
        let refuse = |key: &str, value: &dyn std::fmt::Display, problem: &str, hint: &str| {
            Err(Error::Config { message: format!("{key} = {value}{} {problem}\n  HINT: {hint}", origin(key)) })
        };
        if spec.depth == 0 {
            return refuse("model.depth", &spec.depth, "leaves the model without a layer", "e.g. 12 (nanochat's d12)");
        }
        if spec.head_dim == 0 || !spec.head_dim.is_multiple_of(4) || spec.head_dim > MAX_HEAD_DIM {
            return refuse(
                "model.head_dim",
                &spec.head_dim,
                &format!("is not a head size the attention kernels run: a multiple of 4, at most {MAX_HEAD_DIM}"),
                "nanochat's is 128 (the default); 64 or 32 for small models",
            );
        }
        if spec.aspect_ratio == 0 {
            return refuse(
                "model.aspect_ratio",
                &spec.aspect_ratio,
                "gives the model no width (C = depth · aspect_ratio)",
                "nanochat's is 64 (the default)",
            );
        }
        let base = spec.depth * spec.aspect_ratio;
        let n_embd = base.div_ceil(spec.head_dim) * spec.head_dim;
        let n_head = n_embd / spec.head_dim;
        if n_embd < SMEAR_CHANNELS {
            return refuse(
                "model.aspect_ratio",
                &spec.aspect_ratio,
                &format!(
                    "gives C = {n_embd} channels (depth {} · aspect_ratio, rounded up to a multiple of head_dim {}), \
                     fewer than the {SMEAR_CHANNELS} the smear gate reads",
                    spec.depth, spec.head_dim
                ),
                &format!("raise model.aspect_ratio or model.depth so that C >= {SMEAR_CHANNELS}"),
            );
        }
        let n_kv_head = spec.n_kv_head.unwrap_or(n_head);
        if n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) {
            let divisors: Vec<String> =
                (1..=n_head).filter(|d| n_head.is_multiple_of(*d)).map(|d| d.to_string()).collect();
            return refuse(
                "model.n_kv_head",
                &n_kv_head,
                &format!(
                    "does not divide the {n_head} query heads (C = {n_embd} = {n_head} × head_dim {})",
                    spec.head_dim
                ),
                &format!("use one of {}, or leave it unset for {n_head} (no grouping)", divisors.join(", ")),
            );
        }
        if spec.vocab_size < 2 {
            return refuse(
                "model.vocab_size",
                &spec.vocab_size,
                "is not a vocabulary: it needs at least 2 tokens",
                "the tokenizer's vocabulary size, e.g. 32768 (`wgpt tokenizer train --vocab-size N`)",
            );
        }
        if spec.sequence_len < 2 {
            return refuse(
                "model.sequence_len",
                &spec.sequence_len,
                "is too short: smear mixes each token with the previous one, so T >= 2",
                "e.g. 2048 (nanochat's) or 256 for a small model",
            );
        }
        let pattern = spec.window_pattern.trim();
        if pattern.is_empty() || !pattern.chars().all(|c| matches!(c, 'L' | 'S' | 'l' | 's')) {
            return refuse(
                "model.window_pattern",
                &format!("{:?}", spec.window_pattern),
                "is not a window pattern: a non-empty string of L (full context) and S (quarter context)",
                "e.g. \"L\" (the default) or \"SSSL\"",
            );
        }
        Self::new(spec.depth, n_head, n_kv_head, n_embd, spec.vocab_size, spec.sequence_len, &spec.window_pattern)
    }

    /// From nanochat's `model_config` fields (as in `meta_*.json`).
    pub fn new(
        n_layer: usize,
        n_head: usize,
        n_kv_head: usize,
        n_embd: usize,
        vocab_size: usize,
        sequence_len: usize,
        window_pattern: &str,
    ) -> Result<Self> {
        let bad = |message: String| Err(Error::Config { message });
        if n_layer == 0 || n_head == 0 || n_kv_head == 0 || n_embd == 0 {
            return bad(format!(
                "n_layer {n_layer}, n_head {n_head}, n_kv_head {n_kv_head}, n_embd {n_embd} must all be >= 1"
            ));
        }
        if !n_embd.is_multiple_of(n_head) {
            return bad(format!("n_embd {n_embd} is not a multiple of n_head {n_head}"));
        }
        if !n_head.is_multiple_of(n_kv_head) {
            return bad(format!("n_kv_head {n_kv_head} must divide n_head {n_head} (grouped-query attention)"));
        }
        let head_dim = n_embd / n_head;
        if !head_dim.is_multiple_of(2) {
            return bad(format!("head dim {head_dim} must be even (RoPE rotates pairs)"));
        }
        if n_embd < SMEAR_CHANNELS || n_embd < VE_GATE_CHANNELS {
            return bad(format!(
                "n_embd {n_embd} must be at least {SMEAR_CHANNELS} (the smear gate reads 24 channels)"
            ));
        }
        if vocab_size < 2 {
            return bad(format!("vocab_size {vocab_size} must be >= 2"));
        }
        if sequence_len < 2 {
            return bad(format!(
                "sequence_len {sequence_len} must be >= 2 (smear mixes each token with the previous one)"
            ));
        }
        let pattern = window_pattern.trim().to_ascii_uppercase();
        if pattern.is_empty() || !pattern.chars().all(|c| c == 'L' || c == 'S') {
            return bad(format!(
                "window_pattern `{window_pattern}` must be a non-empty string of L and S, e.g. \"L\" or \"SSSL\""
            ));
        }
        let long = sequence_len;
        // Quarter context rounded up to a multiple of 128 (nanochat: 2048 -> 512).
        let short = (sequence_len / 4).div_ceil(128) * 128;
        let chars: Vec<char> = pattern.chars().collect();
        let windows = (0..n_layer)
            .map(|i| if i == n_layer - 1 || chars[i % chars.len()] == 'L' { long } else { short.min(long) })
            .collect();
        Ok(GptConfig {
            n_layer,
            n_embd,
            n_head,
            n_kv_head,
            head_dim,
            vocab_size,
            padded_vocab: vocab_size.div_ceil(64) * 64,
            sequence_len,
            window_pattern: pattern,
            windows,
        })
    }

    /// Hkv · D: width of k, v and of each value-embedding row.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// MLP hidden width, 4C.
    pub fn hidden(&self) -> usize {
        4 * self.n_embd
    }

    /// Value embeddings live on layers i ≡ L − 1 (mod 2), so the last layer always has one.
    pub fn has_value_embed(&self, layer: usize) -> bool {
        layer % 2 == (self.n_layer - 1) % 2
    }

    pub fn value_embed_layers(&self) -> Vec<usize> {
        (0..self.n_layer).filter(|&i| self.has_value_embed(i)).collect()
    }

    /// The residual after this block is kept for backout (L / 2).
    pub fn backout_layer(&self) -> usize {
        self.n_layer / 2
    }

    /// nanochat's `model_config` JSON object (the shape of `meta_*.json`).
    pub fn nanochat_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sequence_len": self.sequence_len,
            "vocab_size": self.vocab_size,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_kv_head": self.n_kv_head,
            "n_embd": self.n_embd,
            "window_pattern": self.window_pattern,
        })
    }

    /// Parse nanochat's `model_config` object; a missing window_pattern means "L" (as nanochat
    /// patches old checkpoints).
    pub fn from_nanochat_json(v: &serde_json::Value) -> Result<Self> {
        let get = |k: &str| -> Result<usize> {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| Error::Config { message: format!("model_config is missing the integer field `{k}`") })
        };
        let pattern = v.get("window_pattern").and_then(|x| x.as_str()).unwrap_or("L");
        Self::new(
            get("n_layer")?,
            get("n_head")?,
            get("n_kv_head")?,
            get("n_embd")?,
            get("vocab_size")?,
            get("sequence_len")?,
            pattern,
        )
    }

    /// Training FLOPs per token (forward + backward), nanochat's `estimate_flops`:
    /// 6 · (elements of every Linear weight) + Σ_layers 12 · H · D · min(w, T).
    pub fn flops_per_token(&self) -> u64 {
        let counts = super::params::ParamCounts::of(self);
        let attn: u64 =
            self.windows.iter().map(|&w| 12 * (self.n_head * self.head_dim * w.min(self.sequence_len)) as u64).sum();
        6 * counts.matmul as u64 + attn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d12() -> GptConfig {
        GptConfig::from_spec(&ModelSpec {
            depth: 12,
            aspect_ratio: 64,
            head_dim: 128,
            n_kv_head: None,
            vocab_size: 32768,
            sequence_len: 2048,
            window_pattern: "L".into(),
        })
        .unwrap()
    }

    #[test]
    fn derives_nanochat_shapes() {
        let c = d12();
        assert_eq!((c.n_embd, c.n_head, c.n_kv_head, c.head_dim, c.padded_vocab), (768, 6, 6, 128, 32768));
        assert_eq!(c.value_embed_layers(), vec![1, 3, 5, 7, 9, 11]);
        assert_eq!(c.backout_layer(), 6);
        assert!(c.windows.iter().all(|&w| w == 2048));
        let s = GptConfig::new(12, 6, 6, 768, 32768, 2048, "sssl").unwrap();
        assert_eq!(&s.windows[..4], &[512, 512, 512, 2048]);
        assert_eq!(s.windows[11], 2048);
        let last_forced = GptConfig::new(3, 2, 1, 128, 1000, 256, "S").unwrap();
        assert_eq!(last_forced.windows, vec![128, 128, 256]);
        assert_eq!(last_forced.padded_vocab, 1024);
    }

    #[test]
    fn flops_match_nanochat() {
        assert_eq!(d12().flops_per_token(), 887_098_032);
        assert_eq!(GptConfig::new(12, 6, 6, 768, 32768, 2048, "SSSL").unwrap().flops_per_token(), 759_696_048);
    }

    #[test]
    fn bad_shapes_are_refused_with_reasons() {
        let e = GptConfig::new(2, 3, 2, 192, 100, 64, "L").unwrap_err().to_string();
        assert!(e.contains("must divide"), "{e}");
        let e = GptConfig::new(2, 2, 2, 128, 100, 64, "LX").unwrap_err().to_string();
        assert!(e.contains("window_pattern"), "{e}");
    }
}
