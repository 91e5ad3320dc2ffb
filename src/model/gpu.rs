//! The nanochat GPT on the GPU: forward, fused head (logits chunk → softcap cross-entropy →
//! its backward) and backward, every op a WGSL kernel.
//!
//! Buffers are the typed [`ModelBuffers`] (the memory plan is the same description with sizes,
//! so what runs is what `wgpt info` reports) and parameters the typed [`ParamTensors`] views of
//! the arenas; per layer, [`LayerTensors`] resolves once, at allocation, which tensors a block
//! reads and writes: kept ones, or under `[memory] recompute` the shared workspace ones. The
//! workspace buffers serve several roles each; the role of each at every point is the one their
//! field documentation gives. Notation: N = B·T rows; C, H, Hkv, D as in llm.c.
//!
//! A micro-step (forward, head and, when training, backward) is recorded once per [`Pass`] and
//! replayed for every batch: nothing in its dispatches depends on the batch's contents, which
//! reach the GPU by buffer writes ([`GpuModel::set_batch`]). Gradients accumulate (`+=`) into the
//! gradient arena, so gradient accumulation over micro-batches is several replays between two
//! [`GpuModel::zero_grads`]. The loss gradient scale (1/(valid targets · micro-batches)) is read
//! by the cross-entropy kernel from `step_scalars[0]`, written per batch by `set_batch`.

use super::memory::{
    Allocator, AttnActs, BlockLinear, BufferSource, Entry, GradWorkspace, LinearWeights, MemoryPlan, ModelBuffers,
    Planner, Purpose,
};
use super::{GptConfig, ParamLayout, ParamTensors};
use crate::config::{MemorySpec, Recompute, RunConfig};
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, GpuContext, GpuTensor};
use crate::kernels::attention::{attention_backward, attention_backward_scratch_len, attention_forward, AttnShape};
use crate::kernels::embedding::{embedding_backward, embedding_forward, EmbeddingBuckets, GpuEmbeddingBuckets};
use crate::kernels::matmul::{matmul, Gemm, MatmulPrecision};
use crate::kernels::{
    argmax, cast, cross_entropy, elementwise, relu2, residual, rmsnorm, rope, smear, ve_gate, Stream,
};
use crate::model::config::{QK_SCALE, SOFTCAP};
use std::cell::{Cell, OnceCell};

/// What a micro-step computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Forward, head and backward: per-token losses, gradients accumulated.
    Train,
    /// Forward and head only: per-token losses (evaluation).
    Eval,
}

/// The tensors block i reads and writes, resolved once from the recompute mode.
struct LayerTensors {
    /// The stream entering the block (x0 for block 0).
    x_prev: GpuTensor,
    /// Where the block writes its output: the next block's input, or ws.dx after the last block.
    x_out: GpuTensor,
    /// The attention half's outputs: the layer's own under `none`/`mlp`, the workspace's under
    /// `block` (recomputed in the backward).
    attn: AttnActs<GpuTensor>,
    /// The MLP pre-activation: the layer's own under `none`, else ws.h (recomputed).
    h: GpuTensor,
}

pub struct GpuModel<'c> {
    pub ctx: &'c GpuContext,
    pub cfg: GptConfig,
    pub layout: ParamLayout,
    pub recompute: Recompute,
    /// Batch geometry the buffers were sized for.
    pub b: usize,
    pub t: usize,
    /// Training, or scoring only (no gradients; see [`Purpose`]).
    pub purpose: Purpose,
    pub logits_chunk_rows: usize,
    /// What the linear layers' products accept (`train.precision`): f32, or f16 inputs.
    pub matmul: MatmulPrecision,
    /// Every gradient comes out multiplied by this (the loss gradient is; 1 by default), so that
    /// gradients rounded to f16 on their way into a product stay out of f16's subnormal range.
    /// Whoever reads the gradients divides by it. Set before [`GpuModel::set_batch`].
    pub loss_scale: f32,
    /// The model's buffers (the optimizer's are not among them).
    pub plan: MemoryPlan,
    bufs: ModelBuffers<GpuTensor>,
    /// Views of the parameter and (training) the gradient arena.
    w: ParamTensors<GpuTensor>,
    gw: Option<ParamTensors<GpuTensor>>,
    /// The matrices the linear layers' products read as B (forward and input gradient): views of
    /// the master weights, or under f16 precision their f16 copies (`bufs.weights16`).
    linear: LinearWeights<GpuTensor>,
    /// Whether the f16 copies may be older than the master weights. Set by whatever can write
    /// the master weights ([`GpuModel::params`], [`GpuModel::write_params`]) and by
    /// [`GpuModel::zero_grads`], which opens every optimizer step; cleared by the cast that every
    /// pass runs first when it is set. So the copies are made once per optimizer step (and once
    /// more for an evaluation after it), never read stale.
    copies_stale: Cell<bool>,
    /// The casts that refresh the copies, recorded once.
    refresh_copies: OnceCell<Vec<Dispatch>>,
    layers: Vec<LayerTensors>,
    /// The stream after block L/2, which backout subtracts.
    x_mid: GpuTensor,
    /// The embedding gradient's token buckets (training).
    buckets: Option<GpuEmbeddingBuckets>,
    /// Targets ≠ −1 in the current batch.
    valid: usize,
    /// Every buffer by plan name, in allocation order.
    named: Vec<(Entry, GpuTensor)>,
    /// The recorded micro-step of each [`Pass`], and the gradient reset.
    train_step: OnceCell<Vec<Dispatch>>,
    eval_step: OnceCell<Vec<Dispatch>>,
    zero: OnceCell<Vec<Dispatch>>,
}

