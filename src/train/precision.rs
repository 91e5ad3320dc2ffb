//! `train.precision` resolved on an adapter, and the dynamic loss scaler an f16 run trains with.
//!
//! In f16 the linear layers' products round their inputs to f16, gradients included, and f16's
//! normal range ends at 6.1e-5: a loss gradient of 1/(tokens per step) would flush to zero. So the
//! loss gradient is multiplied by a scale S (a power of two), every gradient comes out ×S, and the
//! optimizer divides by S as it reads them: AdamW through its (1 − β1)/S and (1 − β2)/S² words,
//! Muon through a 1/S word its momentum kernel multiplies by (`StepScalars::grad_scale`). Both
//! are exact for a power of two, so S = 1 (f32) leaves every number as it was. The gradient-norm
//! pass the optimizer already runs counts the non-finite gradients, and its one readback per
//! step is what [`LossScaler::update`] reads: GradScaler's rule, with the step skipped on the GPU
//! by the optimizer kernels' guard.

use crate::config::Precision;
use crate::error::{Error, Result};
use crate::gpu::coop::CoopStatus;
use crate::gpu::GpuContext;
use crate::kernels::matmul::MatmulPrecision;
use crate::kernels::matmul_coop::coop_status;
use serde::{Deserialize, Serialize};

/// What a run's `train.precision` means on its adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedPrecision {
    /// What the linear layers' products read.
    pub matmul: MatmulPrecision,
    /// One line: what was asked, what runs, and why.
    pub why: String,
}

impl ResolvedPrecision {
    pub fn is_f16(&self) -> bool {
        self.matmul == MatmulPrecision::F16
    }

    pub fn name(&self) -> &'static str {
        if self.is_f16() {
            "f16"
        } else {
            "f32"
        }
    }
}

/// Resolve `asked` on `ctx`'s adapter. f16 is refused where the adapter has no usable cooperative
/// matrices (f16-input SIMT kernels do not exist yet), with the reason the self-test gave.
///
/// `auto` (the default) is f16 on a GPU with cooperative matrices and f32 elsewhere, CPU drivers
/// included even where they have them: lavapipe runs cooperative matrices as plain loops, and
/// `bench step` measured its f16 micro-step 2.1× slower than f32 there (configs/kjv.toml, Mesa
/// 26: 4.2–4.4 s against 1.9–2.1 s) while the learning curves agree to 0.6% (issue 12), so f16
/// buys nothing there that an explicit `f16` does not.
pub fn resolve(ctx: &GpuContext, asked: Precision) -> Result<ResolvedPrecision> {
    let status = coop_status(ctx);
    let f32 = |why: String| Ok(ResolvedPrecision { matmul: MatmulPrecision::F32, why });
    let f16 = |why: String| Ok(ResolvedPrecision { matmul: MatmulPrecision::F16, why });
    match (asked, status) {
        (Precision::F32, _) => f32("train.precision = f32: every product in f32 on the SIMT kernels".into()),
        (Precision::Auto, CoopStatus::Available { .. }) if ctx.is_cpu() => f32(
            "train.precision = auto → f32: a CPU driver's cooperative matrices are emulated (f16 measured 2.1× \
             slower than f32 on lavapipe); set train.precision = f16 to train on them anyway"
                .into(),
        ),
        (Precision::F16 | Precision::Auto, CoopStatus::Available { tile, .. }) => f16(format!(
            "train.precision = {}: f16 inputs, f32 accumulation on the cooperative-matrix kernels ({tile}×{tile}×{tile}), \
             dynamic loss scaling{}",
            asked.name(),
            if asked == Precision::Auto { " (auto: the adapter has cooperative matrices)" } else { "" }
        )),
        (Precision::Auto, CoopStatus::Unavailable(why)) => {
            f32(format!("train.precision = auto → f32: cooperative matrices {why}"))
        }
        (Precision::F16, CoopStatus::Unavailable(why)) => Err(Error::Config {
            message: format!(
                "train.precision = f16 needs cooperative matrices, and on {} they are {why} (f16-input SIMT kernels \
                 are not built yet)\n  HINT: train.precision = f32, or auto (f16 wherever the adapter can)",
                ctx.info.name
            ),
        }),
    }
}

