//! Tokenizer: training, the saved tokenizer.json (read back by us and by the `tokenizers`
//! crate), round trips, special tokens, token_bytes, GPT-2's tokenizer.json, and bad input.

mod common;

use common::{synthetic_docs, test_data, Scratch};
use std::process::Command;
use wgpt::data::{DataConfig, Dataset, Split};
use wgpt::tokenizer::{load_token_bytes, train, Tokenizer, TrainOptions, SPECIAL_TOKENS};

fn train_on(docs: &[String], vocab_size: usize) -> Tokenizer {
    let opts = TrainOptions { vocab_size, ..TrainOptions::default() };
    train(docs.iter().cloned().map(Ok), &opts).unwrap().0
}

/// The `tokenizers` crate reading `json` with special-token matching off (as our encoder).
fn hf(json: &str) -> tokenizers::Tokenizer {
    let mut t: tokenizers::Tokenizer = json.parse().unwrap();
    t.with_truncation(None).unwrap();
    t.set_encode_special_tokens(true);
    t
}

fn hf_ids(t: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
    t.encode_fast(text, false).unwrap().get_ids().to_vec()
}

/// Every check of a trained tokenizer against a set of documents: exact round trip, the same
/// ids from the saved file (read natively) and from the `tokenizers` crate, no special ids.
fn check_against(tok: &Tokenizer, docs: &[String], dir: &std::path::Path) {
    let (tok_path, bytes_path) = tok.save(dir).unwrap();
    let back = Tokenizer::from_file(&tok_path).unwrap();
    assert!(back.is_native(), "our own tokenizer.json must load natively");
    assert_eq!(back.vocab_size(), tok.vocab_size());
    assert_eq!(back.specials(), tok.specials());
    let theirs = hf(&std::fs::read_to_string(&tok_path).unwrap());
    assert_eq!(theirs.get_vocab_size(true), tok.vocab_size());
    let first_special = tok.vocab_size() as u32 - SPECIAL_TOKENS.len() as u32;
    let encoded = tok.encode_batch(docs).unwrap();
    for (i, (doc, ids)) in docs.iter().zip(&encoded).enumerate() {
        assert_eq!(tok.decode(ids).unwrap(), *doc, "document {i} does not round-trip");
        assert!(ids.iter().all(|&id| id < first_special), "document {i} encoded to a special id");
        assert_eq!(&back.encode(doc).unwrap(), ids, "document {i}: reloaded tokenizer encodes differently");
        assert_eq!(&hf_ids(&theirs, doc), ids, "document {i}: the tokenizers crate encodes differently");
        assert_eq!(theirs.decode(ids, false).unwrap(), *doc, "document {i}: the tokenizers crate decodes differently");
    }
    // token_bytes: raw byte length per id, 0 for the specials; the file matches.
    let tb = load_token_bytes(&bytes_path, &back).unwrap();
    assert_eq!(tb.len(), tok.vocab_size());
    for (id, &n) in tb.iter().enumerate() {
        if id as u32 >= first_special {
            assert_eq!(n, 0, "special {id} must count 0 bytes");
        } else {
            assert_eq!(n as usize, tok.decode_bytes(&[id as u32]).unwrap().len(), "token {id}");
        }
    }
}