impl<'c> GpuModel<'c> {
    /// Allocate parameters, gradients, activations, workspace and batch buffers (not the optimizer
    /// state: the optimizer allocates its own plan entries) and upload the RoPE tables.
    /// `train.precision` is resolved on the adapter (an f16 request it cannot serve is refused).
    pub fn for_run(ctx: &'c GpuContext, rc: &RunConfig) -> Result<Self> {
        let precision = crate::train::precision::resolve(ctx, rc.train().precision)?;
        Self::new_at(ctx, &rc.model, rc.train().device_batch_size, &rc.file.memory, precision.matmul)
    }

    /// Run the linear layers' products at `precision` (what `train.precision` resolves to). f16
    /// products on an adapter with cooperative matrices read f16 copies of the weight matrices,
    /// allocated here (and added to the plan); where its cooperative matrices are unusable a
    /// warning says so and the f32 kernels run on the f32 weights.
    pub fn with_matmul(mut self, precision: MatmulPrecision) -> Result<Self> {
        // Asked only for f16: the verdict's self-test allocates, and an f32 model's allocation is
        // exactly its plan.
        let coop = precision != MatmulPrecision::F32 && {
            let status = crate::kernels::matmul_coop::coop_status(self.ctx);
            if !status.is_available() {
                log::warn!(
                    "{} products asked: cooperative matrices {}, so the linear layers run the f32 kernels",
                    precision.name(),
                    status.describe()
                );
            }
            status.is_available()
        };
        let copies = precision >= MatmulPrecision::F16 && coop;
        if copies && self.bufs.weights16.is_none() {
            let mut planner = Planner::default();
            LinearWeights::build(&mut planner, &self.cfg)?;
            self.plan.entries.extend(planner.plan.entries);
            let mut alloc = Allocator(self.ctx);
            let mut rec = Recorder { inner: &mut alloc, named: Vec::new() };
            self.bufs.weights16 = Some(LinearWeights::build(&mut rec, &self.cfg)?);
            self.named.extend(rec.named);
        }
        self.linear = match (&self.bufs.weights16, copies) {
            (Some(w16), true) => w16.clone(),
            _ => master_linear(&self.w),
        };
        self.set_product_only_storage(if copies { DType::F16 } else { DType::F32 })?;
        self.copies_stale.set(true);
        self.matmul = precision;
        // A recording made at another precision would run the wrong kernels.
        self.train_step = OnceCell::new();
        self.eval_step = OnceCell::new();
        Ok(self)
    }

    /// Refresh the f16 weight copies from the master weights if they may be stale (see
    /// `copies_stale`), and wait; nothing to do at f32. Every pass this model runs calls it; who
    /// replays [`GpuModel::micro_step`]'s dispatches directly calls it first.
    pub fn refresh_weight_copies(&self) -> Result<()> {
        let Some(w16) = self.bufs.weights16.as_ref().filter(|_| self.copies_stale.get()) else {
            return Ok(());
        };
        if self.refresh_copies.get().is_none() {
            let mut s = self.stream();
            for (copy, master) in w16.pairs(&master_linear(&self.w)) {
                cast::cast_f32_to_f16(&mut s, copy, master)?;
            }
            let _ = self.refresh_copies.set(s.dispatches().to_vec());
        }
        self.ctx.run(self.refresh_copies.get().expect("set above"))?;
        self.copies_stale.set(false);
        Ok(())
    }

    /// A linear layer's product at the model's matmul precision.
    fn lin(&self, g: Gemm) -> Gemm {
        g.with_precision(self.matmul)
    }

