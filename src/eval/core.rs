//! The CORE metric (DCLM; nanochat's `core_eval.py` and `base_eval.evaluate_core`), scored on the
//! GPU by [`Scorer`].
//!
//! Per task, as nanochat: the items shuffled with Python's `Random(1337)` and cut to
//! `max_per_task`; for item idx, `num_fewshot` examples drawn from the (cut) list with
//! `Random(1234 + idx)`, excluding idx; the prompts rendered as nanochat's Jinja templates
//! ([`super::prompts`]), tokenized with BOS prepended; then
//! - multiple choice / schema: correct iff the option with the lowest mean loss over its
//!   continuation tokens (the first such, as Python's `list.index(min(...))`) is the gold one;
//! - language modelling: correct iff the greedy prediction reproduces every continuation token.
//!
//! accuracy is centred on the task's random baseline b (percent): (acc − b/100)/(1 − b/100), and
//! CORE is the mean of the centred accuracies of the tasks present.
//!
//! One difference from nanochat: its GPT forwards prompts longer than its training length (its
//! rotary tables cover 10×), wgpt's model cannot go beyond T, so a longer prompt keeps its last T
//! tokens (nanochat's rule for models with a `max_seq_len`, e.g. GPT-2), and a continuation that
//! does not fit at all is scored on its last T − 1 tokens ([`crop`]). Each task reports how many
//! sequences were cropped.
//!
//! All of a task's sequences go to the scorer at once, so its batches are as full as the lengths
//! allow.

use super::prompts::{batch_sequences, crop, render_item};
use super::pyrandom::fewshot_indices;
use super::scorer::{Scorer, Sequence};
use super::tasks::{load_items, select, CoreSuite, Item, MissingTask, TaskSpec, TaskType};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use serde::Serialize;
use std::time::Instant;

/// One task's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct TaskResult {
    pub label: String,
    pub task_type: &'static str,
    pub shots: usize,
    pub examples: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Random baseline in percent.
    pub random_baseline: f64,
    pub centered: f64,
    /// Sequences scored (one per choice / context option / LM item) and their tokens.
    pub sequences: usize,
    pub tokens: usize,
    /// Sequences longer than the model's context, cropped to their last T tokens.
    pub cropped: usize,
    pub seconds: f64,
}

/// A CORE evaluation's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct CoreResult {
    pub tasks: Vec<TaskResult>,
    /// CORE tasks not run (files absent), with why.
    pub missing: Vec<(String, String)>,
    /// Mean centred accuracy over the tasks run.
    pub core: f64,
    /// `None`: every item.
    pub max_per_task: Option<usize>,
}

/// (acc − b/100) / (1 − b/100), b the random baseline in percent.
pub fn centered(accuracy: f64, random_baseline: f64) -> f64 {
    (accuracy - 0.01 * random_baseline) / (1.0 - 0.01 * random_baseline)
}

/// A task's items, prepared for the scorer: every item's sequences, and which item each belongs to.
pub struct Prepared {
    pub items: Vec<Item>,
    pub seqs: Vec<Sequence>,
    /// seqs[first[i]..first[i + 1]] are item i's.
    pub first: Vec<usize>,
    pub cropped: usize,
}

/// One task's items (shuffled and cut as [`evaluate_task`] does) as token sequences for a model
/// of context `t`, without scoring them (what `wgpt bench core` counts).
pub fn prepare_task(spec: &TaskSpec, tok: &Tokenizer, t: usize, max_per_task: Option<usize>) -> Result<Prepared> {
    let items = select(load_items(spec)?, max_per_task);
    let how = Prompting::of(spec);
    prepare(&how, items, tok, tok.bos_id()?, t)
}

/// How a list of items is prompted: nanochat's per-task settings.
pub struct Prompting<'a> {
    /// For error messages.
    pub label: &'a str,
    pub task_type: TaskType,
    pub num_fewshot: usize,
    pub delimiter: &'a str,
}

impl<'a> Prompting<'a> {
    /// A CORE task's settings.
    pub fn of(spec: &'a TaskSpec) -> Self {
        Prompting {
            label: &spec.label,
            task_type: spec.task_type,
            num_fewshot: spec.num_fewshot,
            delimiter: &spec.continuation_delimiter,
        }
    }
}

