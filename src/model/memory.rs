//! The memory plan: every buffer a training run allocates, by name, size and category.
//!
//! One description per buffer set, [`ModelBuffers::build`] here and
//! `train::optimizer::OptimizerBuffers::build`, gives both the plan (with a [`Planner`]: each
//! buffer its element count, every request listed in a [`MemoryPlan`]) and the allocation (with an
//! [`Allocator`]: each buffer a `GpuTensor`). So `wgpt info` shows what the runtime really
//! allocates, the model finds its buffers by typed field, and a test checks the byte counts.
//!
//! What is kept for the backward depends on `[memory] recompute` (see [`Recompute`]):
//! - always: the embedding output x0, each block's input stream x_prev, the mid-network residual
//!   for backout, the final normed stream z and its input xf;
//! - `none`/`mlp`: per layer q and k after RoPE (before the QK norm) with their norm factors, v
//!   after the value-embedding gate, the attention output and its log-sum-exp, and x1 (the
//!   stream after attention);
//! - `none` only: the MLP hidden pre-activation h (4C per token, the largest activation);
//! - `block`: nothing per layer beyond x_prev; the backward re-runs each block's forward into the
//!   shared workspace.
//!
//! Under `train.precision = "f16"` the matrices the linear layers' products read also get f16
//! copies ([`LinearWeights`], made from the master weights once per optimizer step): 2 bytes per
//! weight of the attention and MLP projections and lm_head, the price of products that read half
//! the bytes and convert nothing.
//!
//! Everything cheap to recompute (the block input after the lambda mix, every RMSNorm output,
//! the normalized q/k, the gathered value embeddings, relu²) is recomputed into one shared set of
//! workspace buffers that every layer reuses.

use crate::config::{MemorySpec, Recompute};
use crate::gpu::{DType, GpuContext, GpuTensor};
use crate::kernels::matmul::MatmulPrecision;
use crate::model::GptConfig;
use crate::model::ParamLayout;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Category {
    /// The parameter arena (f32 master weights).
    Params,
    /// f16 copies of the matrices the products read (`train.precision = "f16"` only).
    WeightCopies,
    /// The gradient arena.
    Grads,
    /// AdamW moments and Muon momentum / second-moment buffers, plus the optimizer's per-step
    /// scalars, tables, gradient-norm partials and Muon workspace (`train::optimizer::OptimizerBuffers`).
    Optimizer,
    /// Activations kept from the forward for the backward.
    Activations,
    /// Buffers every layer reuses (recomputation targets and activation gradients).
    Workspace,
    /// One chunk of logits for the fused softcap/cross-entropy.
    Logits,
    /// Per-batch inputs: token ids, targets, embedding-gradient buckets, RoPE tables, scalars.
    Batch,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::Params,
        Category::WeightCopies,
        Category::Grads,
        Category::Optimizer,
        Category::Activations,
        Category::Workspace,
        Category::Logits,
        Category::Batch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Params => "params",
            Category::WeightCopies => "f16 weight copies",
            Category::Grads => "grads",
            Category::Optimizer => "optimizer state",
            Category::Activations => "activations kept for backward",
            Category::Workspace => "transient workspace",
            Category::Logits => "logits chunk",
            Category::Batch => "batch inputs",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub name: String,
    pub category: Category,
    /// Elements of `elem_bytes` bytes: f32 or i32 (4), or f16 (2).
    pub elems: usize,
    pub elem_bytes: u64,
}