#[test]
fn fineweb_vocab_4096_trains_saves_reloads_and_round_trips() {
    let Some(root) = test_data("fineweb_vocab_4096_trains_saves_reloads_and_round_trips") else {
        return;
    };
    let ds = Dataset::open(&DataConfig::new(root.join("fineweb-edu/nanochat_shards"))).unwrap();
    let (tok, summary) =
        train(ds.docs(Split::Train), &TrainOptions { vocab_size: 4096, ..TrainOptions::default() }).unwrap();
    assert_eq!(summary.docs, 120, "shard 0 holds the 120 training documents");
    assert_eq!(summary.merges, 4096 - 256 - 9);
    // nanochat's ids for vocab 4096: the nine specials at 4087..=4095, in its order.
    let want: Vec<(String, u32)> =
        SPECIAL_TOKENS.iter().enumerate().map(|(i, s)| (s.to_string(), 4087 + i as u32)).collect();
    assert_eq!(tok.specials(), want.as_slice());
    assert_eq!(tok.bos_id().unwrap(), 4087);
    assert_eq!(tok.duplicate_tokens(), 0);

    let mut docs: Vec<String> = ds.docs(Split::Train).collect::<Result<_, _>>().unwrap();
    let val: Vec<String> = ds.docs(Split::Val).collect::<Result<_, _>>().unwrap();
    docs.extend(val.iter().cloned());
    assert_eq!(docs.len(), 150);
    let dir = Scratch::new("tok-fineweb");
    check_against(&tok, &docs, dir.path());

    let bytes: usize = val.iter().map(String::len).sum();
    let tokens: usize = tok.encode_batch(&val).unwrap().iter().map(Vec::len).sum();
    let bpt = bytes as f64 / tokens as f64;
    println!("bytes per token on the validation shard (vocab 4096): {bytes} / {tokens} = {bpt:.3}");
    assert!((2.5..6.0).contains(&bpt), "bytes/token {bpt} is implausible for English at vocab 4096");
}

#[test]
fn synthetic_training_matches_the_tokenizers_crate_and_round_trips() {
    let docs = synthetic_docs(11, 300);
    let tok = train_on(&docs, 1000);
    assert_eq!(tok.vocab_size(), 1000);
    assert_eq!(tok.n_merges(), Some(1000 - 256 - 9));
    // Unseen text too: other seed, plus edge cases.
    let mut probe = synthetic_docs(12, 100);
    probe.extend(
        [
            "",
            " ",
            "\n\n\n",
            "a",
            "<|bos|>",
            "<|bos|><|user_start|>hi<|assistant_end|>",
            "x".repeat(5000).as_str(),
            &" ".repeat(3000),
            "1234567890123",
            "don't WON'T we'll THEY'VE",
            "\u{0}\u{1}\u{7f}é\u{fffd}",
        ]
        .map(String::from),
    );
    let dir = Scratch::new("tok-synth");
    check_against(&tok, &probe, dir.path());
}

#[test]
fn training_is_deterministic() {
    let docs = synthetic_docs(3, 200);
    let a = train_on(&docs, 600);
    let b = train_on(&docs, 600);
    assert_eq!(a.to_json(), b.to_json());
    // Document order changes nothing (counts are all that matter).
    let mut rev = docs.clone();
    rev.reverse();
    assert_eq!(train_on(&rev, 600).to_json(), a.to_json());
}

#[test]
fn special_token_text_in_documents_stays_text() {
    let tok = train_on(&synthetic_docs(5, 200), 500);
    let text = "before <|bos|> middle <|assistant_start|>after<|output_end|>";
    let ids = tok.encode(text).unwrap();
    for (name, id) in tok.specials() {
        assert!(!ids.contains(id), "{name} ({id}) was produced from plain text");
    }
    assert_eq!(tok.decode(&ids).unwrap(), text);
    // Decoding a special id gives its text (as tiktoken's decode does).
    let bos = tok.bos_id().unwrap();
    assert_eq!(tok.decode(&[bos]).unwrap(), "<|bos|>");
}

#[test]
fn numbers_split_into_pairs_of_digits() {
    // nanochat's pattern: \p{N}{1,2}, so no token spans more than two digits.
    let docs: Vec<String> =
        synthetic_docs(4, 200).into_iter().map(|d| d + " 12345 678 9 1234 12 12 12 34 34 9999").collect();
    let tok = train_on(&docs, 600);
    for id in tok.encode("1234567").unwrap() {
        let s = tok.decode(&[id]).unwrap();
        assert!(s.len() <= 2, "token {s:?} spans more than two digits");
    }
}

