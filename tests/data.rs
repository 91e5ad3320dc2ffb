//! Datasets (parquet / jsonl / txt, splits, bad input) and the best-fit loader (checked against an
//! independent reconstruction of spec §5.3, exact resume). Shard download is `tests/download.rs`.

mod common;

use common::{synthetic_docs, test_data, Scratch};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wgpt::data::{
    check_parquet_shard, write_text_parquet, Batch, DataConfig, Dataset, Format, Loader, LoaderOptions, LoaderState,
    Split,
};
use wgpt::tokenizer::{train, Tokenizer, TrainOptions};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Shards `shard_00000.parquet`.. in `dir`, each a list of row groups of documents.
fn write_shards(dir: &Path, shards: &[Vec<Vec<String>>]) {
    for (i, groups) in shards.iter().enumerate() {
        write_text_parquet(&dir.join(format!("shard_{i:05}.parquet")), groups).unwrap();
    }
}

/// Three shards of synthetic documents in row groups of 7..20, some empty documents.
fn synthetic_shards(dir: &Path, seed: u64) -> Vec<Vec<Vec<String>>> {
    let mut docs = synthetic_docs(seed, 260).into_iter();
    let mut shards = Vec::new();
    for (s, sizes) in [vec![20, 20, 13], vec![20, 7], vec![20, 20]].into_iter().enumerate() {
        let mut groups = Vec::new();
        for (g, n) in sizes.into_iter().enumerate() {
            let mut group: Vec<String> = (0..n).map(|_| docs.next().unwrap()).collect();
            if (s + g) % 2 == 0 {
                group[3] = String::new(); // an empty document: skipped by the loader
            }
            groups.push(group);
        }
        shards.push(groups);
    }
    write_shards(dir, &shards);
    shards
}

fn tokenizer_for(docs: &[String], vocab: usize) -> Arc<Tokenizer> {
    let docs: Vec<String> = docs.iter().filter(|d| !d.is_empty()).cloned().collect();
    Arc::new(train(docs.into_iter().map(Ok), &TrainOptions { vocab_size: vocab, ..TrainOptions::default() }).unwrap().0)
}

fn opts(b: usize, t: usize, group: usize, buffer: usize, threads: usize) -> LoaderOptions {
    LoaderOptions { batch_size: b, seq_len: t, threads, group_docs: group, buffer_docs: buffer, prefetch: 2 }
}

fn batches(loader: &mut Loader, n: usize) -> Vec<Batch> {
    (0..n).map(|_| loader.next_batch().unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// An independent reconstruction of spec §5.3, written for clarity rather than speed.

fn reference_batches(ds: &Dataset, tok: &Tokenizer, split: Split, o: &LoaderOptions, n: usize) -> Vec<Batch> {
    let bos = tok.bos_id().unwrap();
    // One epoch of groups: each unit (chunk slice) in order, cut into groups of `group_docs`
    // documents; each document [BOS] + encode(doc), empty documents dropped.
    let mut epoch: Vec<Vec<Vec<u32>>> = Vec::new();
    for unit in ds.units(split) {
        let mut reader = Default::default();
        let docs = ds.read_unit(&mut reader, unit).unwrap();
        for group in docs.chunks(o.group_docs) {
            epoch.push(
                group
                    .iter()
                    .filter(|d| !d.is_empty())
                    .map(|d| std::iter::once(bos).chain(tok.encode(d).unwrap()).collect())
                    .collect(),
            );
        }
    }
    let mut stream = epoch.iter().cycle();
    let mut buffer: Vec<Vec<u32>> = Vec::new();
    let cap = o.seq_len + 1;
    let mut out = Vec::new();
    for _ in 0..n {
        let mut rows: Vec<Vec<u32>> = Vec::new();
        for _ in 0..o.batch_size {
            let mut row: Vec<u32> = Vec::new();
            while row.len() < cap {
                while buffer.len() < o.buffer_docs {
                    buffer.extend(stream.next().unwrap().iter().cloned());
                }
                let remaining = cap - row.len();
                // Largest that fits, earliest on a tie; else the shortest, earliest on a tie.
                let fit = buffer
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.len() <= remaining)
                    .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(&a.0)));
                match fit.map(|(i, _)| i) {
                    Some(i) => row.extend(buffer.remove(i)),
                    None => {
                        let i = buffer.iter().enumerate().min_by_key(|(i, d)| (d.len(), *i)).unwrap().0;
                        row.extend_from_slice(&buffer.remove(i)[..remaining]);
                    }
                }
            }
            rows.push(row);
        }
        out.push(Batch {
            inputs: rows.iter().flat_map(|r| r[..o.seq_len].iter().map(|&x| x as i32)).collect(),
            targets: rows.iter().flat_map(|r| r[1..].iter().map(|&x| x as i32)).collect(),
            batch_size: o.batch_size,
            seq_len: o.seq_len,
        });
    }
    out
}