impl Entry {
    /// Bytes the allocation really takes: `GpuContext::tensor` rounds every buffer up to 256.
    pub fn bytes(&self) -> u64 {
        (self.elems.max(1) as u64 * self.elem_bytes).div_ceil(256) * 256
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MemoryPlan {
    pub entries: Vec<Entry>,
}

/// f32 of stream workspace the model's launchers need: the attention backward's Δ (N·H, which
/// also covers the value-embedding gate's per-row coefficients, N·Hkv), smear's (2·B·T), or the
/// partial sums of a scalar-gradient reduction over N·C elements (256 per binding-sized chunk,
/// counted at the 128 MiB binding of the smallest adapter wgpt supports; a larger binding needs
/// fewer). `GpuModel::new` checks the real need.
pub fn stream_scratch_len(n: usize, c: usize, h: usize, b: usize, t: usize) -> usize {
    let chunk = ((128usize << 20) - 272) / 4 / 64 * 64;
    (n * h).max(2 * b * t).max(256 * (n * c).div_ceil(chunk))
}

/// Where a buffer set's buffers come from: each request names a buffer (as `wgpt info` and wgpu
/// labels show it), its category and its size in 4-byte elements, and gets a `T`. The same
/// description ([`ModelBuffers::build`], `train::optimizer::OptimizerBuffers::build`) gives the
/// plan ([`Planner`]: `T = usize`) and the allocation ([`Allocator`]: `T = GpuTensor`), so what
/// runs is what `wgpt info` reports.
pub trait BufferSource {
    type Buf;
    /// A buffer of `elems` 4-byte elements (f32 or i32).
    fn buffer(&mut self, name: &str, category: Category, elems: usize) -> crate::Result<Self::Buf>;
    /// A buffer of `elems` f16 elements.
    fn buffer_f16(&mut self, name: &str, category: Category, elems: usize) -> crate::Result<Self::Buf>;
}

/// Records every request into a [`MemoryPlan`]; each buffer is its element count.
#[derive(Default)]
pub struct Planner {
    pub plan: MemoryPlan,
}

impl BufferSource for Planner {
    type Buf = usize;
    fn buffer(&mut self, name: &str, category: Category, elems: usize) -> crate::Result<usize> {
        self.plan.entries.push(Entry { name: name.to_string(), category, elems, elem_bytes: 4 });
        Ok(elems)
    }
    fn buffer_f16(&mut self, name: &str, category: Category, elems: usize) -> crate::Result<usize> {
        self.plan.entries.push(Entry { name: name.to_string(), category, elems, elem_bytes: DType::F16.bytes() });
        Ok(elems)
    }
}

/// Allocates every request on the GPU.
pub struct Allocator<'c>(pub &'c GpuContext);

impl BufferSource for Allocator<'_> {
    type Buf = GpuTensor;
    fn buffer(&mut self, name: &str, _: Category, elems: usize) -> crate::Result<GpuTensor> {
        self.0.tensor(name, elems)
    }
    fn buffer_f16(&mut self, name: &str, _: Category, elems: usize) -> crate::Result<GpuTensor> {
        self.0.tensor_f16(name, elems)
    }
}

/// What a buffer set serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Training micro-batches of full-length sequences: forward, head and backward.
    Train,
    /// Scoring (`eval`): forward and head only over sequences of `t` ≤ the model's length. No
    /// gradients, nothing kept for a backward: one stream buffer carries the residual stream
    /// through every block, the attention half and the MLP write the shared workspace, and the
    /// head also writes each position's greedy prediction.
    Score { t: usize },
}

/// Every buffer the training model uses (the optimizer's are `train::optimizer::OptimizerBuffers`):
/// element counts in the plan, tensors once allocated. N = B·T rows; C, H, Hkv, D, Vp as in
/// [`GptConfig`]; F = 4C.
pub struct ModelBuffers<T> {
    /// (P) the parameter arena: f32 master weights in [`ParamLayout`] order.
    pub params: T,
    /// (P) the gradient arena, same layout; gradients accumulate into it. Training only.
    pub grads: Option<T>,
    pub batch: BatchBuffers<T>,
    pub acts: Activations<T>,
    pub ws: Workspace<T>,
    /// (logits_chunk_rows, Vp) one chunk of logits, turned into its gradient in place.
    pub logits: T,
    /// The f16 weight copies, under f16 precision only.
    pub weights16: Option<LinearWeights<T>>,
}