#[test]
fn too_little_text_for_the_vocab_is_a_clear_error() {
    let err = train(
        ["abab abab".to_string()].into_iter().map(Ok),
        &TrainOptions { vocab_size: 4096, ..TrainOptions::default() },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ran out of pairs") && err.contains("HINT") && err.contains("--vocab-size"), "{err}");
    let err = train(std::iter::empty(), &TrainOptions { vocab_size: 100, ..TrainOptions::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 265"), "{err}");
}

#[test]
fn documents_are_cropped_and_the_character_budget_stops_training() {
    // 10 documents of 1,000 characters: a 2,500-character budget stops after the third
    // (nanochat checks the budget after yielding the document).
    let docs: Vec<String> = (0..10).map(|i| format!("{i} {}", "ab cd ".repeat(200))[..1000].to_string()).collect();
    let opts = TrainOptions { vocab_size: 267, doc_cap: 10_000, max_chars: 2_500 };
    let (_, s) = train(docs.iter().cloned().map(Ok), &opts).unwrap();
    assert_eq!((s.docs, s.chars), (3, 3000));
    // A doc cap of 100 characters (not bytes: "é" is 2 bytes) crops each document.
    let docs = vec!["é".repeat(500); 4];
    let opts = TrainOptions { vocab_size: 266, doc_cap: 100, max_chars: 1_000_000 };
    let (_, s) = train(docs.iter().cloned().map(Ok), &opts).unwrap();
    assert_eq!((s.docs, s.chars), (4, 400));
}

#[test]
fn gpt2_tokenizer_json_loads_and_encodes_like_openai() {
    let Some(root) = test_data("gpt2_tokenizer_json_loads_and_encodes_like_openai") else {
        return;
    };
    let path = root.join("tokenizers/gpt2_tokenizer.json");
    let tok = Tokenizer::from_file(&path).unwrap();
    assert!(tok.is_native(), "GPT-2's byte-level BPE should run on the native encoder");
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.encode("Hello world").unwrap(), vec![15496, 995]);
    assert_eq!(tok.encode("naïve café 🤖").unwrap(), vec![2616, 38776, 40304, 12520, 97, 244]);
    assert_eq!(tok.bos_id().unwrap(), 50256);
    // <|endoftext|> inside a document is text, not id 50256 (the tokenizers crate with special
    // matching on gives [262, 2068, 7586, 21831, 50256]).
    let text = " the quick brown fox<|endoftext|>";
    let ids = tok.encode(text).unwrap();
    assert_eq!(&ids[..4], &[262, 2068, 7586, 21831]);
    assert!(!ids.contains(&50256));
    assert_eq!(tok.decode(&ids).unwrap(), text);
    assert_eq!(tok.token_bytes()[50256], 0);
    assert_eq!(tok.token_bytes()[15496], 5); // "Hello"
                                             // The file truncates at 50 tokens; documents must not be truncated.
    let long = std::fs::read_to_string(root.join("text/tinyshakespeare.txt")).unwrap()[..20_000].to_string();
    let ids = tok.encode(&long).unwrap();
    assert!(ids.len() > 4000);
    assert_eq!(ids, hf_ids(&hf(&std::fs::read_to_string(&path).unwrap()), &long));
    assert_eq!(tok.decode(&ids).unwrap(), long);
}

#[test]
fn other_tokenizer_json_kinds_run_through_the_tokenizers_crate() {
    // A word-level tokenizer is not byte-level BPE: it must still load and encode.
    let json = r#"{"version":"1.0","truncation":{"direction":"Right","max_length":2,"strategy":"LongestFirst","stride":0},"padding":null,
        "added_tokens":[{"id":0,"content":"[UNK]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
        "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"[UNK]":0,"hello":1,"world":2,"<|endoftext|>":3},"unk_token":"[UNK]"}}"#;
    let dir = Scratch::new("tok-wordlevel");
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, json).unwrap();
    let tok = Tokenizer::from_file(&path).unwrap();
    assert!(!tok.is_native());
    assert_eq!(tok.vocab_size(), 4);
    // Truncation (max_length 2) is switched off for whole documents.
    assert_eq!(tok.encode("hello world hello oops").unwrap(), vec![1, 2, 1, 0]);
    assert_eq!(tok.token_bytes()[0], 0, "[UNK] is special");
    assert_eq!(tok.token_bytes()[1], 5);
    let err = tok.bos_id().unwrap_err().to_string();
    assert!(err.contains("tokenizer.json") && err.contains("<|bos|>"), "{err}");
}

#[test]
fn bad_tokenizer_files_are_clear_errors_and_vocab_mismatch_is_caught() {
    let dir = Scratch::new("tok-bad");
    let missing = dir.join("nope/tokenizer.json");
    let err = Tokenizer::from_file(&missing).unwrap_err().to_string();
    assert!(err.contains("nope/tokenizer.json") && err.contains("HINT"), "{err}");

    let tok = train_on(&synthetic_docs(9, 100), 400);
    tok.save(dir.path()).unwrap();
    let good = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    let cut = dir.join("cut.json");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let err = Tokenizer::from_file(&cut).unwrap_err().to_string();
    assert!(err.contains("cut.json") && err.contains("not valid JSON"), "{err}");

    // A merge whose result is missing from the vocab: not loadable natively; the tokenizers
    // crate rejects it too, and the error names the file.
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    let mut broken = v.clone();
    broken["model"]["vocab"].as_object_mut().unwrap().retain(|_, id| id.as_u64() != Some(300));
    let bad = dir.join("broken.json");
    std::fs::write(&bad, serde_json::to_string(&broken).unwrap()).unwrap();
    let err = Tokenizer::from_file(&bad).unwrap_err().to_string();
    assert!(err.contains("broken.json"), "{err}");

    let loaded = Tokenizer::from_file(dir.path()).unwrap(); // a directory works too
    loaded.check_vocab_size(400).unwrap();
    let err = loaded.check_vocab_size(32768).unwrap_err().to_string();
    assert!(err.contains("400 token ids") && err.contains("vocab_size = 32768") && err.contains("HINT"), "{err}");

    // token_bytes.json from another tokenizer is rejected.
    let other = train_on(&synthetic_docs(10, 100), 410);
    let odir = Scratch::new("tok-bad-other");
    let (_, other_bytes) = other.save(odir.path()).unwrap();
    let err = load_token_bytes(&other_bytes, &loaded).unwrap_err().to_string();
    assert!(err.contains("does not belong"), "{err}");
}

fn wgpt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wgpt"))
}

#[test]
fn cli_trains_encodes_decodes_and_never_overwrites_silently() {
    let dir = Scratch::new("tok-cli");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, synthetic_docs(21, 200).join("\n\n")).unwrap();
    let out = dir.join("tok");
    let run = |args: &[&str]| {
        let o = wgpt().args(args).env("RUST_LOG", "warn").output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let c = corpus.to_str().unwrap();
    let o = out.to_str().unwrap();
    let train_args = [
        "tokenizer",
        "train",
        "--data",
        c,
        "--txt-delimiter",
        "\\n\\n",
        "--val-fraction",
        "0.1",
        "--vocab-size",
        "512",
        "--out",
        o,
    ];
    let (ok, stdout, stderr) = run(&train_args);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("<|bos|>=503") && stdout.contains("bytes/token"), "{stdout}");

    // A second run must not replace the tokenizer without --force; the file is untouched.
    let before = std::fs::read(out.join("tokenizer.json")).unwrap();
    let (ok, _, stderr) = run(&train_args);
    assert!(!ok && stderr.contains("already there") && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(out.join("tokenizer.json")).unwrap(), before);

    let (ok, ids, stderr) = run(&["tokenizer", "encode", "-t", o, "--bos", "--text", "Hello <|bos|> world"]);
    assert!(ok, "{stderr}");
    assert!(ids.starts_with("503 "), "{ids}");
    let (ok, text, stderr) = run(&["tokenizer", "decode", "-t", o, ids.trim()]);
    assert!(ok, "{stderr}");
    assert_eq!(text, "<|bos|>Hello <|bos|> world");

    let (ok, _, stderr) = run(&["tokenizer", "info", "-t", o, "--expect-vocab-size", "32768"]);
    assert!(!ok && stderr.contains("vocab_size = 32768"), "{stderr}");
    let (ok, stdout, stderr) = run(&[
        "tokenizer",
        "info",
        "-t",
        o,
        "--eval",
        "--data",
        c,
        "--txt-delimiter",
        "\\n\\n",
        "--val-fraction",
        "0.1",
    ]);
    assert!(ok && stdout.contains("bytes/token") && stdout.contains("token_bytes.json matches"), "{stdout}{stderr}");
}
