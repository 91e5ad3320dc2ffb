//! The CORE task suite on disk: which tasks there are, how each is prompted and scored, and their
//! items.
//!
//! nanochat reads its `eval_bundle` (`core.yaml`, `eval_meta_data.csv`, `eval_data/`); the data
//! here is DCLM's copy of the same llm-foundry files (see `shared/data/eval/README.md`), so the
//! task list comes from DCLM's `additional_aggregation.json` (`low_variance_datasets`, the 22 CORE
//! tasks, in that order), each task's shots, type and delimiter from `heavy.yaml`, and the random
//! baselines from `eval_meta_data.csv`. Tasks whose file is absent are listed as missing rather
//! than failing the suite, so CORE can be reported over the tasks present. HellaSwag's DCLM file is
//! absent; both its labels read the bz2 text file instead (query, gold, four endings per item).
//!
//! Items are then ordered as `base_eval.py` orders them: `Random(1337).shuffle(data)` and, with
//! `--max-per-task`, the first N ([`select`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::prompts::py_strip;
use super::pyrandom::PyRandom;
use crate::error::{Error, Result};

/// How a task's items are prompted and scored (`icl_task_type` in heavy.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskType {
    /// One context, several continuations; the lowest mean loss over the continuation wins.
    MultipleChoice,
    /// Several contexts, one continuation; the lowest mean loss over the continuation wins.
    Schema,
    /// One context and continuation; correct when greedy decoding reproduces the continuation.
    LanguageModeling,
}

impl TaskType {
    /// The `icl_task_type` string, or `None` for types CORE does not score (e.g. generation).
    pub fn from_icl(s: &str) -> Option<Self> {
        match s {
            "multiple_choice" => Some(TaskType::MultipleChoice),
            "schema" => Some(TaskType::Schema),
            "language_modeling" => Some(TaskType::LanguageModeling),
            _ => None,
        }
    }

    /// The `icl_task_type` string heavy.yaml uses.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::MultipleChoice => "multiple_choice",
            TaskType::Schema => "schema",
            TaskType::LanguageModeling => "language_modeling",
        }
    }
}

/// One CORE task, resolved to a file on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task's label (heavy.yaml `label`, the CSV's `Eval Task`).
    pub label: String,
    /// The item file: `.jsonl`, `.jsonl.gz`, or HellaSwag's `.txt.bz2` (format from the name).
    pub file: PathBuf,
    /// Few-shot examples per item (the first entry of heavy.yaml's `num_fewshot`).
    pub num_fewshot: usize,
    pub task_type: TaskType,
    /// Between context and continuation; `" "` when heavy.yaml gives none, as base_eval does.
    pub continuation_delimiter: String,
    /// Accuracy of random guessing, in percent; CORE centers each task's accuracy on it.
    pub random_baseline: f64,
}

/// A CORE task that could not be loaded, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingTask {
    pub label: String,
    pub reason: String,
}

/// The CORE tasks present (in `low_variance_datasets` order) and those missing.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreSuite {
    pub tasks: Vec<TaskSpec>,
    pub missing: Vec<MissingTask>,
}

/// One evaluation item, with the fields the prompt templates read.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Multiple choice: `query`, `choices`, `gold` (index of the right choice).
    Mc { query: String, choices: Vec<String>, gold: usize },
    /// Schema: `context_options`, the shared `continuation`, `gold` (index of the right context).
    Schema { context_options: Vec<String>, continuation: String, gold: usize },
    /// Language modeling: `context` and the `continuation` to reproduce.
    Lm { context: String, continuation: String },
}

impl Item {
    /// The index of the right choice or context; `None` for language modeling.
    pub fn gold(&self) -> Option<usize> {
        match self {
            Item::Mc { gold, .. } | Item::Schema { gold, .. } => Some(*gold),
            Item::Lm { .. } => None,
        }
    }
}

/// The HellaSwag labels, whose DCLM file is replaced by the bz2 text file.
const HELLASWAG_LABELS: [&str; 2] = ["hellaswag_zeroshot", "hellaswag"];
/// HellaSwag's file name under its directory.
pub const HELLASWAG_FILE: &str = "hellaswag_val_full.txt.bz2";