    /// Keep v and the attention output, which only feed products, in `dtype`: f16 where the
    /// products are f16 on cooperative matrices (as `ModelBuffers::build` plans them), else f32.
    /// Reallocates them (and updates the plan) where they differ; their contents are per pass.
    fn set_product_only_storage(&mut self, dtype: DType) -> Result<()> {
        let n = self.b * self.t;
        let (hd, kv) = (self.cfg.n_head * self.cfg.head_dim, self.cfg.n_kv_head * self.cfg.head_dim);
        let ctx = self.ctx;
        let alloc = |name: &str, elems: usize| match dtype {
            DType::F32 => ctx.tensor(name, elems),
            DType::F16 => ctx.tensor_f16(name, elems),
        };
        let mut sets: Vec<(String, &mut AttnActs<GpuTensor>)> = Vec::new();
        for (i, l) in self.bufs.acts.layers.iter_mut().enumerate() {
            if let Some(a) = l.attn.as_mut() {
                sets.push((format!("h{i}."), a));
            }
        }
        if let Some(a) = self.bufs.ws.attn.as_mut() {
            sets.push(("ws.".to_string(), a));
        }
        for (pre, a) in sets {
            if a.v.dtype() == dtype && a.att.dtype() == dtype {
                continue;
            }
            let (v, att) = (format!("{pre}v"), format!("{pre}att"));
            a.v = alloc(&v, n * kv)?;
            a.att = alloc(&att, n * hd)?;
            for (e, t) in self.named.iter_mut() {
                if e.name == v {
                    *t = a.v.clone();
                } else if e.name == att {
                    *t = a.att.clone();
                } else {
                    continue;
                }
                e.elem_bytes = dtype.bytes();
            }
            for e in self.plan.entries.iter_mut().filter(|e| e.name == v || e.name == att) {
                e.elem_bytes = dtype.bytes();
            }
        }
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let own = self.bufs.acts.layers[i].attn.as_ref().or(self.bufs.ws.attn.as_ref());
            let own = own.expect("ModelBuffers keeps a layer's tensors or has them in the workspace");
            layer.attn.v = own.v.clone();
            layer.attn.att = own.att.clone();
        }
        Ok(())
    }

    /// For `b` sequences of the model's full length per forward/backward, products in f32.
    pub fn new(ctx: &'c GpuContext, cfg: &GptConfig, b: usize, mem: &MemorySpec) -> Result<Self> {
        Self::new_at(ctx, cfg, b, mem, MatmulPrecision::F32)
    }

    /// As [`GpuModel::new`], products at `precision` ([`GpuModel::with_matmul`]), with the f16
    /// weight copies and f16 activations allocated from the start where they are used, so the
    /// allocation is the plan's.
    pub fn new_at(
        ctx: &'c GpuContext,
        cfg: &GptConfig,
        b: usize,
        mem: &MemorySpec,
        precision: MatmulPrecision,
    ) -> Result<Self> {
        Self::build(ctx, cfg, b, mem, precision, Purpose::Train, &mut Allocator(ctx))
    }

    /// A scoring model (forward and head only, no gradients: [`Purpose::Score`]) for `b`
    /// sequences of length `t` ≤ the model's, its buffers from `src`: an [`Allocator`], or a
    /// source that hands out views of buffers another scoring model (or, for `params`, the
    /// training model) already holds.
    pub fn for_scoring(
        ctx: &'c GpuContext,
        cfg: &GptConfig,
        b: usize,
        t: usize,
        mem: &MemorySpec,
        precision: MatmulPrecision,
        src: &mut impl BufferSource<Buf = GpuTensor>,
    ) -> Result<Self> {
        if t == 0 || t > cfg.sequence_len {
            return Err(Error::Shape {
                op: "GpuModel::for_scoring",
                message: format!("sequence length {t} outside 1..={} (the model's)", cfg.sequence_len),
            });
        }
        Self::build(ctx, cfg, b, mem, precision, Purpose::Score { t }, src)
    }

    fn build(
        ctx: &'c GpuContext,
        cfg: &GptConfig,
        b: usize,
        mem: &MemorySpec,
        precision: MatmulPrecision,
        purpose: Purpose,
        src: &mut impl BufferSource<Buf = GpuTensor>,
    ) -> Result<Self> {
        let storage =
            if precision >= MatmulPrecision::F16 && crate::kernels::matmul_coop::coop_status(ctx).is_available() {
                MatmulPrecision::F16
            } else {
                MatmulPrecision::F32
            };
        let mut planner = Planner::default();
        ModelBuffers::build(&mut planner, cfg, b, mem, storage, purpose)?;
        let plan = planner.plan;
        let mut rec = Recorder { inner: src, named: Vec::new() };
        let bufs = ModelBuffers::build(&mut rec, cfg, b, mem, storage, purpose)?;
        let named = rec.named;
        let logits_chunk_rows = bufs.logits.len() / cfg.padded_vocab;
        let cfg = cfg.clone();
        let t = match purpose {
            Purpose::Train => cfg.sequence_len,
            Purpose::Score { t } => t,
        };
        let layout = ParamLayout::new(&cfg);
        let ranges = ParamTensors::new(&layout);
        let w = ranges.map(|&(o, n)| bufs.params.view(o, n));
        let gw = bufs.grads.as_ref().map(|g| ranges.map(|&(o, n)| g.view(o, n)));
        let l = cfg.n_layer;
        let mut layers = Vec::with_capacity(l);
        for i in 0..l {
            let kept = &bufs.acts.layers[i];
            // Scoring: block 0 reads x0, every block writes ws.dx and the next reads it (a block
            // reads its input only in its first op, the lambda mix).
            let stream_in = |j: usize| -> GpuTensor {
                match (&bufs.acts.layers[j].x_prev, purpose) {
                    (Some(x), _) => x.clone(),
                    (None, Purpose::Score { .. }) if j > 0 => bufs.ws.dx.clone(),
                    (None, _) => bufs.acts.x0.clone(),
                }
            };
            let resolved = |own: &Option<AttnActs<GpuTensor>>| own.as_ref().or(bufs.ws.attn.as_ref()).cloned();
            let h = kept.h.as_ref().or(bufs.ws.h.as_ref()).cloned();
            let (Some(attn), Some(h)) = (resolved(&kept.attn), h) else {
                unreachable!("ModelBuffers keeps a layer's tensors or has them in the workspace")
            };
            layers.push(LayerTensors {
                x_prev: stream_in(i),
                x_out: if i + 1 < l { stream_in(i + 1) } else { bufs.ws.dx.clone() },
                attn,
                h,
            });
        }
        let mid = cfg.backout_layer();
        // Its own copy when scoring or when block L/2 is the last; else the next block's input.
        let x_mid = match &bufs.acts.x_mid {
            Some(x) => x.clone(),
            None => layers[mid + 1].x_prev.clone(),
        };
        let buckets = match &bufs.batch.buckets {
            Some(t_) => Some(GpuEmbeddingBuckets::from_tensor(t_.clone(), b * t)?),
            None => None,
        };
        let m = Self {
            ctx,
            layout,
            cfg,
            recompute: mem.recompute,
            b,
            t,
            purpose,
            logits_chunk_rows,
            matmul: MatmulPrecision::F32,
            loss_scale: 1.0,
            plan,
            bufs,
            linear: master_linear(&w),
            w,
            gw,
            copies_stale: Cell::new(true),
            refresh_copies: OnceCell::new(),
            layers,
            x_mid,
            buckets,
            valid: 0,
            named,
            train_step: OnceCell::new(),
            eval_step: OnceCell::new(),
            zero: OnceCell::new(),
        };
        let stream_needed = m.stream_scratch_needed();
        if stream_needed > m.bufs.ws.stream.len() {
            return Err(Error::Shape {
                op: "GpuModel",
                message: format!(
                    "launchers need {stream_needed} f32 of stream workspace, the plan has {} (binding limit too small?)",
                    m.bufs.ws.stream.len()
                ),
            });
        }
        let (cos, sin) = crate::reference::rope::rope_tables(t, m.cfg.head_dim);
        ctx.write(&m.bufs.batch.rope_cos, &cos.iter().map(|&x| x as f32).collect::<Vec<_>>())?;
        ctx.write(&m.bufs.batch.rope_sin, &sin.iter().map(|&x| x as f32).collect::<Vec<_>>())?;
        m.with_matmul(precision)
    }

    fn stream_scratch_needed(&self) -> usize {
        let n = self.b * self.t;
        let c = self.cfg.n_embd;
        [
            residual::lambda_mix_backward_scratch_len(self.ctx, n * c),
            residual::backout_backward_scratch_len(self.ctx, n * c),
            ve_gate::ve_gate_backward_scratch_len(n, self.cfg.n_kv_head),
            attention_backward_scratch_len(&self.attn_shape(0)),
            smear::smear_backward_scratch_len(self.b, self.t),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// The master weights. Whoever holds the tensor may write it (the optimizer does), so the
    /// f16 copies count as stale from here on.
    pub fn params(&self) -> &GpuTensor {
        self.copies_stale.set(true);
        &self.bufs.params
    }

    /// The gradient arena. Only a training model has one: calling this on a scoring model is a
    /// bug in the caller.
    pub fn grads(&self) -> &GpuTensor {
        self.bufs.grads.as_ref().expect("grads() of a scoring model, which has none (GpuModel::for_scoring)")
    }

    /// Every buffer of the model by plan name (what a [`crate::eval::scorer::Scorer`] run between
    /// training steps may use instead of allocating: the weights, read in place, and the
    /// activations and workspace, which every pass writes before it reads them).
    pub fn named_buffers(&self) -> Vec<(Entry, GpuTensor)> {
        self.named.clone()
    }

    /// The backward's buffers, or an error on a scoring model.
    fn training(&self) -> Result<(&GradWorkspace<GpuTensor>, &ParamTensors<GpuTensor>)> {
        match (&self.bufs.ws.grad, &self.gw) {
            (Some(g), Some(gw)) => Ok((g, gw)),
            _ => Err(Error::Shape {
                op: "GpuModel",
                message: "a scoring model (GpuModel::for_scoring) has no gradients to compute".into(),
            }),
        }
    }

    /// A stream whose launchers take their temporaries from the planned workspace.
    pub fn stream(&self) -> Stream<'c> {
        Stream::with_workspace(self.ctx, self.bufs.ws.stream.clone())
    }

    pub fn write_params(&self, arena: &[f32]) -> Result<()> {
        self.ctx.write(self.params(), arena)
    }

    pub fn read_params(&self) -> Result<Vec<f32>> {
        self.ctx.read(&self.bufs.params)
    }

    pub fn read_grads(&self) -> Result<Vec<f32>> {
        self.ctx.read(self.grads())
    }

    /// Upload a (B, T) batch: token ids, targets, the embedding-gradient buckets and the loss
    /// gradient scale 1/(valid targets · grad_accum).
    pub fn set_batch(&mut self, idx: &[i32], targets: &[i32], grad_accum: usize) -> Result<()> {
        let n = self.b * self.t;
        if idx.len() != n || targets.len() != n {
            return Err(Error::Shape {
                op: "set_batch",
                message: format!(
                    "batch must be B×T = {}×{} = {n} ids and targets; got {} and {}",
                    self.b,
                    self.t,
                    idx.len(),
                    targets.len()
                ),
            });
        }
        let vp = self.cfg.padded_vocab as i32;
        if let Some(bad) = idx.iter().find(|&&x| x < 0 || x >= vp) {
            return Err(Error::Shape { op: "set_batch", message: format!("token id {bad} outside [0, {vp})") });
        }
        let v = self.cfg.vocab_size as i32;
        if let Some(bad) = targets.iter().find(|&&y| y < -1 || y >= v) {
            return Err(Error::Shape { op: "set_batch", message: format!("target {bad} outside [-1, {v})") });
        }
        self.ctx.write_i32(&self.bufs.batch.idx, idx)?;
        self.ctx.write_i32(&self.bufs.batch.targets, targets)?;
        if let Some(buckets) = &mut self.buckets {
            buckets.write(self.ctx, &EmbeddingBuckets::new(idx))?;
        }
        self.valid = targets.iter().filter(|&&y| y >= 0).count();
        let scale = if self.valid == 0 { 0.0 } else { self.loss_scale / (self.valid * grad_accum.max(1)) as f32 };
        let mut scalars = vec![0.0f32; self.bufs.batch.step_scalars.len()];
        scalars[0] = scale;
        self.ctx.write(&self.bufs.batch.step_scalars, &scalars)
    }

    /// Targets ≠ −1 in the current batch.
    pub fn valid_targets(&self) -> usize {
        self.valid
    }

    /// x_in = λr·x_prev + λ0·x0 into ws.x_in, u = norm(x_in) into ws.u.
    fn block_input(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        let (ws, w) = (&self.bufs.ws, &self.w.blocks[i]);
        let x0 = &self.bufs.acts.x0;
        residual::lambda_mix_forward(s, &ws.x_in, &self.layers[i].x_prev, x0, &w.resid_lambda, &w.x0_lambda)?;
        rmsnorm::rmsnorm_forward(s, &ws.u, &ws.rstd_a, &ws.x_in, n, c, 1.0)
    }

    /// q, k, v of block i from ws.u: projections, value-embedding gate, RoPE (kept q_rot, k_rot,
    /// v), then the QK norm into ws.qn / ws.kn.
    fn block_qkv(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let cfg = &self.cfg;
        let (n, c, h, hkv, d) = (self.b * self.t, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim);
        let (hd, kv) = (h * d, hkv * d);
        let (ws, w, act) = (&self.bufs.ws, &self.w.blocks[i], &self.layers[i].attn);
        let (u, lw) = (&ws.u, &self.linear.blocks[i]);
        matmul(s, &act.q_rot, u, &lw.c_q, &self.lin(Gemm::nt(n, hd, c)), 1.0, 0.0)?;
        matmul(s, &act.k_rot, u, &lw.c_k, &self.lin(Gemm::nt(n, kv, c)), 1.0, 0.0)?;
        // The products and the gate write f32: a v kept in f16 is made in the front of ws.qn (free
        // until the QK norm below writes it) and cast once.
        let staged;
        let v32 = if act.v.dtype() == DType::F16 {
            staged = ws.qn.view(0, n * kv);
            &staged
        } else {
            &act.v
        };
        matmul(s, v32, u, &lw.c_v, &self.lin(Gemm::nt(n, kv, c)), 1.0, 0.0)?;
        if let Some(ve) = &w.value_embed {
            embedding_forward(s, &ws.ve, &ve.table, &self.bufs.batch.idx, n, kv)?;
            ve_gate::ve_gate_forward(s, v32, u, &ws.ve, &ve.gate, n, c, hkv, d)?;
        }
        if act.v.dtype() == DType::F16 {
            cast::cast_f32_to_f16(s, &act.v, v32)?;
        }
        let (cos, sin) = (&self.bufs.batch.rope_cos, &self.bufs.batch.rope_sin);
        rope::rope_forward(s, &act.q_rot, cos, sin, n, self.t, 0, h, d)?;
        rope::rope_forward(s, &act.k_rot, cos, sin, n, self.t, 0, hkv, d)?;
        self.qk_norm(s, i)
    }

    fn qk_norm(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let cfg = &self.cfg;
        let (n, h, hkv, d) = (self.b * self.t, cfg.n_head, cfg.n_kv_head, cfg.head_dim);
        let (ws, act) = (&self.bufs.ws, &self.layers[i].attn);
        rmsnorm::rmsnorm_forward(s, &ws.qn, &act.rstd_q, &act.q_rot, n * h, d, QK_SCALE)?;
        rmsnorm::rmsnorm_forward(s, &ws.kn, &act.rstd_k, &act.k_rot, n * hkv, d, QK_SCALE)
    }

    /// Block i's attention call: its window, scores scaled by 1/√D.
    fn attn_shape(&self, i: usize) -> AttnShape {
        let cfg = &self.cfg;
        AttnShape {
            b: self.b,
            t: self.t,
            h: cfg.n_head,
            hkv: cfg.n_kv_head,
            d: cfg.head_dim,
            window: cfg.windows[i],
            scale: 1.0 / (cfg.head_dim as f32).sqrt(),
            // Q·Kᵀ and P·V on the tensor cores exactly when the linear layers are.
            precision: self.matmul,
        }
    }

    /// Attention and its projection: att, then x1 = x_in + att·Woᵀ.
    fn block_attention(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let cfg = &self.cfg;
        let (n, c, h, d) = (self.b * self.t, cfg.n_embd, cfg.n_head, cfg.head_dim);
        let (ws, act) = (&self.bufs.ws, &self.layers[i].attn);
        attention_forward(s, &act.att, &act.lse, &ws.qn, &ws.kn, &act.v, &self.attn_shape(i))?;
        elementwise::copy(s, &act.x1, &ws.x_in)?;
        matmul(s, &act.x1, &act.att, &self.linear.blocks[i].c_proj, &self.lin(Gemm::nt(n, c, h * d)), 1.0, 1.0)
    }

    /// u2 = norm(x1) into ws.u, h = u2·Wfcᵀ, a = relu(h)² into ws.a.
    fn block_mlp_hidden(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        let (ws, l) = (&self.bufs.ws, &self.layers[i]);
        rmsnorm::rmsnorm_forward(s, &ws.u, &ws.rstd_b, &l.attn.x1, n, c, 1.0)?;
        matmul(s, &l.h, &ws.u, &self.linear.blocks[i].c_fc, &self.lin(Gemm::nt(n, 4 * c, c)), 1.0, 0.0)?;
        relu2::relu2_forward(s, &ws.a, &l.h)
    }

    fn block_forward(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        self.block_input(s, i)?;
        self.block_qkv(s, i)?;
        self.block_attention(s, i)?;
        self.block_mlp_hidden(s, i)?;
        self.block_output(s, i)
    }

    /// x_out = x1 + a·Wprojᵀ (and the copy backout reads after its layer).
    fn block_output(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        let l = &self.layers[i];
        elementwise::copy(s, &l.x_out, &l.attn.x1)?;
        let proj = &self.linear.blocks[i].mlp_proj;
        matmul(s, &l.x_out, &self.bufs.ws.a, proj, &self.lin(Gemm::nt(n, c, 4 * c)), 1.0, 1.0)?;
        if let Some(x_mid) = self.bufs.acts.x_mid.as_ref().filter(|_| i == self.cfg.backout_layer()) {
            elementwise::copy(s, x_mid, &l.x_out)?;
        }
        Ok(())
    }

    /// Embedding → norm into ws.u; the raw embedding in ws.x_in.
    fn embed(&self, s: &mut Stream<'_>) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        let ws = &self.bufs.ws;
        embedding_forward(s, &ws.x_in, &self.w.wte, &self.bufs.batch.idx, n, c)?;
        rmsnorm::rmsnorm_forward(s, &ws.u, &self.bufs.acts.rstd0, &ws.x_in, n, c, 1.0)
    }

    /// The trunk: everything up to z = norm(x − λ·x_mid), kept for the head and the backward.
    fn record_forward(&self, s: &mut Stream<'_>) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        let (acts, w) = (&self.bufs.acts, &self.w);
        self.embed(s)?;
        smear::smear_forward(s, &acts.x0, &self.bufs.ws.u, &w.smear_gate, &w.smear_lambda, self.b, self.t, c)?;
        for i in 0..self.cfg.n_layer {
            self.block_forward(s, i)?;
        }
        residual::backout_forward(s, &acts.xf, &self.bufs.ws.dx, &self.x_mid, &w.backout_lambda)?;
        rmsnorm::rmsnorm_forward(s, &acts.z, &acts.rstd_f, &acts.xf, n, c, 1.0)
    }

    /// After a non-finite loss: the current batch's forward again, piece by piece, and the first
    /// tensor that holds NaN or ±inf or, when products take f16 inputs, a value beyond f16's
    /// ±65504 that its product rounds to ±inf (ReLU² of an input above 256 is one). `None` when
    /// every activation is finite and in range (the head then overflowed, or the loss was
    /// non-finite for another reason). Only run on the failure path: it reads every activation.
    pub fn diagnose_forward(&self) -> Result<Option<String>> {
        let f16 = self.matmul != MatmulPrecision::F32;
        let check = |name: &str, t: &GpuTensor, feeds_product: bool| -> Result<Option<String>> {
            let v = self.ctx.read(t)?;
            let bad = v.iter().filter(|x| !x.is_finite()).count();
            if bad > 0 {
                return Ok(Some(format!("{name}: {bad} of {} values are NaN or ±inf", v.len())));
            }
            if f16 && feeds_product {
                let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                if max > 65504.0 {
                    let big = v.iter().filter(|x| x.abs() > 65504.0).count();
                    return Ok(Some(format!(
                        "{name}: {big} of {} values beyond f16's ±65504 (largest |x| = {max:.3e}), which the f16 \
                         product that reads it rounds to ±inf",
                        v.len()
                    )));
                }
            }
            Ok(None)
        };
        let run = |f: &dyn Fn(&mut Stream<'_>) -> Result<()>| -> Result<()> {
            let mut s = self.stream();
            f(&mut s)?;
            s.run()
        };
        let (ws, acts, w) = (&self.bufs.ws, &self.bufs.acts, &self.w);
        let c = self.cfg.n_embd;
        self.refresh_weight_copies()?;
        run(&|s| self.embed(s))?;
        if let Some(m) = check("the token embedding (transformer.wte rows)", &ws.x_in, false)? {
            return Ok(Some(m));
        }
        run(&|s| smear::smear_forward(s, &acts.x0, &ws.u, &w.smear_gate, &w.smear_lambda, self.b, self.t, c))?;
        if let Some(m) = check("x0, the smeared embedding", &acts.x0, false)? {
            return Ok(Some(m));
        }
        for i in 0..self.cfg.n_layer {
            let (l, a) = (&self.layers[i], &self.layers[i].attn);
            run(&|s| self.block_input(s, i))?;
            for (what, t, p) in [("input (λ-mix)", &ws.x_in, false), ("normed input, read by c_q/c_k/c_v", &ws.u, true)]
            {
                if let Some(m) = check(&format!("block {i} {what}"), t, p)? {
                    return Ok(Some(m));
                }
            }
            run(&|s| self.block_qkv(s, i))?;
            for (what, t, p) in [
                ("q (c_q, rotated)", &a.q_rot, false),
                ("k (c_k, rotated)", &a.k_rot, false),
                ("v (c_v), read by attention", &a.v, true),
            ] {
                if let Some(m) = check(&format!("block {i} {what}"), t, p)? {
                    return Ok(Some(m));
                }
            }
            run(&|s| self.block_attention(s, i))?;
            for (what, t, p) in
                [("attention output, read by c_proj", &a.att, true), ("x1 (after attention)", &a.x1, false)]
            {
                if let Some(m) = check(&format!("block {i} {what}"), t, p)? {
                    return Ok(Some(m));
                }
            }
            run(&|s| self.block_mlp_hidden(s, i))?;
            for (what, t, p) in [
                ("MLP pre-activation h (c_fc)", &l.h, false),
                ("MLP activation relu(h)², read by mlp.c_proj", &ws.a, true),
            ] {
                if let Some(m) = check(&format!("block {i} {what}"), t, p)? {
                    return Ok(Some(m));
                }
            }
            run(&|s| self.block_output(s, i))?;
            if let Some(m) = check(&format!("block {i} output"), &l.x_out, false)? {
                return Ok(Some(m));
            }
        }
        run(&|s| {
            residual::backout_forward(s, &acts.xf, &ws.dx, &self.x_mid, &w.backout_lambda)?;
            rmsnorm::rmsnorm_forward(s, &acts.z, &acts.rstd_f, &acts.xf, self.b * self.t, c, 1.0)
        })?;
        check("the final norm's output, read by lm_head", &acts.z, true)
    }

    /// Logits → softcap cross-entropy per token into ws.losses, chunk by chunk. With `train`,
    /// each chunk's logits become their gradient in place and flow back at once: dz into ws.du,
    /// lm_head's gradient accumulated.
    fn record_head(&self, s: &mut Stream<'_>, train: bool) -> Result<()> {
        let cfg = &self.cfg;
        let (n, c, vp) = (self.b * self.t, cfg.n_embd, cfg.padded_vocab);
        let lm = &self.linear.lm_head;
        let (ws, batch) = (&self.bufs.ws, &self.bufs.batch);
        let grad = if train { Some(self.training()?) } else { None };
        let mut r0 = 0;
        while r0 < n {
            let rows = self.logits_chunk_rows.min(n - r0);
            let logits = self.bufs.logits.view(0, rows * vp);
            let z = self.bufs.acts.z.view(r0 * c, rows * c);
            matmul(s, &logits, &z, lm, &self.lin(Gemm::nt(rows, vp, c)), 1.0, 0.0)?;
            if let Some(pred) = &ws.argmax {
                argmax::argmax(s, &pred.view(r0, rows), &logits, rows, cfg.vocab_size, vp)?;
            }
            cross_entropy::cross_entropy(
                s,
                &ws.losses.view(r0, rows),
                train,
                &logits,
                &batch.targets.view(r0, rows),
                rows,
                cfg.vocab_size,
                vp,
                SOFTCAP,
                &batch.step_scalars.view(0, 1),
            )?;
            if let Some((g, gw)) = grad {
                let dz = g.du.view(r0 * c, rows * c);
                matmul(s, &dz, &logits, lm, &self.lin(Gemm::nn(rows, c, vp)), 1.0, 0.0)?;
                matmul(s, &gw.lm_head, &logits, &z, &self.lin(Gemm::tn(vp, c, rows)), 1.0, 1.0)?;
            }
            r0 += rows;
        }
        Ok(())
    }

    /// The trunk's backward, after [`record_head`](Self::record_head) with `train` (dz in ws.du).
    fn record_backward(&self, s: &mut Stream<'_>) -> Result<()> {
        let cfg = &self.cfg;
        let (n, c, h, hkv, d) = (self.b * self.t, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim);
        let (hd, kv, f) = (h * d, hkv * d, 4 * c);
        let (ws, acts, batch) = (&self.bufs.ws, &self.bufs.acts, &self.bufs.batch);
        let (g, gw) = self.training()?;
        let buckets = self.buckets.as_ref().expect("a training model has embedding buckets");
        let w = &self.w;
        rmsnorm::rmsnorm_backward(s, &ws.dx, &g.du, &acts.xf, &acts.rstd_f, n, c, 1.0, false)?;
        elementwise::fill(s, &g.dmid, 0.0)?;
        residual::backout_backward(s, &g.dmid, &gw.backout_lambda, &ws.dx, &self.x_mid, &w.backout_lambda)?;
        elementwise::fill(s, &g.dx0, 0.0)?;
        let (mut cur, mut other) = (&ws.dx, &g.dx_prev);
        for i in (0..cfg.n_layer).rev() {
            let (l, wb, gb) = (&self.layers[i], &w.blocks[i], &gw.blocks[i]);
            let lw = &self.linear.blocks[i];
            let act = &l.attn;
            if i == cfg.backout_layer() {
                elementwise::axpy(s, cur, 1.0, &g.dmid)?;
            }
            // Recompute what this block's backward reads and was not kept.
            self.block_input(s, i)?;
            if self.recompute == Recompute::Block {
                self.block_qkv(s, i)?;
                self.block_attention(s, i)?;
            }
            if self.recompute == Recompute::None {
                rmsnorm::rmsnorm_forward(s, &ws.u, &ws.rstd_b, &act.x1, n, c, 1.0)?;
                relu2::relu2_forward(s, &ws.a, &l.h)?;
            } else {
                self.block_mlp_hidden(s, i)?;
            }
            // MLP: x_out = x1 + a·Wprojᵀ, a = relu(u2·Wfcᵀ)², u2 = norm(x1).
            let (a, da, du, u) = (&ws.a, &g.da, &g.du, &ws.u);
            matmul(s, da, cur, &lw.mlp_proj, &self.lin(Gemm::nn(n, f, c)), 1.0, 0.0)?;
            matmul(s, &gb.mlp_proj, cur, a, &self.lin(Gemm::tn(c, f, n)), 1.0, 1.0)?;
            relu2::relu2_backward(s, a, da, &l.h)?; // ws.a now holds dh
            matmul(s, du, a, &lw.c_fc, &self.lin(Gemm::nn(n, c, f)), 1.0, 0.0)?;
            matmul(s, &gb.c_fc, a, u, &self.lin(Gemm::tn(f, c, n)), 1.0, 1.0)?;
            rmsnorm::rmsnorm_backward(s, cur, du, &act.x1, &ws.rstd_b, n, c, 1.0, true)?; // cur = dx1

            // Attention: x1 = x_in + att·Woᵀ.
            rmsnorm::rmsnorm_forward(s, u, &ws.rstd_a, &ws.x_in, n, c, 1.0)?;
            if self.recompute != Recompute::Block {
                self.qk_norm(s, i)?;
            }
            let datt = &g.datt;
            matmul(s, datt, cur, &lw.c_proj, &self.lin(Gemm::nn(n, hd, c)), 1.0, 0.0)?;
            matmul(s, &gb.c_proj, cur, &act.att, &self.lin(Gemm::tn(c, hd, n)), 1.0, 1.0)?;
            let (dqn, dkn, dv) = (&g.dqn, &g.dkn, &g.dv);
            attention_backward(s, dqn, dkn, dv, datt, &ws.qn, &ws.kn, &act.v, &act.att, &act.lse, &self.attn_shape(i))?;
            // dq into datt, dk into ws.kn: both free once the attention backward has run.
            let (dq, dk) = (datt, &ws.kn);
            rmsnorm::rmsnorm_backward(s, dq, dqn, &act.q_rot, &act.rstd_q, n * h, d, QK_SCALE, false)?;
            rmsnorm::rmsnorm_backward(s, dk, dkn, &act.k_rot, &act.rstd_k, n * hkv, d, QK_SCALE, false)?;
            let (cos, sin) = (&batch.rope_cos, &batch.rope_sin);
            rope::rope_backward(s, dq, cos, sin, n, self.t, 0, h, d)?;
            rope::rope_backward(s, dk, cos, sin, n, self.t, 0, hkv, d)?;
            matmul(s, du, dq, &lw.c_q, &self.lin(Gemm::nn(n, c, hd)), 1.0, 0.0)?;
            matmul(s, du, dk, &lw.c_k, &self.lin(Gemm::nn(n, c, kv)), 1.0, 1.0)?;
            matmul(s, du, dv, &lw.c_v, &self.lin(Gemm::nn(n, c, kv)), 1.0, 1.0)?;
            matmul(s, &gb.c_q, dq, u, &self.lin(Gemm::tn(hd, c, n)), 1.0, 1.0)?;
            matmul(s, &gb.c_k, dk, u, &self.lin(Gemm::tn(kv, c, n)), 1.0, 1.0)?;
            matmul(s, &gb.c_v, dv, u, &self.lin(Gemm::tn(kv, c, n)), 1.0, 1.0)?;
            if let (Some(ve), Some(gve)) = (&wb.value_embed, &gb.value_embed) {
                let dve = dkn;
                embedding_forward(s, &ws.ve, &ve.table, &batch.idx, n, kv)?;
                ve_gate::ve_gate_backward(s, dve, du, &gve.gate, dv, u, &ws.ve, &ve.gate, n, c, hkv, d)?;
                embedding_backward(s, &gve.table, dve, buckets, n, kv)?;
            }
            rmsnorm::rmsnorm_backward(s, cur, du, &ws.x_in, &ws.rstd_a, n, c, 1.0, true)?;
            // The lambda mix: x_in = λr·x_prev + λ0·x0.
            residual::lambda_mix_backward(
                s,
                other,
                &g.dx0,
                &gb.resid_lambda,
                &gb.x0_lambda,
                cur,
                &l.x_prev,
                &acts.x0,
                &wb.resid_lambda,
                &wb.x0_lambda,
            )?;
            std::mem::swap(&mut cur, &mut other);
        }
        // x0 is the smeared embedding itself.
        elementwise::axpy(s, cur, 1.0, &g.dx0)?;
        self.embed(s)?;
        let (b, t) = (self.b, self.t);
        smear::smear_backward(
            s,
            &g.du,
            &gw.smear_gate,
            &gw.smear_lambda,
            cur,
            &ws.u,
            &w.smear_gate,
            &w.smear_lambda,
            b,
            t,
            c,
        )?;
        rmsnorm::rmsnorm_backward(s, other, &g.du, &ws.x_in, &acts.rstd0, n, c, 1.0, false)?;
        embedding_backward(s, &gw.wte, other, buckets, n, c)
    }

    /// Records a micro-step afresh: forward, head and (for [`Pass::Train`]) backward. The
    /// trainer never needs this ([`GpuModel::micro_step`] keeps the recording); tests compare
    /// the replay with it.
    pub fn record_micro_step(&self, pass: Pass) -> Result<Vec<Dispatch>> {
        let mut s = self.stream();
        self.record_forward(&mut s)?;
        self.record_head(&mut s, pass == Pass::Train)?;
        if pass == Pass::Train {
            self.record_backward(&mut s)?;
        }
        Ok(s.dispatches().to_vec())
    }

    /// The micro-step of `pass`, recorded on first use (which is when its matmuls are autotuned)
    /// and the same dispatches ever after.
    pub fn micro_step(&self, pass: Pass) -> Result<&[Dispatch]> {
        let cell = match pass {
            Pass::Train => &self.train_step,
            Pass::Eval => &self.eval_step,
        };
        if cell.get().is_none() {
            let _ = cell.set(self.record_micro_step(pass)?);
        }
        Ok(cell.get().expect("set above"))
    }

    /// Run the micro-step of `pass` on the current batch and wait for it: per-token losses in
    /// ws.losses and, for [`Pass::Train`], gradients accumulated.
    pub fn run_micro_step(&self, pass: Pass) -> Result<()> {
        let step = self.micro_step(pass)?;
        self.refresh_weight_copies()?;
        self.ctx.run(step)
    }

    /// Set every gradient to zero (before a step's first micro-batch), and wait. This opens an
    /// optimizer step, after the last one wrote the master weights: the f16 copies are stale.
    pub fn zero_grads(&self) -> Result<()> {
        self.training()?;
        self.copies_stale.set(true);
        if self.zero.get().is_none() {
            let mut s = self.stream();
            elementwise::fill(&mut s, self.grads(), 0.0)?;
            let _ = self.zero.set(s.dispatches().to_vec());
        }
        self.ctx.run(self.zero.get().expect("set above"))
    }

    /// Per-token losses of the last head pass.
    pub fn read_losses(&self) -> Result<Vec<f32>> {
        self.ctx.read(&self.bufs.ws.losses)
    }

    /// Per-position greedy predictions (argmax of the logits) of the last head pass of a scoring
    /// model.
    pub fn read_argmax(&self) -> Result<Vec<i32>> {
        match &self.bufs.ws.argmax {
            Some(t) => self.ctx.read_i32(t),
            None => Err(Error::Shape {
                op: "GpuModel::read_argmax",
                message: "only a scoring model (GpuModel::for_scoring) computes greedy predictions".into(),
            }),
        }
    }

    /// Mean loss over valid targets of the last head pass (0 with none), summed in f64 on the host.
    pub fn read_loss(&self) -> Result<f64> {
        let l = self.read_losses()?;
        Ok(if self.valid == 0 { 0.0 } else { l.iter().map(|&x| x as f64).sum::<f64>() / self.valid as f64 })
    }

    /// One training micro-step on the current batch, gradients accumulated; returns its loss.
    pub fn forward_backward(&self) -> Result<f64> {
        self.run_micro_step(Pass::Train)?;
        self.read_loss()
    }
}

