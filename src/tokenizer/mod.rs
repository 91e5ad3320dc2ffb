//! The tokenizer: nanochat's byte-level BPE, trained here and stored as a Hugging Face
//! `tokenizer.json`, plus loading of any other `tokenizer.json`.
//!
//! Contract (nanochat `tokenizer.py` / `rustbpe`, spec §5.2):
//! - Base tokens 0..=255 are the raw byte values; merge `i` gets id `256 + i`, in training order.
//! - The split pattern is [`NANOCHAT_PATTERN`] (GPT-4's with `\p{N}{1,2}`).
//! - The nine [`SPECIAL_TOKENS`] take the top ids in that order: for vocab V, `<|bos|>` is V - 9
//!   and `<|output_end|>` is V - 1.
//! - [`Tokenizer::encode`] is nanochat's `encode_ordinary`: text that looks like a special token is
//!   encoded as ordinary text, so a document can never inject a BOS.
//! - [`Tokenizer::token_bytes`] is the bits-per-byte table: the raw byte length of every token, 0
//!   for specials (spec §6).
//!
//! Loading: byte-level BPE files (ours, GPT-2's) run on the native encoder; any other
//! `tokenizer.json` (WordPiece, Unigram, normalizers, ...) runs through the `tokenizers` crate with
//! special-token matching switched off and truncation/padding removed, so it too encodes whole
//! documents as plain text.
//!
//! ```no_run
//! # fn main() -> wgpt::Result<()> {
//! use wgpt::tokenizer::Tokenizer;
//! let tok = Tokenizer::from_file("tokenizer/tokenizer.json".as_ref())?;
//! let bos = tok.bos_id()?;
//! let ids = tok.encode("Hello world")?;
//! assert_eq!(tok.decode(&ids)?, "Hello world");
//! # let _ = bos; Ok(()) }
//! ```

pub mod bpe;
pub mod cli;
pub mod hf_json;
pub mod train;

pub use bpe::{GPT2_PATTERN, NANOCHAT_PATTERN};

use crate::error::{Error, Result};
use crate::util::{fnv1a, write_atomic};
use bpe::BpeModel;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// nanochat's special tokens, in id order, at the top of the vocabulary.
pub const SPECIAL_TOKENS: [&str; 9] = [
    "<|bos|>",        // every document starts with it
    "<|user_start|>", // chat rendering (SFT) from here on
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>", // the assistant calls the calculator tool
    "<|python_end|>",
    "<|output_start|>", // tool output fed back
    "<|output_end|>",
];

/// Default vocabulary: 256 bytes + 32,503 merges + 9 specials.
pub const DEFAULT_VOCAB_SIZE: usize = 32768;
/// Training crops each document to its first this many characters.
pub const DEFAULT_DOC_CAP: usize = 10_000;
/// Training stops after this many (cropped) characters.
pub const DEFAULT_MAX_CHARS: u64 = 2_000_000_000;

/// File names inside a tokenizer directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKEN_BYTES_FILE: &str = "token_bytes.json";

enum Inner {
    Native(Box<BpeModel>),
    Hf(Box<tokenizers::Tokenizer>),
}

/// A loaded or freshly trained tokenizer. Cheap to share across threads (`&Tokenizer` is `Sync`).
pub struct Tokenizer {
    inner: Inner,
    /// (text, id) of every special token, in id order.
    specials: Vec<(String, u32)>,
    vocab_size: usize,
    token_bytes: Vec<u32>,
    /// Where it came from, for error messages: a path or "trained".
    origin: String,
    /// The JSON text the tokenizer was loaded from (or will be saved as).
    json: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({}, vocab {}, {})", self.origin, self.vocab_size, self.engine())
    }
}

impl Tokenizer {
    /// Build nanochat's layout from trained merges: bytes, then merges, then [`SPECIAL_TOKENS`].
    pub fn from_merges(pattern: &str, merges: &[(u32, u32)]) -> Result<Self> {
        let mut tokens: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
        let mut triples = Vec::with_capacity(merges.len());
        for (i, &(a, b)) in merges.iter().enumerate() {
            let (ta, tb) = (tokens.get(a as usize).cloned().flatten(), tokens.get(b as usize).cloned().flatten());
            let (Some(mut t), Some(tb)) = (ta, tb) else {
                return Err(invalid(
                    "trained merges",
                    format!("merge #{i} ({a}, {b}) refers to an id not yet created"),
                ));
            };
            t.extend_from_slice(&tb);
            tokens.push(Some(t));
            triples.push((a, b, 256 + i as u32));
        }
        let first_special = tokens.len() as u32;
        let specials: Vec<(String, u32)> =
            SPECIAL_TOKENS.iter().enumerate().map(|(i, s)| (s.to_string(), first_special + i as u32)).collect();
        tokens.extend(std::iter::repeat_n(None, specials.len()));
        let model = BpeModel::new(pattern, &tokens, &triples).map_err(|m| invalid("trained merges", m))?;
        let json = hf_json::write_json(&model, &specials);
        Ok(Self::native(model, specials, tokens.len(), "trained".into(), json))
    }