/// Structural invariants of §5.3 that hold whatever the buffer did: rows start with BOS, targets
/// are inputs shifted by one, and each row is whole documents of the split followed by at most
/// one cropped document (a strict prefix of a document longer than what was left).
fn check_invariants(batch: &Batch, docs: &[Vec<u32>], bos: u32) {
    let (b, t) = (batch.batch_size, batch.seq_len);
    assert_eq!(batch.inputs.len(), b * t);
    assert_eq!(batch.targets.len(), b * t);
    let whole: std::collections::HashSet<&[u32]> = docs.iter().map(Vec::as_slice).collect();
    for r in 0..b {
        let inp = &batch.inputs[r * t..(r + 1) * t];
        let tgt = &batch.targets[r * t..(r + 1) * t];
        assert_eq!(&inp[1..], &tgt[..t - 1], "row {r}: targets must be inputs shifted by one");
        let row: Vec<u32> = inp.iter().chain(&tgt[t - 1..]).map(|&x| x as u32).collect();
        assert_eq!(row[0], bos, "row {r} must start with BOS");
        let starts: Vec<usize> = (0..row.len()).filter(|&i| row[i] == bos).collect();
        for (k, &s) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(row.len());
            let piece = &row[s..end];
            if whole.contains(piece) {
                continue;
            }
            assert_eq!(end, row.len(), "row {r}: only the last piece may be cropped");
            assert!(
                docs.iter().any(|d| d.len() > piece.len() && d.starts_with(piece)),
                "row {r}: the last piece is not a prefix of a longer document"
            );
        }
    }
}