/// A [`BufferSource`] that passes requests on and remembers each buffer's name.
struct Recorder<'s, S> {
    inner: &'s mut S,
    named: Vec<(Entry, GpuTensor)>,
}

impl<S: BufferSource<Buf = GpuTensor>> BufferSource for Recorder<'_, S> {
    type Buf = GpuTensor;
    fn buffer(&mut self, name: &str, category: super::memory::Category, elems: usize) -> Result<GpuTensor> {
        let t = self.inner.buffer(name, category, elems)?;
        self.named.push((Entry { name: name.to_string(), category, elems, elem_bytes: 4 }, t.clone()));
        Ok(t)
    }
    fn buffer_f16(&mut self, name: &str, category: super::memory::Category, elems: usize) -> Result<GpuTensor> {
        let t = self.inner.buffer_f16(name, category, elems)?;
        self.named.push((Entry { name: name.to_string(), category, elems, elem_bytes: 2 }, t.clone()));
        Ok(t)
    }
}

/// Views of the master weights' linear-layer matrices, in the shape of the f16 copies.
fn master_linear(w: &ParamTensors<GpuTensor>) -> LinearWeights<GpuTensor> {
    LinearWeights {
        blocks: w
            .blocks
            .iter()
            .map(|b| BlockLinear {
                c_q: b.c_q.clone(),
                c_k: b.c_k.clone(),
                c_v: b.c_v.clone(),
                c_proj: b.c_proj.clone(),
                c_fc: b.c_fc.clone(),
                mlp_proj: b.mlp_proj.clone(),
            })
            .collect(),
        lm_head: w.lm_head.clone(),
    }
}
