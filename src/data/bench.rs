//! `wgpt bench data` (`cargo xtask bench data`): tokenizer training time, encoding throughput of
//! our encoder beside the `tokenizers` crate's BPE on the same text and the same merges (one
//! thread and all cores, as a ratio), loader throughput, and bytes per token on the validation
//! split. Inputs are the third-party samples under `../shared/data` (FineWeb-Edu shards and
//! tinyshakespeare).
//!
//! Each throughput is the median of at least 3 timed passes after one warm-up pass, repeated
//! until `--seconds` have passed. Every pass starts with a cold chunk cache on our side and a
//! cleared BPE cache on the `tokenizers` side, so neither is timed on a memorised corpus.

use super::dataset::{DataConfig, Dataset, Split};
use super::loader::{Loader, LoaderOptions};
use crate::error::{Error, Result};
use crate::tokenizer::{train, Tokenizer, TrainOptions};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The seed run's training throughput on an RTX 4070; the loader must beat it with room.
const SEED_TOKENS_PER_SEC: f64 = 55_700.0;

#[derive(Args, Debug, Clone)]
pub struct DataBenchArgs {
    /// Folder with fineweb-edu/nanochat_shards, text/tinyshakespeare.txt and tokenizers/gpt2_tokenizer.json.
    #[arg(long, env = "WGPT_TEST_DATA", default_value = "../shared/data")]
    pub data_root: PathBuf,
    /// Minimum seconds per throughput measurement.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Vocabulary size of the tokenizers trained for the benchmark.
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
    /// Loader batch: B rows of T tokens (the seed run used 8 x 2048).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 2048)]
    pub seq_len: usize,
    /// An extra, larger corpus (directory or file; e.g. a dictionary dump) for a full-size
    /// tokenizer: trained at --extra-vocab-size and measured like the others.
    #[arg(long)]
    pub extra_data: Option<PathBuf>,
    /// `.txt` document delimiter of --extra-data (escapes as in --txt-delimiter).
    #[arg(long)]
    pub extra_txt_delimiter: Option<String>,
    #[arg(long, default_value_t = crate::tokenizer::DEFAULT_VOCAB_SIZE)]
    pub extra_vocab_size: usize,
}

struct Corpus {
    name: String,
    dataset: Arc<Dataset>,
    /// Vocabulary of the tokenizer trained on this corpus's train split.
    vocab: usize,
    /// Documents for encoding throughput: both splits of the small samples, the validation
    /// split of a large extra corpus (so a pass stays short).
    docs: Vec<String>,
}

fn corpora(a: &DataBenchArgs) -> Result<Vec<Corpus>> {
    let root = &a.data_root;
    let fineweb = DataConfig::new(root.join("fineweb-edu/nanochat_shards"));
    let mut shakespeare = DataConfig::new(root.join("text/tinyshakespeare.txt"));
    // Speeches and scenes are separated by blank lines: those are the documents.
    shakespeare.txt_delimiter = Some("\n\n".into());
    shakespeare.val_fraction = Some(0.1);
    let mut list = vec![
        ("fineweb-edu sample".to_string(), fineweb, a.vocab_size, true),
        ("tinyshakespeare".to_string(), shakespeare, a.vocab_size, true),
    ];
    if let Some(p) = &a.extra_data {
        let mut cfg = DataConfig::new(p);
        cfg.txt_delimiter = a.extra_txt_delimiter.as_deref().map(super::cli::unescape);
        let name = p.file_name().map_or("extra".into(), |n| n.to_string_lossy().into_owned());
        list.push((name, cfg, a.extra_vocab_size, false));
    }
    let mut out = Vec::new();
    for (name, cfg, vocab, both) in list {
        let ds = Dataset::open(&cfg)?;
        let mut docs: Vec<String> = if both { ds.docs(Split::Train).collect::<Result<_>>()? } else { Vec::new() };
        docs.extend(ds.docs(Split::Val).collect::<Result<Vec<_>>>()?);
        out.push(Corpus { name, dataset: Arc::new(ds), vocab, docs });
    }
    Ok(out)
}