fn file_err(path: &Path, message: impl Into<String>) -> Error {
    Error::File { path: path.to_path_buf(), message: message.into() }
}

fn line_err(path: &Path, line: usize, message: impl std::fmt::Display) -> Error {
    file_err(path, format!("line {line}: {message}"))
}

fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))
}

#[derive(Deserialize)]
struct HeavyYaml {
    icl_tasks: Vec<HeavyTask>,
}

#[derive(Deserialize)]
struct HeavyTask {
    label: String,
    dataset_uri: String,
    num_fewshot: Vec<usize>,
    icl_task_type: String,
    #[serde(default)]
    continuation_delimiter: Option<String>,
}

/// The 1-based line of `label: <label>` in heavy.yaml, for errors about a task's entry (serde
/// reports positions only for syntax and type errors).
fn label_line(text: &str, label: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches('-').trim();
            l.strip_prefix("label:").is_some_and(|v| v.trim().trim_matches(|c| c == '"' || c == '\'') == label)
        })
        .map_or(0, |i| i + 1)
}

fn read_heavy(path: &Path) -> Result<(String, HeavyYaml)> {
    let text = read_to_string(path)?;
    let heavy: HeavyYaml = serde_norway::from_str(&text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        line_err(
            path,
            line,
            format!(
                "{e}\n  HINT: heavy.yaml needs an `icl_tasks` list of entries with label, dataset_uri, \
                 num_fewshot: [N] and icl_task_type"
            ),
        )
    })?;
    Ok((text, heavy))
}

/// `Eval Task` -> `Random baseline` (percent) from eval_meta_data.csv.
fn read_baselines(path: &Path) -> Result<HashMap<String, f64>> {
    let file = std::fs::File::open(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(file);
    let csv_err = |e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line() as usize);
        line_err(path, line, format!("{e}\n  HINT: expected the CSV of DCLM's eval_meta_data.csv"))
    };
    let headers = rdr.headers().map_err(csv_err)?.clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            line_err(path, 1, format!("no `{name}` column in the header\n  HINT: expected DCLM's eval_meta_data.csv"))
        })
    };
    let (task_col, base_col) = (col("Eval Task")?, col("Random baseline")?);
    let mut baselines = HashMap::new();
    for record in rdr.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let (Some(task), Some(base)) = (record.get(task_col), record.get(base_col)) else {
            return Err(line_err(path, line, "row has too few fields"));
        };
        let base: f64 = base.trim().parse().map_err(|_| {
            line_err(
                path,
                line,
                format!(
                    "`Random baseline` of {task} is `{base}`, not a number\n  HINT: the baseline is in percent, \
                     e.g. 25"
                ),
            )
        })?;
        baselines.insert(task.to_string(), base);
    }
    Ok(baselines)
}

/// The `low_variance_datasets` list of additional_aggregation.json.
fn read_core_list(path: &Path) -> Result<Vec<String>> {
    let text = read_to_string(path)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| line_err(path, e.line(), e))?;
    let list = v.get("low_variance_datasets").and_then(Value::as_array).ok_or_else(|| {
        file_err(path, "no `low_variance_datasets` list\n  HINT: expected DCLM's additional_aggregation.json")
    })?;
    list.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| file_err(path, format!("`low_variance_datasets` holds {x}, not a task label")))
        })
        .collect()
}

