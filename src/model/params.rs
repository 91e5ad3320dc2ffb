//! The parameter inventory (nanochat's state-dict names, PyTorch layouts, init, optimizer group)
//! and how the parameters are laid out in one flat f32 arena.
//!
//! Arena layout: Muon matrices first, one contiguous run per distinct shape (sorted by shape, as
//! nanochat builds its Muon groups), each matrix exactly rows·cols after the previous one so a
//! group is a batched operand with stride rows·cols; then the AdamW tensors. Runs and AdamW tensors
//! start on 64-element boundaries so every tensor's first element is 256-byte aligned or a
//! multiple of rows·cols past such a boundary.

use super::config::{GptConfig, SMEAR_CHANNELS, VE_GATE_CHANNELS};
use crate::util::{fnv1a, Rng};
use serde::Serialize;

/// Which optimizer (and AdamW hyperparameter group) a tensor belongs to, as nanochat's
/// `setup_optimizer` routes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum OptGroup {
    /// lm_head: AdamW, unembedding lr, betas (0.8, 0.96), wd 0.01.
    Unembedding,
    /// wte: AdamW, embedding lr, betas (0.8, 0.995), wd 0.001.
    Embedding,
    /// value_embeds.*: AdamW, embedding lr · 0.5, betas (0.8, 0.995), wd 0.01.
    ValueEmbeds,
    /// resid_lambdas: AdamW, scalar lr · 0.01, betas (0.8, 0.95), wd 0.05.
    Resid,
    /// x0_lambdas: AdamW, scalar lr, betas (0.96, 0.95), wd 0.
    X0,
    /// smear_gate, smear_lambda, backout_lambda: AdamW, fixed lr 0.2, betas (0.8, 0.95), wd 0.
    Smear,
    /// Every tensor inside `transformer.h` (ve_gate included): Muon, one group per shape.
    Muon,
}

impl OptGroup {
    pub fn name(self) -> &'static str {
        match self {
            OptGroup::Unembedding => "unembedding",
            OptGroup::Embedding => "embedding",
            OptGroup::ValueEmbeds => "value_embeds",
            OptGroup::Resid => "resid",
            OptGroup::X0 => "x0",
            OptGroup::Smear => "smear",
            OptGroup::Muon => "muon",
        }
    }
}

/// How a tensor is initialised (nanochat `init_weights`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Init {
    Normal {
        std: f32,
    },
    Uniform {
        lo: f32,
        hi: f32,
    },
    Zeros,
    /// Element i of an (L,) vector: start + (end − start) · i / max(L − 1, 1).
    Linear {
        start: f32,
        end: f32,
    },
    Constant(f32),
}

/// One named tensor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamSpec {
    /// nanochat's state-dict key, e.g. `transformer.h.3.attn.c_q.weight`.
    pub name: String,
    /// PyTorch shape: (out_features, in_features) for a Linear.
    pub shape: Vec<usize>,
    pub init: Init,
    pub group: OptGroup,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Fill with this tensor's initial values, seeded by the run seed and the tensor's name so
    /// that every tensor is reproducible independently of the others.
    pub fn init_values(&self, seed: u64) -> Vec<f32> {
        let n = self.numel();
        let mut rng = Rng::new(seed ^ fnv1a(self.name.as_bytes()));
        match self.init {
            Init::Normal { std } => (0..n).map(|_| std * rng.normal() as f32).collect(),
            Init::Uniform { lo, hi } => rng.vec_uniform(n, lo, hi),
            Init::Zeros => vec![0.0; n],
            Init::Constant(c) => vec![c; n],
            Init::Linear { start, end } => {
                let den = (n.max(2) - 1) as f32;
                (0..n).map(|i| start + (end - start) * i as f32 / den).collect()
            }
        }
    }
}