fn prepare(how: &Prompting<'_>, items: Vec<Item>, tok: &Tokenizer, bos: u32, t: usize) -> Result<Prepared> {
    let mut prompts: Vec<Vec<String>> = Vec::with_capacity(items.len());
    for idx in 0..items.len() {
        let shots: Vec<&Item> = if how.num_fewshot > 0 {
            fewshot_indices(items.len(), idx, how.num_fewshot).into_iter().map(|j| &items[j]).collect()
        } else {
            Vec::new()
        };
        prompts.push(render_item(&items[idx], &shots, how.delimiter));
    }
    // One tokenizer call over every prompt of the task (all cores), then nanochat's span logic per item.
    let flat: Vec<&str> = prompts.iter().flatten().map(String::as_str).collect();
    let encoded = tok.encode_batch(&flat)?;
    let mut encoded = encoded.into_iter();
    let mut out = Prepared { seqs: Vec::new(), first: vec![0], cropped: 0, items: Vec::new() };
    for (idx, p) in prompts.iter().enumerate() {
        let ids: Vec<Vec<u32>> = encoded.by_ref().take(p.len()).collect();
        // batch_sequences asks for each prompt's tokens by text: hand back the batch encoding.
        let lookup = |text: &str| {
            let i = p.iter().position(|x| x == text).expect("asked for one of the item's prompts");
            Ok(ids[i].clone())
        };
        let item_err = |e: Error| Error::State { context: format!("{} item {idx}", how.label), message: e.to_string() };
        let s = batch_sequences(how.task_type, p, lookup, bos).map_err(item_err)?;
        out.cropped += s.tokens.iter().filter(|x| x.len() > t).count();
        let s = crop(s, t).map_err(item_err)?;
        // An option whose tokens are all in the common prefix (options identical after
        // tokenization; piqa has one) has an empty span: its mean loss is NaN, as in nanochat.
        for ((tokens, start), end) in s.tokens.into_iter().zip(s.start).zip(s.end) {
            out.seqs.push(Sequence { tokens, start, end });
        }
        out.first.push(out.seqs.len());
    }
    out.items = items;
    Ok(out)
}

/// What scoring a list of items gave.
pub struct Graded {
    /// Per item, in order: whether it was answered right.
    pub correct: Vec<bool>,
    pub sequences: usize,
    pub tokens: usize,
    pub cropped: usize,
}

/// Prompts `items` as `how` says, scores every sequence in one [`Scorer::score`] call and grades
/// each item (see the module documentation).
pub fn grade(scorer: &mut Scorer<'_>, tok: &Tokenizer, how: &Prompting<'_>, items: Vec<Item>) -> Result<Graded> {
    let bos = tok.bos_id()?;
    let p = prepare(how, items, tok, bos, scorer.sequence_len())?;
    let scores = scorer.score(&p.seqs)?;
    let mut correct = Vec::with_capacity(p.items.len());
    for (i, item) in p.items.iter().enumerate() {
        let s = &scores[p.first[i]..p.first[i + 1]];
        let ok = match (how.task_type, item) {
            (TaskType::LanguageModeling, _) => s[0].greedy_match,
            (_, Item::Mc { gold, .. } | Item::Schema { gold, .. }) => {
                // Python's list.index(min(list)): min keeps its running minimum unless an element
                // is strictly smaller, so the first of the lowest wins, and a NaN (an empty span)
                // is never replaced once it is the minimum and never replaces one: comparisons
                // with NaN are false in both languages. index then finds that very element.
                let best = (0..s.len()).fold(0, |b, j| if s[j].mean_loss < s[b].mean_loss { j } else { b });
                best == *gold
            }
            (_, Item::Lm { .. }) => {
                return Err(Error::State {
                    context: how.label.to_string(),
                    message: "a language-modelling item in a multiple-choice or schema task".into(),
                })
            }
        };
        correct.push(ok);
    }
    Ok(Graded {
        correct,
        sequences: p.seqs.len(),
        tokens: p.seqs.iter().map(|s| s.tokens.len()).sum(),
        cropped: p.cropped,
    })
}