/// The matrices the linear layers' products read as their B operand (forward and input
/// gradient): under f16 precision, f16 copies of the master weights, one buffer per matrix.
#[derive(Clone)]
pub struct LinearWeights<T> {
    pub blocks: Vec<BlockLinear<T>>,
    /// (Vp, C).
    pub lm_head: T,
}

/// Block i's projection matrices, shaped as in `model::BlockParams`.
#[derive(Clone)]
pub struct BlockLinear<T> {
    pub c_q: T,
    pub c_k: T,
    pub c_v: T,
    pub c_proj: T,
    pub c_fc: T,
    pub mlp_proj: T,
}

impl<T> LinearWeights<T> {
    /// The f16 copies of every linear layer's matrix of `m`.
    pub fn build<S: BufferSource<Buf = T>>(src: &mut S, m: &GptConfig) -> crate::Result<Self> {
        let (c, hd, kv, f) = (m.n_embd, m.n_head * m.head_dim, m.n_kv_head * m.head_dim, 4 * m.n_embd);
        let mut buf = |name: String, elems: usize| src.buffer_f16(&name, Category::WeightCopies, elems);
        let mut blocks = Vec::with_capacity(m.n_layer);
        for i in 0..m.n_layer {
            blocks.push(BlockLinear {
                c_q: buf(format!("h{i}.c_q.f16"), hd * c)?,
                c_k: buf(format!("h{i}.c_k.f16"), kv * c)?,
                c_v: buf(format!("h{i}.c_v.f16"), kv * c)?,
                c_proj: buf(format!("h{i}.c_proj.f16"), c * hd)?,
                c_fc: buf(format!("h{i}.c_fc.f16"), f * c)?,
                mlp_proj: buf(format!("h{i}.mlp_proj.f16"), c * f)?,
            });
        }
        Ok(LinearWeights { blocks, lm_head: buf("lm_head.f16".into(), m.padded_vocab * c)? })
    }

    /// Every matrix paired with its counterpart in `other` (another description of the same
    /// matrices), block by block, then lm_head.
    pub fn pairs<'a, U>(&'a self, other: &'a LinearWeights<U>) -> Vec<(&'a T, &'a U)> {
        let mut v = Vec::new();
        for (a, b) in self.blocks.iter().zip(&other.blocks) {
            v.extend([
                (&a.c_q, &b.c_q),
                (&a.c_k, &b.c_k),
                (&a.c_v, &b.c_v),
                (&a.c_proj, &b.c_proj),
                (&a.c_fc, &b.c_fc),
                (&a.mlp_proj, &b.mlp_proj),
            ]);
        }
        v.push((&self.lm_head, &other.lm_head));
        v
    }
}

/// Per-batch inputs and constant tables.
pub struct BatchBuffers<T> {
    /// (N) i32 token ids.
    pub idx: T,
    /// (N) i32 targets, −1 = ignored.
    pub targets: T,
    /// (3N + 1) i32 positions grouped by token for the deterministic embedding gradient: order
    /// (N), starts (N + 1), tokens (N) (`kernels::embedding::EmbeddingBuckets::packed`).
    /// Training only.
    pub buckets: Option<T>,
    /// (T, D/2) RoPE tables.
    pub rope_cos: T,
    pub rope_sin: T,
    /// (16) per-batch scalars; [0] is the loss-gradient scale.
    pub step_scalars: T,
}

/// Activations kept from the forward for the backward (when scoring: the ones read beyond the
/// block that writes them).
pub struct Activations<T> {
    /// (N, C) the smeared embedding, block 0's input stream.
    pub x0: T,
    /// (N) 1/rms of the raw embedding.
    pub rstd0: T,
    pub layers: Vec<LayerActs<T>>,
    /// (N, C) the stream after block L/2 when that is the last block (otherwise it is the next
    /// block's `x_prev`), and always when scoring (no block keeps its input there).
    pub x_mid: Option<T>,
    /// (N, C) the stream after backout; (N) its 1/rms; (N, C) the final normed stream.
    pub xf: T,
    pub rstd_f: T,
    pub z: T,
}