    fn native(model: BpeModel, specials: Vec<(String, u32)>, vocab_size: usize, origin: String, json: String) -> Self {
        let mut token_bytes = vec![0u32; vocab_size];
        for (id, tb) in token_bytes.iter_mut().enumerate() {
            *tb = model.token(id as u32).map_or(0, |b| b.len() as u32);
        }
        for (_, id) in &specials {
            token_bytes[*id as usize] = 0;
        }
        Tokenizer { inner: Inner::Native(Box::new(model)), specials, vocab_size, token_bytes, origin, json }
    }

    /// Load a `tokenizer.json`, or a directory holding one.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join(TOKENIZER_FILE) } else { path.to_path_buf() };
        let json = std::fs::read_to_string(&file).map_err(|e| Error::File {
            path: file.clone(),
            message: format!(
                "cannot read the tokenizer: {e}\n  HINT: train one with `wgpt tokenizer train --data <dir> --out <dir>`, \
                 or pass a Hugging Face tokenizer.json"
            ),
        })?;
        Self::from_json(&json, &file.display().to_string())
    }

    /// Parse `tokenizer.json` text; `origin` names it in errors.
    pub fn from_json(json: &str, origin: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            invalid(origin, format!("is not valid JSON ({e})\n  HINT: a tokenizer.json from `wgpt tokenizer train` or the Hugging Face hub is expected"))
        })?;
        match hf_json::parse_native(&value) {
            Ok(p) => Ok(Self::native(p.model, p.specials, p.vocab_size, origin.to_string(), json.to_string())),
            Err(hf_json::NotNative(why)) => {
                log::info!("{origin}: using the tokenizers crate to encode ({why})");
                Self::from_hf(json, origin)
            }
        }
    }

    fn from_hf(json: &str, origin: &str) -> Result<Self> {
        let mut tk: tokenizers::Tokenizer = json.parse().map_err(|e| {
            invalid(
                origin,
                format!(
                    "the tokenizers crate cannot load it: {e}\n  HINT: check the file is a complete tokenizer.json"
                ),
            )
        })?;
        // Whole documents, as plain text: no truncation (GPT-2's file truncates at 50 tokens),
        // no padding, and special-token text inside a document stays text.
        tk.with_truncation(None).map_err(|e| invalid(origin, format!("cannot disable truncation: {e}")))?;
        tk.with_padding(None);
        tk.set_encode_special_tokens(true);
        let mut specials: Vec<(String, u32)> = tk
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| (t.content, id))
            .collect();
        specials.sort_by_key(|s| s.1);
        let vocab_size = tk.get_vocab_size(true).max(specials.iter().map(|s| s.1 as usize + 1).max().unwrap_or(0));
        // Byte lengths from decoding each token alone: exact for whole-character tokens; a token
        // that is part of a character decodes to U+FFFD and counts 3 bytes (nanochat's report era
        // did the same).
        let mut token_bytes: Vec<u32> = (0..vocab_size as u32)
            .into_par_iter()
            .map(|id| tk.decode(&[id], false).map_or(0, |s| s.len() as u32))
            .collect();
        for (_, id) in &specials {
            token_bytes[*id as usize] = 0;
        }
        Ok(Tokenizer {
            inner: Inner::Hf(Box::new(tk)),
            specials,
            vocab_size,
            token_bytes,
            origin: origin.to_string(),
            json: json.to_string(),
        })
    }

    /// "native byte-level BPE" or "tokenizers crate".
    pub fn engine(&self) -> &'static str {
        match self.inner {
            Inner::Native(_) => "native byte-level BPE",
            Inner::Hf(_) => "tokenizers crate",
        }
    }

    pub fn is_native(&self) -> bool {
        matches!(self.inner, Inner::Native(_))
    }

    /// Number of token ids, specials included (the model's `vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The split pattern of a native tokenizer.
    pub fn pattern(&self) -> Option<&str> {
        match &self.inner {
            Inner::Native(m) => Some(m.pattern()),
            Inner::Hf(_) => None,
        }
    }

    /// Number of merges of a native tokenizer.
    pub fn n_merges(&self) -> Option<usize> {
        match &self.inner {
            Inner::Native(m) => Some(m.merges().len()),
            Inner::Hf(_) => None,
        }
    }

    /// Tokens spelled the same as an earlier token (see [`BpeModel::duplicate_tokens`]).
    pub fn duplicate_tokens(&self) -> usize {
        match &self.inner {
            Inner::Native(m) => m.duplicate_tokens(),
            Inner::Hf(_) => 0,
        }
    }

    /// (text, id) of the special tokens, in id order.
    pub fn specials(&self) -> &[(String, u32)] {
        &self.specials
    }

    pub fn special_id(&self, name: &str) -> Option<u32> {
        self.specials.iter().find(|s| s.0 == name).map(|s| s.1)
    }

    /// The document delimiter: `<|bos|>`, or `<|endoftext|>` for GPT-2-style tokenizers (which,
    /// as nanochat notes, is prepended to documents the same way).
    pub fn bos_id(&self) -> Result<u32> {
        self.special_id("<|bos|>").or_else(|| self.special_id("<|endoftext|>")).ok_or_else(|| {
            invalid(
                &self.origin,
                "has neither a <|bos|> nor an <|endoftext|> special token, so documents cannot be delimited\n  \
                 HINT: use a tokenizer trained by `wgpt tokenizer train`"
                    .into(),
            )
        })
    }

    /// Byte length of every token, 0 for special tokens: the bits-per-byte table.
    pub fn token_bytes(&self) -> &[u32] {
        &self.token_bytes
    }

    /// FNV-1a of the tokenizer's JSON, to detect a different tokenizer on resume.
    pub fn fingerprint(&self) -> u64 {
        fnv1a(self.json.as_bytes())
    }

    /// The `tokenizer.json` text.
    pub fn to_json(&self) -> &str {
        &self.json
    }

    /// A reusable encoder (keeps a chunk cache); use one per thread for bulk encoding.
    pub fn encoder(&self) -> TextEncoder<'_> {
        TextEncoder {
            inner: match &self.inner {
                Inner::Native(m) => EncInner::Native(bpe::Encoder::new(m)),
                Inner::Hf(t) => EncInner::Hf(t),
            },
            origin: &self.origin,
        }
    }

    /// Encode text as ordinary text (special-token strings are not recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.encoder().encode_into(text, &mut out)?;
        Ok(out)
    }

    /// Encode many texts on all cores. The texts are cut into a few slices per thread, each
    /// encoded by one encoder, so chunk caches stay warm (per-text encoders would start cold).
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let slice = texts.len().div_ceil(4 * rayon::current_num_threads()).max(1);
        let parts: Vec<Vec<Vec<u32>>> = texts
            .par_chunks(slice)
            .map(|part| {
                let mut enc = self.encoder();
                part.iter()
                    .map(|t| {
                        let mut out = Vec::new();
                        enc.encode_into(t.as_ref(), &mut out).map(|_| out)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// The bytes of `ids` concatenated; specials contribute their text.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        match &self.inner {
            Inner::Native(m) => m
                .decode_bytes(ids, |id| self.specials.iter().find(|s| s.1 == id).map(|s| s.0.clone()))
                .map_err(|id| self.unknown_id(id)),
            Inner::Hf(t) => {
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
                    return Err(self.unknown_id(id));
                }
                t.decode(ids, false)
                    .map(String::into_bytes)
                    .map_err(|e| invalid(&self.origin, format!("cannot decode: {e}")))
            }
        }
    }

    /// Decode to text; a sequence that ends inside a UTF-8 character decodes it as U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    fn unknown_id(&self, id: u32) -> Error {
        invalid(&self.origin, format!("token id {id} is outside the vocabulary (size {})", self.vocab_size))
    }

    /// Check the tokenizer matches the model's `vocab_size`.
    pub fn check_vocab_size(&self, model_vocab_size: usize) -> Result<()> {
        if model_vocab_size == self.vocab_size {
            return Ok(());
        }
        Err(invalid(
            &self.origin,
            format!(
                "has {} token ids but the model config says vocab_size = {model_vocab_size}\n  HINT: set vocab_size = {} \
                 in the model config, or point at the tokenizer the model was built for (train one with \
                 `wgpt tokenizer train --vocab-size {model_vocab_size}`)",
                self.vocab_size, self.vocab_size
            ),
        ))
    }

    /// Write `tokenizer.json` and `token_bytes.json` into `dir`, each atomically. The JSON is
    /// first loaded back with the `tokenizers` crate, so a file that crate cannot read is never
    /// written.
    pub fn save(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        let tok_path = dir.join(TOKENIZER_FILE);
        self.json.parse::<tokenizers::Tokenizer>().map_err(|e| {
            invalid(
                &tok_path.display().to_string(),
                format!("refusing to write: the tokenizers crate cannot load the JSON ({e})"),
            )
        })?;
        write_atomic(&tok_path, self.json.as_bytes()).map_err(write_err(&tok_path))?;
        let bytes_path = self.save_token_bytes(dir)?;
        Ok((tok_path, bytes_path))
    }

    /// Write only `token_bytes.json` into `dir` (atomically).
    pub fn save_token_bytes(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(TOKEN_BYTES_FILE);
        let table = TokenBytesFile {
            format: "wgpt token_bytes v1".into(),
            note: "raw byte length of each token id; 0 for special tokens (excluded from bits per byte)".into(),
            vocab_size: self.vocab_size,
            token_bytes: self.token_bytes.clone(),
        };
        let json = serde_json::to_string(&table).expect("plain struct serialises");
        write_atomic(&path, json.as_bytes()).map_err(write_err(&path))?;
        Ok(path)
    }
}

