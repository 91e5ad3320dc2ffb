//! Model shape: derived from depth as nanochat derives it (`build_model_meta` in base_train), or
//! read from a nanochat `meta_*.json` `model_config`.
//!
//! Dimension names follow llm.c: L layers, C channels, H query heads, Hkv key/value heads, D head
//! dim, V vocab, Vp padded vocab, T sequence length.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The `[model]` table of a config file: what a user sets. [`GptConfig::from_spec`] derives the rest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Number of transformer blocks, e.g. 12. Width follows from it.
    pub depth: usize,
    /// C = depth · aspect_ratio rounded up to a multiple of head_dim (nanochat: 64).
    #[serde(default = "default_aspect_ratio")]
    pub aspect_ratio: usize,
    /// D, e.g. 128 (nanochat's default); smaller values for tests.
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    /// Hkv; defaults to the number of query heads (no GQA, as base_train). Must divide H.
    #[serde(default)]
    pub n_kv_head: Option<usize>,
    /// V from the tokenizer, e.g. 32768. Padded to a multiple of 64 for the embedding tables.
    pub vocab_size: usize,
    /// T, e.g. 2048.
    pub sequence_len: usize,
    /// Per-layer attention windows, `L` (full context) and `S` (quarter context) tiled over the
    /// layers; the last layer is always `L`. e.g. "L" or "SSSL".
    #[serde(default = "default_window_pattern")]
    pub window_pattern: String,
    /// Precision of every linear layer's three products (forward X·Wᵀ, input gradient dY·W,
    /// weight gradient dYᵀ·X): "f32" (the default), or "f16": inputs rounded to f16, products
    /// accumulated in f32, on the cooperative-matrix kernels where the adapter uses them (storage,
    /// weights, gradients and everything else stay f32; where the adapter has no cooperative
    /// matrices the f32 kernels run and the log says so). Not part of the model's shape.
    #[serde(default)]
    pub matmul: ModelMatmul,
}

/// `model.matmul`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelMatmul {
    #[default]
    F32,
    F16,
}

impl ModelMatmul {
    /// What the linear layers' products accept.
    pub fn precision(self) -> crate::kernels::matmul::MatmulPrecision {
        match self {
            ModelMatmul::F32 => crate::kernels::matmul::MatmulPrecision::F32,
            ModelMatmul::F16 => crate::kernels::matmul::MatmulPrecision::F16,
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
        let bad = |message: String| Err(Error::Config { message });
        if spec.depth == 0 {
            return bad("model.depth must be >= 1".into());
        }
        if spec.head_dim == 0 || !spec.head_dim.is_multiple_of(2) {
            return bad(format!(
                "model.head_dim must be a positive even number (RoPE rotates pairs), got {}",
                spec.head_dim
            ));
        }
        if spec.aspect_ratio == 0 {
            return bad("model.aspect_ratio must be >= 1".into());
        }
        let base = spec.depth * spec.aspect_ratio;
        let n_embd = base.div_ceil(spec.head_dim) * spec.head_dim;
        let n_head = n_embd / spec.head_dim;
        let n_kv_head = spec.n_kv_head.unwrap_or(n_head);
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
            matmul: ModelMatmul::F32,
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
