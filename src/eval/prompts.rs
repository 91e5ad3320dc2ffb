//! Prompts and token sequences for one CORE item, as nanochat's `core_eval.py` builds them.
//!
//! nanochat renders three Jinja templates; with their whitespace control worked out they are plain
//! concatenations, written out here (each function quotes its template). Every few-shot example
//! is followed by `"\n\n"`; nothing else is added. The language-modeling template trims each
//! context (`| trim`) and the prompt without the continuation is `.strip()`ped, so both use
//! [`py_strip`], which strips exactly what Python's `str.strip()` strips.
//!
//! The prompts are then tokenized with BOS prepended, and the span to score found as nanochat does:
//! after the choices' common token prefix (multiple choice), before the contexts' common token
//! suffix (schema), or after the prompt without the continuation (language modeling). [`crop`]
//! keeps the last `max_len` tokens of sequences a model cannot take whole.

use super::pyrandom::fewshot_indices;
use super::tasks::{Item, TaskType};
use crate::error::{Error, Result};

/// Python's `str.isspace` for one character: Unicode White_Space (Rust's `char::is_whitespace`)
/// plus the information separators U+001C..U+001F, which Python counts as whitespace too.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` (and Jinja's `trim` filter, which calls it).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

fn fewshot_mismatch(item: &Item, example: &Item) -> ! {
    panic!("few-shot example {example:?} is not the same kind of item as {item:?}; a task's items all are")
}

/// Multiple choice, one prompt per choice. nanochat's template:
/// ```text
/// {%- for example in fewshot_examples -%}
/// {{ example.query }}{{ continuation_delimiter }}{{ example.choices[example.gold] }}
///
/// {% endfor -%}
/// {{ item.query }}{{ continuation_delimiter }}{{ choice }}
/// ```
pub fn render_prompts_mc(query: &str, choices: &[String], delimiter: &str, fewshot: &[&Item]) -> Vec<String> {
    let mut head = String::new();
    for ex in fewshot {
        let Item::Mc { query: q, choices: c, gold } = ex else {
            fewshot_mismatch(&Item::Mc { query: query.into(), choices: choices.to_vec(), gold: 0 }, ex)
        };
        head.push_str(&format!("{q}{delimiter}{}\n\n", c[*gold]));
    }
    choices.iter().map(|choice| format!("{head}{query}{delimiter}{choice}")).collect()
}

/// Schema, one prompt per context option. nanochat's template:
/// ```text
/// {%- for example in fewshot_examples -%}
/// {{ example.context_options[example.gold] }}{{ continuation_delimiter }}{{ example.continuation }}
///
/// {% endfor -%}
/// {{ context }}{{ continuation_delimiter }}{{ item.continuation }}
/// ```
pub fn render_prompts_schema(
    context_options: &[String],
    continuation: &str,
    delimiter: &str,
    fewshot: &[&Item],
) -> Vec<String> {
    let mut head = String::new();
    for ex in fewshot {
        let Item::Schema { context_options: o, continuation: c, gold } = ex else {
            fewshot_mismatch(
                &Item::Schema { context_options: context_options.to_vec(), continuation: continuation.into(), gold: 0 },
                ex,
            )
        };
        head.push_str(&format!("{}{delimiter}{c}\n\n", o[*gold]));
    }
    context_options.iter().map(|context| format!("{head}{context}{delimiter}{continuation}")).collect()
}

/// Language modeling: `[prompt_without, prompt_with]`, the first `.strip()`ped. nanochat's template
/// (rendered with `include_continuation` false, then true):
/// ```text
/// {%- for example in fewshot_examples -%}
/// {{ example.context | trim }}{{ continuation_delimiter }}{{ example.continuation }}
///
/// {% endfor -%}
/// {{ item.context | trim }}{{ continuation_delimiter }}{% if include_continuation %}{{ item.continuation }}{% endif %}
/// ```
pub fn render_prompts_lm(context: &str, continuation: &str, delimiter: &str, fewshot: &[&Item]) -> Vec<String> {
    let mut head = String::new();
    for ex in fewshot {
        let Item::Lm { context: x, continuation: c } = ex else {
            fewshot_mismatch(&Item::Lm { context: context.into(), continuation: continuation.into() }, ex)
        };
        head.push_str(&format!("{}{delimiter}{c}\n\n", py_strip(x)));
    }
    let without = format!("{head}{}{delimiter}", py_strip(context));
    let with = format!("{without}{continuation}");
    vec![py_strip(&without).to_string(), with]
}