/// Median rate (`work` units per second) of `f` after a warm-up, over >= 3 passes and >= `secs`.
fn rate(secs: f64, work: f64, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut rates = Vec::new();
    let start = Instant::now();
    while rates.len() < 3 || start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f()?;
        rates.push(work / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

fn hf_clear(hf: &tokenizers::Tokenizer) {
    if let tokenizers::ModelWrapper::BPE(bpe) = hf.get_model() {
        bpe.clear_cache();
    }
}

/// Our encoder and the tokenizers crate on the same documents: tokens/s on one thread and on all
/// cores, and whether the ids agree.
fn encode_rows(tok: &Tokenizer, label: &str, corpus: &Corpus, secs: f64, out: &mut dyn FnMut(&str)) -> Result<f64> {
    let docs = &corpus.docs;
    let bytes: usize = docs.iter().map(String::len).sum();
    let ours = tok.encode_batch(docs)?;
    let n_tokens: usize = ours.iter().map(Vec::len).sum();
    let mut hf: tokenizers::Tokenizer = tok
        .to_json()
        .parse()
        .map_err(|e| Error::File { path: label.into(), message: format!("tokenizers crate: {e}") })?;
    hf.with_truncation(None).map_err(|e| Error::File { path: label.into(), message: format!("{e}") })?;
    hf.with_padding(None);
    hf.set_encode_special_tokens(true);
    let hf_err = |e: tokenizers::Error| Error::File { path: label.into(), message: format!("tokenizers crate: {e}") };
    let theirs: Vec<Vec<u32>> = hf
        .encode_batch_fast(docs.iter().map(String::as_str).collect::<Vec<_>>(), false)
        .map_err(hf_err)?
        .iter()
        .map(|e| e.get_ids().to_vec())
        .collect();
    let same = ours == theirs;

    let n = n_tokens as f64;
    let ours_1 = rate(secs, n, || {
        let mut enc = tok.encoder();
        let mut buf = Vec::new();
        for d in docs {
            buf.clear();
            enc.encode_into(d, &mut buf)?;
        }
        Ok(())
    })?;
    let ours_all = rate(secs, n, || tok.encode_batch(docs).map(|_| ()))?;
    let hf_1 = rate(secs, n, || {
        hf_clear(&hf);
        for d in docs {
            hf.encode_fast(d.as_str(), false).map_err(hf_err)?;
        }
        Ok(())
    })?;
    let hf_all = rate(secs, n, || {
        hf_clear(&hf);
        hf.encode_batch_fast(docs.iter().map(String::as_str).collect::<Vec<_>>(), false).map(|_| ()).map_err(hf_err)
    })?;
    out(&format!(
        "{:<20} {:<26} {:>9} {:>7.3} {:>12.0} {:>12.0} {:>12.0} {:>12.0} {:>6.2}x {:>6.2}x  {}",
        corpus.name,
        label,
        n_tokens,
        bytes as f64 / n,
        ours_1,
        ours_all,
        hf_1,
        hf_all,
        ours_1 / hf_1,
        ours_all / hf_all,
        if same { "identical" } else { "DIFFER" }
    ));
    if !same {
        return Err(Error::File {
            path: label.into(),
            message: "our ids differ from the tokenizers crate's on the same tokenizer.json".into(),
        });
    }
    Ok(ours_all)
}

/// Loader throughput: time to the first batch, then tokens/s delivered with nobody waiting, then
/// how long a consumer eating at the seed run's 55.7k tok/s waits in `next_batch`.
fn loader_row(corpus: &Corpus, tok: &Arc<Tokenizer>, a: &DataBenchArgs, out: &mut dyn FnMut(&str)) -> Result<()> {
    let opts = LoaderOptions::new(a.batch_size, a.seq_len);
    let per_batch = (a.batch_size * a.seq_len) as f64;
    let t0 = Instant::now();
    let mut loader = Loader::new(corpus.dataset.clone(), tok.clone(), Split::Train, opts.clone(), None)?;
    loader.next_batch()?;
    let first = t0.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut batches = 0usize;
    while start.elapsed().as_secs_f64() < a.seconds || batches < 3 {
        loader.next_batch()?;
        batches += 1;
    }
    let tps = batches as f64 * per_batch / start.elapsed().as_secs_f64();
    drop(loader);

    // A consumer at the GPU's pace: after a warm-up batch, the time spent blocked in next_batch.
    let mut loader = Loader::new(corpus.dataset.clone(), tok.clone(), Split::Train, opts.clone(), None)?;
    loader.next_batch()?;
    let step = Duration::from_secs_f64(per_batch / SEED_TOKENS_PER_SEC);
    let n = ((a.seconds / step.as_secs_f64()).ceil() as usize).clamp(3, 50);
    let (mut waited, mut worst) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        std::thread::sleep(step);
        let t = Instant::now();
        loader.next_batch()?;
        waited += t.elapsed();
        worst = worst.max(t.elapsed());
    }
    out(&format!(
        "{:<20} B={} T={} threads={}: first batch {:.3} s, {:.0} tokens/s ({:.1}x the seed run's 55.7k); at 55.7k tok/s the \
         consumer waited {:.2} ms in all over {n} batches (worst {:.2} ms)",
        corpus.name,
        a.batch_size,
        a.seq_len,
        opts.threads,
        first,
        tps,
        tps / SEED_TOKENS_PER_SEC,
        waited.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    ));
    Ok(())
}

pub fn run(a: &DataBenchArgs, out: &mut dyn FnMut(&str)) -> Result<()> {
    let root = &a.data_root;
    if !root.join("fineweb-edu/nanochat_shards").is_dir() {
        return Err(Error::File {
            path: root.clone(),
            message: "does not hold fineweb-edu/nanochat_shards\n  HINT: pass --data-root (or set WGPT_TEST_DATA) to the shared data folder, e.g. ../shared/data".into(),
        });
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    out(&format!("data benchmarks on {cores} core(s); every throughput is a median over >= {:.1} s\n", a.seconds));
    let corpora = corpora(a)?;

    out("tokenizer training (nanochat rules, train split):");
    let mut trained = Vec::new();
    for c in &corpora {
        let t0 = Instant::now();
        let (tok, s) =
            train(c.dataset.docs(Split::Train), &TrainOptions { vocab_size: c.vocab, ..TrainOptions::default() })?;
        out(&format!(
            "  {:<20} vocab {:>5}: {:>8} docs {:>9} chars: {:.2} s total ({:.2} s split+count = {:.1} M chars/s, {:.2} s for {} merges)",
            c.name,
            c.vocab,
            s.docs,
            s.chars,
            t0.elapsed().as_secs_f64(),
            s.count_seconds,
            s.chars as f64 / s.count_seconds / 1e6,
            s.merge_seconds,
            s.merges
        ));
        trained.push(Arc::new(tok));
    }

    out("\nencoding throughput, tokens/s (ours vs the tokenizers crate's BPE on the same tokenizer.json; ratio = ours / theirs):");
    out(&format!(
        "{:<20} {:<26} {:>9} {:>7} {:>12} {:>12} {:>12} {:>12} {:>7} {:>7}  {}",
        "corpus", "tokenizer", "tokens", "B/tok", "ours 1 thr", "ours all", "hf 1 thr", "hf all", "1 thr", "all", "ids"
    ));
    let gpt2 = Arc::new(Tokenizer::from_file(&root.join("tokenizers/gpt2_tokenizer.json"))?);
    let mut worst_all = f64::INFINITY;
    for (c, own) in corpora.iter().zip(&trained) {
        for (label, tok) in [(format!("own-trained {}", c.vocab), own), ("gpt2 (50257)".to_string(), &gpt2)] {
            worst_all = worst_all.min(encode_rows(tok, &label, c, a.seconds, out)?);
        }
    }
    let target = 4.0 * SEED_TOKENS_PER_SEC;
    out(&format!(
        "slowest all-core encoding: {worst_all:.0} tokens/s = {:.1}x the seed run's 55.7k tok/s (target >= 4x = {target:.0}): {}",
        worst_all / SEED_TOKENS_PER_SEC,
        if worst_all >= target { "OK" } else { "BELOW TARGET" }
    ));

    out("\nloader (BOS-aligned best-fit, train split, each corpus with its own tokenizer):");
    for (c, own) in corpora.iter().zip(&trained) {
        loader_row(c, own, a, out)?;
    }

    out("\nbytes per token on the validation split:");
    for (c, own) in corpora.iter().zip(&trained) {
        for (label, tok) in [(format!("own-trained {}", c.vocab), own), ("gpt2".to_string(), &gpt2)] {
            let (bytes, tokens) = crate::tokenizer::cli::bytes_per_token(tok, &c.dataset, Split::Val)?;
            out(&format!(
                "  {:<20} {:<22} {bytes:>9} bytes / {tokens:>8} tokens = {:.3}",
                c.name,
                label,
                bytes as f64 / tokens as f64
            ));
        }
    }
    Ok(())
}