/// The item file of a DCLM `dataset_uri` under `core_dir`: `local_data/` stripped, then
/// `<name>.jsonl` or `<name>.jsonl.gz`, whichever exists first.
fn resolve_uri(core_dir: &Path, uri: &str) -> std::result::Result<PathBuf, String> {
    let rel = uri.strip_prefix("local_data/").unwrap_or(uri);
    let stem = rel.strip_suffix(".jsonl").unwrap_or(rel);
    let plain = core_dir.join(format!("{stem}.jsonl"));
    let gz = core_dir.join(format!("{stem}.jsonl.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(format!("neither {} nor {} exists", plain.display(), gz.display()))
    }
}

/// The CORE suite under `core_dir` (the folder holding `dclm_meta/` and the category folders),
/// with HellaSwag read from `hellaswag_dir/hellaswag_val_full.txt.bz2` when given and present.
/// Only metadata is read here; [`load_items`] reads a task's items.
pub fn core_tasks(core_dir: &Path, hellaswag_dir: Option<&Path>) -> Result<CoreSuite> {
    let meta = core_dir.join("dclm_meta");
    let heavy_path = meta.join("heavy.yaml");
    let (heavy_text, heavy) = read_heavy(&heavy_path)?;
    let baselines_path = meta.join("eval_meta_data.csv");
    let baselines = read_baselines(&baselines_path)?;
    let list_path = meta.join("additional_aggregation.json");
    let labels = read_core_list(&list_path)?;

    let mut suite = CoreSuite { tasks: Vec::new(), missing: Vec::new() };
    for label in labels {
        let task = heavy.icl_tasks.iter().find(|t| t.label == label).ok_or_else(|| {
            file_err(
                &heavy_path,
                format!("CORE task `{label}` (listed in {}) has no entry in icl_tasks", list_path.display()),
            )
        })?;
        let line = label_line(&heavy_text, &label);
        let task_type = TaskType::from_icl(&task.icl_task_type).ok_or_else(|| {
            line_err(
                &heavy_path,
                line,
                format!(
                    "task `{label}` has icl_task_type `{}`; CORE scores multiple_choice, schema and language_modeling",
                    task.icl_task_type
                ),
            )
        })?;
        let num_fewshot = *task.num_fewshot.first().ok_or_else(|| {
            line_err(
                &heavy_path,
                line,
                format!("task `{label}` has an empty num_fewshot list\n  HINT: write e.g. `num_fewshot: [10]`"),
            )
        })?;
        let random_baseline = *baselines
            .get(&label)
            .ok_or_else(|| file_err(&baselines_path, format!("no row for CORE task `{label}` (column `Eval Task`)")))?;
        let file = if HELLASWAG_LABELS.contains(&label.as_str()) {
            match hellaswag_dir {
                Some(dir) if dir.join(HELLASWAG_FILE).is_file() => Ok(dir.join(HELLASWAG_FILE)),
                Some(dir) => Err(format!("{} does not exist", dir.join(HELLASWAG_FILE).display())),
                None => Err("no HellaSwag directory given (its DCLM file is not in the data)".to_string()),
            }
        } else {
            resolve_uri(core_dir, &task.dataset_uri)
        };
        match file {
            Ok(file) => suite.tasks.push(TaskSpec {
                label,
                file,
                num_fewshot,
                task_type,
                continuation_delimiter: task.continuation_delimiter.clone().unwrap_or_else(|| " ".to_string()),
                random_baseline,
            }),
            Err(reason) => suite.missing.push(MissingTask { label, reason }),
        }
    }
    Ok(suite)
}

fn open_decoded(path: &Path) -> Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if name.ends_with(".bz2") {
        Box::new(bzip2::read::MultiBzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// Every line of a (possibly compressed) text file, numbered from 1; bad UTF-8 or a corrupt
/// stream names the line it was met on.
fn read_lines(path: &Path) -> Result<Vec<String>> {
    let reader = BufReader::new(open_decoded(path)?);
    let mut lines = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| line_err(path, i + 1, format!("cannot read: {e}")))?;
        lines.push(line);
    }
    Ok(lines)
}

/// Reads a task's items in file order. The format follows the file name: HellaSwag's `.txt.bz2`
/// (6 lines per item), otherwise JSON lines (`.jsonl`, or gzipped `.jsonl.gz`) with the keys of
/// the task's type.
pub fn load_items(spec: &TaskSpec) -> Result<Vec<Item>> {
    let path = spec.file.as_path();
    let lines = read_lines(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".txt.bz2") || name.ends_with(".txt") {
        if spec.task_type != TaskType::MultipleChoice {
            return Err(file_err(
                path,
                format!(
                    "HellaSwag items are multiple choice, but task `{}` is {}",
                    spec.label,
                    spec.task_type.as_str()
                ),
            ));
        }
        return parse_hellaswag(path, &lines);
    }
    lines.iter().enumerate().map(|(i, line)| parse_json_item(path, i + 1, line, spec.task_type)).collect()
}

/// HellaSwag's text format: per item, `activity_label: ctx`, the gold index (0-3), four endings.
fn parse_hellaswag(path: &Path, lines: &[String]) -> Result<Vec<Item>> {
    if !lines.len().is_multiple_of(6) {
        let start = lines.len() / 6 * 6 + 1;
        return Err(line_err(
            path,
            start,
            format!(
                "truncated item: {} line(s) from here to the end, 6 needed\n  HINT: each HellaSwag item is \
                 a query line, a gold index 0-3 and four endings",
                lines.len() % 6
            ),
        ));
    }
    lines
        .chunks(6)
        .enumerate()
        .map(|(n, block)| {
            let gold_line = n * 6 + 2;
            let gold =
                block[1].trim().parse::<usize>().ok().filter(|&g| g < 4).ok_or_else(|| {
                    line_err(path, gold_line, format!("gold index `{}` is not 0, 1, 2 or 3", block[1]))
                })?;
            Ok(Item::Mc { query: block[0].clone(), choices: block[2..6].to_vec(), gold })
        })
        .collect()
}

const JSONL_HINT: &str =
    "\n  HINT: CORE files hold one JSON object per line: {query, choices, gold} (multiple choice), \
     {context_options, continuation, gold} (schema) or {context, continuation} (language modeling)";

fn parse_json_item(path: &Path, line_no: usize, line: &str, task_type: TaskType) -> Result<Item> {
    let err = |message: String| line_err(path, line_no, format!("{message}{JSONL_HINT}"));
    // base_eval parses `line.strip()`, which strips Python's whitespace.
    let v: Value = serde_json::from_str(py_strip(line)).map_err(|e| err(format!("not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| err("not a JSON object".to_string()))?;
    let get = |key: &str| obj.get(key).ok_or_else(|| err(format!("missing key `{key}`")));
    let string = |key: &str| -> Result<String> {
        get(key)?.as_str().map(str::to_string).ok_or_else(|| err(format!("`{key}` is not a string")))
    };
    let strings = |key: &str| -> Result<Vec<String>> {
        let list = get(key)?.as_array().ok_or_else(|| err(format!("`{key}` is not a list")))?;
        if list.is_empty() {
            return Err(err(format!("`{key}` is empty")));
        }
        list.iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(|| err(format!("`{key}` holds {x}, not a string"))))
            .collect()
    };
    let gold = |key: &str, n: usize| -> Result<usize> {
        let g = get("gold")?;
        let g = g.as_u64().ok_or_else(|| err(format!("`gold` is {g}, not a non-negative integer")))?;
        usize::try_from(g)
            .ok()
            .filter(|&g| g < n)
            .ok_or_else(|| err(format!("`gold` is {g} but `{key}` has {n} entries")))
    };
    Ok(match task_type {
        TaskType::MultipleChoice => {
            let choices = strings("choices")?;
            let gold = gold("choices", choices.len())?;
            Item::Mc { query: string("query")?, choices, gold }
        }
        TaskType::Schema => {
            let context_options = strings("context_options")?;
            let gold = gold("context_options", context_options.len())?;
            Item::Schema { context_options, continuation: string("continuation")?, gold }
        }
        TaskType::LanguageModeling => Item::Lm { context: string("context")?, continuation: string("continuation")? },
    })
}

/// The items base_eval evaluates, in its order: shuffled by `Random(1337)`, then the first
/// `max_per_task` when given (nanochat's `--max-per-task N` for N > 0; N <= 0 there is `None`).
pub fn select<T>(mut items: Vec<T>, max_per_task: Option<usize>) -> Vec<T> {
    PyRandom::new(1337).shuffle(&mut items);
    if let Some(max) = max_per_task {
        items.truncate(max);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("wgpt-eval-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create scratch dir");
            Scratch(dir)
        }

        fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("create dirs");
            std::fs::write(&path, contents).expect("write file");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn spec(file: PathBuf, task_type: TaskType) -> TaskSpec {
        TaskSpec {
            label: "t".into(),
            file,
            num_fewshot: 0,
            task_type,
            continuation_delimiter: " ".into(),
            random_baseline: 25.0,
        }
    }

    /// Asserts `r` is a File error on `path` whose message contains `line N` and `needle`.
    fn assert_file_err<T: std::fmt::Debug>(r: Result<T>, path: &Path, line: usize, needle: &str) {
        match r {
            Err(Error::File { path: p, message }) => {
                assert_eq!(p, path, "error names the wrong file: {message}");
                assert!(message.contains(&format!("line {line}:")), "no `line {line}` in: {message}");
                assert!(message.contains(needle), "no `{needle}` in: {message}");
            }
            other => panic!("expected a File error on {}, got {other:?}", path.display()),
        }
    }

    const HEAVY: &str = r#"max_seq_len: 2048
icl_tasks:
-
  label: mc_task
  dataset_uri: local_data/cat/mc_task.jsonl
  num_fewshot: [10]
  icl_task_type: multiple_choice
  continuation_delimiter: "\nAnswer: " # a comment
-
  label: 'gz_task'
  dataset_uri: local_data/cat/gz_task.jsonl
  num_fewshot: [0]
  icl_task_type: language_modeling
-
  label: absent_task
  dataset_uri: local_data/cat/absent_task.jsonl
  num_fewshot: [3]
  icl_task_type: schema
-
  label: hellaswag
  dataset_uri: local_data/language_understanding/hellaswag.jsonl
  num_fewshot: [10]
  icl_task_type: multiple_choice
-
  label: generation
  dataset_uri: local_data/cat/gen.jsonl
  num_fewshot: [3]
  icl_task_type: generation_task_with_answers
  early_stopping_criteria:
    - "\n\n"
"#;
    const CSV: &str = "Eval Task,Task Category,Random baseline,Description\n\
        mc_task,x,25,\"a, quoted, description\"\n\
        gz_task,x,0,plain\n\
        absent_task,x,50,\"two\nlines\"\n\
        hellaswag,x,25,h\n";
    const AGG: &str =
        r#"{"rw_small": ["x"], "low_variance_datasets": ["hellaswag", "mc_task", "absent_task", "gz_task"]}"#;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).expect("gzip");
        enc.finish().expect("gzip")
    }

    fn bz2(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        enc.write_all(bytes).expect("bzip2");
        enc.finish().expect("bzip2")
    }

    fn suite_dir(name: &str) -> Scratch {
        let s = Scratch::new(name);
        s.write("core/dclm_meta/heavy.yaml", HEAVY.as_bytes());
        s.write("core/dclm_meta/eval_meta_data.csv", CSV.as_bytes());
        s.write("core/dclm_meta/additional_aggregation.json", AGG.as_bytes());
        s.write("core/cat/mc_task.jsonl", b"{\"query\": \"Q1\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n");
        s.write("core/cat/gz_task.jsonl.gz", &gz(b"{\"context\": \"C \", \"continuation\": \"x\"}\n"));
        s.write("hs/hellaswag_val_full.txt.bz2", &bz2(b"Act: q he\n2\ne0\ne1\ne2\ne3\n"));
        s
    }

    #[test]
    fn core_tasks_reads_metadata_and_resolves_files() {
        let s = suite_dir("suite");
        let core = s.0.join("core");
        let suite = core_tasks(&core, Some(&s.0.join("hs"))).expect("suite");
        let labels: Vec<&str> = suite.tasks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["hellaswag", "mc_task", "gz_task"]);
        assert_eq!(suite.missing.len(), 1);
        assert_eq!(suite.missing[0].label, "absent_task");
        assert!(suite.missing[0].reason.contains("absent_task.jsonl.gz"), "{}", suite.missing[0].reason);

        let mc = &suite.tasks[1];
        assert_eq!(mc.file, core.join("cat/mc_task.jsonl"));
        assert_eq!((mc.num_fewshot, mc.task_type, mc.random_baseline), (10, TaskType::MultipleChoice, 25.0));
        assert_eq!(mc.continuation_delimiter, "\nAnswer: ");
        let lm = &suite.tasks[2];
        assert_eq!(lm.file, core.join("cat/gz_task.jsonl.gz"));
        assert_eq!((lm.num_fewshot, lm.task_type, lm.random_baseline), (0, TaskType::LanguageModeling, 0.0));
        assert_eq!(lm.continuation_delimiter, " ", "the default delimiter is a space");
        let hs = &suite.tasks[0];
        assert_eq!(hs.file, s.0.join("hs").join(HELLASWAG_FILE));
        assert_eq!(hs.num_fewshot, 10);

        assert_eq!(
            load_items(mc).expect("mc"),
            [Item::Mc { query: "Q1".into(), choices: vec!["a".into(), "b".into()], gold: 1 }]
        );
        assert_eq!(load_items(lm).expect("lm"), [Item::Lm { context: "C ".into(), continuation: "x".into() }]);
        assert_eq!(
            load_items(hs).expect("hs"),
            [Item::Mc {
                query: "Act: q he".into(),
                choices: vec!["e0".into(), "e1".into(), "e2".into(), "e3".into()],
                gold: 2
            }]
        );

        // Without a HellaSwag directory the task is missing, not an error.
        let suite = core_tasks(&core, None).expect("suite");
        assert_eq!(suite.missing.iter().map(|m| m.label.as_str()).collect::<Vec<_>>(), ["hellaswag", "absent_task"]);
    }

    #[test]
    fn schema_items_load() {
        let s = Scratch::new("schema");
        let p = s.write(
            "w.jsonl",
            b"{\"context_options\": [\"A did\", \"B did\"], \"continuation\": \"it.\", \"gold\": 0}\n",
        );
        assert_eq!(
            load_items(&spec(p, TaskType::Schema)).expect("schema"),
            [Item::Schema {
                context_options: vec!["A did".into(), "B did".into()],
                continuation: "it.".into(),
                gold: 0
            }]
        );
    }

    #[test]
    fn bad_jsonl_lines_name_file_and_line() {
        let s = Scratch::new("badjson");
        let good = "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n";
        let cases: &[(&str, TaskType, &str)] = &[
            ("{\"query\": \"q\", \"choices\": [\"a\"", TaskType::MultipleChoice, "not JSON"),
            ("{\"choices\": [\"a\", \"b\"], \"gold\": 0}", TaskType::MultipleChoice, "missing key `query`"),
            (
                "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}",
                TaskType::MultipleChoice,
                "`gold` is 2 but `choices` has 2",
            ),
            (
                "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": \"1\"}",
                TaskType::MultipleChoice,
                "not a non-negative integer",
            ),
            (
                "{\"query\": \"q\", \"choices\": [\"a\", 3], \"gold\": 0}",
                TaskType::MultipleChoice,
                "holds 3, not a string",
            ),
            (
                "{\"query\": \"q\", \"choices\": \"ab\", \"gold\": 0}",
                TaskType::MultipleChoice,
                "`choices` is not a list",
            ),
            ("{\"query\": 5, \"choices\": [\"a\"], \"gold\": 0}", TaskType::MultipleChoice, "`query` is not a string"),
            ("[1, 2]", TaskType::MultipleChoice, "not a JSON object"),
            ("", TaskType::MultipleChoice, "not JSON"),
            (
                "{\"context_options\": [\"a\"], \"continuation\": \"c\", \"gold\": 1}",
                TaskType::Schema,
                "`context_options` has 1",
            ),
            ("{\"context\": \"c\"}", TaskType::LanguageModeling, "missing key `continuation`"),
        ];
        for (i, &(bad, task_type, needle)) in cases.iter().enumerate() {
            let first = match task_type {
                TaskType::MultipleChoice => good,
                TaskType::Schema => "{\"context_options\": [\"a\"], \"continuation\": \"c\", \"gold\": 0}\n",
                TaskType::LanguageModeling => "{\"context\": \"c\", \"continuation\": \"d\"}\n",
            };
            let p = s.write(&format!("bad{i}.jsonl"), format!("{first}{first}{bad}\n{first}").as_bytes());
            assert_file_err(load_items(&spec(p.clone(), task_type)), &p, 3, needle);
        }
        // The same through gzip.
        let p = s.write("bad.jsonl.gz", &gz(format!("{good}{{oops\n").as_bytes()));
        assert_file_err(load_items(&spec(p.clone(), TaskType::MultipleChoice)), &p, 2, "not JSON");
    }

    #[test]
    fn bad_hellaswag_names_file_and_line() {
        let s = Scratch::new("badhs");
        let p = s.write("h.txt.bz2", &bz2(b"q\n0\na\nb\nc\nd\nq2\n1\na\n"));
        assert_file_err(load_items(&spec(p.clone(), TaskType::MultipleChoice)), &p, 7, "truncated item");
        let p = s.write("g.txt.bz2", &bz2(b"q\n0\na\nb\nc\nd\nq2\n4\na\nb\nc\nd\n"));
        assert_file_err(load_items(&spec(p.clone(), TaskType::MultipleChoice)), &p, 8, "gold index `4`");
        let p = s.write("x.txt.bz2", &bz2(b"q\nzero\na\nb\nc\nd\n"));
        assert_file_err(load_items(&spec(p.clone(), TaskType::MultipleChoice)), &p, 2, "gold index `zero`");
    }

    #[test]
    fn bad_metadata_names_file_and_line() {
        // YAML: an unclosed flow list on line 6 (it swallows the next line as a string).
        let s = suite_dir("badyaml");
        let core = s.0.join("core");
        let heavy =
            s.write("core/dclm_meta/heavy.yaml", HEAVY.replace("num_fewshot: [10]", "num_fewshot: [10").as_bytes());
        assert_file_err(core_tasks(&core, None), &heavy, 6, "HINT");
        // YAML type: a string where the shots list belongs.
        s.write("core/dclm_meta/heavy.yaml", HEAVY.replace("num_fewshot: [0]", "num_fewshot: zero").as_bytes());
        assert_file_err(core_tasks(&core, None), &heavy, 12, "num_fewshot");
        // A CORE task with a type CORE does not score, and one with no shots.
        s.write(
            "core/dclm_meta/heavy.yaml",
            HEAVY.replace("icl_task_type: schema", "icl_task_type: generation").as_bytes(),
        );
        assert_file_err(core_tasks(&core, None), &heavy, 15, "icl_task_type `generation`");
        s.write(
            "core/dclm_meta/heavy.yaml",
            HEAVY
                .replace("num_fewshot: [3]\n  icl_task_type: schema", "num_fewshot: []\n  icl_task_type: schema")
                .as_bytes(),
        );
        assert_file_err(core_tasks(&core, None), &heavy, 15, "empty num_fewshot");
        s.write("core/dclm_meta/heavy.yaml", HEAVY.as_bytes());

        // CSV: a baseline that is not a number (line 3), a row with too few fields (line 4).
        let csv_path =
            s.write("core/dclm_meta/eval_meta_data.csv", CSV.replace("gz_task,x,0,", "gz_task,x,zero,").as_bytes());
        assert_file_err(core_tasks(&core, None), &csv_path, 3, "not a number");
        s.write("core/dclm_meta/eval_meta_data.csv", CSV.replace("gz_task,x,0,plain", "gz_task,x").as_bytes());
        assert_file_err(core_tasks(&core, None), &csv_path, 3, "");
        s.write("core/dclm_meta/eval_meta_data.csv", CSV.replace("Random baseline", "Baseline").as_bytes());
        assert_file_err(core_tasks(&core, None), &csv_path, 1, "no `Random baseline` column");
        s.write("core/dclm_meta/eval_meta_data.csv", CSV.as_bytes());

        // JSON task list.
        let agg = s.write("core/dclm_meta/additional_aggregation.json", b"{\n\"low_variance_datasets\": [\"a\",]\n}");
        assert_file_err(core_tasks(&core, None), &agg, 2, "");
    }

    #[test]
    fn select_shuffles_like_base_eval() {
        // random.Random(1337).shuffle(l) for l = list(range(50)), then l[:5] (see pyrandom's tests).
        let items: Vec<usize> = (0..50).collect();
        assert_eq!(select(items.clone(), Some(5)), [2, 1, 20, 17, 48]);
        assert_eq!(select(items, None).len(), 50);
    }

    /// The real suite under `$WGPT_TEST_DATA/eval`, with the row counts of its README.
    #[test]
    fn real_core_suite_loads() {
        let Some(data) = std::env::var_os("WGPT_TEST_DATA").filter(|d| !d.is_empty()) else {
            eprintln!(
                "real_core_suite_loads: skipped: WGPT_TEST_DATA not set (the shared data folder, e.g. ../shared/data)"
            );
            return;
        };
        let eval = Path::new(&data).join("eval");
        let suite = core_tasks(&eval.join("core"), Some(&eval.join("hellaswag"))).expect("CORE suite");
        let missing: Vec<&str> = suite.missing.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(missing, ["squad", "coqa"]);
        let rows: &[(&str, usize)] = &[
            ("hellaswag_zeroshot", 10042),
            ("jeopardy", 2117),
            ("bigbench_qa_wikidata", 20321),
            ("arc_easy", 2376),
            ("arc_challenge", 1172),
            ("copa", 100),
            ("commonsense_qa", 1221),
            ("piqa", 1838),
            ("openbook_qa", 500),
            ("lambada_openai", 5153),
            ("hellaswag", 10042),
            ("winograd", 273),
            ("winogrande", 1267),
            ("bigbench_dyck_languages", 1000),
            ("agi_eval_lsat_ar", 230),
            ("bigbench_cs_algorithms", 1320),
            ("bigbench_operators", 210),
            ("bigbench_repeat_copy_logic", 32),
            ("boolq", 3270),
            ("bigbench_language_identification", 10000),
        ];
        let labels: Vec<&str> = suite.tasks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, rows.iter().map(|r| r.0).collect::<Vec<_>>());
        for (task, &(_, n)) in suite.tasks.iter().zip(rows) {
            let items = load_items(task).unwrap_or_else(|e| panic!("{}: {e}", task.label));
            assert_eq!(items.len(), n, "{}", task.label);
            let ok = items.iter().all(|it| {
                matches!(
                    (it, task.task_type),
                    (Item::Mc { .. }, TaskType::MultipleChoice)
                        | (Item::Schema { .. }, TaskType::Schema)
                        | (Item::Lm { .. }, TaskType::LanguageModeling)
                )
            });
            assert!(ok, "{}: items of the wrong kind", task.label);
        }
        let get = |l: &str| suite.tasks.iter().find(|t| t.label == l).expect(l);
        assert_eq!(get("arc_easy").random_baseline, 25.0);
        assert_eq!(get("commonsense_qa").random_baseline, 40.3);
        assert_eq!(get("arc_easy").continuation_delimiter, "\nAnswer: ");
        assert_eq!(get("jeopardy").continuation_delimiter, "\nAnswer: ");
        assert_eq!(get("copa").continuation_delimiter, " ");
        assert_eq!((get("hellaswag").num_fewshot, get("hellaswag_zeroshot").num_fewshot), (10, 0));
        assert_eq!(get("agi_eval_lsat_ar").num_fewshot, 3);
        assert_eq!(get("winograd").task_type, TaskType::Schema);
        assert!(get("winograd").file.ends_with("language_understanding/winograd_wsc.jsonl"));
        assert!(get("bigbench_language_identification").file.ends_with("bigbench_language_identification.jsonl.gz"));
    }
}