/// The prompts of `item` with its few-shot examples (items of the same task, so of the same kind;
/// panics otherwise).
pub fn render_item(item: &Item, fewshot: &[&Item], delimiter: &str) -> Vec<String> {
    match item {
        Item::Mc { query, choices, .. } => render_prompts_mc(query, choices, delimiter, fewshot),
        Item::Schema { context_options, continuation, .. } => {
            render_prompts_schema(context_options, continuation, delimiter, fewshot)
        }
        Item::Lm { context, continuation } => render_prompts_lm(context, continuation, delimiter, fewshot),
    }
}

/// The prompts of item `idx` of a task's evaluated items (after [`select`](super::tasks::select)),
/// with the `num_fewshot` examples nanochat draws for it ([`fewshot_indices`]). An error if the
/// task has too few items to draw them from (nanochat's `sample` raises there).
pub fn render_task_item(items: &[Item], idx: usize, num_fewshot: usize, delimiter: &str) -> Result<Vec<String>> {
    let item = items.get(idx).ok_or_else(|| Error::State {
        context: "a CORE item index".into(),
        message: format!("item {idx} of a task with {} items", items.len()),
    })?;
    if num_fewshot >= items.len() && num_fewshot > 0 {
        return Err(Error::State {
            context: "a CORE task's few-shot draw".into(),
            message: format!(
                "{num_fewshot} few-shot examples need at least {} items, the task has {}",
                num_fewshot + 1,
                items.len()
            ),
        });
    }
    let fewshot: Vec<&Item> = fewshot_indices(items.len(), idx, num_fewshot).into_iter().map(|i| &items[i]).collect();
    Ok(render_item(item, &fewshot, delimiter))
}

/// Token sequences (BOS first) with the span `start[i]..end[i]` of sequence `i` to score: the
/// losses of the predictions at `start - 1 .. end - 1` (multiple choice, schema) or whether greedy
/// predictions there reproduce the span (language modeling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequences {
    pub tokens: Vec<Vec<u32>>,
    pub start: Vec<usize>,
    pub end: Vec<usize>,
}

/// The length of the common prefix of `seqs` (nanochat's `find_common_length(..., 'left')`).
pub fn common_prefix_len(seqs: &[Vec<u32>]) -> usize {
    let min_len = seqs.iter().map(Vec::len).min().unwrap_or(0);
    (0..min_len).find(|&i| seqs.iter().any(|s| s[i] != seqs[0][i])).unwrap_or(min_len)
}

/// The length of the common suffix of `seqs` (nanochat's `find_common_length(..., 'right')`).
pub fn common_suffix_len(seqs: &[Vec<u32>]) -> usize {
    let min_len = seqs.iter().map(Vec::len).min().unwrap_or(0);
    let back = |s: &Vec<u32>, i: usize| s[s.len() - 1 - i];
    (0..min_len).find(|&i| seqs.iter().any(|s| back(s, i) != back(&seqs[0], i))).unwrap_or(min_len)
}

