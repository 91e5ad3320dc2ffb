//! nanochat's schedules (spec §3.4) and hyperparameter transfer (§3.5), resolved once per run.
//!
//! - LR multiplier: linear warmup over `warmup_steps`, flat, then a linear warmdown over the last
//!   `warmdown_ratio` of the run to `final_lr_frac`. Applied to every group.
//! - Muon momentum: 0.85 → 0.97 over the first 400 steps, 0.97 → 0.90 during the warmdown.
//! - Muon weight decay: a cosine from its scaled value to 0 over the run.
//! - Batch transfer against the 524,288-token reference: LRs (except the fixed smear group) ×
//!   √(B/B_ref), weight decay × √(B/B_ref)·(D_ref/D). Width transfer: the embedding, value-embedding
//!   and unembedding LRs × (C/768)^−½.

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::model::{GptConfig, OptGroup, ParamCounts};
use serde::Serialize;

/// nanochat's reference batch, 2^19 tokens.
pub const B_REF: f64 = 524_288.0;

/// The horizon and per-group base learning rates of a run, after every transfer rule.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Hyper {
    pub num_iterations: usize,
    /// How num_iterations was decided.
    pub horizon_source: String,
    pub total_tokens: u64,
    /// total tokens / scaling params
    pub tokens_per_param: f64,
    pub total_flops: f64,
    pub batch_lr_scale: f64,
    pub dmodel_lr_scale: f64,
    /// Base learning rate of each AdamW group and of Muon (before the √max(1, rows/cols) factor).
    pub lr_unembedding: f64,
    pub lr_embedding: f64,
    pub lr_value_embeds: f64,
    pub lr_resid: f64,
    pub lr_x0: f64,
    pub lr_smear: f64,
    pub lr_muon: f64,
    /// Muon weight decay at step 0 (cosine to 0).
    pub muon_weight_decay: f64,
    pub warmup_steps: usize,
    pub warmdown_steps: usize,
    pub final_lr_frac: f64,
    /// What in the config is legal but probably not meant (a warmup longer than the run, ...),
    /// one sentence and a hint each; printed before the run starts as `WARNING:` lines.
    pub warnings: Vec<String>,
}

impl Hyper {
    /// The horizon, the transferred lrs and the warnings. `RunConfig::resolve` has checked every
    /// value's own range; what is refused here needs the horizon.
    pub fn resolve(rc: &RunConfig) -> Result<Self> {
        let tr = rc.train();
        let m = &rc.model;
        let counts = ParamCounts::of(m);
        let scaling = counts.scaling as f64;
        let b = tr.total_batch_size as f64;
        let flops_per_token = m.flops_per_token() as f64;
        // The data budget D the transfer rules use comes from the ratio, whatever sets the horizon.
        let d = tr.target_param_data_ratio * scaling;
        let d_ref = tr.target_param_data_ratio * d12_scaling(m.vocab_size)?;
        // Only -1 derives the horizon; 0 and other negatives are refused by RunConfig::resolve, and
        // refused again here so that no path can turn them into a derived horizon.
        let (num_iterations, horizon_source) = match tr.num_iterations {
            n if n >= 1 => (n as usize, "train.num_iterations".to_string()),
            -1 if tr.target_flops > 0.0 => (
                (tr.target_flops / (flops_per_token * b)).round() as usize,
                format!("target_flops {:e}", tr.target_flops),
            ),
            -1 => ((d / b).floor() as usize, format!("target_param_data_ratio {}", tr.target_param_data_ratio)),
            n => {
                return Err(Error::Config {
                    message: format!(
                        "train.num_iterations = {n}{} is not a horizon\n  HINT: set N >= 1 steps, or -1 to derive it",
                        rc.origin("train.num_iterations")
                    ),
                })
            }
        };
        if num_iterations == 0 {
            return Err(Error::Config {
                message: format!(
                    "the horizon ({horizon_source}) gives 0 iterations at {b} tokens per step\n  HINT: set \
                     train.num_iterations"
                ),
            });
        }
        let total_tokens = num_iterations as u64 * tr.total_batch_size as u64;
        let batch_lr_scale = (b / tr.lr_reference_batch as f64).sqrt();
        let dmodel_lr_scale = (m.n_embd as f64 / 768.0).powf(-0.5);
        let warmdown_steps = (tr.warmdown_ratio * num_iterations as f64).round() as usize;
        let mut h = Hyper {
            num_iterations,
            horizon_source,
            total_tokens,
            tokens_per_param: total_tokens as f64 / scaling,
            total_flops: flops_per_token * total_tokens as f64,
            batch_lr_scale,
            dmodel_lr_scale,
            lr_unembedding: tr.unembedding_lr * batch_lr_scale * dmodel_lr_scale,
            lr_embedding: tr.embedding_lr * batch_lr_scale * dmodel_lr_scale,
            lr_value_embeds: tr.embedding_lr * batch_lr_scale * dmodel_lr_scale * 0.5,
            lr_resid: tr.scalar_lr * batch_lr_scale * 0.01,
            lr_x0: tr.scalar_lr * batch_lr_scale,
            lr_smear: tr.smear_lr,
            lr_muon: tr.matrix_lr * batch_lr_scale,
            muon_weight_decay: tr.weight_decay * (b / B_REF).sqrt() * (d_ref / d),
            warmup_steps: tr.warmup_steps,
            warmdown_steps,
            final_lr_frac: tr.final_lr_frac,
            warnings: Vec::new(),
        };
        h.warnings = h.warnings_for(rc);
        Ok(h)
    }

