//! GPU launchers, one module per WGSL family, mirroring `crate::reference` name for name.
//!
//! Every launcher takes a [`Stream`] first and then exactly the arguments of its CPU reference:
//! outputs first, then inputs, then shapes and scalars. Launchers only record dispatches; nothing
//! runs until the stream is submitted, so a whole training step can be one submission.

pub mod adamw;
pub mod elementwise;
pub mod grad_norm;
pub mod matmul;
pub mod muon;
pub mod reduce;

use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};

/// An ordered list of recorded dispatches on one context (cf. a CUDA stream).
pub struct Stream<'a> {
    pub ctx: &'a GpuContext,
    dispatches: Vec<Dispatch>,
}

impl<'a> Stream<'a> {
    pub fn new(ctx: &'a GpuContext) -> Self {
        Self { ctx, dispatches: Vec::new() }
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