/// Block i's kept activations; which exist is `[memory] recompute`'s choice (none when scoring).
pub struct LayerActs<T> {
    /// (N, C) the stream entering the block; block 0's is x0, so `None` there, and when scoring
    /// (every block reads and writes `ws.dx`).
    pub x_prev: Option<T>,
    /// Kept under `none` and `mlp`; `None` under `block`.
    pub attn: Option<AttnActs<T>>,
    /// (N, F) the MLP pre-activation, kept under `none` only.
    pub h: Option<T>,
}

/// What a block's attention half produces: kept per layer, or (`block`) recomputed into one set
/// in the workspace.
#[derive(Clone)]
pub struct AttnActs<T> {
    /// (N, H·D) q after RoPE, before the QK norm; (N, H) its norm's 1/rms.
    pub q_rot: T,
    pub rstd_q: T,
    /// (N, Hkv·D) k after RoPE; (N, Hkv) its 1/rms.
    pub k_rot: T,
    pub rstd_k: T,
    /// (N, Hkv·D) v after the value-embedding gate.
    pub v: T,
    /// (N, H·D) attention output; (N, H) its log-sum-exp.
    pub att: T,
    pub lse: T,
    /// (N, C) the stream after attention.
    pub x1: T,
}

/// One set of buffers every layer reuses, each serving several roles that are never live at the
/// same time (the GPU model follows these assignments).
pub struct Workspace<T> {
    /// (N, C) block input after the lambda mix; the raw embedding at either end.
    pub x_in: T,
    /// (N, C) normed block input u, then the MLP's normed input u2; the normed embedding.
    pub u: T,
    /// (N, C) the last block's output in the forward (every block's input and output when
    /// scoring), then the gradient of the stream, accumulated through a block.
    pub dx: T,
    /// (N) 1/rms of the block input and of x1.
    pub rstd_a: T,
    pub rstd_b: T,
    /// (N, H·D) normed q (its first N·Hkv·D elements stage v in f32 before v's cast to f16,
    /// before the QK norm writes it); (N, Hkv·D) normed k, then dk.
    pub qn: T,
    pub kn: T,
    /// (N, Hkv·D) gathered value embeddings.
    pub ve: T,
    /// (N, F) relu² output, then the hidden gradient dh.
    pub a: T,
    /// (N, F) the MLP pre-activation when it is recomputed rather than kept (`mlp`, `block`,
    /// scoring).
    pub h: Option<T>,
    /// The attention half's outputs, recomputed per layer under `block` (and when scoring).
    pub attn: Option<AttnActs<T>>,
    /// Launchers' temporaries (reduction partials, per-row gate coefficients), see `Stream`.
    pub stream: T,
    /// (N) per-token losses of the last head pass.
    pub losses: T,
    /// (N) i32 greedy prediction per position of the last head pass. Scoring only.
    pub argmax: Option<T>,
    /// The backward's buffers. Training only.
    pub grad: Option<GradWorkspace<T>>,
}

/// The workspace only the backward uses.
pub struct GradWorkspace<T> {
    /// (N, C) the stream gradient below a block's lambda mix (ping-pongs with dx).
    pub dx_prev: T,
    /// (N, C) gradient of x0, collected from every block.
    pub dx0: T,
    /// (N, C) gradients entering the RMSNorms: dz, du2, du, and the embedding's.
    pub du: T,
    /// (N, C) backout's contribution to the stream gradient at block L/2.
    pub dmid: T,
    /// (N, H·D) attention output gradient, then dq.
    pub datt: T,
    /// (N, H·D) / (N, Hkv·D) gradients of the normed q and k (dkn then holds dve).
    pub dqn: T,
    pub dkn: T,
    /// (N, Hkv·D) gradient of v.
    pub dv: T,
    /// (N, F) the gradient of relu².
    pub da: T,
}