    /// Settings that are legal but defeat themselves at this horizon.
    fn warnings_for(&self, rc: &RunConfig) -> Vec<String> {
        let tr = rc.train();
        let (n, wu, wd) = (self.num_iterations, self.warmup_steps, self.warmdown_steps);
        let horizon = if tr.num_iterations >= 1 {
            // " (from --set …)" without its parentheses, to sit inside the warning's own.
            let origin = rc.origin("train.num_iterations");
            format!("{n} steps: train.num_iterations, {}", origin.trim().trim_start_matches('(').trim_end_matches(')'))
        } else {
            format!("{n} steps from {}", self.horizon_source)
        };
        let mut w = Vec::new();
        if wu > n {
            w.push(format!(
                "train.warmup_steps = {wu}{} is longer than the run ({horizon}): the lr never gets past {:.2} of its \
                 value and there is no warmdown\n  HINT: set train.warmup_steps <= {n}, e.g. --set \
                 train.warmup_steps={}",
                rc.origin("train.warmup_steps"),
                self.lr_multiplier(n - 1),
                (n / 10).max(1)
            ));
        } else if wu > 0 && wd > 0 && wu + wd > n {
            // lr_multiplier gives the warmup precedence, so the warmdown's first steps are skipped
            // and the lr falls from 1 straight to where the warmdown has got to.
            let after = if wu < n {
                format!("drops at once to {:.2} of it", self.lr_multiplier(wu))
            } else {
                "the run ends there, without a warmdown".to_string()
            };
            w.push(format!(
                "train.warmup_steps = {wu}{} and the warmdown (train.warmdown_ratio {} of {n} steps = {wd} steps, from \
                 step {}) overlap: the lr reaches its full value only at step {} and {after}\n  HINT: lower \
                 train.warmup_steps or train.warmdown_ratio so that warmup + warmdown <= {n} steps",
                rc.origin("train.warmup_steps"),
                tr.warmdown_ratio,
                n - wd,
                wu - 1
            ));
        }
        if tr.num_iterations >= 1 && tr.target_flops > 0.0 {
            w.push(format!(
                "train.target_flops = {:e}{} is ignored: train.num_iterations = {}{} sets the horizon\n  HINT: set \
                 train.num_iterations=-1 to train for the FLOP budget, or train.target_flops=-1 to silence this",
                tr.target_flops,
                rc.origin("train.target_flops"),
                tr.num_iterations,
                rc.origin("train.num_iterations")
            ));
        }
        let per_batch = tr.device_batch_size * rc.model.sequence_len;
        if tr.eval_every > 0 && !tr.eval_tokens.is_multiple_of(per_batch) {
            let batches = (tr.eval_tokens / per_batch).max(1);
            w.push(format!(
                "train.eval_tokens = {}{} is not a whole number of device batches ({} × {} = {per_batch} tokens): each \
                 validation uses {batches} batch(es) = {} tokens\n  HINT: use a multiple of {per_batch}",
                tr.eval_tokens,
                rc.origin("train.eval_tokens"),
                tr.device_batch_size,
                rc.model.sequence_len,
                batches * per_batch
            ));
        }
        w
    }