fn all_docs_tokens(ds: &Dataset, tok: &Tokenizer, split: Split) -> Vec<Vec<u32>> {
    let bos = tok.bos_id().unwrap();
    ds.docs(split)
        .map(|d| d.unwrap())
        .filter(|d| !d.is_empty())
        .map(|d| std::iter::once(bos).chain(tok.encode(&d).unwrap()).collect())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Datasets

#[test]
fn parquet_shards_last_is_validation() {
    let dir = Scratch::new("ds-parquet");
    let shards = synthetic_shards(dir.path(), 1);
    // Download leftovers and other files are ignored.
    std::fs::write(dir.join("shard_00009.parquet.partial"), b"junk").unwrap();
    std::fs::write(dir.join("README.md"), b"hello").unwrap();
    let ds = Dataset::open(&DataConfig::new(dir.path())).unwrap();
    assert_eq!(ds.files().len(), 3);
    assert_eq!(ds.files()[0].chunk_docs, vec![20, 20, 13]);
    let train: Vec<String> = ds.docs(Split::Train).map(|d| d.unwrap()).collect();
    let val: Vec<String> = ds.docs(Split::Val).map(|d| d.unwrap()).collect();
    let want_train: Vec<String> = shards[..2].iter().flatten().flatten().cloned().collect();
    let want_val: Vec<String> = shards[2].iter().flatten().cloned().collect();
    assert_eq!(train, want_train);
    assert_eq!(val, want_val);
    assert_eq!(check_parquet_shard(&dir.join("shard_00001.parquet")).unwrap().rows, 27);
}

#[test]
fn fineweb_shards_open_as_nanochat_lays_them_out() {
    let Some(root) = test_data("fineweb_shards_open_as_nanochat_lays_them_out") else {
        return;
    };
    let ds = Dataset::open(&DataConfig::new(root.join("fineweb-edu/nanochat_shards"))).unwrap();
    assert_eq!(ds.files()[0].chunk_docs, vec![32, 32, 32, 24]);
    assert_eq!(ds.files()[1].chunk_docs, vec![30]);
    assert_eq!((ds.split_docs(Split::Train), ds.split_docs(Split::Val)), (120, 30));
    let first = ds.docs(Split::Train).next().unwrap().unwrap();
    assert!(first.starts_with("The Independent Jane"), "{}", &first[..40]);
}

#[test]
fn jsonl_and_delimited_txt_with_val_fraction() {
    let dir = Scratch::new("ds-text");
    let docs = synthetic_docs(2, 30);
    let jsonl: String = docs.iter().map(|d| serde_json::json!({"id": 1, "body": d}).to_string() + "\n").collect();
    std::fs::write(dir.join("c.jsonl"), &jsonl).unwrap();
    let mut cfg = DataConfig::new(dir.join("c.jsonl"));
    cfg.text_field = "body".into();
    cfg.val_fraction = Some(0.1);
    let ds = Dataset::open(&cfg).unwrap();
    let train: Vec<String> = ds.docs(Split::Train).map(|d| d.unwrap()).collect();
    let val: Vec<String> = ds.docs(Split::Val).map(|d| d.unwrap()).collect();
    assert_eq!((train.len(), val.len()), (27, 3));
    assert_eq!([train, val].concat(), docs);

    // .txt cut at a delimiter; the documents contain "\n\n" themselves, so use another one.
    std::fs::write(dir.join("t.txt"), docs.join("\n<DOC>\n")).unwrap();
    let mut cfg = DataConfig::new(dir.join("t.txt"));
    cfg.txt_delimiter = Some("\n<DOC>\n".into());
    cfg.val_fraction = Some(0.2);
    let ds = Dataset::open(&cfg).unwrap();
    let all: Vec<String> = ds.docs(Split::Train).chain(ds.docs(Split::Val)).map(|d| d.unwrap()).collect();
    assert_eq!(all, docs);
    assert_eq!(ds.split_docs(Split::Val), 6);

    // A directory of .txt files: one document per file, the last file is validation.
    let tdir = Scratch::new("ds-txtdir");
    for (i, d) in docs[..4].iter().enumerate() {
        std::fs::write(tdir.join(&format!("{i}.txt")), d).unwrap();
    }
    let ds = Dataset::open(&DataConfig::new(tdir.path())).unwrap();
    assert_eq!(ds.docs(Split::Val).map(|d| d.unwrap()).collect::<Vec<_>>(), vec![docs[3].clone()]);
}

/// Snapshot of every file under `dir` (name -> bytes), to prove nothing was modified.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn open_err(cfg: &DataConfig) -> String {
    Dataset::open(cfg).unwrap_err().to_string()
}