impl<T> ModelBuffers<T> {
    /// Every buffer for `purpose` (training `m` at `b` sequences per micro-batch, or scoring `b`
    /// sequences of length t) with products at `matmul` (f16 ones get the f16 weight copies), in
    /// one place: the memory plan with a [`Planner`], the tensors with an [`Allocator`].
    pub fn build<S: BufferSource<Buf = T>>(
        src: &mut S,
        m: &GptConfig,
        b: usize,
        mem: &MemorySpec,
        matmul: MatmulPrecision,
        purpose: Purpose,
    ) -> crate::Result<Self> {
        let layout = ParamLayout::new(m);
        let (train, t) = match purpose {
            Purpose::Train => (true, m.sequence_len),
            Purpose::Score { t } => (false, t),
        };
        let n = b * t;
        let (c, h, hkv, d) = (m.n_embd, m.n_head, m.n_kv_head, m.head_dim);
        let (hd, kv, f) = (h * d, hkv * d, 4 * c);
        // Scoring keeps nothing per layer: the workspace layout of `block`.
        let rec = if train { mem.recompute } else { Recompute::Block };
        // What scoring keeps across blocks is workspace, not "kept for backward".
        let kept = if train { Category::Activations } else { Category::Workspace };
        use Category::*;
        // A macro, not a closure: `attn` below takes `src` too.
        macro_rules! buf {
            ($name:expr, $cat:expr, $elems:expr) => {
                src.buffer($name, $cat, $elems)
            };
        }
        let params = buf!("params", Params, layout.len)?;
        let grads = if train { Some(buf!("grads", Grads, layout.len)?) } else { None };
        let batch = BatchBuffers {
            idx: buf!("idx", Batch, n)?,
            targets: buf!("targets", Batch, n)?,
            buckets: if train { Some(buf!("emb.buckets", Batch, 3 * n + 1)?) } else { None },
            rope_cos: buf!("rope.cos", Batch, t * d / 2)?,
            rope_sin: buf!("rope.sin", Batch, t * d / 2)?,
            step_scalars: buf!("step_scalars", Batch, 16)?,
        };
        // Under f16 products, v and the attention output only feed products that round them to
        // f16 (attention's, c_proj's), so they are kept in f16: half their memory.
        let f16_acts = matmul >= MatmulPrecision::F16;
        let attn = |src: &mut S, pre: &str, cat: Category| -> crate::Result<AttnActs<T>> {
            let mut product_only = |name: &str, elems: usize| {
                if f16_acts {
                    src.buffer_f16(&format!("{pre}{name}"), cat, elems)
                } else {
                    src.buffer(&format!("{pre}{name}"), cat, elems)
                }
            };
            let (v, att) = (product_only("v", n * kv)?, product_only("att", n * hd)?);
            Ok(AttnActs {
                q_rot: src.buffer(&format!("{pre}q_rot"), cat, n * hd)?,
                k_rot: src.buffer(&format!("{pre}k_rot"), cat, n * kv)?,
                rstd_q: src.buffer(&format!("{pre}rstd_q"), cat, n * h)?,
                rstd_k: src.buffer(&format!("{pre}rstd_k"), cat, n * hkv)?,
                v,
                att,
                lse: src.buffer(&format!("{pre}lse"), cat, n * h)?,
                x1: src.buffer(&format!("{pre}x1"), cat, n * c)?,
            })
        };
        let x0 = buf!("x0", kept, n * c)?;
        let rstd0 = buf!("rstd0", kept, n)?;
        let mut layers = Vec::with_capacity(m.n_layer);
        for i in 0..m.n_layer {
            let x_prev = if i > 0 && train { Some(buf!(&format!("h{i}.x_prev"), Activations, n * c)?) } else { None };
            let kept = if rec != Recompute::Block { Some(attn(src, &format!("h{i}."), Activations)?) } else { None };
            let hidden =
                if rec == Recompute::None { Some(buf!(&format!("h{i}.h"), Activations, n * f)?) } else { None };
            layers.push(LayerActs { x_prev, attn: kept, h: hidden });
        }
        // Backout reads the stream after block L/2, which is already kept as the next block's
        // input; only a model whose backout layer is its last block needs a copy.
        let x_mid = if m.backout_layer() + 1 >= m.n_layer || !train { Some(buf!("x_mid", kept, n * c)?) } else { None };
        let acts = self::Activations {
            x0,
            rstd0,
            layers,
            x_mid,
            xf: buf!("xf", kept, n * c)?,
            rstd_f: buf!("rstd_f", kept, n)?,
            z: buf!("z", kept, n * c)?,
        };
        let x_in = buf!("ws.x_in", Workspace, n * c)?;
        let u = buf!("ws.u", Workspace, n * c)?;
        let dx = buf!("ws.dx", Workspace, n * c)?;
        // The training plan's order (so `wgpt info` lists the buffers as it always has).
        let grad = |src: &mut S| -> crate::Result<(T, T, T, T)> {
            Ok((
                src.buffer("ws.dx_prev", Workspace, n * c)?,
                src.buffer("ws.dx0", Workspace, n * c)?,
                src.buffer("ws.du", Workspace, n * c)?,
                src.buffer("ws.dmid", Workspace, n * c)?,
            ))
        };
        let stream_grads = if train { Some(grad(src)?) } else { None };
        let rstd_a = buf!("ws.rstd_a", Workspace, n)?;
        let rstd_b = buf!("ws.rstd_b", Workspace, n)?;
        let qn = buf!("ws.qn", Workspace, n * hd)?;
        let datt = if train { Some(buf!("ws.datt", Workspace, n * hd)?) } else { None };
        let dqn = if train { Some(buf!("ws.dqn", Workspace, n * hd)?) } else { None };
        let kn = buf!("ws.kn", Workspace, n * kv)?;
        let ve = buf!("ws.ve", Workspace, n * kv)?;
        let dkn = if train { Some(buf!("ws.dkn", Workspace, n * kv)?) } else { None };
        let dv = if train { Some(buf!("ws.dv", Workspace, n * kv)?) } else { None };
        let a = buf!("ws.a", Workspace, n * f)?;
        let da = if train { Some(buf!("ws.da", Workspace, n * f)?) } else { None };
        let grad = match (stream_grads, datt, dqn, dkn, dv, da) {
            (Some((dx_prev, dx0, du, dmid)), Some(datt), Some(dqn), Some(dkn), Some(dv), Some(da)) => {
                Some(GradWorkspace { dx_prev, dx0, du, dmid, datt, dqn, dkn, dv, da })
            }
            _ => None,
        };
        let ws = self::Workspace {
            x_in,
            u,
            dx,
            rstd_a,
            rstd_b,
            qn,
            kn,
            ve,
            a,
            h: if rec != Recompute::None { Some(buf!("ws.h", Workspace, n * f)?) } else { None },
            attn: if rec == Recompute::Block { Some(attn(src, "ws.", Workspace)?) } else { None },
            stream: buf!("ws.stream", Workspace, stream_scratch_len(n, c, h, b, t))?,
            losses: buf!("ws.losses", Workspace, n)?,
            argmax: if train { None } else { Some(buf!("ws.argmax", Workspace, n)?) },
            grad,
        };
        let chunk_rows = match purpose {
            Purpose::Train => mem.logits_chunk_rows(m, b),
            Purpose::Score { .. } => mem.logits_chunk_rows(m, b).min(n),
        };
        let logits = buf!("logits", Logits, chunk_rows * m.padded_vocab)?;
        let weights16 = if matmul >= MatmulPrecision::F16 { Some(LinearWeights::build(src, m)?) } else { None };
        Ok(ModelBuffers { params, grads, batch, acts, ws, logits, weights16 })
    }
}