    /// Base learning rate of an AdamW group (Muon's is `lr_muon`).
    pub fn group_lr(&self, g: OptGroup) -> f64 {
        match g {
            OptGroup::Unembedding => self.lr_unembedding,
            OptGroup::Embedding => self.lr_embedding,
            OptGroup::ValueEmbeds => self.lr_value_embeds,
            OptGroup::Resid => self.lr_resid,
            OptGroup::X0 => self.lr_x0,
            OptGroup::Smear => self.lr_smear,
            OptGroup::Muon => self.lr_muon,
        }
    }

    /// LR multiplier at step `it` (0-based).
    pub fn lr_multiplier(&self, it: usize) -> f64 {
        let n = self.num_iterations;
        let wd = self.warmdown_steps;
        if it < self.warmup_steps {
            (it + 1) as f64 / self.warmup_steps as f64
        } else if it + wd <= n {
            1.0
        } else {
            let p = (n - it.min(n)) as f64 / wd as f64;
            p + (1.0 - p) * self.final_lr_frac
        }
    }

    /// Muon momentum at step `it`.
    pub fn muon_momentum(&self, it: usize) -> f64 {
        let n = self.num_iterations;
        let wd = self.warmdown_steps;
        if it < 400 {
            0.85 + 0.12 * it as f64 / 400.0
        } else if wd > 0 && it + wd >= n {
            let q = (it + wd - n) as f64 / wd as f64;
            0.97 * (1.0 - q) + 0.90 * q
        } else {
            0.97
        }
    }

    /// Muon weight decay at step `it`: a cosine from the scaled value to 0.
    pub fn muon_weight_decay_at(&self, it: usize) -> f64 {
        self.muon_weight_decay * 0.5 * (1.0 + (std::f64::consts::PI * it as f64 / self.num_iterations as f64).cos())
    }
}