/// Every parameter in nanochat's `state_dict` order.
pub fn param_specs(cfg: &GptConfig) -> Vec<ParamSpec> {
    let (c, vp, kv) = (cfg.n_embd, cfg.padded_vocab, cfg.kv_dim());
    let s = 3f32.sqrt() / (c as f32).sqrt();
    let mut v = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, init: Init, group: OptGroup| {
        v.push(ParamSpec { name, shape, init, group });
    };
    push("transformer.wte.weight".into(), vec![vp, c], Init::Normal { std: 0.8 }, OptGroup::Embedding);
    for i in 0..cfg.n_layer {
        let h = |rest: &str| format!("transformer.h.{i}.{rest}");
        let qd = cfg.n_head * cfg.head_dim;
        push(h("attn.c_q.weight"), vec![qd, c], Init::Uniform { lo: -s, hi: s }, OptGroup::Muon);
        push(h("attn.c_k.weight"), vec![kv, c], Init::Uniform { lo: -s, hi: s }, OptGroup::Muon);
        push(h("attn.c_v.weight"), vec![kv, c], Init::Uniform { lo: -s, hi: s }, OptGroup::Muon);
        push(h("attn.c_proj.weight"), vec![c, qd], Init::Zeros, OptGroup::Muon);
        if cfg.has_value_embed(i) {
            push(
                h("attn.ve_gate.weight"),
                vec![cfg.n_kv_head, VE_GATE_CHANNELS],
                Init::Uniform { lo: 0.0, hi: 0.02 },
                OptGroup::Muon,
            );
        }
        push(h("mlp.c_fc.weight"), vec![4 * c, c], Init::Uniform { lo: -0.4 * s, hi: 0.4 * s }, OptGroup::Muon);
        push(h("mlp.c_proj.weight"), vec![c, 4 * c], Init::Zeros, OptGroup::Muon);
    }
    push("lm_head.weight".into(), vec![vp, c], Init::Normal { std: 0.001 }, OptGroup::Unembedding);
    for i in cfg.value_embed_layers() {
        push(format!("value_embeds.{i}.weight"), vec![vp, kv], Init::Uniform { lo: -s, hi: s }, OptGroup::ValueEmbeds);
    }
    let l = cfg.n_layer;
    push("resid_lambdas".into(), vec![l], Init::Linear { start: 1.15, end: 1.05 }, OptGroup::Resid);
    push("x0_lambdas".into(), vec![l], Init::Linear { start: 0.20, end: 0.05 }, OptGroup::X0);
    push("smear_gate.weight".into(), vec![1, SMEAR_CHANNELS], Init::Uniform { lo: 0.0, hi: 0.02 }, OptGroup::Smear);
    push("smear_lambda".into(), vec![1], Init::Zeros, OptGroup::Smear);
    push("backout_lambda".into(), vec![1], Init::Constant(0.2), OptGroup::Smear);
    v
}

/// Parameter counts as nanochat reports them (`num_scaling_params`), plus what the FLOP and
/// data-ratio formulas use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamCounts {
    pub wte: usize,
    pub value_embeds: usize,
    pub lm_head: usize,
    pub transformer_matrices: usize,
    pub scalars: usize,
    pub total: usize,
    /// transformer_matrices + lm_head: the denominator of the tokens:params ratio.
    pub scaling: usize,
    /// Elements of every Linear weight (blocks, lm_head, smear_gate): the 6N of the FLOP count.
    pub matmul: usize,
}

impl ParamCounts {
    pub fn of(cfg: &GptConfig) -> Self {
        let mut c = ParamCounts {
            wte: 0,
            value_embeds: 0,
            lm_head: 0,
            transformer_matrices: 0,
            scalars: 0,
            total: 0,
            scaling: 0,
            matmul: 0,
        };
        for p in param_specs(cfg) {
            let n = p.numel();
            c.total += n;
            match p.group {
                OptGroup::Embedding => c.wte += n,
                OptGroup::ValueEmbeds => c.value_embeds += n,
                OptGroup::Unembedding => c.lm_head += n,
                OptGroup::Muon => c.transformer_matrices += n,
                OptGroup::Resid | OptGroup::X0 | OptGroup::Smear => c.scalars += n,
            }
            if p.group == OptGroup::Muon || p.group == OptGroup::Unembedding || p.name == "smear_gate.weight" {
                c.matmul += n;
            }
        }
        c.scaling = c.transformer_matrices + c.lm_head;
        c
    }
}