impl MemoryPlan {
    /// The model's buffers for training `m` at `b` sequences per micro-batch with products at
    /// `matmul` (the optimizer's are added by `train::memory_plan`).
    pub fn model(m: &GptConfig, b: usize, mem: &MemorySpec, matmul: MatmulPrecision) -> Self {
        let mut p = Planner::default();
        ModelBuffers::build(&mut p, m, b, mem, matmul, Purpose::Train)
            .expect("planning allocates nothing and cannot fail");
        p.plan
    }

    /// The buffers of a scoring model for `b` sequences of length `t` (parameters included).
    pub fn scoring(m: &GptConfig, b: usize, t: usize, mem: &MemorySpec, matmul: MatmulPrecision) -> Self {
        let mut p = Planner::default();
        ModelBuffers::build(&mut p, m, b, mem, matmul, Purpose::Score { t })
            .expect("planning allocates nothing and cannot fail");
        p.plan
    }

    /// These entries followed by `other`'s.
    pub fn with(mut self, other: MemoryPlan) -> Self {
        self.entries.extend(other.entries);
        self
    }

    /// Which of `base`'s buffers each of these entries uses instead of its own allocation, by
    /// index into `base` (what a scorer's `Pool` borrows from the idle training model). First by
    /// name: the entry of the same name, element type and at least as many elements (the parameter
    /// arena, the f16 weight copies, the batch inputs: their contents are what the scorer reads).
    /// Then, for the rest in order, the smallest untaken buffer of the same element type and
    /// enough elements among those whose contents no later training step reads before writing:
    /// activations, workspace and the logits chunk (every forward rewrites them). Gradients,
    /// optimizer state and weights are never lent as scratch.
    pub fn lend_from(&self, base: &[Entry]) -> Vec<Option<usize>> {
        let fits = |b: &Entry, e: &Entry| b.elem_bytes == e.elem_bytes && b.elems >= e.elems;
        let mut taken = vec![false; base.len()];
        let mut lent: Vec<Option<usize>> = self
            .entries
            .iter()
            .map(|e| {
                let i = base.iter().position(|b| b.name == e.name && fits(b, e))?;
                taken[i] = true;
                Some(i)
            })
            .collect();
        let scratch = |c: Category| matches!(c, Category::Activations | Category::Workspace | Category::Logits);
        for (e, slot) in self.entries.iter().zip(lent.iter_mut()).filter(|(_, s)| s.is_none()) {
            let best = (0..base.len())
                .filter(|&i| !taken[i] && scratch(base[i].category) && fits(&base[i], e))
                .min_by_key(|&i| (base[i].elems, i));
            if let Some(i) = best {
                taken[i] = true;
                *slot = Some(i);
            }
        }
        lent
    }