fn write_err(p: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let p = p.to_path_buf();
    move |e| Error::File { path: p, message: format!("cannot write: {e}\n  HINT: check the directory is writable") }
}

/// On-disk bits-per-byte table (`token_bytes.json`).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct TokenBytesFile {
    pub format: String,
    pub note: String,
    pub vocab_size: usize,
    pub token_bytes: Vec<u32>,
}

/// Read a `token_bytes.json` and check it against `tok`.
pub fn load_token_bytes(path: &Path, tok: &Tokenizer) -> Result<Vec<u32>> {
    let err = |m: String| Error::File { path: path.to_path_buf(), message: m };
    let text = std::fs::read_to_string(path).map_err(|e| {
        err(format!("cannot read: {e}\n  HINT: `wgpt tokenizer train` writes it next to tokenizer.json"))
    })?;
    let f: TokenBytesFile = serde_json::from_str(&text).map_err(|e| err(format!("not a token_bytes.json ({e})")))?;
    if f.token_bytes.len() != f.vocab_size || f.token_bytes.as_slice() != tok.token_bytes() {
        return Err(err(format!(
            "does not belong to the tokenizer {} ({} entries, tokenizer has {})\n  HINT: rerun `wgpt tokenizer info --write-token-bytes` \
             or retrain so both files come from one run",
            tok.origin,
            f.token_bytes.len(),
            tok.vocab_size
        )));
    }
    Ok(f.token_bytes)
}

