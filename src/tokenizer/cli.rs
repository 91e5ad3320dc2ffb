//! `wgpt tokenizer train|encode|decode|info`.

use super::{load_token_bytes, train, Tokenizer, TrainOptions, TOKENIZER_FILE, TOKEN_BYTES_FILE};
use crate::data::cli::DataArgs;
use crate::data::{Dataset, Split};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum TokenizerCommand {
    /// Train nanochat's byte-level BPE on the train split; writes tokenizer.json and
    /// token_bytes.json and reports bytes per token on the validation split.
    Train(TrainArgs),
    /// Print the token ids of some text (from --text, --file or stdin).
    Encode(EncodeArgs),
    /// Print the text of token ids (arguments or stdin; commas or spaces between ids).
    Decode(DecodeArgs),
    /// Describe a tokenizer; optionally measure bytes per token on a dataset's validation split.
    Info(InfoArgs),
}

fn default_tokenizer_dir() -> PathBuf {
    crate::data::base_dir().join("tokenizer")
}

/// Accept `2e9`, `2_000_000_000` or `2000000000`.
fn parse_count(s: &str) -> Result<u64, String> {
    let clean = s.replace('_', "");
    if let Ok(v) = clean.parse::<u64>() {
        return Ok(v);
    }
    match clean.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 => Ok(v as u64),
        _ => Err(format!("`{s}` is not a whole number (e.g. 2e9 or 2000000000)")),
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Total vocabulary including the 9 special tokens.
    #[arg(long, default_value_t = super::DEFAULT_VOCAB_SIZE)]
    pub vocab_size: usize,
    /// Stop after this many characters (after cropping).
    #[arg(long, default_value = "2e9", value_parser = parse_count)]
    pub max_chars: u64,
    /// Crop each document to its first this many characters.
    #[arg(long, default_value_t = super::DEFAULT_DOC_CAP)]
    pub doc_cap: usize,
    /// Output directory (default: <base>/tokenizer).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing tokenizer in --out.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct TokenizerArg {
    /// A tokenizer.json, or a directory holding one (default: <base>/tokenizer).
    #[arg(long, short = 't', env = "WGPT_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
}

impl TokenizerArg {
    fn load(&self) -> anyhow::Result<Tokenizer> {
        let p = self.tokenizer.clone().unwrap_or_else(default_tokenizer_dir);
        Ok(Tokenizer::from_file(&p)?)
    }
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub tokenizer: TokenizerArg,
    /// Text to encode.
    #[arg(long, conflicts_with = "file")]
    pub text: Option<String>,
    /// File to encode.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Prepend the BOS token, as the loader does for every document.
    #[arg(long)]
    pub bos: bool,
}

#[derive(Args, Debug)]
pub struct DecodeArgs {
    #[command(flatten)]
    pub tokenizer: TokenizerArg,
    /// Token ids.
    pub ids: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub tokenizer: TokenizerArg,
    /// Measure bytes per token on the validation split of the dataset given by --data.
    #[arg(long)]
    pub eval: bool,
    #[command(flatten)]
    pub data: DataArgs,
    /// Fail unless the tokenizer has exactly this many ids (the model config's vocab_size).
    #[arg(long)]
    pub expect_vocab_size: Option<usize>,
    /// (Re)write token_bytes.json next to the tokenizer.json.
    #[arg(long)]
    pub write_token_bytes: bool,
}

/// Bytes per token over a split: (total UTF-8 bytes, total tokens), no BOS counted. Streams
/// the split a chunk at a time, so a 250M-character validation shard is never held whole.
pub fn bytes_per_token(tok: &Tokenizer, ds: &Dataset, split: Split) -> crate::Result<(u64, u64)> {
    let (mut bytes, mut tokens) = (0u64, 0u64);
    let mut reader = crate::data::DocReader::default();
    for unit in ds.units(split) {
        let docs = ds.read_unit(&mut reader, unit)?;
        bytes += docs.iter().map(|d| d.len() as u64).sum::<u64>();
        tokens += tok.encode_batch(&docs)?.iter().map(|t| t.len() as u64).sum::<u64>();
    }
    Ok((bytes, tokens))
}

pub fn run(cmd: TokenizerCommand) -> anyhow::Result<i32> {
    match cmd {
        TokenizerCommand::Train(a) => train_cmd(a),
        TokenizerCommand::Encode(a) => {
            let tok = a.tokenizer.load()?;
            let text = match (&a.text, &a.file) {
                (Some(t), _) => t.clone(),
                (None, Some(f)) => std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
                (None, None) => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
                    s
                }
            };
            let mut ids = if a.bos { vec![tok.bos_id()?] } else { Vec::new() };
            ids.extend(tok.encode(&text)?);
            println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
            Ok(0)
        }
        TokenizerCommand::Decode(a) => {
            let tok = a.tokenizer.load()?;
            let mut raw = a.ids.join(" ");
            if a.ids.is_empty() {
                std::io::stdin().read_to_string(&mut raw).context("reading stdin")?;
            }
            let ids = raw
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<u32>().with_context(|| format!("`{s}` is not a token id")))
                .collect::<anyhow::Result<Vec<u32>>>()?;
            print!("{}", tok.decode(&ids)?);
            Ok(0)
        }
        TokenizerCommand::Info(a) => info_cmd(a),
    }
}

