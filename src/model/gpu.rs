//! The nanochat GPT on the GPU: forward, fused head (logits chunk → softcap cross-entropy →
//! its backward) and backward, every op a WGSL kernel, recorded into a [`Stream`].
//!
//! Buffers come from the [`MemoryPlan`] by name, so what runs is what `wgpt info` reports. The
//! workspace buffers (`ws.*`) serve several roles each; the role of each at every point is the
//! one documented in `model::memory`. Notation: N = B·T rows; C, H, Hkv, D as in llm.c.
//!
//! Gradients accumulate (`+=`) into the gradient arena, so gradient accumulation over
//! micro-batches is just several forward/backward recordings between two [`GpuModel::zero_grads`].
//! The loss gradient scale (1/(valid targets · micro-batches)) is read by the cross-entropy
//! kernel from `step_scalars[0]`, written per batch by [`GpuModel::set_batch`].

use super::memory::{Category, MemoryPlan};
use super::{GptConfig, ParamLayout};
use crate::config::{MemorySpec, Recompute, RunConfig};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuTensor};
use crate::kernels::attention::{attention_backward_ws, attention_forward};
use crate::kernels::embedding::{embedding_backward, embedding_forward, EmbeddingBuckets, GpuEmbeddingBuckets};
use crate::kernels::matmul::{matmul, Gemm, MatmulPrecision};
use crate::kernels::{activation, crossentropy, elementwise, residual, rmsnorm, rope, smear, vegate, Stream};
use crate::model::config::{QK_SCALE, SOFTCAP};
use std::collections::BTreeMap;

pub struct GpuModel<'c> {
    pub ctx: &'c GpuContext,
    pub cfg: GptConfig,
    pub layout: ParamLayout,
    pub recompute: Recompute,
    /// Batch geometry the buffers were sized for.
    pub b: usize,
    pub t: usize,
    pub logits_chunk_rows: usize,
    /// What the linear layers' products accept (`model.matmul`): f32, or f16 inputs.
    pub matmul: MatmulPrecision,
    /// Every gradient comes out multiplied by this (the loss gradient is; 1 by default), so that
    /// gradients rounded to f16 on their way into a product stay out of f16's subnormal range.
    /// Whoever reads the gradients divides by it. Set before [`GpuModel::set_batch`].
    pub loss_scale: f32,
    pub plan: MemoryPlan,
    bufs: BTreeMap<String, GpuTensor>,
    buckets: GpuEmbeddingBuckets,
    /// Targets ≠ −1 in the current batch.
    valid: usize,
}

impl<'c> GpuModel<'c> {
    /// Allocate parameters, gradients, activations, workspace and batch buffers (not the optimizer
    /// state: the optimizer allocates its own plan entries) and upload the RoPE tables.
    pub fn for_run(ctx: &'c GpuContext, rc: &RunConfig) -> Result<Self> {
        let m = Self::new(ctx, &rc.model, rc.train().device_batch_size, &rc.file.memory)?;
        Ok(m.with_matmul(rc.file.model.matmul.precision()))
    }

    /// Run the linear layers' products at `precision` (see `model.matmul`); logs what that means
    /// on this adapter.
    pub fn with_matmul(mut self, precision: MatmulPrecision) -> Self {
        if precision != MatmulPrecision::F32 {
            let status = crate::kernels::matmul_coop::coop_status(self.ctx);
            if status.is_available() {
                log::info!("model.matmul = {}: linear layers on the cooperative-matrix kernels", precision.name());
            } else {
                log::warn!(
                    "model.matmul = {}: cooperative matrices {}, so the linear layers run the f32 kernels",
                    precision.name(),
                    status.describe()
                );
            }
        }
        self.matmul = precision;
        self
    }

    /// A linear layer's product at the model's matmul precision.
    fn lin(&self, g: Gemm) -> Gemm {
        g.with_precision(self.matmul)
    }

