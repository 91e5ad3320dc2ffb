//! The run report: `report.md` and `report.svg` in the run directory, written at the end of a
//! run and on a clean stop. It records exactly what ran (command line, resolved config, adapter
//! and driver, precision), how fast (throughput, step time, MFU, allocated memory), and what came
//! of it (val bpb table, train loss, samples), with an assessment.
//!
//! The history comes from `metrics.jsonl` (appended every step, kept across resumptions and cut
//! back to the checkpoint on each resume, so it holds one consistent history), so a resumed run's
//! report covers the whole run, with its resumptions listed.

use super::plot::{svg, Panel, Series};
use super::Hyper;
use crate::config::RunConfig;
use crate::gpu::GpuContext;
use crate::model::memory::MemoryPlan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleRecord {
    pub prompt: String,
    pub completion: String,
}

pub struct Report {
    config_name: String,
    desc: String,
    command_line: String,
    config_toml: String,
    adapter: String,
    /// What the linear layers computed in.
    matmul: String,
    /// `train.precision` as resolved on the adapter, and why.
    precision: String,
    plan_total: u64,
    data: PathBuf,
    tokens_per_param: f64,
    num_iterations: usize,
    total_batch: usize,
    flops_per_token: f64,
    /// Loop state (also saved in checkpoints).
    smooth: f64,
    total_time: f64,
    timed_steps: usize,
    min_bpb: f64,
    last_bpb: Option<f64>,
    samples: Vec<(usize, Vec<SampleRecord>)>,
    failure: Option<String>,
    stopped_early: bool,
    allocated: u64,
    started: std::time::SystemTime,
    ended: Option<std::time::SystemTime>,
    last_step: usize,
    tokenizer_desc: String,
    data_desc: String,
    init_from: Option<String>,
}

/// The wgpt build that is running: version, git commit and whether the tree had uncommitted
/// changes when it was built (build.rs).
pub fn build_info() -> serde_json::Value {
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": env!("WGPT_GIT_COMMIT"),
        "dirty": env!("WGPT_GIT_DIRTY") == "true",
    })
}