fn describe(tok: &Tokenizer) -> String {
    let tb = tok.token_bytes();
    let nonzero: Vec<u32> = tb.iter().copied().filter(|&b| b > 0).collect();
    let mean = nonzero.iter().map(|&b| b as f64).sum::<f64>() / nonzero.len().max(1) as f64;
    let mut s = format!("tokenizer {}\n  engine: {}\n  vocab size: {}", tok.origin(), tok.engine(), tok.vocab_size());
    if let Some(m) = tok.n_merges() {
        s += &format!("\n  merges: {m}");
    }
    if let Some(p) = tok.pattern() {
        s += &format!("\n  split pattern: {p}");
    }
    let sp: Vec<String> = tok.specials().iter().map(|(n, id)| format!("{n}={id}")).collect();
    s += &format!("\n  special tokens: {}", if sp.is_empty() { "none".into() } else { sp.join(" ") });
    s += &format!(
        "\n  token bytes: min {} max {} mean {:.2} (over {} non-special tokens)",
        nonzero.iter().min().unwrap_or(&0),
        nonzero.iter().max().unwrap_or(&0),
        mean,
        nonzero.len()
    );
    let dups = tok.duplicate_tokens();
    if dups > 0 {
        s += &format!("\n  WARNING: {dups} token(s) spell the same bytes as an earlier token");
    }
    s
}

fn train_cmd(a: TrainArgs) -> anyhow::Result<i32> {
    // Every check that can fail happens before the (long) training run, and nothing is written
    // until the tokenizer is complete.
    let out = a.out.clone().unwrap_or_else(default_tokenizer_dir);
    if out.is_file() {
        bail!(
            "{}: --out must be a directory, and this is a file\n  HINT: pass a directory, e.g. --out tokenizer",
            out.display()
        );
    }
    let existing = out.join(TOKENIZER_FILE);
    if existing.exists() && !a.force {
        bail!(
            "{}: a tokenizer is already there; training would replace it\n  HINT: pass --force to replace it, or choose another --out",
            existing.display()
        );
    }
    let opts = TrainOptions { vocab_size: a.vocab_size, doc_cap: a.doc_cap, max_chars: a.max_chars };
    if opts.vocab_size < 256 + super::SPECIAL_TOKENS.len() {
        bail!("--vocab-size {} is too small: 256 byte tokens + 9 specials need at least 265", opts.vocab_size);
    }
    let ds = a.data.open()?;
    println!("training a {}-token tokenizer on the train split of {}", opts.vocab_size, ds.config().path.display());
    println!("  max chars {}, doc cap {} chars", opts.max_chars, opts.doc_cap);
    let t0 = Instant::now();
    let (tok, summary) = train(ds.docs(Split::Train), &opts)?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "trained in {secs:.2} s ({:.2} s splitting/counting {} docs, {} chars, {} distinct chunks; {:.2} s for {} merges)",
        summary.count_seconds, summary.docs, summary.chars, summary.distinct_chunks, summary.merge_seconds, summary.merges
    );
    if summary.empty_docs > 0 {
        println!("  skipped {} empty document(s)", summary.empty_docs);
    }
    // Round-trip check on the first documents before anything is written (all of them would
    // cost as much as the training run on a 2e9-character budget).
    let (tok_path, bytes_path) = {
        let docs: Vec<String> = ds.docs(Split::Train).take(10_000).collect::<crate::Result<_>>()?;
        let encoded = tok.encode_batch(&docs)?;
        for (d, ids) in docs.iter().zip(&encoded) {
            if tok.decode_bytes(ids)? != d.as_bytes() {
                bail!("internal error: a training document does not round-trip through the new tokenizer; nothing was written");
            }
        }
        tok.save(&out)?
    };
    super::save_trained_on(&out, &ds.config().path, ds.fingerprint(), &summary)?;
    println!("wrote {} and {}", tok_path.display(), bytes_path.display());
    // Read back what was written: the file on disk is what later commands use.
    let tok = Tokenizer::from_file(&tok_path)?;
    println!("{}", describe(&tok));
    let (bytes, tokens) = bytes_per_token(&tok, &ds, Split::Val)?;
    println!(
        "validation split: {bytes} bytes -> {tokens} tokens = {:.3} bytes/token",
        bytes as f64 / tokens.max(1) as f64
    );
    Ok(0)
}

fn info_cmd(a: InfoArgs) -> anyhow::Result<i32> {
    let tok = a.tokenizer.load()?;
    println!("{}", describe(&tok));
    let dir = Path::new(tok.origin()).parent().map(Path::to_path_buf).unwrap_or_default();
    let tb_path = dir.join(TOKEN_BYTES_FILE);
    if a.write_token_bytes {
        let p = tok.save_token_bytes(&dir)?;
        println!("wrote {}", p.display());
    } else if tb_path.exists() {
        load_token_bytes(&tb_path, &tok)?;
        println!("  {} matches", tb_path.display());
    }
    if let Some(v) = a.expect_vocab_size {
        tok.check_vocab_size(v)?;
        println!("  vocab size matches the expected {v}");
    }
    if a.eval {
        let ds = a.data.open()?;
        let (bytes, tokens) = bytes_per_token(&tok, &ds, Split::Val)?;
        println!(
            "validation split of {}: {bytes} bytes -> {tokens} tokens = {:.3} bytes/token",
            ds.config().path.display(),
            bytes as f64 / tokens.max(1) as f64
        );
    }
    Ok(0)
}