/// Where each parameter lives in the flat arena.
#[derive(Clone, Debug)]
pub struct ParamLayout {
    /// In nanochat state-dict order.
    pub specs: Vec<ParamSpec>,
    /// Element offset of `specs[i]` in the arena.
    pub offsets: Vec<usize>,
    /// Muon groups: (shape, indices into `specs`, arena offset of the first matrix); matrices of
    /// a group are consecutive with stride rows·cols.
    pub muon_groups: Vec<MuonGroup>,
    /// Total arena length in elements.
    pub len: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MuonGroup {
    pub rows: usize,
    pub cols: usize,
    pub members: Vec<usize>,
    pub offset: usize,
}

const ALIGN: usize = 64;

impl ParamLayout {
    pub fn new(cfg: &GptConfig) -> Self {
        let specs = param_specs(cfg);
        let mut offsets = vec![usize::MAX; specs.len()];
        let mut shapes: Vec<(usize, usize)> =
            specs.iter().filter(|p| p.group == OptGroup::Muon).map(|p| (p.shape[0], p.shape[1])).collect();
        shapes.sort();
        shapes.dedup();
        let mut at = 0;
        let mut muon_groups = Vec::new();
        for (rows, cols) in shapes {
            let members: Vec<usize> = (0..specs.len())
                .filter(|&i| specs[i].group == OptGroup::Muon && specs[i].shape == [rows, cols])
                .collect();
            let start = at;
            for (j, &i) in members.iter().enumerate() {
                offsets[i] = start + j * rows * cols;
            }
            at = (start + members.len() * rows * cols).div_ceil(ALIGN) * ALIGN;
            muon_groups.push(MuonGroup { rows, cols, members, offset: start });
        }
        for (i, p) in specs.iter().enumerate() {
            if p.group != OptGroup::Muon {
                offsets[i] = at;
                at = (at + p.numel()).div_ceil(ALIGN) * ALIGN;
            }
        }
        ParamLayout { specs, offsets, muon_groups, len: at }
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|p| p.name == name)
    }

    /// (offset, len) of a named tensor; panics on an unknown name (a programming error).
    pub fn range(&self, name: &str) -> (usize, usize) {
        let i = self.index(name).unwrap_or_else(|| panic!("no parameter named {name}"));
        (self.offsets[i], self.specs[i].numel())
    }

    /// The name of the tensor holding arena element `i` (for messages about a bad value).
    pub fn name_at(&self, i: usize) -> &str {
        // Offsets follow the packing (Muon groups first), not spec order: search them all.
        self.specs
            .iter()
            .zip(&self.offsets)
            .find(|(p, &o)| (o..o + p.numel()).contains(&i))
            .map_or("?", |(p, _)| &p.name)
    }

    /// The initial arena contents for a run seed.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut arena = vec![0.0f32; self.len];
        for (p, &off) in self.specs.iter().zip(&self.offsets) {
            arena[off..off + p.numel()].copy_from_slice(&p.init_values(seed));
        }
        arena
    }
}

/// Every parameter of the model as a typed field: arena ranges `(offset, len)` from
/// [`ParamTensors::new`], or, mapped, views of the parameter or gradient arena. Built once from
/// the layout by nanochat name (the names stay the checkpoints'), so the step reads fields, not
/// strings, and a misspelt parameter does not compile.
#[derive(Clone, Debug)]
pub struct ParamTensors<T> {
    /// (Vp, C) `transformer.wte.weight`.
    pub wte: T,
    pub blocks: Vec<BlockParams<T>>,
    /// (Vp, C) `lm_head.weight`.
    pub lm_head: T,
    /// (1, 24) `smear_gate.weight`.
    pub smear_gate: T,
    /// (1,) `smear_lambda`.
    pub smear_lambda: T,
    /// (1,) `backout_lambda`.
    pub backout_lambda: T,
}