/// Reusable encoder from [`Tokenizer::encoder`].
pub struct TextEncoder<'t> {
    inner: EncInner<'t>,
    origin: &'t str,
}

enum EncInner<'t> {
    Native(bpe::Encoder<'t>),
    Hf(&'t tokenizers::Tokenizer),
}

impl TextEncoder<'_> {
    /// Append the tokens of `text` (as ordinary text) to `out`.
    pub fn encode_into(&mut self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        match &mut self.inner {
            EncInner::Native(e) => {
                e.encode_into(text, out);
                Ok(())
            }
            EncInner::Hf(t) => {
                let enc =
                    t.encode_fast(text, false).map_err(|e| invalid(self.origin, format!("cannot encode: {e}")))?;
                out.extend_from_slice(enc.get_ids());
                Ok(())
            }
        }
    }
}

fn invalid(origin: &str, message: String) -> Error {
    Error::File { path: PathBuf::from(origin), message }
}

/// Training settings (nanochat `tok_train.py` defaults).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Total ids including the 9 specials, e.g. 32768.
    pub vocab_size: usize,
    /// Each document is cropped to its first this many characters, e.g. 10,000.
    pub doc_cap: usize,
    /// Stop after the document that takes the character count past this, e.g. 2e9.
    pub max_chars: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { vocab_size: DEFAULT_VOCAB_SIZE, doc_cap: DEFAULT_DOC_CAP, max_chars: DEFAULT_MAX_CHARS }
    }
}

/// What a training run saw and did.
#[derive(Clone, Debug, Default)]
pub struct TrainSummary {
    pub docs: u64,
    pub empty_docs: u64,
    pub chars: u64,
    pub distinct_chunks: usize,
    pub merges: usize,
    pub count_seconds: f64,
    pub merge_seconds: f64,
}

