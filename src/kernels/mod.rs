//! GPU launchers, one module per WGSL family, mirroring `crate::reference` name for name.
//!
//! Every launcher takes a [`Stream`] first and then exactly the arguments of its CPU reference:
//! outputs first, then inputs, then shapes and scalars. Launchers only record dispatches; nothing
//! runs until the stream is submitted, so a whole training step can be one submission.

pub mod adamw;
pub mod argmax;
pub mod attention;
pub mod attention_coop;
pub mod cast;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod grad_norm;
pub(crate) mod launch;
pub mod matmul;
pub mod matmul_coop;
pub mod muon;
pub mod reduce;
pub mod relu2;
pub mod residual;
pub mod rmsnorm;
pub mod rope;
pub mod smear;
pub mod ve_gate;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GpuContext, GpuTensor};

/// An ordered list of recorded dispatches on one context (cf. a CUDA stream).
pub struct Stream<'a> {
    pub ctx: &'a GpuContext,
    dispatches: Vec<Dispatch>,
    /// Device memory for launchers' temporaries (reduction partials, per-row coefficients).
    workspace: Option<GpuTensor>,
}

impl<'a> Stream<'a> {
    pub fn new(ctx: &'a GpuContext) -> Self {
        Self { ctx, dispatches: Vec::new(), workspace: None }
    }

    /// A stream whose launchers take their temporaries from `workspace` instead of allocating a
    /// buffer per call: what a training step does, so its memory is allocated once and accounted
    /// for. Size it with the `*_scratch_len` functions of the launchers the step records (the
    /// largest of them: every launcher reuses the workspace from its start).
    pub fn with_workspace(ctx: &'a GpuContext, workspace: GpuTensor) -> Self {
        Self { ctx, dispatches: Vec::new(), workspace: Some(workspace) }
    }

    /// `len` f32 of temporary device memory for the launcher being recorded. With a workspace this
    /// is the workspace's first `len` elements, the same memory for every call: a launcher uses one
    /// region at a time and records every dispatch that reads it before asking again; the next
    /// writer is ordered after those readers by wgpu's barriers between dispatches. Without one, a
    /// fresh zero-filled buffer (tests and one-off calls). Temporaries must not alias an operand of
    /// the same dispatch, so no launcher hands a workspace region to a kernel that also binds the
    /// workspace as an input.
    pub(crate) fn scratch(&self, op: &'static str, len: usize) -> Result<GpuTensor> {
        let len = len.max(1);
        self.check_scratch(op, len)?;
        match &self.workspace {
            Some(ws) => Ok(ws.view(0, len)),
            None => self.ctx.tensor(op, len),
        }
    }

    /// `Err(Shape)` if a later [`Stream::scratch`] of `len` would fail: lets a launcher refuse an
    /// undersized workspace before it records anything.
    pub(crate) fn check_scratch(&self, op: &'static str, len: usize) -> Result<()> {
        match &self.workspace {
            Some(ws) if ws.len() < len => Err(Error::Shape {
                op,
                message: format!("needs {len} f32 of stream workspace, the workspace has {}", ws.len()),
            }),
            _ => Ok(()),
        }
    }

    pub fn push(&mut self, d: Dispatch) {
        self.dispatches.push(d);
    }

    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// Submit everything recorded so far without waiting, and start a new recording.
    pub fn submit(&mut self) -> wgpu::SubmissionIndex {
        let idx = self.ctx.submit(&self.dispatches);
        self.dispatches.clear();
        idx
    }

    /// Submit everything recorded so far and wait for it to finish.
    pub fn run(&mut self) -> Result<()> {
        self.submit();
        self.ctx.wait()
    }
}

/// Largest number of workgroups a 1-D grid-stride kernel launches: enough to fill any GPU, and
/// within every adapter's 65,535 per dimension.
pub(crate) const MAX_GRID: usize = 4096;