#[test]
fn bad_datasets_are_clear_errors_and_nothing_is_modified() {
    let dir = Scratch::new("ds-bad");
    // Missing and empty directories.
    let e = open_err(&DataConfig::new(dir.join("missing")));
    assert!(e.contains("missing") && e.contains("wgpt data download"), "{e}");
    let e = open_err(&DataConfig::new(dir.path()));
    assert!(e.contains("holds no .parquet, .jsonl or .txt files") && e.contains("HINT"), "{e}");

    // A corrupt shard beside a good one.
    synthetic_shards(dir.path(), 3);
    std::fs::write(dir.join("shard_00001.parquet"), b"PAR1 this is not parquet at all PAR1").unwrap();
    let before = snapshot(dir.path());
    let e = open_err(&DataConfig::new(dir.path()));
    assert!(
        e.contains("shard_00001.parquet") && e.contains("not a readable parquet file") && e.contains("HINT"),
        "{e}"
    );
    assert_eq!(snapshot(dir.path()), before, "a failed open must not touch the data");

    // A truncated shard (an interrupted copy).
    synthetic_shards(dir.path(), 3);
    let p = dir.join("shard_00002.parquet");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let e = open_err(&DataConfig::new(dir.path()));
    assert!(e.contains("shard_00002.parquet") && e.contains("corrupt or truncated"), "{e}");

    // A shard without a `text` column.
    let odir = Scratch::new("ds-bad-column");
    write_other_column(&odir.join("shard_00000.parquet"));
    write_other_column(&odir.join("shard_00001.parquet"));
    let e = open_err(&DataConfig::new(odir.path()));
    assert!(
        e.contains("shard_00000.parquet")
            && e.contains("no `text` column (columns: content)")
            && e.contains("--text-field"),
        "{e}"
    );
    let mut cfg = DataConfig::new(odir.path());
    cfg.text_field = "content".into();
    assert_eq!(Dataset::open(&cfg).unwrap().docs(Split::Val).next().unwrap().unwrap(), "doc in another column");

    // Non-UTF-8 text.
    let tdir = Scratch::new("ds-bad-txt");
    std::fs::write(tdir.join("latin1.txt"), b"caf\xe9 au lait\n\nsecond").unwrap();
    let mut cfg = DataConfig::new(tdir.join("latin1.txt"));
    cfg.val_fraction = Some(0.5);
    let e = open_err(&cfg);
    assert!(e.contains("latin1.txt") && e.contains("not UTF-8") && e.contains("byte 3") && e.contains("iconv"), "{e}");

    // A single file needs --val-fraction; a single document cannot be split; bad fractions.
    std::fs::write(tdir.join("latin1.txt"), "one document only").unwrap();
    let e = open_err(&DataConfig::new(tdir.join("latin1.txt")));
    assert!(e.contains("--val-fraction 0.1"), "{e}");
    let mut cfg = DataConfig::new(tdir.join("latin1.txt"));
    cfg.val_fraction = Some(0.1);
    assert!(open_err(&cfg).contains("--txt-delimiter"));
    cfg.val_fraction = Some(1.0);
    assert!(open_err(&cfg).contains("between 0 and 1"));

    // Mixed formats in one directory.
    std::fs::write(tdir.join("x.jsonl"), "{\"text\": \"a\"}\n").unwrap();
    let e = open_err(&DataConfig::new(tdir.path()));
    assert!(e.contains("--format"), "{e}");
    let mut cfg = DataConfig::new(tdir.path());
    cfg.format = Some(Format::Jsonl);
    cfg.val_fraction = Some(0.5);
    assert!(open_err(&cfg).contains("single document"));

    // A jsonl line without the field fails when read, naming file and line.
    std::fs::write(tdir.join("x.jsonl"), "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n").unwrap();
    let ds = Dataset::open(&cfg).unwrap();
    let e = ds.docs(Split::Val).find_map(|d| d.err()).unwrap().to_string();
    assert!(e.contains("x.jsonl") && e.contains("line 2 has no field `text`"), "{e}");
}

fn write_other_column(path: &Path) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::writer::SerializedFileWriter;
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type("message m { REQUIRED BYTE_ARRAY content (UTF8); }").unwrap(),
    );
    let mut w = SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, Default::default()).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>().write_batch(&[ByteArray::from("doc in another column")], None, None).unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Loader