/// Block i's parameters (`transformer.h.{i}.*`), with its entries of the per-layer scalars and its
/// value embedding where the layer has one.
#[derive(Clone, Debug)]
pub struct BlockParams<T> {
    /// (H·D, C) `attn.c_q.weight`.
    pub c_q: T,
    /// (Hkv·D, C) `attn.c_k.weight`.
    pub c_k: T,
    /// (Hkv·D, C) `attn.c_v.weight`.
    pub c_v: T,
    /// (C, H·D) `attn.c_proj.weight`.
    pub c_proj: T,
    /// Layers with a value embedding: (Hkv, 12) `attn.ve_gate.weight` and (Vp, Hkv·D)
    /// `value_embeds.{i}.weight`.
    pub value_embed: Option<ValueEmbedParams<T>>,
    /// (4C, C) `mlp.c_fc.weight`.
    pub c_fc: T,
    /// (C, 4C) `mlp.c_proj.weight`.
    pub mlp_proj: T,
    /// (1,) element i of `resid_lambdas`.
    pub resid_lambda: T,
    /// (1,) element i of `x0_lambdas`.
    pub x0_lambda: T,
}

#[derive(Clone, Debug)]
pub struct ValueEmbedParams<T> {
    pub gate: T,
    pub table: T,
}

impl ParamTensors<(usize, usize)> {
    /// Each parameter's `(offset, len)` in the arena of `layout`.
    pub fn new(layout: &ParamLayout) -> Self {
        let r = |name: &str| layout.range(name);
        let n_layer = layout.specs.iter().filter(|p| p.name.ends_with(".attn.c_q.weight")).count();
        let (resid, x0) = (r("resid_lambdas"), r("x0_lambdas"));
        let blocks = (0..n_layer)
            .map(|i| {
                let h = |rest: &str| r(&format!("transformer.h.{i}.{rest}"));
                let gate = format!("transformer.h.{i}.attn.ve_gate.weight");
                BlockParams {
                    c_q: h("attn.c_q.weight"),
                    c_k: h("attn.c_k.weight"),
                    c_v: h("attn.c_v.weight"),
                    c_proj: h("attn.c_proj.weight"),
                    value_embed: layout
                        .index(&gate)
                        .map(|_| ValueEmbedParams { gate: r(&gate), table: r(&format!("value_embeds.{i}.weight")) }),
                    c_fc: h("mlp.c_fc.weight"),
                    mlp_proj: h("mlp.c_proj.weight"),
                    resid_lambda: (resid.0 + i, 1),
                    x0_lambda: (x0.0 + i, 1),
                }
            })
            .collect();
        ParamTensors {
            wte: r("transformer.wte.weight"),
            blocks,
            lm_head: r("lm_head.weight"),
            smear_gate: r("smear_gate.weight"),
            smear_lambda: r("smear_lambda"),
            backout_lambda: r("backout_lambda"),
        }
    }
}