/// Written beside a tokenizer by `wgpt tokenizer train` and by `wgpt train` when it trains one:
/// what it was trained on, so whoever loads it later can say so.
pub const TRAINED_ON_FILE: &str = "trained_on.json";

/// Record in `dir` what the tokenizer there was trained on (atomically).
pub fn save_trained_on(dir: &Path, data: &Path, dataset_fingerprint: u64, summary: &TrainSummary) -> Result<PathBuf> {
    let path = dir.join(TRAINED_ON_FILE);
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let v = serde_json::json!({
        "data": data,
        "dataset_fingerprint": format!("{dataset_fingerprint:016x}"),
        "documents": summary.docs,
        "chars": summary.chars,
        "merges": summary.merges,
        "trained_unix_time": secs,
    });
    write_atomic(&path, serde_json::to_string_pretty(&v).unwrap().as_bytes()).map_err(write_err(&path))?;
    Ok(path)
}

/// "trained on DATA (N documents, M chars)" from the record beside a tokenizer file, if any.
pub fn trained_on(tokenizer_json: &Path) -> Option<String> {
    let p = tokenizer_json.parent()?.join(TRAINED_ON_FILE);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    Some(format!(
        "trained on {} ({} documents, {} chars, dataset fingerprint {})",
        v["data"].as_str().unwrap_or("?"),
        v["documents"],
        v["chars"],
        v["dataset_fingerprint"].as_str().unwrap_or("?")
    ))
}

/// Documents per parallel counting batch.
const COUNT_BATCH: usize = 8192;

/// Train nanochat's tokenizer on a stream of documents (the train split, in order).
pub fn train(docs: impl Iterator<Item = Result<String>>, opts: &TrainOptions) -> Result<(Tokenizer, TrainSummary)> {
    let n_merges = opts.vocab_size.checked_sub(256 + SPECIAL_TOKENS.len()).ok_or_else(|| {
        invalid(
            "--vocab-size",
            format!("{} is too small: 256 byte tokens + 9 specials need at least 265", opts.vocab_size),
        )
    })?;
    let regex = bpe::compile_pattern(NANOCHAT_PATTERN).map_err(|m| invalid("pattern", m))?;
    let mut counter = train::ChunkCounter::new(regex);
    let mut summary = TrainSummary::default();
    let t0 = Instant::now();
    let mut batch: Vec<String> = Vec::with_capacity(COUNT_BATCH);
    for doc in docs {
        let mut doc = doc?;
        if doc.is_empty() {
            summary.empty_docs += 1;
            continue;
        }
        // Crop to `doc_cap` characters (not bytes), as nanochat's `doc_text[:doc_cap]`.
        let mut chars = 0u64;
        if let Some((cut, _)) = doc.char_indices().nth(opts.doc_cap) {
            doc.truncate(cut);
            chars = opts.doc_cap as u64;
        } else {
            chars += doc.chars().count() as u64;
        }
        summary.chars += chars;
        summary.docs += 1;
        batch.push(doc);
        if batch.len() == COUNT_BATCH {
            counter.add_batch(&batch);
            batch.clear();
        }
        if summary.chars > opts.max_chars {
            break;
        }
    }
    counter.add_batch(&batch);
    drop(batch);
    summary.distinct_chunks = counter.distinct();
    summary.count_seconds = t0.elapsed().as_secs_f64();
    log::info!(
        "tokenizer: {} documents, {} characters, {} distinct chunks ({:.1} s); running {n_merges} merges",
        summary.docs,
        summary.chars,
        summary.distinct_chunks,
        summary.count_seconds
    );
    let t1 = Instant::now();
    let mut decile = 0;
    let merges = counter.train(n_merges, |done, pair, count| {
        if done * 10 / n_merges > decile && done < n_merges {
            decile = done * 10 / n_merges;
            log::info!("tokenizer: {done}/{n_merges} merges, last {pair:?} x{count}");
        }
    });
    summary.merge_seconds = t1.elapsed().as_secs_f64();
    summary.merges = merges.len();
    if merges.len() < n_merges {
        return Err(invalid(
            "training data",
            format!(
                "ran out of pairs after {} of {n_merges} merges ({} characters in {} documents): the text is too small for \
                 vocab size {}\n  HINT: train on more text (a larger --max-chars or more shards) or lower --vocab-size to at most {}",
                merges.len(),
                summary.chars,
                summary.docs,
                opts.vocab_size,
                256 + merges.len() + SPECIAL_TOKENS.len()
            ),
        ));
    }
    let tok = Tokenizer::from_merges(NANOCHAT_PATTERN, &merges)?;
    Ok((tok, summary))
}
