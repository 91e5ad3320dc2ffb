//! Base-model MMLU, 5-shot, from the Hendrycks CSVs (`mmlu/{dev,val,test}/<subject>_<split>.csv`:
//! no header; question, the four choices, the answer letter).
//!
//! The prompt is the standard one of Hendrycks' `evaluate.py` and lm-eval's `hendrycksTest`: a
//! header naming the subject, the subject's first 5 dev rows with their answers, then the question
//! ending in `"Answer:"`. (Hendrycks' own `format_subject` puts two spaces after "about"; we follow
//! lm-eval's single space. The choices are the CSV's strings, where Hendrycks' pandas would turn a
//! numeric column into numbers.) It is scored like any CORE multiple-choice item: each question
//! becomes an [`Item::Mc`] whose query is that whole prompt and whose choices are `" A"`..`" D"`,
//! rendered with an empty delimiter and no further few-shot examples ([`MMLU_DELIMITER`],
//! [`MMLU_FEWSHOT`]), so the multiple-choice template gives `prompt + " A"` and so on, and the
//! scored span is the letter token after the common prefix.

use std::path::{Path, PathBuf};

use super::tasks::Item;
use crate::error::{Error, Result};

/// The answer continuations, in the order of the CSV's choice columns.
pub const MMLU_CHOICES: [&str; 4] = [" A", " B", " C", " D"];
/// The delimiter to render MMLU items with: the prompt already ends in `"Answer:"`.
pub const MMLU_DELIMITER: &str = "";
/// Few-shot examples to draw when rendering: none, the 5 dev rows are already in the query.
pub const MMLU_FEWSHOT: usize = 0;
/// Dev rows put before each question.
pub const MMLU_SHOTS: usize = 5;

/// An MMLU split (its folder and file suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmluSplit {
    Dev,
    Val,
    Test,
}

impl MmluSplit {
    /// The folder name and file suffix: `dev`, `val` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            MmluSplit::Dev => "dev",
            MmluSplit::Val => "val",
            MmluSplit::Test => "test",
        }
    }
}

/// One CSV row.
#[derive(Debug, Clone, PartialEq)]
pub struct MmluQuestion {
    pub question: String,
    pub choices: [String; 4],
    /// 0..4 for the answer letter A..D.
    pub answer: usize,
    /// The row's first line in its file (1-based), to trace a result back to the data.
    pub line: usize,
}

fn split_file(dir: &Path, subject: &str, split: MmluSplit) -> PathBuf {
    dir.join(split.as_str()).join(format!("{subject}_{}.csv", split.as_str()))
}

/// The subjects with a test file under `dir` (the `mmlu` folder), sorted: 57 for the full set.
pub fn mmlu_subjects(dir: &Path) -> Result<Vec<String>> {
    let test = dir.join("test");
    let entries = std::fs::read_dir(&test).map_err(|e| Error::File {
        path: test.clone(),
        message: format!("cannot list: {e}\n  HINT: point at the folder holding MMLU's dev/ and test/"),
    })?;
    let mut subjects = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::File { path: test.clone(), message: format!("cannot list: {e}") })?;
        if let Some(subject) = entry.file_name().to_str().and_then(|n| n.strip_suffix("_test.csv")) {
            subjects.push(subject.to_string());
        }
    }
    subjects.sort();
    if subjects.is_empty() {
        return Err(Error::File { path: test, message: "no <subject>_test.csv files".into() });
    }
    Ok(subjects)
}