/// Tokenizes `prompts` (from [`render_item`]) with `bos` prepended and finds the spans to score,
/// as nanochat's `batch_sequences_mc` / `_schema` / `_lm`. A language-modeling item gives one
/// sequence (the prompt with its continuation); it is an error if the prompt without the
/// continuation does not tokenize to a strict prefix of it (nanochat asserts this).
pub fn batch_sequences(
    task_type: TaskType,
    prompts: &[String],
    encode: impl Fn(&str) -> Result<Vec<u32>>,
    bos: u32,
) -> Result<Sequences> {
    let tokens = prompts
        .iter()
        .map(|p| {
            let mut t = vec![bos];
            t.extend(encode(p)?);
            Ok(t)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(match task_type {
        TaskType::MultipleChoice => {
            // Contexts are the same and continuations differ: the answer starts after the common prefix.
            let start = common_prefix_len(&tokens);
            let end = tokens.iter().map(Vec::len).collect();
            Sequences { start: vec![start; tokens.len()], end, tokens }
        }
        TaskType::Schema => {
            // Contexts differ and the continuation is shared: it is the common suffix.
            let suffix = common_suffix_len(&tokens);
            let end: Vec<usize> = tokens.iter().map(Vec::len).collect();
            Sequences { start: end.iter().map(|e| e - suffix).collect(), end, tokens }
        }
        TaskType::LanguageModeling => {
            let [without, with] = <[Vec<u32>; 2]>::try_from(tokens).map_err(|t| Error::State {
                context: "a language-modeling item's prompts".into(),
                message: format!("expected 2 prompts (without and with the continuation), got {}", t.len()),
            })?;
            let (start, end) = (without.len(), with.len());
            if start >= end || with[..start] != without[..] {
                return Err(Error::State {
                    context: "a language-modeling item's tokens".into(),
                    message: format!(
                        "the prompt without the continuation ({start} tokens) is not a strict prefix of the \
                         prompt with it ({end} tokens); prompt without: {:?}",
                        prompts[0]
                    ),
                });
            }
            Sequences { tokens: vec![with], start: vec![start], end: vec![end] }
        }
    })
}

/// nanochat's `max_seq_len` truncation: a sequence longer than `max_len` keeps its last `max_len`
/// tokens and its span moves down with it. Where nanochat asserts (the cut reaches into the
/// span, which a model of 2048 positions never meets but a small one does), the span keeps what
/// is left of it from position 1 on (position 0 has no prediction): the last `max_len − 1`
/// continuation tokens are scored. `max_len` must be at least 2.
pub fn crop(seqs: Sequences, max_len: usize) -> Result<Sequences> {
    if max_len < 2 {
        return Err(Error::State {
            context: "cropping sequences".into(),
            message: format!("a context of {max_len} tokens leaves nothing to score"),
        });
    }
    let mut out = Sequences { tokens: Vec::new(), start: Vec::new(), end: Vec::new() };
    for ((t, s), e) in seqs.tokens.into_iter().zip(seqs.start).zip(seqs.end) {
        if t.len() > max_len {
            let cut = t.len() - max_len;
            out.tokens.push(t[cut..].to_vec());
            out.start.push(s.saturating_sub(cut).max(1));
            out.end.push(e - cut);
        } else {
            out.tokens.push(t);
            out.start.push(s);
            out.end.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The expected prompts are written out by hand from the templates above.
    use super::*;

    fn mc(q: &str, c: &[&str], gold: usize) -> Item {
        Item::Mc { query: q.into(), choices: c.iter().map(|s| s.to_string()).collect(), gold }
    }
    fn schema(o: &[&str], c: &str, gold: usize) -> Item {
        Item::Schema { context_options: o.iter().map(|s| s.to_string()).collect(), continuation: c.into(), gold }
    }
    fn lm(x: &str, c: &str) -> Item {
        Item::Lm { context: x.into(), continuation: c.into() }
    }

    #[test]
    fn py_strip_matches_python_isspace() {
        // [hex(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()] in CPython 3.11.
        let python: &[u32] = &[
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
            0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
        ];
        let ours: Vec<u32> =
            (0..=0x10ffff).filter_map(char::from_u32).filter(|&c| is_py_space(c)).map(u32::from).collect();
        assert_eq!(ours, python);
        assert_eq!(py_strip("\u{1f} \t a b\u{a0}\n\u{3000}"), "a b");
        assert_eq!(py_strip("\u{200b}x\u{200b}"), "\u{200b}x\u{200b}", "zero-width space is not whitespace");
        assert_eq!(py_strip(" \n "), "");
    }

    #[test]
    fn mc_prompts_zero_and_two_shot() {
        let item = mc("Q: sky?", &["blue", "green"], 0);
        assert_eq!(render_item(&item, &[], " "), ["Q: sky? blue", "Q: sky? green"]);
        let a = mc("Q: 1+1?", &["3", "2"], 1);
        let b = mc("Q: grass? ", &["green", "red"], 0);
        assert_eq!(
            render_item(&item, &[&a, &b], "\nAnswer: "),
            [
                "Q: 1+1?\nAnswer: 2\n\nQ: grass? \nAnswer: green\n\nQ: sky?\nAnswer: blue",
                "Q: 1+1?\nAnswer: 2\n\nQ: grass? \nAnswer: green\n\nQ: sky?\nAnswer: green",
            ]
        );
        // With an empty delimiter (MMLU) the choice follows the query directly.
        assert_eq!(render_item(&mc("Answer:", &[" A", " B"], 0), &[], ""), ["Answer: A", "Answer: B"]);
    }

    #[test]
    fn schema_prompts_zero_and_two_shot() {
        let item = schema(&["Tom hit Ann because Tom", "Tom hit Ann because Ann"], "was angry.", 0);
        assert_eq!(
            render_item(&item, &[], " "),
            ["Tom hit Ann because Tom was angry.", "Tom hit Ann because Ann was angry."]
        );
        let a = schema(&["X ate because X", "X ate because Y"], "was hungry.", 1);
        let b = schema(&["P ran as P", "P ran as Q"], "was late.", 0);
        assert_eq!(
            render_item(&item, &[&a, &b], " "),
            [
                "X ate because Y was hungry.\n\nP ran as P was late.\n\nTom hit Ann because Tom was angry.",
                "X ate because Y was hungry.\n\nP ran as P was late.\n\nTom hit Ann because Ann was angry.",
            ]
        );
    }

    #[test]
    fn lm_prompts_trim_contexts_and_strip_prompt_without() {
        let item = lm("  The capital of France is \n", "Paris");
        assert_eq!(render_item(&item, &[], " "), ["The capital of France is", "The capital of France is Paris"]);
        let a = lm("\tOne plus one is  ", "two");
        let b = lm("Red and\nblue ", " purple ");
        assert_eq!(
            render_item(&item, &[&a, &b], "\nAnswer: "),
            [
                // The trailing "\nAnswer: " is stripped to "\nAnswer:" in the prompt without.
                "One plus one is\nAnswer: two\n\nRed and\nblue\nAnswer:  purple \n\n\
                 The capital of France is\nAnswer:",
                "One plus one is\nAnswer: two\n\nRed and\nblue\nAnswer:  purple \n\n\
                 The capital of France is\nAnswer: Paris",
            ]
        );
        // A context of only whitespace and a space delimiter strip to the empty string.
        assert_eq!(render_item(&lm(" \n", "x"), &[], " "), ["", " x"]);
    }

    /// One token per byte, so token boundaries are visible in the expected values.
    fn bytes(s: &str) -> Result<Vec<u32>> {
        Ok(s.bytes().map(u32::from).collect())
    }

    /// One token per space-separated word (a word keeps its leading space, like GPT tokenizers).
    fn words(s: &str) -> Result<Vec<u32>> {
        let mut toks = Vec::new();
        for (i, w) in s.split(' ').enumerate() {
            let w = if i == 0 { w.to_string() } else { format!(" {w}") };
            if !w.is_empty() {
                toks.push(w.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))));
            }
        }
        Ok(toks)
    }

    #[test]
    fn common_lengths() {
        let s = |v: &[u32]| v.to_vec();
        assert_eq!(common_prefix_len(&[s(&[1, 2, 3]), s(&[1, 2, 4, 5]), s(&[1, 2])]), 2);
        assert_eq!(common_prefix_len(&[s(&[1, 2, 3]), s(&[1, 2, 3, 4])]), 3);
        assert_eq!(common_prefix_len(&[s(&[9]), s(&[1])]), 0);
        assert_eq!(common_suffix_len(&[s(&[1, 5, 6]), s(&[2, 3, 5, 6]), s(&[4, 6])]), 1);
        assert_eq!(common_suffix_len(&[s(&[5, 6]), s(&[3, 5, 6])]), 2);
        assert_eq!(common_suffix_len(&[s(&[1]), s(&[2])]), 0);
    }

    #[test]
    fn mc_sequences_start_after_common_prefix() {
        let prompts = render_item(&mc("ab", &["cd", "ce", "xyz"], 0), &[], " ");
        let seqs = batch_sequences(TaskType::MultipleChoice, &prompts, bytes, 0).expect("mc");
        // BOS, 'a', 'b', ' ' are shared; "xyz" differs at once.
        assert_eq!(seqs.tokens[0], [0, 97, 98, 32, 99, 100]);
        assert_eq!(seqs.start, [4, 4, 4]);
        assert_eq!(seqs.end, [6, 6, 7]);
        // Choices sharing a first word share its token, so the span starts after it (as in nanochat).
        let prompts = render_item(&mc("Q", &["the cat", "the dog"], 0), &[], " ");
        let seqs = batch_sequences(TaskType::MultipleChoice, &prompts, words, 1).expect("mc");
        assert_eq!((seqs.start.clone(), seqs.end.clone()), (vec![3, 3], vec![4, 4]));
    }

    #[test]
    fn schema_sequences_span_common_suffix() {
        let prompts = render_item(&schema(&["Tom went", "Ann quickly went"], "home now", 0), &[], " ");
        let seqs = batch_sequences(TaskType::Schema, &prompts, words, 1).expect("schema");
        // [BOS, Tom, " went", " home", " now"] and [BOS, Ann, " quickly", " went", " home", " now"]:
        // " went home now" is shared.
        assert_eq!(seqs.end, [5, 6]);
        assert_eq!(seqs.start, [2, 3]);
        assert_eq!(seqs.tokens[0][0], 1);
    }

    #[test]
    fn lm_sequences_and_prefix_error() {
        let prompts = render_item(&lm("2 + 2 =", "4"), &[], " ");
        let seqs = batch_sequences(TaskType::LanguageModeling, &prompts, bytes, 0).expect("lm");
        assert_eq!(seqs.tokens, [vec![0, 50, 32, 43, 32, 50, 32, 61, 32, 52]]);
        // The stripped prompt without ends at '='; the span is " 4".
        assert_eq!((seqs.start.clone(), seqs.end.clone()), (vec![8], vec![10]));

        // A tokenizer that merges across the boundary breaks the prefix: an error, not a panic.
        let merging = |s: &str| -> Result<Vec<u32>> { Ok(if s.ends_with('4') { vec![1, 2] } else { vec![1, 3] }) };
        match batch_sequences(TaskType::LanguageModeling, &prompts, merging, 0) {
            Err(Error::State { message, .. }) => assert!(message.contains("not a strict prefix"), "{message}"),
            other => panic!("expected a prefix error, got {other:?}"),
        }
        // An empty continuation gives no span: also an error.
        let prompts = render_item(&lm("abc", ""), &[], "");
        assert!(batch_sequences(TaskType::LanguageModeling, &prompts, bytes, 0).is_err());
        // Encoder errors pass through.
        let failing = |_: &str| -> Result<Vec<u32>> { Err(Error::Config { message: "no tokenizer".into() }) };
        assert!(matches!(
            batch_sequences(TaskType::MultipleChoice, &["x".into()], failing, 0),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn render_task_item_draws_fewshot() {
        let items: Vec<Item> = (0..8).map(|i| lm(&format!("c{i}"), &format!("x{i}"))).collect();
        // random.Random(1234 + 5).sample([0, 1, 2, 3, 4, 6, 7], 3) == [0, 2, 3] (see pyrandom's tests).
        assert_eq!(
            render_task_item(&items, 5, 3, " ").expect("render"),
            ["c0 x0\n\nc2 x2\n\nc3 x3\n\nc5", "c0 x0\n\nc2 x2\n\nc3 x3\n\nc5 x5"]
        );
        assert!(render_task_item(&items, 5, 8, " ").is_err());
        assert!(render_task_item(&items, 8, 0, " ").is_err());
        assert_eq!(render_task_item(&items[..1], 0, 0, " ").expect("0-shot").len(), 2);
    }

    /// nanochat's own rendering of real items, from its `core_eval.py` functions under CPython 3.11
    /// and jinja2 3.1.6 (data loaded and shuffled as `base_eval.py` does, HellaSwag's items mapped
    /// as [`load_items`](crate::eval::tasks::load_items) maps them): per (task, idx) the number of
    /// prompts, their total length in characters and the FNV-1a 64 hash of the prompts' UTF-8
    /// joined by NUL.
    #[test]
    fn real_prompts_match_nanochat() {
        let Some(data) = std::env::var_os("WGPT_TEST_DATA").filter(|d| !d.is_empty()) else {
            eprintln!("real_prompts_match_nanochat: skipped: WGPT_TEST_DATA not set (the shared data folder)");
            return;
        };
        let eval = std::path::Path::new(&data).join("eval");
        let suite = crate::eval::tasks::core_tasks(&eval.join("core"), Some(&eval.join("hellaswag"))).expect("suite");
        let golden: &[(&str, usize, usize, usize, u64)] = &[
            ("jeopardy", 0, 2, 2643, 0x2e0ccd2452fca6c4),
            ("jeopardy", 7, 2, 2634, 0x0a05186197447aec),
            ("arc_easy", 0, 4, 7702, 0xde3d1997bde96f46),
            ("arc_easy", 7, 4, 7839, 0xa67ca1bb4ec42bd0),
            ("winograd", 0, 2, 224, 0x2780d7140bb1bef5),
            ("winograd", 7, 2, 157, 0x6f01a8d681a3aa4b),
            ("agi_eval_lsat_ar", 0, 4, 14856, 0x4b1dee1ad74cff9f),
            ("agi_eval_lsat_ar", 7, 4, 13504, 0x7bd9c63c4080ea9f),
            ("bigbench_language_identification", 0, 4, 12028, 0x096db375294ae2ff),
            ("bigbench_language_identification", 7, 4, 10768, 0x7c1cec87c7c37cfb),
            ("bigbench_cs_algorithms", 0, 2, 3258, 0xfb7931319234533c),
            ("bigbench_cs_algorithms", 7, 2, 3164, 0x55730a63ed5abe47),
            ("hellaswag", 0, 4, 17369, 0x8dd878092e3e703e),
            ("hellaswag", 7, 4, 13257, 0xba0a0a5fc18c580c),
        ];
        let fnv =
            |s: &str| s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
        for &(label, idx, n, chars, hash) in golden {
            let spec = suite.tasks.iter().find(|t| t.label == label).expect(label);
            let items = crate::eval::tasks::select(crate::eval::tasks::load_items(spec).expect(label), None);
            let prompts = render_task_item(&items, idx, spec.num_fewshot, &spec.continuation_delimiter).expect(label);
            assert_eq!(prompts.len(), n, "{label} {idx}");
            assert_eq!(prompts.iter().map(|p| p.chars().count()).sum::<usize>(), chars, "{label} {idx}");
            assert_eq!(fnv(&prompts.join("\0")), hash, "{label} {idx}");
        }
    }

    #[test]
    fn crop_keeps_the_last_tokens() {
        let seqs = Sequences { tokens: vec![(0..10).collect(), (0..4).collect()], start: vec![7, 2], end: vec![10, 4] };
        let c = crop(seqs.clone(), 6).expect("crop");
        assert_eq!(c.tokens, [vec![4, 5, 6, 7, 8, 9], vec![0, 1, 2, 3]]);
        assert_eq!(c.start, [3, 2]);
        assert_eq!(c.end, [6, 4]);
        assert_eq!(crop(seqs.clone(), 10).expect("no crop"), seqs);
        // Cutting 8 tokens cuts into the span starting at 7: the rest of it is scored from position 1.
        let c = crop(seqs.clone(), 2).expect("crop into the span");
        assert_eq!(c.tokens, [vec![8, 9], vec![2, 3]]);
        assert_eq!(c.start, [1, 1]);
        assert_eq!(c.end, [2, 2]);
        assert!(matches!(crop(seqs, 1), Err(Error::State { .. })));
    }
}