#[test]
fn loader_matches_the_reference_and_invariants_on_generated_shards() {
    let dir = Scratch::new("ld-synth");
    let shards = synthetic_shards(dir.path(), 4);
    let all: Vec<String> = shards.iter().flatten().flatten().cloned().collect();
    let tok = tokenizer_for(&all, 400);
    let ds = Arc::new(Dataset::open(&DataConfig::new(dir.path())).unwrap());
    let bos = tok.bos_id().unwrap();
    // Small buffer and groups so the stream crosses row groups, files and epochs; two thread
    // counts must give the same batches.
    for (split, o) in [
        (Split::Train, opts(3, 64, 8, 12, 1)),
        (Split::Train, opts(3, 64, 8, 12, 3)),
        (Split::Val, opts(2, 200, 5, 30, 2)),
    ] {
        let want = reference_batches(&ds, &tok, split, &o, 25);
        let mut loader = Loader::new(ds.clone(), tok.clone(), split, o.clone(), None).unwrap();
        let got = batches(&mut loader, 25);
        let docs = all_docs_tokens(&ds, &tok, split);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            check_invariants(g, &docs, bos);
            assert!(g == w, "{split} {o:?}: batch {i} differs from the reference");
        }
        assert!(loader.state().epoch > 1, "the test should run past one epoch");
    }
}

#[test]
fn loader_on_fineweb_satisfies_the_spec() {
    let Some(root) = test_data("loader_on_fineweb_satisfies_the_spec") else {
        return;
    };
    let ds = Arc::new(Dataset::open(&DataConfig::new(root.join("fineweb-edu/nanochat_shards"))).unwrap());
    let tok = Arc::new(
        train(ds.docs(Split::Train), &TrainOptions { vocab_size: 4096, ..TrainOptions::default() }).unwrap().0,
    );
    let bos = tok.bos_id().unwrap();
    // nanochat's defaults (groups of 128, buffer 1000) at T = 512.
    for split in [Split::Train, Split::Val] {
        let o = LoaderOptions { prefetch: 2, ..LoaderOptions::new(4, 512) };
        let want = reference_batches(&ds, &tok, split, &o, 20);
        let mut loader = Loader::new(ds.clone(), tok.clone(), split, o, None).unwrap();
        let docs = all_docs_tokens(&ds, &tok, split);
        let mut whole_docs = 0;
        for (i, w) in want.iter().enumerate() {
            let g = loader.next_batch().unwrap();
            check_invariants(&g, &docs, bos);
            assert!(g == *w, "{split}: batch {i} differs from the reconstruction of spec §5.3");
            whole_docs += g.inputs.iter().filter(|&&x| x == bos as i32).count();
        }
        assert!(whole_docs > 20, "rows should pack several documents");
    }
}

#[test]
fn best_fit_ties_go_to_the_earliest_document() {
    // A byte-level tokenizer (no merges: tokens = bytes + BOS) and documents of only three
    // lengths with distinct contents, so "largest that fits" and "shortest" tie constantly and
    // the tie rule (earliest in the buffer) decides every row.
    let tok = tokenizer_for(&["ab".to_string()], 265);
    let dir = Scratch::new("ld-ties");
    let docs: Vec<String> = (0..90).map(|i| format!("{i:03}{}", "xyz".repeat([1, 4, 9][i % 3]))).collect();
    write_shards(dir.path(), &[docs[..60].chunks(20).map(<[String]>::to_vec).collect(), vec![docs[60..].to_vec()]]);
    let ds = Arc::new(Dataset::open(&DataConfig::new(dir.path())).unwrap());
    for o in [opts(4, 40, 4, 10, 2), opts(2, 25, 3, 7, 1)] {
        let want = reference_batches(&ds, &tok, Split::Train, &o, 30);
        let got = batches(&mut Loader::new(ds.clone(), tok.clone(), Split::Train, o.clone(), None).unwrap(), 30);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "{o:?}: batch {i} differs from the reference");
        }
    }
}