/// Scaling params of nanochat's reference model, d12 at this vocabulary (D_REF in base_train).
fn d12_scaling(vocab_size: usize) -> Result<f64> {
    let d12 = GptConfig::new(12, 6, 6, 768, vocab_size, 2048, "L")?;
    Ok(ParamCounts::of(&d12).scaling as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn seed_run() -> Hyper {
        let rc = RunConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/rtx4070-d12.toml"), &[]).unwrap();
        Hyper::resolve(&rc).unwrap()
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn seed_run_effective_values_match_appendix_a() {
        let h = seed_run();
        assert_eq!(h.num_iterations, 10_000);
        assert_eq!(h.total_tokens, 655_360_000);
        assert!(close(h.tokens_per_param, 5.95, 0.005), "{}", h.tokens_per_param);
        assert!(close(h.lr_muon, 0.0070711, 5e-8));
        assert!(close(h.lr_embedding, 0.1060660, 5e-8));
        assert!(close(h.lr_value_embeds, 0.0530330, 5e-8));
        assert!(close(h.lr_unembedding, 0.0028284, 5e-8));
        assert!(close(h.lr_x0, 0.1767767, 5e-8));
        assert!(close(h.lr_resid, 0.0017678, 5e-8));
        assert_eq!(h.lr_smear, 0.2);
        assert!(close(h.muon_weight_decay, 0.0989949, 5e-8));
        assert_eq!(h.warmdown_steps, 6500);
    }

    #[test]
    fn schedules_match_appendix_a() {
        let h = seed_run();
        assert!(close(h.lr_multiplier(0), 0.025, 1e-12));
        assert_eq!(h.lr_multiplier(39), 1.0);
        assert_eq!(h.lr_multiplier(3500), 1.0);
        assert!(close(h.lr_multiplier(6750), 0.525, 1e-9));
        assert!(close(h.lr_multiplier(9999), 0.05015, 1e-5));
        assert!(close(h.muon_momentum(0), 0.85, 1e-12));
        assert!(close(h.muon_momentum(400), 0.97, 1e-12));
        assert!(close(h.muon_momentum(3500), 0.97, 1e-12));
        assert!(close(h.muon_momentum(6750), 0.935, 1e-9));
        assert!(close(h.muon_momentum(9999), 0.90001, 1e-5));
        assert!(close(h.muon_weight_decay_at(3500), 0.07197, 5e-6));
        assert!(close(h.muon_weight_decay_at(6750), 0.02364, 5e-6));
    }

    #[test]
    fn lr_reference_batch_scales_lrs_but_not_the_muon_decay() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/rtx4070-d12.toml");
        let own = ["train.lr_reference_batch=65536".to_string(), "train.smear_lr=0.05".to_string()];
        let h = Hyper::resolve(&RunConfig::load(&path, &own).unwrap()).unwrap();
        let seed = seed_run();
        // At its own batch the lrs are nanochat's CLI values as given (d12: width scale 1).
        assert_eq!(h.batch_lr_scale, 1.0);
        assert!(close(h.lr_muon, 0.02, 1e-12));
        assert!(close(h.lr_embedding, 0.3, 1e-12));
        assert!(close(h.lr_unembedding, 0.008, 1e-12));
        assert!(close(h.lr_x0, 0.5, 1e-12));
        assert_eq!(h.lr_smear, 0.05);
        assert_eq!(h.muon_weight_decay, seed.muon_weight_decay);
        let zero = ["train.lr_reference_batch=0".to_string()];
        let err = RunConfig::load(&path, &zero).unwrap_err().to_string();
        assert!(err.contains("lr_reference_batch = 0 (from --set train.lr_reference_batch=0)"), "{err}");
    }

    fn seed_with(overrides: &[&str]) -> Hyper {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/rtx4070-d12.toml");
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Hyper::resolve(&RunConfig::load(&path, &o).unwrap()).unwrap()
    }

    #[test]
    fn only_minus_one_derives_the_horizon() {
        // D / B = 12 · 110,100,912 / 65,536 = 20,160.3 steps.
        let h = seed_with(&["train.num_iterations=-1"]);
        assert_eq!((h.num_iterations, h.horizon_source.as_str()), (20_160, "target_param_data_ratio 12"));
        // target_flops / (FLOPs per token · B), rounded: 5.8e16 / (887,098,032 · 65,536) = 997.6.
        let h = seed_with(&["train.num_iterations=-1", "train.target_flops=5.8e16"]);
        assert_eq!((h.num_iterations, h.horizon_source.as_str()), (998, "target_flops 5.8e16"));
        // 0 is refused rather than read as "derive it" (it used to give the 20,160-step horizon).
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/rtx4070-d12.toml");
        let e = RunConfig::load(&path, &["train.num_iterations=0".into()]).unwrap_err().to_string();
        assert!(e.contains("train.num_iterations = 0 (from --set train.num_iterations=0)"), "{e}");
        // Hyper::resolve refuses it too, for a RunConfig changed after it was resolved.
        let mut rc = RunConfig::load(&path, &[]).unwrap();
        rc.file.train.num_iterations = 0;
        assert!(Hyper::resolve(&rc).unwrap_err().to_string().contains("train.num_iterations = 0"));
    }

    #[test]
    fn self_defeating_schedules_are_warned_about() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        for name in ["rtx4070-d12.toml", "cpu-small.toml"] {
            let h = Hyper::resolve(&RunConfig::load(&root.join(name), &[]).unwrap()).unwrap();
            assert!(h.warnings.is_empty(), "{name}: {:?}", h.warnings);
        }
        // A shortened run: the 40-step warmup never ends.
        let h = seed_with(&["train.num_iterations=20"]);
        assert_eq!(h.warnings.len(), 1, "{:?}", h.warnings);
        let w = &h.warnings[0];
        assert!(w.starts_with("train.warmup_steps = 40 (the default) is longer than the run"), "{w}");
        assert!(
            w.contains("longer than the run (20 steps: train.num_iterations, from --set train.num_iterations=20)"),
            "{w}"
        );
        assert!(w.contains("never gets past 0.50") && w.contains("HINT: set train.warmup_steps <= 20"), "{w}");
        // 100 steps: the 65-step warmdown starts at step 35, inside the 40-step warmup.
        let h = seed_with(&["train.num_iterations=100"]);
        assert_eq!(h.warnings.len(), 1, "{:?}", h.warnings);
        let w = &h.warnings[0];
        assert!(w.contains("= 65 steps, from step 35) overlap") && w.contains("at step 39"), "{w}");
        assert!(w.contains(&format!("drops at once to {:.2}", h.lr_multiplier(40))), "{w}");
        // A FLOP budget next to an explicit horizon is ignored, and says so.
        let h = seed_with(&["train.target_flops=1e18"]);
        assert!(h
            .warnings
            .iter()
            .any(|w| w.contains("train.target_flops = 1e18 (from --set") && w.contains("ignored")));
        // Validation rounds eval_tokens down to whole device batches (8 × 2048 here).
        let h = seed_with(&["train.eval_tokens=20000"]);
        assert!(h.warnings.iter().any(|w| w.contains("1 batch(es) = 16384 tokens")), "{:?}", h.warnings);
    }
}
