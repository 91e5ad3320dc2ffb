//! A dataset on disk: its files, how each divides into chunks (parquet row groups, or blocks of
//! 1024 documents in text files), and the train/validation split as an ordered list of chunk
//! slices ([`Unit`]s). Opening checks every file (parquet footer and `text` column; text files
//! are scanned for UTF-8), so bad input fails before any work starts, naming the file.

use super::parquet_io::ShardFile;
use super::text_io::{self, TextChunk, TEXT_CHUNK_DOCS};
use crate::error::{Error, Result};
use crate::util::fnv1a;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// File format of a dataset (`--format`, whose names and aliases clap reads from here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Format {
    Parquet,
    #[value(alias = "ndjson")]
    Jsonl,
    #[value(alias = "text")]
    Txt,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        <Format as clap::ValueEnum>::from_str(s, true).map_err(|_| Error::File {
            path: PathBuf::from("--format"),
            message: format!("unknown format `{s}`; expected parquet, jsonl or txt"),
        })
    }

    fn from_path(p: &Path) -> Option<Format> {
        match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" => Some(Format::Parquet),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "txt" => Some(Format::Txt),
            _ => None,
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Format::Parquet => ".parquet",
            Format::Jsonl => ".jsonl",
            Format::Txt => ".txt",
        }
    }
}

/// Which part of the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
        })
    }
}

/// How to read a dataset (the `--data`, `--format`, `--txt-delimiter`, `--text-field` and
/// `--val-fraction` flags).
#[derive(Clone, Debug)]
pub struct DataConfig {
    /// A directory of files, or one file.
    pub path: PathBuf,
    /// `None`: by file extension.
    pub format: Option<Format>,
    /// `.txt` only: documents are separated by this string; `None`: one document per file.
    pub txt_delimiter: Option<String>,
    /// The parquet column / jsonl field holding the text, e.g. "text".
    pub text_field: String,
    /// `None`: the last file is the validation split (needs two or more files). `Some(f)`: the
    /// last fraction `f` of all documents is.
    pub val_fraction: Option<f64>,
}

impl DataConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataConfig {
            path: path.into(),
            format: None,
            txt_delimiter: None,
            text_field: "text".into(),
            val_fraction: None,
        }
    }
}

/// One data file and its chunks.
#[derive(Clone, Debug)]
pub struct DataFile {
    pub path: PathBuf,
    pub format: Format,
    /// Documents per chunk (parquet row group, or text block).
    pub chunk_docs: Vec<u32>,
    text_chunks: Vec<TextChunk>,
}

impl DataFile {
    pub fn docs(&self) -> u64 {
        self.chunk_docs.iter().map(|&d| d as u64).sum()
    }
}

/// A slice of one chunk: documents `docs` of chunk `chunk` of file `file`. A split is a list of
/// units in reading order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub file: usize,
    pub chunk: usize,
    pub docs: std::ops::Range<u32>,
}

/// An opened, checked dataset.
#[derive(Debug)]
pub struct Dataset {
    config: DataConfig,
    files: Vec<DataFile>,
    train: Vec<Unit>,
    val: Vec<Unit>,
    fingerprint: u64,
}

fn err(path: &Path, message: String) -> Error {
    Error::File { path: path.to_path_buf(), message }
}

const DOWNLOAD_HINT: &str =
    "HINT: fetch nanochat's shards with `wgpt data download --shards 8 --dir <dir>`, or point --data at a \
                             directory or file of .parquet, .jsonl or .txt documents";