/// The rows of one MMLU CSV file.
pub fn mmlu_rows(path: &Path) -> Result<Vec<MmluQuestion>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::File { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(file);
    let line_err = |line: u64, message: String| Error::File {
        path: path.to_path_buf(),
        message: format!(
            "line {line}: {message}\n  HINT: MMLU rows are `question,A,B,C,D,answer` (no header, RFC-4180 quoting)"
        ),
    };
    let mut rows = Vec::new();
    for record in rdr.records() {
        let record = record.map_err(|e| line_err(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != 6 {
            return Err(line_err(line, format!("{} fields, 6 expected", record.len())));
        }
        let letter = record[5].trim();
        let answer = ["A", "B", "C", "D"]
            .iter()
            .position(|&l| l == letter)
            .ok_or_else(|| line_err(line, format!("answer `{}` is not A, B, C or D", &record[5])))?;
        rows.push(MmluQuestion {
            question: record[0].to_string(),
            choices: [record[1].to_string(), record[2].to_string(), record[3].to_string(), record[4].to_string()],
            answer,
            line: line as usize,
        });
    }
    Ok(rows)
}

/// `"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"`, the question block without its answer.
fn question_block(q: &MmluQuestion) -> String {
    let [a, b, c, d] = &q.choices;
    format!("{}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:", q.question)
}

/// The 5-shot prompt for `question`: the subject header, each of `shots` with its answer letter and
/// a blank line, then `question` ending in `"Answer:"`.
pub fn mmlu_prompt(subject: &str, shots: &[MmluQuestion], question: &MmluQuestion) -> String {
    let mut prompt =
        format!("The following are multiple choice questions (with answers) about {}.\n\n", subject.replace('_', " "));
    for shot in shots {
        prompt.push_str(&format!("{} {}\n\n", question_block(shot), ["A", "B", "C", "D"][shot.answer]));
    }
    prompt.push_str(&question_block(question));
    prompt
}

/// The items of one subject and split, with the row each came from: [`Item::Mc`] with the 5-shot
/// prompt (shots from the subject's dev file) as query and [`MMLU_CHOICES`] as choices. Render
/// with [`MMLU_DELIMITER`] and no few-shot examples.
pub fn mmlu_items(dir: &Path, subject: &str, split: MmluSplit) -> Result<Vec<(Item, MmluQuestion)>> {
    let dev_path = split_file(dir, subject, MmluSplit::Dev);
    let dev = mmlu_rows(&dev_path)?;
    if dev.len() < MMLU_SHOTS {
        return Err(Error::File {
            path: dev_path,
            message: format!("{} rows, {MMLU_SHOTS} needed for the few-shot prompt", dev.len()),
        });
    }
    let shots = &dev[..MMLU_SHOTS];
    let rows = mmlu_rows(&split_file(dir, subject, split))?;
    Ok(rows
        .into_iter()
        .map(|q| {
            let item = Item::Mc {
                query: mmlu_prompt(subject, shots, &q),
                choices: MMLU_CHOICES.iter().map(|c| c.to_string()).collect(),
                gold: q.answer,
            };
            (item, q)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::prompts::render_item;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("wgpt-mmlu-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("dev")).expect("mkdir");
            std::fs::create_dir_all(dir.join("test")).expect("mkdir");
            Scratch(dir)
        }
        fn write(&self, rel: &str, s: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::write(&p, s).expect("write");
            p
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const DEV: &str = "1+1?,1,2,3,4,B\n\
        \"Pick one, please\",x,\"y \"\"quoted\"\"\",z,w,C\n\
        \"Two\nlines?\",a,b,c,d,A\n\
        q4,a,b,c,d,D\n\
        q5,a,b,c,d,A\n\
        q6 unused,a,b,c,d,A\n";

    #[test]
    fn prompt_matches_hand_written() {
        let s = Scratch::new("prompt");
        s.write("dev/high_school_math_dev.csv", DEV);
        s.write("test/high_school_math_test.csv", "What is 2*3?,5,6,7,8,B\n");
        assert_eq!(mmlu_subjects(&s.0).expect("subjects"), ["high_school_math"]);
        let items = mmlu_items(&s.0, "high_school_math", MmluSplit::Test).expect("items");
        assert_eq!(items.len(), 1);
        let (item, q) = &items[0];
        let want = "The following are multiple choice questions (with answers) about high school math.\n\n\
            1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n\
            Pick one, please\nA. x\nB. y \"quoted\"\nC. z\nD. w\nAnswer: C\n\n\
            Two\nlines?\nA. a\nB. b\nC. c\nD. d\nAnswer: A\n\n\
            q4\nA. a\nB. b\nC. c\nD. d\nAnswer: D\n\n\
            q5\nA. a\nB. b\nC. c\nD. d\nAnswer: A\n\n\
            What is 2*3?\nA. 5\nB. 6\nC. 7\nD. 8\nAnswer:";
        let Item::Mc { query, choices, gold } = item else { panic!("not MC: {item:?}") };
        assert_eq!(query, want);
        assert_eq!(choices, &MMLU_CHOICES);
        assert_eq!((*gold, q.line), (1, 1));
        let prompts = render_item(item, &[], MMLU_DELIMITER);
        assert_eq!(prompts[1], format!("{want} B"));
        assert_eq!(prompts.len(), 4);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let s = Scratch::new("bad");
        let cases = [
            ("q,a,b,c,d,A\n\"multi\nline\",a,b,c,d,E\n", 2, "answer `E`"),
            ("q,a,b,c,d,A\nq,a,b,c,d,B\nq,a,b,A\n", 3, "4 fields, 6 expected"),
        ];
        for (i, (text, line, needle)) in cases.into_iter().enumerate() {
            let p = s.write(&format!("test/s{i}_test.csv"), text);
            match mmlu_rows(&p) {
                Err(Error::File { path, message }) => {
                    assert_eq!(path, p);
                    assert!(message.contains(&format!("line {line}:")) && message.contains(needle), "{message}");
                }
                other => panic!("expected an error, got {other:?}"),
            }
        }
        // Bad UTF-8 on line 2.
        let p = s.0.join("test/u_test.csv");
        std::fs::write(&p, b"q,a,b,c,d,A\nq,\xff,b,c,d,A\n").expect("write");
        match mmlu_rows(&p) {
            Err(Error::File { message, .. }) => assert!(message.contains("line 2:"), "{message}"),
            other => panic!("expected an error, got {other:?}"),
        }
        // Too few dev rows for 5 shots.
        s.write("dev/short_dev.csv", "q,a,b,c,d,A\n");
        s.write("test/short_test.csv", "q,a,b,c,d,A\n");
        assert!(matches!(mmlu_items(&s.0, "short", MmluSplit::Test), Err(Error::File { .. })));
    }

    #[test]
    fn real_mmlu_loads() {
        let Some(data) = std::env::var_os("WGPT_TEST_DATA").filter(|d| !d.is_empty()) else {
            eprintln!("real_mmlu_loads: skipped: WGPT_TEST_DATA not set (the shared data folder, e.g. ../shared/data)");
            return;
        };
        let dir = Path::new(&data).join("eval/mmlu");
        let subjects = mmlu_subjects(&dir).expect("subjects");
        assert_eq!(subjects.len(), 57);
        assert_eq!(subjects[0], "abstract_algebra");
        let (mut dev, mut test) = (0, 0);
        for s in &subjects {
            dev += mmlu_rows(&split_file(&dir, s, MmluSplit::Dev)).expect("dev").len();
            test += mmlu_items(&dir, s, MmluSplit::Test).expect("test").len();
        }
        assert_eq!((dev, test), (285, 14079));
        let items = mmlu_items(&dir, "abstract_algebra", MmluSplit::Test).expect("items");
        let Item::Mc { query, .. } = &items[0].0 else { panic!("not MC") };
        assert!(query.starts_with(
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n\
             Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
        ));
        assert!(query.ends_with("\nAnswer:"));
    }
}