    /// For `b` sequences of the model's full length per forward/backward.
    pub fn new(ctx: &'c GpuContext, cfg: &GptConfig, b: usize, mem: &MemorySpec) -> Result<Self> {
        let plan = MemoryPlan::new(cfg, b, mem);
        let cfg = cfg.clone();
        let t = cfg.sequence_len;
        let logits_chunk_rows = mem.logits_chunk_rows(&cfg, b);
        let cats = [
            Category::Params,
            Category::Grads,
            Category::Activations,
            Category::Workspace,
            Category::Logits,
            Category::Batch,
        ];
        let bufs = plan.allocate(ctx, &cats)?;
        let buckets = GpuEmbeddingBuckets::from_tensor(bufs["emb.buckets"].clone(), b * t)?;
        let m = Self {
            ctx,
            layout: ParamLayout::new(&cfg),
            cfg,
            recompute: mem.recompute,
            b,
            t,
            logits_chunk_rows,
            matmul: MatmulPrecision::F32,
            loss_scale: 1.0,
            plan,
            bufs,
            buckets,
            valid: 0,
        };
        let stream_needed = m.stream_scratch_needed();
        if stream_needed > m.buf("ws.stream").len() {
            return Err(Error::Shape {
                op: "GpuModel",
                message: format!(
                    "launchers need {stream_needed} f32 of stream workspace, the plan has {} (binding limit too small?)",
                    m.buf("ws.stream").len()
                ),
            });
        }
        let (cos, sin) = crate::reference::rope::rope_tables(t, m.cfg.head_dim);
        ctx.write(m.buf("rope.cos"), &cos.iter().map(|&x| x as f32).collect::<Vec<_>>())?;
        ctx.write(m.buf("rope.sin"), &sin.iter().map(|&x| x as f32).collect::<Vec<_>>())?;
        Ok(m)
    }