fn build_line() -> String {
    let dirty = if env!("WGPT_GIT_DIRTY") == "true" { " (uncommitted changes)" } else { "" };
    format!("wgpt {} · commit {}{dirty}", env!("CARGO_PKG_VERSION"), env!("WGPT_GIT_COMMIT"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rc: &RunConfig,
        h: &Hyper,
        desc: &str,
        command_line: &str,
        ctx: &GpuContext,
        precision: &crate::train::precision::ResolvedPrecision,
        plan: &MemoryPlan,
        tokenizer: &Path,
        data: &Path,
    ) -> Self {
        Report {
            config_name: rc.source.as_ref().map_or("<config>".into(), |p| p.display().to_string()),
            desc: desc.to_string(),
            command_line: command_line.to_string(),
            config_toml: rc.to_toml(),
            adapter: ctx.describe(),
            matmul: crate::kernels::matmul_coop::describe_linear_layers(ctx, precision.matmul).0,
            precision: precision.why.clone(),
            plan_total: plan.total_bytes(),
            data: data.to_path_buf(),
            tokens_per_param: h.tokens_per_param,
            num_iterations: h.num_iterations,
            total_batch: rc.train().total_batch_size,
            flops_per_token: rc.model.flops_per_token() as f64,
            smooth: 0.0,
            total_time: 0.0,
            timed_steps: 0,
            min_bpb: f64::INFINITY,
            last_bpb: None,
            samples: Vec::new(),
            failure: None,
            stopped_early: false,
            allocated: 0,
            started: std::time::SystemTime::now(),
            ended: None,
            last_step: 0,
            tokenizer_desc: tokenizer.display().to_string(),
            data_desc: data.display().to_string(),
            init_from: None,
        }
    }

    /// The tokenizer as the run loaded it (path, vocabulary, fingerprint, what it was trained on).
    pub fn set_tokenizer(&mut self, desc: &str) {
        self.tokenizer_desc = desc.to_string();
    }

    /// The data: where, how many documents in each split.
    pub fn set_data(&mut self, ds: &crate::data::Dataset) {
        use crate::data::Split;
        self.data_desc = format!(
            "`{}` · {} files · {} train documents, {} validation documents",
            self.data.display(),
            ds.files().len(),
            ds.split_docs(Split::Train),
            ds.split_docs(Split::Val)
        );
    }

    /// Where the initial weights came from (`--init-from`), if not from the seed.
    pub fn set_init_from(&mut self, source: Option<&str>) {
        self.init_from = source.map(str::to_string);
    }

    /// What a checkpoint keeps of the loop (nanochat's loop_state plus what the EMA needs).
    pub fn loop_state(&self) -> serde_json::Value {
        serde_json::json!({
            "min_val_bpb": if self.min_bpb.is_finite() { Some(self.min_bpb) } else { None },
            "smooth_train_loss": self.smooth,
            "total_training_time": self.total_time,
            "timed_steps": self.timed_steps,
            "last_val_bpb": self.last_bpb,
            "started": self.started.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        })
    }

    pub fn restore(&mut self, v: &serde_json::Value) {
        self.min_bpb = v["min_val_bpb"].as_f64().unwrap_or(f64::INFINITY);
        self.smooth = v["smooth_train_loss"].as_f64().unwrap_or(0.0);
        self.total_time = v["total_training_time"].as_f64().unwrap_or(0.0);
        self.timed_steps = v["timed_steps"].as_u64().unwrap_or(0) as usize;
        self.last_bpb = v["last_val_bpb"].as_f64();
        if let Some(t) = v["started"].as_u64().filter(|&t| t > 0) {
            self.started = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
        }
    }

    pub fn eval(&mut self, _step: usize, bpb: f64) {
        self.min_bpb = self.min_bpb.min(bpb);
        self.last_bpb = Some(bpb);
    }

    pub fn last_bpb(&self) -> Option<f64> {
        self.last_bpb
    }

    pub fn samples(&mut self, step: usize, s: Vec<SampleRecord>) {
        self.samples.push((step, s));
    }

    /// Record a step; returns the debiased smoothed loss nanochat logs.
    pub fn train_step(&mut self, step: usize, loss: f64, dt: f64, _tps: f64, _mfu: Option<f64>, _gnorm: f64) -> f64 {
        self.smooth = 0.9 * self.smooth + 0.1 * loss;
        if step > 10 {
            self.total_time += dt;
            self.timed_steps += 1;
        }
        self.smooth / (1.0 - 0.9f64.powi(step as i32 + 1))
    }

    /// Mean step time over the timed steps (every step after the tenth), for the ETA; `None`
    /// until there is one.
    pub fn mean_dt(&self) -> Option<f64> {
        (self.timed_steps > 0).then(|| self.total_time / self.timed_steps as f64)
    }

    pub fn total_time(&self) -> f64 {
        self.total_time
    }

    pub fn failure(&mut self, step: usize, why: &str) {
        self.failure = Some(format!("stopped at step {step}: {why}"));
    }

    /// The run ended (completed or stopped) after `last_step`, with `allocated` bytes of GPU
    /// memory in use at the end (the peak: everything is allocated up front, the sampler last).
    pub fn finish(&mut self, stopped_early: bool, last_step: usize, allocated: u64) {
        self.stopped_early = stopped_early;
        self.last_step = last_step;
        self.allocated = allocated;
        self.ended = Some(std::time::SystemTime::now());
    }

    /// Write report.md and report.svg; returns the path of report.md.
    pub fn write(&self, run_dir: &Path) -> crate::Result<PathBuf> {
        let hist = History::read(&run_dir.join("metrics.jsonl"));
        let chart = self.chart(&hist);
        crate::util::write_atomic(&run_dir.join("report.svg"), chart.as_bytes())?;
        let md = self.markdown(&hist);
        let path = run_dir.join("report.md");
        crate::util::write_atomic(&path, md.as_bytes())?;
        Ok(path)
    }

    fn chart(&self, h: &History) -> String {
        let loss: Vec<(f64, f64)> = h.train.iter().map(|(s, r)| (*s as f64, r.loss)).collect();
        let smooth: Vec<(f64, f64)> = h.train.iter().map(|(s, r)| (*s as f64, r.smooth)).collect();
        let bpb: Vec<(f64, f64)> = h.evals.iter().map(|(s, b)| (*s as f64, *b)).collect();
        let core: Vec<(f64, f64)> = h.core.iter().map(|(s, c)| (*s as f64, *c)).collect();
        let mut panels = vec![
            Panel {
                y_label: "train loss (nats)",
                series: vec![
                    Series { name: "loss (last micro-batch)", points: &loss, color: "#9ecae1", markers: false },
                    Series { name: "smoothed (EMA 0.9)", points: &smooth, color: "#1f77b4", markers: false },
                ],
            },
            Panel {
                y_label: "validation bits per byte",
                series: vec![Series { name: "val bpb", points: &bpb, color: "#d62728", markers: true }],
            },
        ];
        if !core.is_empty() {
            panels.push(Panel {
                y_label: "CORE (mean centred accuracy)",
                series: vec![Series { name: "CORE", points: &core, color: "#2ca02c", markers: true }],
            });
        }
        svg(&format!("wgpt: {}", self.config_name), "step", &panels)
    }

    fn markdown(&self, h: &History) -> String {
        let mut s = String::new();
        let status = if let Some(f) = &self.failure {
            format!("**failed** — {f}")
        } else if self.stopped_early {
            format!(
                "stopped at step {} of {} (interrupted; resume with `--resume`)",
                self.last_step, self.num_iterations
            )
        } else {
            "completed".to_string()
        };
        let ended = self.ended.unwrap_or_else(std::time::SystemTime::now);
        let wall = ended.duration_since(self.started).map_or(0.0, |d| d.as_secs_f64());
        s += "# wgpt training report\n\n";
        s += &format!("- status: {status}\n");
        s += &format!("- build: {}\n", build_line());
        s += &format!(
            "- started: {} · ended: {} · wall time {:.1} min (all sessions, evaluation and start-up included)\n",
            humantime(self.started),
            humantime(ended),
            wall / 60.0
        );
        s += &format!("- config: `{}`\n", self.config_name);
        s += &format!("- command: `{}`\n", self.command_line);
        s += &format!("- adapter: {} · linear layers: {}\n", self.adapter, self.matmul);
        s += &format!("- precision: {}\n", self.precision);
        if self.precision.contains("f16") {
            s += &format!("- skipped steps (non-finite gradients under loss scaling): {}\n", h.skipped);
        }
        s += &format!("- data: {}\n", self.data_desc);
        if let Some((st, r)) = h.train.last() {
            let tokens = (st + 1) as f64 * self.total_batch as f64;
            let epoch = r.epoch.map_or(String::new(), |e| format!(", in epoch {e} of the training split"));
            s +=
                &format!("- trained on: {} steps × {} tokens = {tokens:.3e} tokens{epoch}\n", st + 1, self.total_batch);
        }
        s += &format!("- tokenizer: {}\n", self.tokenizer_desc);
        s += &format!(
            "- initial weights: {}\n\n",
            self.init_from.as_deref().map_or("random (train.seed)".to_string(), |i| format!("`{i}` (--init-from)"))
        );
        s += "![train loss and validation bpb](report.svg)\n\n";
        s += "## Run\n\n```\n";
        s += &self.desc;
        s += "```\n\n";
        s += "## Throughput\n\n";
        let steps_done = h.train.len();
        // Steps after the tenth are timed (compilation, autotuning and caches warm up before);
        // a short run falls back to every step but the first, and says so.
        let mut timed: Vec<&TrainRow> = h.train.iter().filter(|(st, _)| *st > 10).map(|(_, r)| r).collect();
        let mut caveat = "";
        if timed.len() < 3 {
            timed = h.train.iter().filter(|(st, _)| *st > 0).map(|(_, r)| r).collect();
            caveat = " — a short run: warm-up steps are included, so this understates the steady rate";
        }
        if timed.is_empty() {
            s += "No step besides the first ran, so nothing was timed.\n\n";
        } else {
            let med_ms = median(timed.iter().map(|r| r.dt_ms).collect());
            let tps = self.total_batch as f64 / (med_ms / 1e3);
            let mfu: Vec<f64> = timed.iter().filter_map(|r| r.mfu).collect();
            s += &format!("Median of {} timed steps{caveat}.\n\n", timed.len());
            s += "| measure | value |\n| --- | --- |\n";
            s += &format!("| steps run | {steps_done} of {} |\n", self.num_iterations);
            s += &format!("| median step time | {med_ms:.1} ms |\n");
            s += &format!("| throughput | {tps:.0} tokens/s |\n");
            s += &format!("| model FLOP/s | {:.3e} |\n", tps * self.flops_per_token);
            s += &format!(
                "| MFU | {} |\n",
                if mfu.is_empty() {
                    "n/a (peak unknown; pass --peak-tflops)".into()
                } else {
                    format!("{:.2}%", median(mfu))
                }
            );
            s += &format!("| training time (timed steps, all sessions) | {:.1} min |\n", self.total_time / 60.0);
        }
        s += &format!(
            "| GPU memory allocated (peak) | {:.1} MiB (plan: {:.1} MiB) |\n\n",
            self.allocated as f64 / 1048576.0,
            self.plan_total as f64 / 1048576.0
        );
        if !h.events.is_empty() {
            s += "## Run history\n\n";
            for (st, e) in &h.events {
                s += &format!("- step {st}: {e}\n");
            }
            s += "\n";
        }
        s += "## Validation bits per byte\n\n| step | val bpb |\n| --- | --- |\n";
        let best = h.evals.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
        for (st, b) in &h.evals {
            let mark = if best.map(|x| x.0) == Some(*st) { " (best)" } else { "" };
            s += &format!("| {st} | {b:.4}{mark} |\n");
        }
        if let Some(last) = &h.core_last {
            s += &core_section(&h.core, last);
        }
        s += "\n## Train loss\n\n| step | loss | smoothed |\n| --- | --- | --- |\n";
        let every = (h.train.len() / 20).max(1);
        for (i, (st, r)) in h.train.iter().enumerate() {
            if i % every == 0 || i + 1 == h.train.len() {
                s += &format!("| {st} | {:.4} | {:.4} |\n", r.loss, r.smooth);
            }
        }
        s += "\n## Samples (greedy, 16 tokens)\n\n";
        if self.samples.is_empty() {
            s += "None this run.\n";
        }
        for (st, list) in &self.samples {
            s += &format!("Step {st}:\n\n");
            for r in list {
                s += &format!("- {} →{}\n", r.prompt, r.completion.replace('\n', "⏎"));
            }
            s += "\n";
        }
        s += "\n## Assessment\n\n";
        s += &format!(
            "- Tokens per scaling parameter: {:.2} (Chinchilla-optimal is ~20; nanochat's compute-optimal is ~10.5–12). {}\n",
            self.tokens_per_param,
            if self.tokens_per_param < 10.0 {
                "Undertrained for its size: a longer horizon or a smaller model would use the compute better."
            } else if self.tokens_per_param > 25.0 {
                "Past the compute-optimal point: a larger model would use this budget better."
            } else {
                "Near nanochat's compute-optimal range."
            }
        );
        if h.evals.len() >= 2 {
            let (a, b) = (h.evals[h.evals.len() - 2].1, h.evals[h.evals.len() - 1].1);
            let falling = b < a * 0.999;
            s += &format!(
                "- Validation bpb at the end: {b:.4}, {} the previous evaluation ({a:.4}): {}\n",
                if falling { "below" } else { "not below" },
                if falling {
                    "still falling — the model was not saturated and would benefit from training longer."
                } else {
                    "flat — more steps at this size would gain little."
                }
            );
        }
        if let (Some(first), Some((best_step, best_bpb))) = (h.evals.first(), best) {
            if h.evals.len() >= 2 && best_bpb >= first.1 {
                s += &format!(
                    "- **Validation bpb never improved on its initial value** ({:.4} at step {}): the model did not learn \
                     anything that transfers to the validation split. Check the learning rates, the data (is the \
                     validation split like the training split?) and that the run was long enough.\n",
                    first.1, first.0
                );
            } else {
                s += &format!(
                    "- Best validation bpb: {best_bpb:.4} at step {best_step} ({:+.1}% from {:.4} at step {}).\n",
                    100.0 * (best_bpb / first.1 - 1.0),
                    first.1,
                    first.0
                );
            }
        }
        s += "\n## Resolved config\n\n```toml\n";
        s += &self.config_toml;
        s += "```\n";
        s
    }
}

/// The CORE metric by step and the last evaluation's per-task table, from its metrics.jsonl row
/// (`train::trainer` writes `core_metric`, `core_max_per_task` and `core`: label → results).
fn core_section(by_step: &[(usize, f64)], last: &serde_json::Value) -> String {
    let per = last["core_max_per_task"].as_u64().map_or("all".to_string(), |n| n.to_string());
    let mut s = format!(
        "\n## CORE metric\n\nMean centred accuracy over the CORE tasks present, at most {per} examples per task.\n\n"
    );
    s += "| step | CORE |\n| --- | --- |\n";
    for (st, c) in by_step {
        s += &format!("| {st} | {c:.4} |\n");
    }
    s += &format!(
        "\nAt step {}:\n\n| task | type | shots | examples | accuracy | centred |\n| --- | --- | --- | --- | --- | --- |\n",
        last["step"]
    );
    for t in last["core"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {} | {} | {} | {:.4} | {:.4} |\n",
            t["label"].as_str().unwrap_or("?"),
            t["task_type"].as_str().unwrap_or("?"),
            t["shots"],
            t["examples"],
            t["accuracy"].as_f64().unwrap_or(f64::NAN),
            t["centered"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let missing: Vec<&str> =
        last["core_missing"].as_array().into_iter().flatten().filter_map(|m| m[0].as_str()).collect();
    if !missing.is_empty() {
        s += &format!("\nNot run (task files absent): {}.\n", missing.join(", "));
    }
    s
}

/// `2026-11-30 08:51:16 UTC`: a date a reader can use, without a calendar crate.
pub fn humantime(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[derive(Clone, Copy, Debug)]
struct TrainRow {
    loss: f64,
    smooth: f64,
    dt_ms: f64,
    mfu: Option<f64>,
    epoch: Option<u64>,
}

/// Everything metrics.jsonl says, one entry per step (the last logged wins).
struct History {
    train: Vec<(usize, TrainRow)>,
    evals: Vec<(usize, f64)>,
    /// CORE by step, and the last CORE row (its per-task results).
    core: Vec<(usize, f64)>,
    core_last: Option<serde_json::Value>,
    /// Resumptions, `--init-from` and skipped steps, described.
    events: Vec<(usize, String)>,
    /// Steps the f16 loss scaler skipped (a non-finite gradient).
    skipped: usize,
}

impl History {
    fn read(path: &Path) -> History {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut train: BTreeMap<usize, TrainRow> = BTreeMap::new();
        let mut evals: BTreeMap<usize, f64> = BTreeMap::new();
        let mut core: BTreeMap<usize, f64> = BTreeMap::new();
        let mut core_last = None;
        let mut events = Vec::new();
        let mut skipped = 0;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let Some(step) = v["step"].as_u64().map(|s| s as usize) else { continue };
            match v["event"].as_str() {
                Some("resume") => {
                    let changes: Vec<&str> =
                        v["config_changes"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).collect();
                    let passed: Vec<&str> =
                        v["passed_over"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).collect();
                    let mut d = format!("resumed from `{}`", v["checkpoint"].as_str().unwrap_or("?"));
                    if !passed.is_empty() {
                        d += &format!(", passing over {}", passed.join(", "));
                    }
                    if !changes.is_empty() {
                        d += &format!("; config changes: {}", changes.join(", "));
                    }
                    if v["restart_data"].as_bool() == Some(true) {
                        d += "; training data restarted from its beginning";
                    }
                    events.push((step, d));
                }
                Some("init_from") => {
                    events.push((step, format!("weights from `{}`", v["source"].as_str().unwrap_or("?"))))
                }
                Some("skipped_step") => {
                    skipped += 1;
                    let tensors: Vec<&str> =
                        v["tensors"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).collect();
                    events.push((
                        step,
                        format!(
                            "step skipped: {} non-finite gradient values (in {}); loss scale → {}",
                            v["nonfinite"].as_u64().unwrap_or(0),
                            tensors.join(", "),
                            v["loss_scale"].as_f64().unwrap_or(f64::NAN)
                        ),
                    ))
                }
                _ => {}
            }
            if let Some(b) = v["val_bpb"].as_f64() {
                evals.insert(step, b);
            }
            if let Some(c) = v["core_metric"].as_f64() {
                core.insert(step, c);
                core_last = Some(v.clone());
            }
            if let Some(loss) = v["loss"].as_f64() {
                train.insert(
                    step,
                    TrainRow {
                        loss,
                        smooth: v["smooth_loss"].as_f64().unwrap_or(loss),
                        dt_ms: v["dt_ms"].as_f64().unwrap_or(0.0),
                        mfu: v["mfu"].as_f64(),
                        epoch: v["epoch"].as_u64(),
                    },
                );
            }
        }
        History {
            train: train.into_iter().collect(),
            evals: evals.into_iter().collect(),
            core: core.into_iter().collect(),
            core_last,
            events,
            skipped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn start_time_reads_as_a_utc_date() {
        let at = |secs| humantime(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_796_028_329), "2026-11-30 08:45:29 UTC");
    }
}