/// `state().epoch` counts the documents the batches used up, not the reader's position: with a
/// buffer larger than the split the reader is in epoch 2 before the first batch, but the
/// consumer reaches epoch 2 only once a whole split's worth of documents has gone into rows (each
/// starts with the only BOS it has, so the BOS tokens in the rows count them exactly).
#[test]
fn epoch_counts_consumed_documents_not_the_prefetch_position() {
    let tok = tokenizer_for(&["ab".to_string()], 265);
    let bos = tok.bos_id().unwrap() as i32;
    let dir = Scratch::new("ld-epoch");
    // 30 training documents (no empty ones: every document read is packed), 10 for validation.
    let docs: Vec<String> = (0..40).map(|i| format!("{i:02}{}", "abc".repeat(1 + i % 7))).collect();
    write_shards(dir.path(), &[docs[..30].chunks(10).map(<[String]>::to_vec).collect(), vec![docs[30..].to_vec()]]);
    let ds = Arc::new(Dataset::open(&DataConfig::new(dir.path())).unwrap());
    let per_epoch = ds.split_docs(Split::Train) as usize;
    assert_eq!(per_epoch, 30);
    let (b, t) = (2, 24);
    let mut loader = Loader::new(ds, tok, Split::Train, opts(b, t, 4, 50, 1), None).unwrap();
    let mut consumed = 0;
    let mut epochs = Vec::new();
    for i in 0..60 {
        let batch = loader.next_batch().unwrap();
        // A row is its inputs plus the last target (a document cropped to one token at the end
        // of a row has its BOS there).
        for r in 0..b {
            let row = &batch.inputs[r * t..(r + 1) * t];
            consumed += row.iter().filter(|&&x| x == bos).count() + usize::from(batch.targets[(r + 1) * t - 1] == bos);
        }
        let st = loader.state();
        assert_eq!(st.epoch as usize, 1 + consumed / per_epoch, "batch {i}: {consumed} documents used, state {st:?}");
        epochs.push(st.epoch);
    }
    assert_eq!(epochs[0], 1, "the first batch is in the first epoch");
    assert!(*epochs.last().unwrap() >= 3, "the test should consume a few epochs: {epochs:?}");
}

/// Run `n1 + n2` batches straight, and `n1` batches then a resume from the serialised state for
/// `n2` more: the last `n2` must be identical.
fn check_resume(
    ds: &Arc<Dataset>,
    tok: &Arc<Tokenizer>,
    split: Split,
    o: LoaderOptions,
    n1: usize,
    n2: usize,
) -> LoaderState {
    let mut straight = Loader::new(ds.clone(), tok.clone(), split, o.clone(), None).unwrap();
    let want = batches(&mut straight, n1 + n2);
    let mut first = Loader::new(ds.clone(), tok.clone(), split, o.clone(), None).unwrap();
    batches(&mut first, n1);
    let json = serde_json::to_string(&first.state()).unwrap();
    drop(first);
    let state: LoaderState = serde_json::from_str(&json).unwrap();
    assert!(json.len() < 20_000, "the state should stay small: {} bytes", json.len());
    let mut resumed = Loader::new(ds.clone(), tok.clone(), split, o, Some(state.clone())).unwrap();
    let got = batches(&mut resumed, n2);
    for (i, (g, w)) in got.iter().zip(&want[n1..]).enumerate() {
        assert!(g == w, "{split}: batch {} after resuming differs from the uninterrupted run", n1 + i);
    }
    state
}