    /// The entries `base` lends no buffer for ([`MemoryPlan::lend_from`]): what a scorer's `Pool`
    /// allocates beside the buffers `base` offers.
    pub fn not_in(&self, base: &MemoryPlan) -> MemoryPlan {
        let lent = self.lend_from(&base.entries);
        MemoryPlan {
            entries: self.entries.iter().zip(lent).filter(|(_, l)| l.is_none()).map(|(e, _)| e.clone()).collect(),
        }
    }

    pub fn bytes(&self, cat: Category) -> u64 {
        self.entries.iter().filter(|e| e.category == cat).map(Entry::bytes).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(Entry::bytes).sum()
    }

    /// A table for `wgpt info`.
    pub fn render(&self) -> String {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let mut s = String::new();
        for cat in Category::ALL {
            let b = self.bytes(cat);
            let n = self.entries.iter().filter(|e| e.category == cat).count();
            s += &format!("  {:<32} {:>10.1} MiB  ({n} buffer{})\n", cat.name(), mib(b), if n == 1 { "" } else { "s" });
        }
        s += &format!("  {:<32} {:>10.1} MiB\n", "total", mib(self.total_bytes()));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use std::path::Path;

    fn plan(file: &str, overrides: &[&str]) -> MemoryPlan {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let rc = RunConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join(file), &o).unwrap();
        crate::train::memory_plan(&rc)
    }