impl Dataset {
    /// Find, check and index the files, and work out the splits.
    pub fn open(config: &DataConfig) -> Result<Dataset> {
        let root = &config.path;
        let meta = std::fs::metadata(root)
            .map_err(|e| err(root, format!("cannot read the data path: {e}\n  {DOWNLOAD_HINT}")))?;
        let mut paths: Vec<(PathBuf, Format)> = Vec::new();
        if meta.is_dir() {
            let entries = std::fs::read_dir(root).map_err(|e| err(root, format!("cannot list: {e}")))?;
            let mut found: Vec<(PathBuf, Format)> = Vec::new();
            for entry in entries {
                let p = entry.map_err(|e| err(root, format!("cannot list: {e}")))?.path();
                let hidden = p.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
                if hidden || !p.is_file() {
                    continue;
                }
                // Download leftovers (`.partial`, `.tmp`) have other extensions and are ignored.
                if let Some(f) = Format::from_path(&p) {
                    found.push((p, f));
                }
            }
            let kinds: Vec<Format> = [Format::Parquet, Format::Jsonl, Format::Txt]
                .into_iter()
                .filter(|k| found.iter().any(|f| f.1 == *k))
                .collect();
            let chosen = match (config.format, kinds.as_slice()) {
                (Some(f), _) => f,
                (None, [one]) => *one,
                (None, []) => {
                    return Err(err(root, format!("holds no .parquet, .jsonl or .txt files\n  {DOWNLOAD_HINT}")))
                }
                (None, many) => {
                    let names: Vec<&str> = many.iter().map(|k| k.ext()).collect();
                    return Err(err(
                        root,
                        format!("mixes {} files\n  HINT: pass --format to choose one", names.join(" and ")),
                    ));
                }
            };
            paths = found.into_iter().filter(|f| f.1 == chosen).collect();
            if paths.is_empty() {
                return Err(err(root, format!("holds no {} files\n  {DOWNLOAD_HINT}", chosen.ext())));
            }
            // Name order is shard order (`shard_NNNNN` is zero-padded), so the last file is the
            // highest shard: nanochat's validation split.
            paths.sort();
        } else {
            let format = config.format.or_else(|| Format::from_path(root)).ok_or_else(|| {
                err(root, "has no .parquet, .jsonl or .txt extension\n  HINT: pass --format parquet|jsonl|txt".into())
            })?;
            paths.push((root.clone(), format));
        }
        if paths.iter().any(|p| p.1 == Format::Txt) && config.txt_delimiter.as_deref() == Some("") {
            return Err(err(
                Path::new("--txt-delimiter"),
                "is empty\n  HINT: omit it for one document per file".into(),
            ));
        }

        // Every file is checked now (parquet footer and column, a full UTF-8 scan of text files),
        // so a bad file fails here, before training starts; the scans run across cores.
        // Index in parallel, but report the first bad file in file order: rayon's collect into a
        // Result returns whichever error a thread met first, which made the message vary.
        let indexed: Vec<Result<DataFile>> = paths.par_iter().map(|(p, f)| index_file(p, *f, config)).collect();
        let files: Vec<DataFile> = indexed.into_iter().collect::<Result<_>>()?;
        let (train, val) = split_units(root, &files, config)?;
        // The fingerprint covers what stream positions depend on (file names, documents per
        // chunk, split settings), not the text: hashing content would mean reading every shard.
        let mut key = Vec::new();
        for f in &files {
            key.extend_from_slice(f.path.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
            for d in &f.chunk_docs {
                key.extend_from_slice(&d.to_le_bytes());
            }
            key.push(0);
        }
        key.extend_from_slice(
            format!("{:?}{:?}{:?}", config.val_fraction, config.txt_delimiter, config.text_field).as_bytes(),
        );
        let fingerprint = fnv1a(&key);
        Ok(Dataset { config: config.clone(), files, train, val, fingerprint })
    }

    pub fn config(&self) -> &DataConfig {
        &self.config
    }

    pub fn files(&self) -> &[DataFile] {
        &self.files
    }

    /// Identity of the file list, chunk sizes and split settings (for resume checks).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The units of a split, in reading order.
    pub fn units(&self, split: Split) -> &[Unit] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// Documents in a split (empty ones included).
    pub fn split_docs(&self, split: Split) -> u64 {
        self.units(split).iter().map(|u| (u.docs.end - u.docs.start) as u64).sum()
    }

    /// Read every document of one chunk.
    pub fn read_chunk(&self, reader: &mut DocReader, file: usize, chunk: usize) -> Result<Vec<String>> {
        let f = &self.files[file];
        match f.format {
            Format::Parquet => {
                if reader.shard.as_ref().is_none_or(|s| s.path != f.path) {
                    reader.shard = None;
                    reader.shard = Some(ShardFile::open(&f.path, &self.config.text_field)?);
                }
                let docs = reader.shard.as_ref().unwrap().read_row_group(chunk)?;
                if docs.len() != f.chunk_docs[chunk] as usize {
                    return Err(err(
                        &f.path,
                        format!("row group {chunk} changed size since the dataset was opened\n  HINT: restart"),
                    ));
                }
                Ok(docs)
            }
            Format::Txt => {
                text_io::read_text_chunk(&f.path, &f.text_chunks[chunk], self.config.txt_delimiter.as_deref())
            }
            Format::Jsonl => {
                let first_line = 1 + f.chunk_docs[..chunk].iter().map(|&d| d as u64).sum::<u64>();
                text_io::read_jsonl_chunk(&f.path, &f.text_chunks[chunk], &self.config.text_field, first_line)
            }
        }
    }

    /// The documents of a unit.
    pub fn read_unit(&self, reader: &mut DocReader, unit: &Unit) -> Result<Vec<String>> {
        let mut docs = self.read_chunk(reader, unit.file, unit.chunk)?;
        docs.truncate(unit.docs.end as usize);
        docs.drain(..unit.docs.start as usize);
        Ok(docs)
    }

    /// Every document of a split once, in order (tokenizer training, evaluation).
    pub fn docs(&self, split: Split) -> impl Iterator<Item = Result<String>> + '_ {
        let mut reader = DocReader::default();
        self.units(split).iter().flat_map(move |u| match self.read_unit(&mut reader, u) {
            Ok(docs) => docs.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    }

    /// One line per file for logs and `wgpt data info`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} ({} file(s))", self.config.path.display(), self.files.len());
        for split in [Split::Train, Split::Val] {
            let units = self.units(split);
            let files: std::collections::BTreeSet<usize> = units.iter().map(|u| u.file).collect();
            s += &format!(
                "\n  {split}: {} documents in {} chunk(s) of {} file(s)",
                self.split_docs(split),
                units.len(),
                files.len()
            );
        }
        s
    }
}

/// Keeps the current parquet file open across chunk reads. One per reading thread.
#[derive(Default)]
pub struct DocReader {
    shard: Option<ShardFile>,
}

fn index_file(path: &Path, format: Format, config: &DataConfig) -> Result<DataFile> {
    let (chunk_docs, text_chunks) = match format {
        Format::Parquet => {
            let shard = ShardFile::open(path, &config.text_field)?;
            let docs = shard.row_groups.iter().map(|&r| u32::try_from(r).unwrap_or(u32::MAX)).collect();
            (docs, Vec::new())
        }
        Format::Jsonl => {
            let chunks = text_io::index_text(path, Some(b"\n"), TEXT_CHUNK_DOCS)?;
            (chunks.iter().map(|c| c.docs).collect(), chunks)
        }
        Format::Txt => {
            let chunks =
                text_io::index_text(path, config.txt_delimiter.as_deref().map(str::as_bytes), TEXT_CHUNK_DOCS)?;
            (chunks.iter().map(|c| c.docs).collect(), chunks)
        }
    };
    Ok(DataFile { path: path.to_path_buf(), format, chunk_docs, text_chunks })
}

/// Every chunk of `files[range]` as whole units.
fn whole_units(files: &[DataFile], range: std::ops::Range<usize>) -> Vec<Unit> {
    let mut units = Vec::new();
    for fi in range {
        for (ci, &d) in files[fi].chunk_docs.iter().enumerate() {
            if d > 0 {
                units.push(Unit { file: fi, chunk: ci, docs: 0..d });
            }
        }
    }
    units
}

fn split_units(root: &Path, files: &[DataFile], config: &DataConfig) -> Result<(Vec<Unit>, Vec<Unit>)> {
    let total: u64 = files.iter().map(DataFile::docs).sum();
    if total == 0 {
        return Err(err(root, format!("holds no documents (every file is empty)\n  {DOWNLOAD_HINT}")));
    }
    let Some(frac) = config.val_fraction else {
        if files.len() < 2 {
            return Err(err(
                root,
                "is a single file, but without --val-fraction the validation split is the last file in sorted order, \
                 so at least two files are needed\n  HINT: pass --val-fraction 0.1 to hold out the last 10% of documents, \
                 or add files (`wgpt data download --shards 1` fetches shard 0 plus the validation shard)"
                    .into(),
            ));
        }
        let n = files.len();
        let (train, val) = (whole_units(files, 0..n - 1), whole_units(files, n - 1..n));
        if train.is_empty() || val.is_empty() {
            let which = if train.is_empty() { "train" } else { "validation" };
            return Err(err(
                root,
                format!("the {which} split holds no documents (its files are empty)\n  {DOWNLOAD_HINT}"),
            ));
        }
        return Ok((train, val));
    };
    if !(frac > 0.0 && frac < 1.0) {
        return Err(err(
            Path::new("--val-fraction"),
            format!("{frac} is not between 0 and 1 (exclusive)\n  HINT: e.g. --val-fraction 0.1"),
        ));
    }
    if total < 2 {
        return Err(err(
            root,
            "holds a single document, which cannot be split into train and validation\n  HINT: pass --txt-delimiter \
             (e.g. '\\n\\n') to cut a .txt into documents"
                .into(),
        ));
    }
    // The last `n_val` documents (at least one, never all) are the validation split; the chunk
    // holding the cut is shared, as two units that slice it.
    let n_val = ((total as f64 * frac).ceil() as u64).clamp(1, total - 1);
    let cut = total - n_val;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let mut seen = 0u64;
    for (fi, f) in files.iter().enumerate() {
        for (ci, &d) in f.chunk_docs.iter().enumerate() {
            let (lo, hi) = (seen, seen + d as u64);
            seen = hi;
            if hi <= cut {
                train.push(Unit { file: fi, chunk: ci, docs: 0..d });
            } else if lo >= cut {
                val.push(Unit { file: fi, chunk: ci, docs: 0..d });
            } else {
                let at = (cut - lo) as u32;
                train.push(Unit { file: fi, chunk: ci, docs: 0..at });
                val.push(Unit { file: fi, chunk: ci, docs: at..d });
            }
        }
    }
    train.retain(|u| u.docs.end > u.docs.start);
    val.retain(|u| u.docs.end > u.docs.start);
    Ok((train, val))
}