#[test]
fn resumed_loader_continues_with_the_same_batches() {
    let dir = Scratch::new("ld-resume");
    let shards = synthetic_shards(dir.path(), 5);
    let all: Vec<String> = shards.iter().flatten().flatten().cloned().collect();
    let tok = tokenizer_for(&all, 400);
    let ds = Arc::new(Dataset::open(&DataConfig::new(dir.path())).unwrap());
    // Mid-file, mid-epoch and after wrapping into later epochs.
    for n1 in [1, 4, 11, 30] {
        let st = check_resume(&ds, &tok, Split::Train, opts(2, 48, 6, 15, 2), n1, 6);
        assert!(!st.buffer.is_empty());
    }
    let st = check_resume(&ds, &tok, Split::Val, opts(1, 300, 4, 9, 1), 30, 5);
    assert!(st.epoch >= 2, "{st:?}");

    // A state belongs to one split, dataset and tokenizer.
    let mut l = Loader::new(ds.clone(), tok.clone(), Split::Train, opts(2, 48, 6, 15, 1), None).unwrap();
    l.next_batch().unwrap();
    let state = l.state();
    let e = Loader::new(ds.clone(), tok.clone(), Split::Val, opts(2, 48, 6, 15, 1), Some(state.clone()))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("train split"), "{e}");
    let other_tok = tokenizer_for(&all, 410);
    let e = Loader::new(ds.clone(), other_tok, Split::Train, opts(2, 48, 6, 15, 1), Some(state.clone()))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("different tokenizer") && e.contains("HINT"), "{e}");
    write_text_parquet(&dir.join("shard_00003.parquet"), &[vec!["new".into()]]).unwrap();
    let ds2 = Arc::new(Dataset::open(&DataConfig::new(dir.path())).unwrap());
    let e = Loader::new(ds2, tok.clone(), Split::Train, opts(2, 48, 6, 15, 1), Some(state)).err().unwrap().to_string();
    assert!(e.contains("different dataset layout"), "{e}");
}

#[test]
fn resume_on_fineweb() {
    let Some(root) = test_data("resume_on_fineweb") else {
        return;
    };
    let ds = Arc::new(Dataset::open(&DataConfig::new(root.join("fineweb-edu/nanochat_shards"))).unwrap());
    let tok = Arc::new(
        train(ds.docs(Split::Train), &TrainOptions { vocab_size: 4096, ..TrainOptions::default() }).unwrap().0,
    );
    let o = LoaderOptions { prefetch: 2, ..LoaderOptions::new(4, 512) };
    let st = check_resume(&ds, &tok, Split::Train, o, 9, 6);
    println!("loader state after 9 batches: {}", serde_json::to_string(&st).unwrap());
}

#[test]
fn loader_reads_jsonl_and_txt_and_reports_all_empty_splits() {
    let dir = Scratch::new("ld-text");
    let docs = synthetic_docs(6, 80);
    let tok = tokenizer_for(&docs, 350);
    let jsonl: String = docs.iter().map(|d| serde_json::json!({ "text": d }).to_string() + "\n").collect();
    std::fs::write(dir.join("c.jsonl"), jsonl).unwrap();
    std::fs::write(dir.join("c.txt"), docs.join("\u{1e}")).unwrap();
    let mut j = DataConfig::new(dir.join("c.jsonl"));
    j.val_fraction = Some(0.25);
    let mut t = DataConfig::new(dir.join("c.txt"));
    t.val_fraction = Some(0.25);
    t.txt_delimiter = Some("\u{1e}".into());
    let (dj, dt) = (Arc::new(Dataset::open(&j).unwrap()), Arc::new(Dataset::open(&t).unwrap()));
    let o = opts(2, 96, 16, 40, 2);
    let a = batches(&mut Loader::new(dj.clone(), tok.clone(), Split::Train, o.clone(), None).unwrap(), 5);
    let b = batches(&mut Loader::new(dt.clone(), tok.clone(), Split::Train, o.clone(), None).unwrap(), 5);
    assert!(a == b, "the same documents as jsonl and txt must load identically");
    assert!(a == reference_batches(&dj, &tok, Split::Train, &o, 5));

    // Every document empty: an error, not a hang.
    std::fs::write(dir.join("e.jsonl"), "{\"text\": \"\"}\n".repeat(10)).unwrap();
    let mut e = DataConfig::new(dir.join("e.jsonl"));
    e.val_fraction = Some(0.5);
    let de = Arc::new(Dataset::open(&e).unwrap());
    let err = Loader::new(de, tok.clone(), Split::Train, o, None).unwrap().next_batch().unwrap_err().to_string();
    assert!(err.contains("every document of this split is empty"), "{err}");
}