    fn stream_scratch_needed(&self) -> usize {
        let n = self.b * self.t;
        let c = self.cfg.n_embd;
        [
            residual::lambda_mix_backward_scratch_len(self.ctx, n * c),
            residual::backout_backward_scratch_len(self.ctx, n * c),
            vegate::ve_gate_backward_scratch_len(n, self.cfg.n_kv_head),
            smear::smear_backward_scratch_len(self.b, self.t),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    pub fn buf(&self, name: &str) -> &GpuTensor {
        self.bufs.get(name).unwrap_or_else(|| panic!("no buffer {name} in the memory plan"))
    }

    pub fn params(&self) -> &GpuTensor {
        self.buf("params")
    }

    pub fn grads(&self) -> &GpuTensor {
        self.buf("grads")
    }

    /// A stream whose launchers take their temporaries from the planned workspace.
    pub fn stream(&self) -> Stream<'c> {
        Stream::with_workspace(self.ctx, self.buf("ws.stream").clone())
    }

    fn p(&self, name: &str) -> GpuTensor {
        let (o, n) = self.layout.range(name);
        self.params().view(o, n)
    }

    fn g(&self, name: &str) -> GpuTensor {
        let (o, n) = self.layout.range(name);
        self.grads().view(o, n)
    }

    fn pi(&self, name: &str, i: usize) -> GpuTensor {
        let (o, _) = self.layout.range(name);
        self.params().view(o + i, 1)
    }

    fn gi(&self, name: &str, i: usize) -> GpuTensor {
        let (o, _) = self.layout.range(name);
        self.grads().view(o + i, 1)
    }

    pub fn write_params(&self, arena: &[f32]) -> Result<()> {
        self.ctx.write(self.params(), arena)
    }

    pub fn read_params(&self) -> Result<Vec<f32>> {
        self.ctx.read(self.params())
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
        self.ctx.write_i32(self.buf("idx"), idx)?;
        self.ctx.write_i32(self.buf("targets"), targets)?;
        self.buckets.write(self.ctx, &EmbeddingBuckets::new(idx))?;
        self.valid = targets.iter().filter(|&&y| y >= 0).count();
        let scale = if self.valid == 0 { 0.0 } else { self.loss_scale / (self.valid * grad_accum.max(1)) as f32 };
        let mut scalars = vec![0.0f32; self.buf("step_scalars").len()];
        scalars[0] = scale;
        self.ctx.write(self.buf("step_scalars"), &scalars)
    }

    /// Targets ≠ −1 in the current batch.
    pub fn valid_targets(&self) -> usize {
        self.valid
    }

    pub fn zero_grads(&self, s: &mut Stream<'_>) -> Result<()> {
        elementwise::fill(s, self.grads(), 0.0)
    }

    /// Buffers of layer i's per-layer activations (kept, or the shared workspace in block mode).
    fn layer_buf(&self, i: usize, what: &str) -> &GpuTensor {
        if self.recompute == Recompute::Block {
            self.buf(&format!("ws.{what}"))
        } else {
            self.buf(&format!("h{i}.{what}"))
        }
    }

    /// The stream entering block i (x0 for the first block).
    fn x_prev(&self, i: usize) -> &GpuTensor {
        if i == 0 {
            self.buf("x0")
        } else {
            self.buf(&format!("h{i}.x_prev"))
        }
    }

    /// Where block i writes its output: the next block's input, or ws.dx after the last block.
    fn x_out(&self, i: usize) -> &GpuTensor {
        if i + 1 < self.cfg.n_layer {
            self.buf(&format!("h{}.x_prev", i + 1))
        } else {
            self.buf("ws.dx")
        }
    }

    /// The stream after block L/2, which backout subtracts.
    fn x_mid(&self) -> &GpuTensor {
        let i = self.cfg.backout_layer();
        if i + 1 < self.cfg.n_layer {
            self.x_prev(i + 1)
        } else {
            self.buf("x_mid")
        }
    }

    fn mlp_hidden(&self, i: usize) -> &GpuTensor {
        if self.recompute == Recompute::None {
            self.buf(&format!("h{i}.h"))
        } else {
            self.buf("ws.h")
        }
    }

    fn w(&self, i: usize, s: &str) -> GpuTensor {
        self.p(&format!("transformer.h.{i}.{s}"))
    }

    fn gw(&self, i: usize, s: &str) -> GpuTensor {
        self.g(&format!("transformer.h.{i}.{s}"))
    }

    /// x_in = λr·x_prev + λ0·x0 into ws.x_in, u = norm(x_in) into ws.u.
    fn block_input(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        residual::lambda_mix_forward(
            s,
            self.buf("ws.x_in"),
            self.x_prev(i),
            self.buf("x0"),
            &self.pi("resid_lambdas", i),
            &self.pi("x0_lambdas", i),
        )?;
        rmsnorm::rmsnorm_forward(s, self.buf("ws.u"), self.buf("ws.rstd_a"), self.buf("ws.x_in"), n, c, 1.0)
    }

    /// q, k, v of block i from ws.u: projections, value-embedding gate, RoPE (kept q_rot, k_rot,
    /// v), then the QK norm into ws.qn / ws.kn.
    fn block_qkv(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let cfg = &self.cfg;
        let (n, c, h, hkv, d) = (self.b * self.t, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim);
        let (hd, kv) = (h * d, hkv * d);
        let (q, k, v) = (self.layer_buf(i, "q_rot"), self.layer_buf(i, "k_rot"), self.layer_buf(i, "v"));
        let u = self.buf("ws.u");
        matmul(s, q, u, &self.w(i, "attn.c_q.weight"), &self.lin(Gemm::nt(n, hd, c)), 1.0, 0.0)?;
        matmul(s, k, u, &self.w(i, "attn.c_k.weight"), &self.lin(Gemm::nt(n, kv, c)), 1.0, 0.0)?;
        matmul(s, v, u, &self.w(i, "attn.c_v.weight"), &self.lin(Gemm::nt(n, kv, c)), 1.0, 0.0)?;
        if cfg.has_value_embed(i) {
            let ve = self.buf("ws.ve");
            embedding_forward(s, ve, &self.p(&format!("value_embeds.{i}.weight")), self.buf("idx"), n, kv)?;
            vegate::ve_gate_forward(s, v, u, ve, &self.w(i, "attn.ve_gate.weight"), n, c, hkv, d)?;
        }
        let (cos, sin) = (self.buf("rope.cos"), self.buf("rope.sin"));
        rope::rope_forward(s, q, cos, sin, n, self.t, 0, h, d)?;
        rope::rope_forward(s, k, cos, sin, n, self.t, 0, hkv, d)?;
        self.qk_norm(s, i)
    }

    fn qk_norm(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let cfg = &self.cfg;
        let (n, h, hkv, d) = (self.b * self.t, cfg.n_head, cfg.n_kv_head, cfg.head_dim);
        let (q, k) = (self.layer_buf(i, "q_rot"), self.layer_buf(i, "k_rot"));
        rmsnorm::rmsnorm_forward(s, self.buf("ws.qn"), self.layer_buf(i, "rstd_q"), q, n * h, d, QK_SCALE)?;
        rmsnorm::rmsnorm_forward(s, self.buf("ws.kn"), self.layer_buf(i, "rstd_k"), k, n * hkv, d, QK_SCALE)
    }

    fn attn_scale(&self) -> f32 {
        1.0 / (self.cfg.head_dim as f32).sqrt()
    }

    /// Attention and its projection: att, then x1 = x_in + att·Woᵀ.
    fn block_attention(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let cfg = &self.cfg;
        let (n, c, h, hkv, d) = (self.b * self.t, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim);
        let (att, lse, x1) = (self.layer_buf(i, "att"), self.layer_buf(i, "lse"), self.layer_buf(i, "x1"));
        attention_forward(
            s,
            att,
            lse,
            self.buf("ws.qn"),
            self.buf("ws.kn"),
            self.layer_buf(i, "v"),
            self.b,
            self.t,
            h,
            hkv,
            d,
            cfg.windows[i],
            self.attn_scale(),
        )?;
        elementwise::copy(s, x1, self.buf("ws.x_in"))?;
        matmul(s, x1, att, &self.w(i, "attn.c_proj.weight"), &self.lin(Gemm::nt(n, c, h * d)), 1.0, 1.0)
    }

    /// u2 = norm(x1) into ws.u, h = u2·Wfcᵀ, a = relu(h)² into ws.a.
    fn block_mlp_hidden(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        let x1 = self.layer_buf(i, "x1");
        rmsnorm::rmsnorm_forward(s, self.buf("ws.u"), self.buf("ws.rstd_b"), x1, n, c, 1.0)?;
        let hb = self.mlp_hidden(i);
        matmul(s, hb, self.buf("ws.u"), &self.w(i, "mlp.c_fc.weight"), &self.lin(Gemm::nt(n, 4 * c, c)), 1.0, 0.0)?;
        activation::relu2_forward(s, self.buf("ws.a"), hb)
    }

    fn block_forward(&self, s: &mut Stream<'_>, i: usize) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        self.block_input(s, i)?;
        self.block_qkv(s, i)?;
        self.block_attention(s, i)?;
        self.block_mlp_hidden(s, i)?;
        let out = self.x_out(i);
        elementwise::copy(s, out, self.layer_buf(i, "x1"))?;
        matmul(s, out, self.buf("ws.a"), &self.w(i, "mlp.c_proj.weight"), &self.lin(Gemm::nt(n, c, 4 * c)), 1.0, 1.0)?;
        if i == self.cfg.backout_layer() && i + 1 >= self.cfg.n_layer {
            elementwise::copy(s, self.buf("x_mid"), out)?;
        }
        Ok(())
    }

    /// Embedding → norm → smear into x0; the raw embedding in ws.x_in, the normed one in ws.u.
    fn embed(&self, s: &mut Stream<'_>) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        embedding_forward(s, self.buf("ws.x_in"), &self.p("transformer.wte.weight"), self.buf("idx"), n, c)?;
        rmsnorm::rmsnorm_forward(s, self.buf("ws.u"), self.buf("rstd0"), self.buf("ws.x_in"), n, c, 1.0)?;
        Ok(())
    }

    /// The trunk: everything up to z = norm(x − λ·x_mid), kept for the head and the backward.
    pub fn record_forward(&self, s: &mut Stream<'_>) -> Result<()> {
        let (n, c) = (self.b * self.t, self.cfg.n_embd);
        self.embed(s)?;
        smear::smear_forward(
            s,
            self.buf("x0"),
            self.buf("ws.u"),
            &self.p("smear_gate.weight"),
            &self.p("smear_lambda"),
            self.b,
            self.t,
            c,
        )?;
        for i in 0..self.cfg.n_layer {
            self.block_forward(s, i)?;
        }
        residual::backout_forward(s, self.buf("xf"), self.buf("ws.dx"), self.x_mid(), &self.p("backout_lambda"))?;
        rmsnorm::rmsnorm_forward(s, self.buf("z"), self.buf("rstd_f"), self.buf("xf"), n, c, 1.0)
    }

    /// Logits → softcap cross-entropy per token into ws.losses, chunk by chunk. With `train`,
    /// each chunk's logits become their gradient in place and flow back at once: dz into ws.du,
    /// lm_head's gradient accumulated.
    pub fn record_head(&self, s: &mut Stream<'_>, train: bool) -> Result<()> {
        let cfg = &self.cfg;
        let (n, c, vp) = (self.b * self.t, cfg.n_embd, cfg.padded_vocab);
        let lm = self.p("lm_head.weight");
        let glm = self.g("lm_head.weight");
        let mut r0 = 0;
        while r0 < n {
            let rows = self.logits_chunk_rows.min(n - r0);
            let logits = self.buf("logits").view(0, rows * vp);
            let z = self.buf("z").view(r0 * c, rows * c);
            matmul(s, &logits, &z, &lm, &self.lin(Gemm::nt(rows, vp, c)), 1.0, 0.0)?;
            crossentropy::softcap_cross_entropy(
                s,
                &self.buf("ws.losses").view(r0, rows),
                train,
                &logits,
                &self.buf("targets").view(r0, rows),
                rows,
                cfg.vocab_size,
                vp,
                SOFTCAP,
                &self.buf("step_scalars").view(0, 1),
            )?;
            if train {
                matmul(
                    s,
                    &self.buf("ws.du").view(r0 * c, rows * c),
                    &logits,
                    &lm,
                    &self.lin(Gemm::nn(rows, c, vp)),
                    1.0,
                    0.0,
                )?;
                matmul(s, &glm, &logits, &z, &self.lin(Gemm::tn(vp, c, rows)), 1.0, 1.0)?;
            }
            r0 += rows;
        }
        Ok(())
    }

    /// The trunk's backward, after [`record_head`](Self::record_head) with `train` (dz in ws.du).
    pub fn record_backward(&self, s: &mut Stream<'_>) -> Result<()> {
        let cfg = &self.cfg;
        let (n, c, h, hkv, d) = (self.b * self.t, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim);
        let (hd, kv, f) = (h * d, hkv * d, 4 * c);
        rmsnorm::rmsnorm_backward(
            s,
            self.buf("ws.dx"),
            self.buf("ws.du"),
            self.buf("xf"),
            self.buf("rstd_f"),
            n,
            c,
            1.0,
            false,
        )?;
        elementwise::fill(s, self.buf("ws.dmid"), 0.0)?;
        residual::backout_backward(
            s,
            self.buf("ws.dmid"),
            &self.g("backout_lambda"),
            self.buf("ws.dx"),
            self.x_mid(),
            &self.p("backout_lambda"),
        )?;
        elementwise::fill(s, self.buf("ws.dx0"), 0.0)?;
        let (mut cur, mut other) = (self.buf("ws.dx"), self.buf("ws.dx_prev"));
        for i in (0..cfg.n_layer).rev() {
            if i == cfg.backout_layer() {
                elementwise::axpy(s, cur, 1.0, self.buf("ws.dmid"))?;
            }
            // Recompute what this block's backward reads and was not kept.
            self.block_input(s, i)?;
            if self.recompute == Recompute::Block {
                self.block_qkv(s, i)?;
                self.block_attention(s, i)?;
            }
            let x1 = self.layer_buf(i, "x1");
            let hb = self.mlp_hidden(i);
            if self.recompute == Recompute::None {
                rmsnorm::rmsnorm_forward(s, self.buf("ws.u"), self.buf("ws.rstd_b"), x1, n, c, 1.0)?;
                activation::relu2_forward(s, self.buf("ws.a"), hb)?;
            } else {
                self.block_mlp_hidden(s, i)?;
            }
            // MLP: x_out = x1 + a·Wprojᵀ, a = relu(u2·Wfcᵀ)², u2 = norm(x1).
            let (a, da, du, u) = (self.buf("ws.a"), self.buf("ws.da"), self.buf("ws.du"), self.buf("ws.u"));
            matmul(s, da, cur, &self.w(i, "mlp.c_proj.weight"), &self.lin(Gemm::nn(n, f, c)), 1.0, 0.0)?;
            matmul(s, &self.gw(i, "mlp.c_proj.weight"), cur, a, &self.lin(Gemm::tn(c, f, n)), 1.0, 1.0)?;
            activation::relu2_backward(s, a, da, hb)?; // ws.a now holds dh
            matmul(s, du, a, &self.w(i, "mlp.c_fc.weight"), &self.lin(Gemm::nn(n, c, f)), 1.0, 0.0)?;
            matmul(s, &self.gw(i, "mlp.c_fc.weight"), a, u, &self.lin(Gemm::tn(f, c, n)), 1.0, 1.0)?;
            rmsnorm::rmsnorm_backward(s, cur, du, x1, self.buf("ws.rstd_b"), n, c, 1.0, true)?; // cur = dx1
                                                                                                // Attention: x1 = x_in + att·Woᵀ.
            rmsnorm::rmsnorm_forward(s, u, self.buf("ws.rstd_a"), self.buf("ws.x_in"), n, c, 1.0)?;
            if self.recompute != Recompute::Block {
                self.qk_norm(s, i)?;
            }
            let (att, datt) = (self.layer_buf(i, "att"), self.buf("ws.datt"));
            matmul(s, datt, cur, &self.w(i, "attn.c_proj.weight"), &self.lin(Gemm::nn(n, hd, c)), 1.0, 0.0)?;
            matmul(s, &self.gw(i, "attn.c_proj.weight"), cur, att, &self.lin(Gemm::tn(c, hd, n)), 1.0, 1.0)?;
            let (dqn, dkn, dv) = (self.buf("ws.dqn"), self.buf("ws.dkn"), self.buf("ws.dv"));
            attention_backward_ws(
                s,
                dqn,
                dkn,
                dv,
                datt,
                self.buf("ws.qn"),
                self.buf("ws.kn"),
                self.layer_buf(i, "v"),
                att,
                self.layer_buf(i, "lse"),
                self.b,
                self.t,
                h,
                hkv,
                d,
                cfg.windows[i],
                self.attn_scale(),
                self.buf("ws.delta"),
            )?;
            // dq into ws.datt, dk into ws.kn: both free once the attention backward has run.
            let (dq, dk) = (datt, self.buf("ws.kn"));
            let (q_rot, k_rot) = (self.layer_buf(i, "q_rot"), self.layer_buf(i, "k_rot"));
            rmsnorm::rmsnorm_backward(s, dq, dqn, q_rot, self.layer_buf(i, "rstd_q"), n * h, d, QK_SCALE, false)?;
            rmsnorm::rmsnorm_backward(s, dk, dkn, k_rot, self.layer_buf(i, "rstd_k"), n * hkv, d, QK_SCALE, false)?;
            let (cos, sin) = (self.buf("rope.cos"), self.buf("rope.sin"));
            rope::rope_backward(s, dq, cos, sin, n, self.t, 0, h, d)?;
            rope::rope_backward(s, dk, cos, sin, n, self.t, 0, hkv, d)?;
            matmul(s, du, dq, &self.w(i, "attn.c_q.weight"), &self.lin(Gemm::nn(n, c, hd)), 1.0, 0.0)?;
            matmul(s, du, dk, &self.w(i, "attn.c_k.weight"), &self.lin(Gemm::nn(n, c, kv)), 1.0, 1.0)?;
            matmul(s, du, dv, &self.w(i, "attn.c_v.weight"), &self.lin(Gemm::nn(n, c, kv)), 1.0, 1.0)?;
            matmul(s, &self.gw(i, "attn.c_q.weight"), dq, u, &self.lin(Gemm::tn(hd, c, n)), 1.0, 1.0)?;
            matmul(s, &self.gw(i, "attn.c_k.weight"), dk, u, &self.lin(Gemm::tn(kv, c, n)), 1.0, 1.0)?;
            matmul(s, &self.gw(i, "attn.c_v.weight"), dv, u, &self.lin(Gemm::tn(kv, c, n)), 1.0, 1.0)?;
            if cfg.has_value_embed(i) {
                let (ve, dve) = (self.buf("ws.ve"), dkn);
                let table = format!("value_embeds.{i}.weight");
                embedding_forward(s, ve, &self.p(&table), self.buf("idx"), n, kv)?;
                let (wg, gwg) = (self.w(i, "attn.ve_gate.weight"), self.gw(i, "attn.ve_gate.weight"));
                vegate::ve_gate_backward(s, dve, du, &gwg, dv, u, ve, &wg, n, c, hkv, d)?;
                embedding_backward(s, &self.g(&table), dve, &self.buckets, n, kv)?;
            }
            rmsnorm::rmsnorm_backward(s, cur, du, self.buf("ws.x_in"), self.buf("ws.rstd_a"), n, c, 1.0, true)?;
            // The lambda mix: x_in = λr·x_prev + λ0·x0.
            residual::lambda_mix_backward(
                s,
                other,
                self.buf("ws.dx0"),
                &self.gi("resid_lambdas", i),
                &self.gi("x0_lambdas", i),
                cur,
                self.x_prev(i),
                self.buf("x0"),
                &self.pi("resid_lambdas", i),
                &self.pi("x0_lambdas", i),
            )?;
            std::mem::swap(&mut cur, &mut other);
        }
        // x0 is the smeared embedding itself.
        elementwise::axpy(s, cur, 1.0, self.buf("ws.dx0"))?;
        self.embed(s)?;
        smear::smear_backward(
            s,
            self.buf("ws.du"),
            &self.g("smear_gate.weight"),
            &self.g("smear_lambda"),
            cur,
            self.buf("ws.u"),
            &self.p("smear_gate.weight"),
            &self.p("smear_lambda"),
            self.b,
            self.t,
            c,
        )?;
        rmsnorm::rmsnorm_backward(
            s,
            other,
            self.buf("ws.du"),
            self.buf("ws.x_in"),
            self.buf("rstd0"),
            n,
            c,
            1.0,
            false,
        )?;
        embedding_backward(s, &self.g("transformer.wte.weight"), other, &self.buckets, n, c)
    }

    /// Per-token losses of the last head pass.
    pub fn read_losses(&self) -> Result<Vec<f32>> {
        self.ctx.read(self.buf("ws.losses"))
    }

    /// Mean loss over valid targets of the last head pass (0 with none), summed in f64 on the host.
    pub fn read_loss(&self) -> Result<f64> {
        let l = self.read_losses()?;
        Ok(if self.valid == 0 { 0.0 } else { l.iter().map(|&x| x as f64).sum::<f64>() / self.valid as f64 })
    }

    /// One forward/backward on the current batch, gradients accumulated; returns the loss.
    pub fn forward_backward(&self) -> Result<f64> {
        let mut s = self.stream();
        self.record_forward(&mut s)?;
        self.record_head(&mut s, true)?;
        self.record_backward(&mut s)?;
        s.run()?;
        self.read_loss()
    }
}