/// Runs one task on `scorer`: its items shuffled with Random(1337) and cut to `max_per_task`.
pub fn evaluate_task(
    scorer: &mut Scorer<'_>,
    tok: &Tokenizer,
    spec: &TaskSpec,
    max_per_task: Option<usize>,
) -> Result<TaskResult> {
    let t0 = Instant::now();
    let items = select(load_items(spec)?, max_per_task);
    let how = Prompting::of(spec);
    let g = grade(scorer, tok, &how, items)?;
    let correct = g.correct.iter().filter(|&&c| c).count();
    let examples = g.correct.len();
    let accuracy = if examples == 0 { 0.0 } else { correct as f64 / examples as f64 };
    Ok(TaskResult {
        label: spec.label.clone(),
        task_type: spec.task_type.as_str(),
        shots: spec.num_fewshot,
        examples,
        correct,
        accuracy,
        random_baseline: spec.random_baseline,
        centered: centered(accuracy, spec.random_baseline),
        sequences: g.sequences,
        tokens: g.tokens,
        cropped: g.cropped,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The tasks of `suite` named in `only` (all when `None`), or an error naming the unknown ones.
pub fn pick_tasks<'a>(suite: &'a CoreSuite, only: Option<&[String]>) -> Result<Vec<&'a TaskSpec>> {
    let Some(only) = only else { return Ok(suite.tasks.iter().collect()) };
    let known: Vec<&str> = suite.tasks.iter().map(|t| t.label.as_str()).collect();
    let unknown: Vec<&String> = only.iter().filter(|l| !known.contains(&l.as_str())).collect();
    if !unknown.is_empty() {
        let missing: Vec<&str> = suite.missing.iter().map(|m| m.label.as_str()).collect();
        return Err(Error::Config {
            message: format!(
                "unknown or absent CORE task(s) {unknown:?}\n  present: {}\n  absent: {}",
                known.join(", "),
                missing.join(", ")
            ),
        });
    }
    Ok(suite.tasks.iter().filter(|t| only.contains(&t.label)).collect())
}

/// Refuses an example count that leaves a task fewer items than its few-shot draw needs: nanochat
/// draws an item's examples from the other items kept (Python's `sample` raises there).
pub fn check_max_per_task(tasks: &[&TaskSpec], max_per_task: Option<usize>) -> Result<()> {
    let Some(n) = max_per_task else { return Ok(()) };
    if let Some(t) = tasks.iter().filter(|t| t.num_fewshot + 1 > n).max_by_key(|t| t.num_fewshot) {
        return Err(Error::Config {
            message: format!(
                "{n} examples per task leave {} ({}-shot) too few: each item's few-shot examples are drawn from the \
                 other items kept, as nanochat does\n  HINT: keep at least {} examples per task (or -1 for all)",
                t.label,
                t.num_fewshot,
                t.num_fewshot + 1
            ),
        });
    }
    Ok(())
}

/// Runs `tasks` in order, calling `on_task` after each (progress), and averages CORE.
pub fn evaluate_core(
    scorer: &mut Scorer<'_>,
    tok: &Tokenizer,
    tasks: &[&TaskSpec],
    missing: &[MissingTask],
    max_per_task: Option<usize>,
    on_task: &mut dyn FnMut(&TaskResult),
) -> Result<CoreResult> {
    let mut out = Vec::with_capacity(tasks.len());
    for spec in tasks {
        let r = evaluate_task(scorer, tok, spec, max_per_task)?;
        on_task(&r);
        out.push(r);
    }
    let core = if out.is_empty() { 0.0 } else { out.iter().map(|r| r.centered).sum::<f64>() / out.len() as f64 };
    Ok(CoreResult {
        tasks: out,
        missing: missing.iter().map(|m| (m.label.clone(), m.reason.clone())).collect(),
        core,
        max_per_task,
    })
}

impl TaskResult {
    /// One row of [`CoreResult::table`].
    pub fn row(&self) -> String {
        format!(
            "{:<34} {:<6} {:>5} {:>8} {:>8.4} {:>9.4} {:>8} {:>9.1}",
            self.label,
            short_type(self.task_type),
            self.shots,
            self.examples,
            self.accuracy,
            self.centered,
            self.cropped,
            self.seconds
        )
    }

    pub fn header() -> String {
        format!(
            "{:<34} {:<6} {:>5} {:>8} {:>8} {:>9} {:>8} {:>9}",
            "task", "type", "shots", "examples", "accuracy", "centered", "cropped", "seconds"
        )
    }
}

fn short_type(t: &str) -> &'static str {
    match t {
        "multiple_choice" => "MC",
        "schema" => "schema",
        _ => "LM",
    }
}

impl CoreResult {
    /// The per-task table, CORE, and the tasks missing.
    pub fn table(&self) -> String {
        let mut s = TaskResult::header() + "\n";
        for r in &self.tasks {
            s += &r.row();
            s.push('\n');
        }
        let per = self.max_per_task.map_or("all".to_string(), |n| n.to_string());
        s += &format!(
            "CORE {:.4} (mean centred accuracy over {} task(s), max {per} examples per task)\n",
            self.core,
            self.tasks.len()
        );
        for (label, why) in &self.missing {
            s += &format!("missing: {label} ({why})\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centering_maps_chance_to_zero_and_perfect_to_one() {
        assert_eq!(centered(0.25, 25.0), 0.0);
        assert_eq!(centered(1.0, 25.0), 1.0);
        assert!((centered(0.5, 40.3) - (0.5 - 0.403) / 0.597).abs() < 1e-15);
        assert_eq!(centered(0.3, 0.0), 0.3);
    }
}