    #[test]
    fn d12_fits_twelve_gib_with_the_default_switch() {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let p = plan("rtx4070-d12.toml", &[]);
        assert!(gib(p.total_bytes()) < 11.0, "d12 plan {:.2} GiB", gib(p.total_bytes()));
        // The seed run peaked at 9,448 MiB under PyTorch; the default switch stays below it.
        assert!(p.total_bytes() < 9_448 << 20, "{} MiB", p.total_bytes() >> 20);
        let none = plan("rtx4070-d12.toml", &["memory.recompute=none"]);
        let block = plan("rtx4070-d12.toml", &["memory.recompute=block"]);
        assert!(block.total_bytes() < p.total_bytes() && p.total_bytes() < none.total_bytes());
        assert_eq!(p.bytes(Category::Params), p.bytes(Category::Grads));
        for (name, q) in [("none", &none), ("mlp", &p), ("block", &block)] {
            eprintln!("{name}:\n{}", q.render());
        }
    }

    /// CORE during training costs the d12 run no memory: every scoring buffer is lent by the
    /// training model, the weights by name, the rest from its activations and workspace; and no
    /// gradient, optimizer or weight buffer is ever lent as scratch.
    #[test]
    fn the_scorer_borrows_all_it_needs_from_the_d12_training_model() {
        for precision in ["f32", "f16"] {
            let set = format!("train.precision={precision}");
            let rc = RunConfig::load(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/rtx4070-d12.toml"),
                std::slice::from_ref(&set),
            )
            .unwrap();
            assert_eq!(plan("rtx4070-d12.toml", &[&set]).total_bytes(), {
                plan("rtx4070-d12.toml", &[&set, "train.core_every=-1"]).total_bytes()
            });
            let matmul = if precision == "f32" { MatmulPrecision::F32 } else { MatmulPrecision::F16 };
            let train = MemoryPlan::model(&rc.model, rc.train().device_batch_size, &rc.file.memory, matmul);
            let score = crate::eval::scorer::Scorer::plan(&rc.model, &rc.file.memory, matmul, 8192);
            let lent = score.lend_from(&train.entries);
            for (e, l) in score.entries.iter().zip(&lent) {
                let b = &train.entries[l.expect("every scoring buffer lent")];
                assert!(b.elem_bytes == e.elem_bytes && b.elems >= e.elems, "{} from {}", e.name, b.name);
                if b.name != e.name {
                    assert!(matches!(b.category, Category::Activations | Category::Workspace | Category::Logits));
                }
            }
            let mut seen: Vec<usize> = lent.iter().flatten().copied().collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), lent.len(), "two scoring buffers share one training buffer");
        }
    }

    /// Only scratch is lent under another name: a request that only a gradient or optimizer
    /// buffer could hold is allocated.
    #[test]
    fn only_scratch_is_lent_under_another_name() {
        let e = |name: &str, category, elems| Entry { name: name.into(), category, elems, elem_bytes: 4 };
        let base =
            [e("grads", Category::Grads, 100), e("adam", Category::Optimizer, 100), e("ws.a", Category::Workspace, 10)];
        let asks = MemoryPlan {
            entries: vec![
                e("x", Category::Workspace, 50),
                e("y", Category::Workspace, 5),
                e("z", Category::Workspace, 5),
            ],
        };
        assert_eq!(asks.lend_from(&base), vec![None, Some(2), None]);
        assert_eq!(asks.not_in(&MemoryPlan { entries: base.to_vec() }).entries.len(), 2);
    }
}