/// GradScaler's defaults.
pub const GROWTH_INTERVAL: u64 = 2000;
/// Below this the scale would shrink gradients; an overflow at it is not one scaling can cure.
pub const MIN_SCALE: f64 = 1.0;
/// The scale never grows past 2^48: AdamW folds 1/S² into (1 − β2), and 0.001/2^96 is still a
/// normal f32 (so the unscaling stays exact).
pub const MAX_SCALE: f64 = 281_474_976_710_656.0;

/// What a step's gradient check decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleVerdict {
    /// Every gradient finite: the update ran.
    Applied,
    /// A non-finite gradient under loss scaling: the GPU skipped the update; the scale halves.
    Skipped { new_scale: f64 },
    /// A non-finite gradient that scaling cannot explain (f32, or f16 at [`MIN_SCALE`]): stop.
    Fatal,
}

/// The loss scale and its counters (saved in checkpoints, so `--resume` continues exactly).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// Off in f32: the scale stays 1 and any non-finite gradient is [`ScaleVerdict::Fatal`].
    pub enabled: bool,
    pub scale: f64,
    /// Clean steps since the scale last changed (GradScaler's growth tracker).
    pub clean_steps: u64,
    /// Steps skipped so far in this run.
    pub skipped: u64,
}

impl LossScaler {
    pub fn new(enabled: bool, initial_scale: f64) -> Self {
        LossScaler { enabled, scale: if enabled { initial_scale } else { 1.0 }, clean_steps: 0, skipped: 0 }
    }

    /// Steps whose update ran, of `steps` attempted: AdamW's bias-correction counter (nanochat's
    /// optimizer does not count a skipped step).
    pub fn applied(&self, steps: u64) -> u64 {
        steps - self.skipped
    }

    /// GradScaler's update after a step whose gradients held `nonfinite` NaN/±inf values.
    pub fn update(&mut self, nonfinite: u64) -> ScaleVerdict {
        if nonfinite > 0 {
            if !self.enabled || self.scale <= MIN_SCALE {
                return ScaleVerdict::Fatal;
            }
            self.scale *= 0.5;
            self.clean_steps = 0;
            self.skipped += 1;
            return ScaleVerdict::Skipped { new_scale: self.scale };
        }
        if self.enabled {
            self.clean_steps += 1;
            if self.clean_steps == GROWTH_INTERVAL {
                self.scale = (self.scale * 2.0).min(MAX_SCALE);
                self.clean_steps = 0;
            }
        }
        ScaleVerdict::Applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_scaler_semantics() {
        let mut s = LossScaler::new(true, 65536.0);
        assert_eq!(s.update(0), ScaleVerdict::Applied);
        assert_eq!(s.update(3), ScaleVerdict::Skipped { new_scale: 32768.0 });
        assert_eq!((s.clean_steps, s.skipped), (0, 1));
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert_eq!(s.update(0), ScaleVerdict::Applied);
        }
        assert_eq!(s.scale, 32768.0);
        s.update(0);
        assert_eq!((s.scale, s.clean_steps), (65536.0, 0));
        assert_eq!(s.applied(2 + GROWTH_INTERVAL), 1 + GROWTH_INTERVAL);

        let mut low = LossScaler::new(true, 2.0);
        assert_eq!(low.update(1), ScaleVerdict::Skipped { new_scale: 1.0 });
        assert_eq!(low.update(1), ScaleVerdict::Fatal);

        let mut off = LossScaler::new(false, 65536.0);
        assert_eq!(off.scale, 1.0);
        assert_eq!(off.update(0), ScaleVerdict::Applied);
        assert_eq!((off.scale, off.clean_steps), (1.0, 0));
        assert_eq!(off.update(1), ScaleVerdict::Fatal);
    }
}