impl<T> ParamTensors<T> {
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> ParamTensors<U> {
        ParamTensors {
            wte: f(&self.wte),
            blocks: self
                .blocks
                .iter()
                .map(|b| BlockParams {
                    c_q: f(&b.c_q),
                    c_k: f(&b.c_k),
                    c_v: f(&b.c_v),
                    c_proj: f(&b.c_proj),
                    value_embed: b
                        .value_embed
                        .as_ref()
                        .map(|v| ValueEmbedParams { gate: f(&v.gate), table: f(&v.table) }),
                    c_fc: f(&b.c_fc),
                    mlp_proj: f(&b.mlp_proj),
                    resid_lambda: f(&b.resid_lambda),
                    x0_lambda: f(&b.x0_lambda),
                })
                .collect(),
            lm_head: f(&self.lm_head),
            smear_gate: f(&self.smear_gate),
            smear_lambda: f(&self.smear_lambda),
            backout_lambda: f(&self.backout_lambda),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d12() -> GptConfig {
        GptConfig::new(12, 6, 6, 768, 32768, 2048, "L").unwrap()
    }

    #[test]
    fn d12_counts_match_the_seed_run() {
        let c = ParamCounts::of(&d12());
        assert_eq!(c.total, 286_261_730);
        assert_eq!(c.scaling, 110_100_912);
        assert_eq!(c.wte, 25_165_824);
        assert_eq!(c.value_embeds, 150_994_944);
        assert_eq!(c.lm_head, 25_165_824);
        assert_eq!(c.transformer_matrices, 84_935_088);
        assert_eq!(c.scalars, 50);
        assert_eq!(c.matmul, 110_100_936);
    }

    #[test]
    fn layout_is_disjoint_and_groups_are_contiguous() {
        for cfg in [d12(), GptConfig::new(3, 2, 1, 128, 1000, 64, "SL").unwrap()] {
            let l = ParamLayout::new(&cfg);
            let mut spans: Vec<(usize, usize)> =
                l.specs.iter().zip(&l.offsets).map(|(p, &o)| (o, o + p.numel())).collect();
            spans.sort();
            assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "overlap");
            assert!(spans.last().unwrap().1 <= l.len);
            for g in &l.muon_groups {
                for (j, &i) in g.members.iter().enumerate() {
                    assert_eq!(l.offsets[i], g.offset + j * g.rows * g.cols);
                }
                assert_eq!(g.offset % 64, 0);
            }
            let shapes: Vec<(usize, usize)> = l.muon_groups.iter().map(|g| (g.rows, g.cols)).collect();
            assert!(shapes.windows(2).all(|w| w[0] < w[1]), "sorted by shape");
        }
        assert_eq!(ParamLayout::new(&d12()).muon_groups.len(), 4); // (6,12) (768,768) (768,3072) (3072,768)
    }

    #[test]
    fn typed_views_cover_every_parameter_once() {
        for cfg in [d12(), GptConfig::new(3, 2, 1, 128, 1000, 64, "SL").unwrap()] {
            let l = ParamLayout::new(&cfg);
            let p = ParamTensors::new(&l);
            let mut spans = Vec::new();
            p.map(|&r| spans.push(r));
            spans.sort();
            let mut want: Vec<(usize, usize)> = l.specs.iter().zip(&l.offsets).map(|(s, &o)| (o, s.numel())).collect();
            // The per-layer scalars are one tensor each in the layout and one element per block here.
            want.retain(|&(o, _)| o != l.range("resid_lambdas").0 && o != l.range("x0_lambdas").0);
            for name in ["resid_lambdas", "x0_lambdas"] {
                let (o, n) = l.range(name);
                want.extend((0..n).map(|i| (o + i, 1)));
            }
            want.sort();
            assert_eq!(spans, want);
            assert_eq!(p.blocks.len(), cfg.n_layer);
            assert_eq!(p.blocks.iter().filter(|b| b.value_embed.is_some()).count(), cfg.value_embed_layers().len());
        }
    }

    #[test]
    fn init_follows_nanochat() {
        let cfg = d12();
        let l = ParamLayout::new(&cfg);
        let arena = l.init(42);
        let get = |name: &str| {
            let (o, n) = l.range(name);
            &arena[o..o + n]
        };
        assert!(get("transformer.h.0.attn.c_proj.weight").iter().all(|&x| x == 0.0));
        let s = 3f32.sqrt() / 768f32.sqrt();
        assert!(get("transformer.h.0.attn.c_q.weight").iter().all(|&x| x.abs() <= s));
        assert!(get("transformer.h.0.mlp.c_fc.weight").iter().all(|&x| x.abs() <= 0.4 * s));
        let r = get("resid_lambdas");
        assert!((r[0] - 1.15).abs() < 1e-6 && (r[11] - 1.05).abs() < 1e-6);
        let x0 = get("x0_lambdas");
        assert!((x0[0] - 0.20).abs() < 1e-6 && (x0[11] - 0.05).abs() < 1e-6);
        assert_eq!(get("backout_lambda"), &[0.2]);
        let wte = get("transformer.wte.weight");
        let std = (wte.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / wte.len() as f64).sqrt();
        assert!((std - 0.8).abs() < 0.01, "wte std {std}");
        assert_eq!(l.init(42), arena, "deterministic");
    }
}
