//! The BOS-aligned best-fit loader (nanochat `dataloader.py`, spec §5.3).
//!
//! Document stream: the split's chunks in order, forever (epoch 1, 2, ...), cut into groups of
//! `group_docs` (128) documents that never cross a chunk; each document becomes
//! `[BOS] + encode(doc)`. Empty documents are skipped (and counted in the log).
//!
//! Packing, for each of the B rows of T+1 tokens: before every pick, top the buffer up to at
//! least `buffer_docs` (1000) documents, one group at a time. If some document fits the space
//! left, take the largest (the earliest on a tie) and remove it; otherwise take the shortest
//! (the earliest on a tie), copy its first `remaining` tokens and drop the rest, which fills the
//! row. inputs = row[0..T], targets = row[1..T+1]. So every row starts with BOS, no padding.
//!
//! Threads: a reader thread reads chunks and sends groups to `threads` tokenizer workers; a
//! packer thread puts the results back in order, packs rows and keeps `prefetch` batches ready,
//! so a consumer slower than the pipeline never waits.
//!
//! Resume is exact: documents leave the buffer whole, so the buffer is identified by the stream
//! positions ("ordinals", counted over all epochs) of the documents in it, and the reading
//! position is the ordinal of the next group. [`LoaderState`] holds those; a loader built from
//! it re-reads and re-tokenises the buffered documents and continues with the same batch an
//! uninterrupted loader would produce next.

use super::dataset::{Dataset, DocReader, Split, Unit};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Loader settings; [`LoaderOptions::new`] gives nanochat's defaults.
#[derive(Clone, Debug)]
pub struct LoaderOptions {
    /// B: rows per batch, e.g. 8.
    pub batch_size: usize,
    /// T: tokens per row of inputs (rows are built T+1 long), e.g. 2048.
    pub seq_len: usize,
    /// Tokenizer worker threads, e.g. 4.
    pub threads: usize,
    /// Documents per tokenizer batch and buffer refill, e.g. 128.
    pub group_docs: usize,
    /// The buffer is topped up to at least this many documents before every pick, e.g. 1000.
    pub buffer_docs: usize,
    /// Batches packed ahead of the consumer, e.g. 4.
    pub prefetch: usize,
}

impl LoaderOptions {
    pub fn new(batch_size: usize, seq_len: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        LoaderOptions { batch_size, seq_len, threads: cores.min(4), group_docs: 128, buffer_docs: 1000, prefetch: 4 }
    }

    fn check(&self) -> Result<()> {
        let fields = [
            ("batch size B", self.batch_size),
            ("sequence length T", self.seq_len),
            ("threads", self.threads),
            ("group_docs", self.group_docs),
            ("buffer_docs", self.buffer_docs),
            ("prefetch", self.prefetch),
        ];
        match fields.iter().find(|f| f.1 == 0) {
            Some((what, _)) => Err(Error::Shape { op: "loader", message: format!("{what} must be at least 1") }),
            None => Ok(()),
        }
    }
}

/// Where a loader stands after a batch: enough to continue exactly. Small (the buffer is stored
/// as runs of consecutive ordinals) and serde-serialisable, for the checkpoint's meta file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderState {
    pub version: u32,
    pub split: Split,
    /// The pass over the split the consumer is in, from 1: one more than the whole epochs' worth
    /// of documents the batches so far have used up (`next_doc` minus the buffered ones). Not the
    /// reader's epoch: the reader runs a whole buffer ahead (1000 documents), so on a small split
    /// it is in epoch 2 before the first batch. Derived, for humans and logs; resume ignores it.
    pub epoch: u64,
    /// File index (into the dataset's sorted file list) and chunk of the next group to read, the
    /// reader's position; derived from `next_doc`, for humans and logs.
    pub shard: usize,
    pub row_group: usize,
    /// Stream ordinal of the next document to read, counting all epochs.
    pub next_doc: u64,
    /// Documents in the buffer, as `[first ordinal, count]` runs, in buffer order.
    pub buffer: Vec<[u64; 2]>,
    /// Fingerprints (hex) of the dataset layout and the tokenizer the state belongs to.
    pub dataset: String,
    pub tokenizer: String,
}

const STATE_VERSION: u32 = 1;

/// One batch: `inputs[b * T + t]` and `targets[b * T + t]` = `inputs` shifted left by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub inputs: Vec<i32>,
    pub targets: Vec<i32>,
    /// B
    pub batch_size: usize,
    /// T
    pub seq_len: usize,
}

/// The split's documents as an endless stream: ordinal `o` is document `o % docs` of epoch
/// `o / docs + 1`.
#[derive(Clone)]
struct Stream {
    units: Vec<Unit>,
    /// `unit_start[u]`: position in the epoch of unit `u`'s first document.
    unit_start: Vec<u64>,
    epoch_docs: u64,
    group_docs: u64,
}

/// A group: documents `first..end` of the stream, inside unit `unit` at `offset`.
struct Group {
    first: u64,
    end: u64,
    unit: usize,
    offset: u32,
}

impl Stream {
    fn new(units: &[Unit], group_docs: usize) -> Self {
        let mut unit_start = Vec::with_capacity(units.len());
        let mut n = 0u64;
        for u in units {
            unit_start.push(n);
            n += (u.docs.end - u.docs.start) as u64;
        }
        Stream { units: units.to_vec(), unit_start, epoch_docs: n, group_docs: group_docs as u64 }
    }

    /// (epoch from 1, unit index, offset inside the unit) of ordinal `o`.
    fn locate(&self, o: u64) -> (u64, usize, u32) {
        let i = o % self.epoch_docs;
        let u = self.unit_start.partition_point(|&s| s <= i) - 1;
        (o / self.epoch_docs + 1, u, (i - self.unit_start[u]) as u32)
    }

    /// The group starting at ordinal `o` (which must be a group start).
    fn group_at(&self, o: u64) -> Group {
        let (_, unit, offset) = self.locate(o);
        let len = (self.units[unit].docs.end - self.units[unit].docs.start - offset) as u64;
        Group { first: o, end: o + len.min(self.group_docs), unit, offset }
    }

    fn is_group_start(&self, o: u64) -> bool {
        (self.locate(o).2 as u64).is_multiple_of(self.group_docs)
    }
}

/// Tokenised documents of one group, tagged with their ordinals.
struct Tokenised {
    ordinals: Vec<u64>,
    tokens: Vec<Vec<u32>>,
    /// Ordinal of the document after the group (the reading position once it is in the buffer).
    next: u64,
}

/// Work items flow reader -> workers -> packer, in sequence order `seq`.
struct Job {
    seq: u64,
    restore: bool,
    payload: Result<(Vec<u64>, Vec<String>, u64)>,
}

struct Done {
    seq: u64,
    restore: bool,
    payload: Result<Tokenised>,
}

/// The loader. Dropping it stops its threads.
pub struct Loader {
    rx: Option<Receiver<Result<(Batch, LoaderState)>>>,
    state: LoaderState,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    failed: Option<String>,
}

fn hex(x: u64) -> String {
    format!("{x:016x}")
}

fn state_err(message: String) -> Error {
    Error::File { path: PathBuf::from("loader state"), message }
}

impl Loader {
    /// Start a loader over `split`; with `state`, continue exactly where that state was taken.
    pub fn new(
        dataset: Arc<Dataset>,
        tokenizer: Arc<Tokenizer>,
        split: Split,
        opts: LoaderOptions,
        state: Option<LoaderState>,
    ) -> Result<Loader> {
        opts.check()?;
        let bos = tokenizer.bos_id()?;
        let stream = Stream::new(dataset.units(split), opts.group_docs);
        if stream.epoch_docs == 0 {
            return Err(Error::File {
                path: dataset.config().path.clone(),
                message: format!("the {split} split holds no documents\n  HINT: check `wgpt data info --data <dir>`"),
            });
        }
        let (dataset_fp, tokenizer_fp) = (hex(dataset.fingerprint()), hex(tokenizer.fingerprint()));
        let (start, restore) = match &state {
            None => (0, Vec::new()),
            Some(s) => {
                check_state(s, split, &dataset_fp, &tokenizer_fp, &stream)?;
                (s.next_doc, s.buffer.iter().flat_map(|&[first, n]| first..first + n).collect::<Vec<u64>>())
            }
        };
        let initial = match state {
            Some(s) => s,
            None => make_state(&stream, split, 0, std::iter::empty(), &dataset_fp, &tokenizer_fp),
        };

        // Channel bounds give backpressure: the reader runs at most a few groups ahead of the
        // workers, the workers a few ahead of the packer, the packer `prefetch` batches ahead of
        // the consumer; memory stays bounded however slow the consumer is.
        let stop = Arc::new(AtomicBool::new(false));
        let (job_tx, job_rx) = bounded::<Job>(opts.threads * 2);
        let (done_tx, done_rx) = bounded::<Done>(opts.threads * 2);
        let (batch_tx, batch_rx) = bounded(opts.prefetch);
        let mut threads = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    background_priority();
                    f()
                })
                .map_err(|e| Error::Shape { op: "loader", message: format!("cannot start a thread: {e}") })
        };
        let n_restore_jobs = restore.len().div_ceil(opts.group_docs);
        {
            let (ds, stream, stop, group) = (dataset.clone(), stream.clone(), stop.clone(), opts.group_docs);
            threads.push(spawn(
                format!("loader-read-{split}"),
                Box::new(move || read_loop(&ds, &stream, &restore, group, start, &job_tx, &stop)),
            )?);
        }
        for i in 0..opts.threads {
            let (tok, job_rx, done_tx) = (tokenizer.clone(), job_rx.clone(), done_tx.clone());
            threads
                .push(spawn(format!("loader-tok-{i}"), Box::new(move || tokenize_loop(&tok, bos, &job_rx, &done_tx)))?);
        }
        drop((job_rx, done_tx));
        {
            let (ds, stop) = (dataset.clone(), stop.clone());
            let packer = Packer {
                stream,
                opts,
                split,
                dataset_fp,
                tokenizer_fp,
                next_doc: start,
                buffer: Vec::new(),
                warned_long: false,
            };
            threads.push(spawn(
                format!("loader-pack-{split}"),
                Box::new(move || packer.run(&ds, n_restore_jobs, &done_rx, &batch_tx, &stop)),
            )?);
        }
        Ok(Loader { rx: Some(batch_rx), state: initial, stop, threads, failed: None })
    }

    /// The next batch. Blocks only while the pipeline is cold or slower than the consumer.
    pub fn next_batch(&mut self) -> Result<Batch> {
        if let Some(e) = &self.failed {
            return Err(state_err(format!("the loader stopped after an earlier error: {e}")));
        }
        let rx = self.rx.as_ref().expect("receiver lives until drop");
        match rx.recv() {
            Ok(Ok((batch, state))) => {
                self.state = state;
                Ok(batch)
            }
            Ok(Err(e)) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
            Err(_) => {
                self.failed = Some("its threads exited".into());
                Err(state_err("the loader's threads exited unexpectedly (a panic; see the log above)".into()))
            }
        }
    }

    /// The state after the last batch returned (or the starting state): pass it to
    /// [`Loader::new`] to continue from here.
    pub fn state(&self) -> LoaderState {
        self.state.clone()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the batch channel makes the packer's send fail; each stage's exit then closes
        // the channel the stage before it blocks on.
        self.stop.store(true, Ordering::Relaxed);
        self.rx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Lower the calling thread's priority (nice +5 on Linux), so a loader thread woken by the
/// consumer taking a batch does not preempt the training thread: on a machine with few cores
/// the consumer would otherwise wait in `next_batch` for a CPU even with batches ready.
fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; a failure only leaves the priority unchanged.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + 5).min(19));
    }
}

fn check_state(s: &LoaderState, split: Split, dataset_fp: &str, tokenizer_fp: &str, stream: &Stream) -> Result<()> {
    let fresh = "HINT: resume with the same data and tokenizer, or (wgpt train) pass --restart-data to keep the \
                 weights and optimizer state and read the data from its beginning";
    if s.version != STATE_VERSION {
        return Err(state_err(format!(
            "has version {}, this build reads version {STATE_VERSION}\n  {fresh}",
            s.version
        )));
    }
    if s.split != split {
        return Err(state_err(format!(
            "belongs to the {} split, not {split}\n  HINT: pass the state saved for this split",
            s.split
        )));
    }
    if s.dataset != dataset_fp {
        return Err(state_err(format!(
            "was saved for a different dataset layout (fingerprint {} != {dataset_fp}: files were added, removed or changed, \
             or --val-fraction/--txt-delimiter differ)\n  {fresh}",
            s.dataset
        )));
    }
    if s.tokenizer != tokenizer_fp {
        return Err(state_err(format!(
            "was saved with a different tokenizer (fingerprint {} != {tokenizer_fp})\n  {fresh}",
            s.tokenizer
        )));
    }
    if !stream.is_group_start(s.next_doc) {
        return Err(state_err(format!(
            "next_doc {} is not at a group start: was group_docs different?\n  {fresh}",
            s.next_doc
        )));
    }
    if s.buffer.iter().any(|&[first, n]| first + n > s.next_doc) {
        return Err(state_err(format!(
            "its buffer lists documents at or after next_doc {}: the state is corrupt\n  {fresh}",
            s.next_doc
        )));
    }
    Ok(())
}

fn make_state<'a>(
    stream: &Stream,
    split: Split,
    next_doc: u64,
    buffer: impl Iterator<Item = &'a u64>,
    dataset_fp: &str,
    tokenizer_fp: &str,
) -> LoaderState {
    let (_, unit, _) = stream.locate(next_doc);
    let mut runs: Vec<[u64; 2]> = Vec::new();
    for &o in buffer {
        match runs.last_mut() {
            Some([first, n]) if *first + *n == o => *n += 1,
            _ => runs.push([o, 1]),
        }
    }
    // Every document read is either still buffered or used up (packed whole, cropped, or empty
    // and skipped), so this counts what the batches so far consumed.
    let consumed = next_doc.saturating_sub(runs.iter().map(|r| r[1]).sum());
    let epoch = consumed / stream.epoch_docs + 1;
    LoaderState {
        version: STATE_VERSION,
        split,
        epoch,
        shard: stream.units[unit].file,
        row_group: stream.units[unit].chunk,
        next_doc,
        buffer: runs,
        dataset: dataset_fp.to_string(),
        tokenizer: tokenizer_fp.to_string(),
    }
}

/// The documents of `unit`, read once and kept while consecutive groups (and restored
/// documents) come from the same chunk.
fn load_unit<'c>(
    ds: &Dataset,
    stream: &Stream,
    cache: &'c mut Option<(usize, Vec<String>)>,
    unit: usize,
    reader: &mut DocReader,
) -> Result<&'c [String]> {
    if cache.as_ref().is_none_or(|c| c.0 != unit) {
        *cache = None;
        *cache = Some((unit, ds.read_unit(reader, &stream.units[unit])?));
    }
    Ok(&cache.as_ref().unwrap().1)
}

/// Reader thread: first the buffered documents of a resumed state, then groups from `start` on,
/// forever.
fn read_loop(
    ds: &Dataset,
    stream: &Stream,
    restore: &[u64],
    group: usize,
    start: u64,
    tx: &Sender<Job>,
    stop: &AtomicBool,
) {
    let mut reader = DocReader::default();
    let mut cache = None;
    let mut seq = 0u64;
    // Sends a job; false once the loader is shutting down or after an error was sent.
    let mut send = |restore: bool, payload: Result<(Vec<u64>, Vec<String>, u64)>| {
        let failed = payload.is_err();
        let ok = !stop.load(Ordering::Relaxed) && tx.send(Job { seq, restore, payload }).is_ok();
        seq += 1;
        ok && !failed
    };

    // Buffered documents of a resumed state, in buffer order, in jobs of up to `group`.
    let mut docs = Vec::with_capacity(restore.len());
    for &o in restore {
        let (_, unit, offset) = stream.locate(o);
        match load_unit(ds, stream, &mut cache, unit, &mut reader) {
            Ok(all) => docs.push((o, all[offset as usize].clone())),
            Err(e) => {
                send(true, Err(e));
                return;
            }
        }
    }
    for chunk in docs.chunks(group) {
        let (ords, texts): (Vec<u64>, Vec<String>) = chunk.iter().cloned().unzip();
        if !send(true, Ok((ords, texts, start))) {
            return;
        }
    }
    drop(docs);

    let mut o = start;
    let mut since_nonempty = 0u64;
    let mut empty_in_file = 0u64;
    let mut file = usize::MAX;
    let mut reported = std::collections::HashSet::new();
    loop {
        let g = stream.group_at(o);
        let unit_file = stream.units[g.unit].file;
        if unit_file != file {
            if empty_in_file > 0 && reported.insert(file) {
                log::info!("data {:?}: skipped {empty_in_file} empty document(s)", ds.files()[file].path);
            }
            file = unit_file;
            empty_in_file = 0;
        }
        let all = match load_unit(ds, stream, &mut cache, g.unit, &mut reader) {
            Ok(all) => all,
            Err(e) => {
                send(false, Err(e));
                return;
            }
        };
        let (mut ords, mut texts) = (Vec::new(), Vec::new());
        let lo = g.offset as usize;
        for (k, text) in all[lo..lo + (g.end - g.first) as usize].iter().enumerate() {
            if text.is_empty() {
                empty_in_file += 1;
                since_nonempty += 1;
            } else {
                since_nonempty = 0;
                ords.push(g.first + k as u64);
                texts.push(text.clone());
            }
        }
        if since_nonempty > stream.epoch_docs {
            let e = Error::File {
                path: ds.config().path.clone(),
                message: "every document of this split is empty\n  HINT: check the text column / --text-field / --txt-delimiter".into(),
            };
            send(false, Err(e));
            return;
        }
        if !send(false, Ok((ords, texts, g.end))) {
            return;
        }
        o = g.end;
    }
}

/// Tokenizer worker: `[BOS] + encode(doc)` for every document of a job.
fn tokenize_loop(tok: &Tokenizer, bos: u32, rx: &Receiver<Job>, tx: &Sender<Done>) {
    let mut enc = tok.encoder();
    while let Ok(job) = rx.recv() {
        let payload = job.payload.and_then(|(ordinals, texts, next)| {
            let mut tokens = Vec::with_capacity(texts.len());
            for t in &texts {
                let mut ids = Vec::with_capacity(t.len() / 3 + 2);
                ids.push(bos);
                enc.encode_into(t, &mut ids)?;
                tokens.push(ids);
            }
            Ok(Tokenised { ordinals, tokens, next })
        });
        if tx.send(Done { seq: job.seq, restore: job.restore, payload }).is_err() {
            return;
        }
    }
}

struct Doc {
    ordinal: u64,
    tokens: Vec<u32>,
}

struct Packer {
    stream: Stream,
    opts: LoaderOptions,
    split: Split,
    dataset_fp: String,
    tokenizer_fp: String,
    next_doc: u64,
    buffer: Vec<Doc>,
    warned_long: bool,
}

/// Results arrive from the workers in any order; this hands them out in `seq` order.
struct Reorder<'a> {
    rx: &'a Receiver<Done>,
    pending: BTreeMap<u64, Done>,
    next: u64,
}

impl Reorder<'_> {
    fn next(&mut self) -> Result<Done> {
        loop {
            if let Some(d) = self.pending.remove(&self.next) {
                self.next += 1;
                return Ok(d);
            }
            let d =
                self.rx.recv().map_err(|_| state_err("the loader's tokenizer threads exited unexpectedly".into()))?;
            self.pending.insert(d.seq, d);
        }
    }
}

impl Packer {
    fn run(
        mut self,
        ds: &Dataset,
        n_restore_jobs: usize,
        rx: &Receiver<Done>,
        tx: &Sender<Result<(Batch, LoaderState)>>,
        stop: &AtomicBool,
    ) {
        let mut reorder = Reorder { rx, pending: BTreeMap::new(), next: 0 };
        let result = (|| -> Result<()> {
            for _ in 0..n_restore_jobs {
                let d = reorder.next()?;
                debug_assert!(d.restore);
                self.append(ds, d.payload?);
            }
            loop {
                let batch = self.pack(ds, &mut reorder)?;
                // The state after this batch travels with it, so `Loader::state` describes what
                // the consumer has seen, not how far ahead the packer is.
                let state = make_state(
                    &self.stream,
                    self.split,
                    self.next_doc,
                    self.buffer.iter().map(|d| &d.ordinal),
                    &self.dataset_fp,
                    &self.tokenizer_fp,
                );
                if stop.load(Ordering::Relaxed) || tx.send(Ok((batch, state))).is_err() {
                    return Ok(());
                }
            }
        })();
        if let Err(e) = result {
            let _ = tx.send(Err(e));
        }
    }

    fn append(&mut self, ds: &Dataset, t: Tokenised) {
        let cap = self.opts.seq_len + 1;
        for (ordinal, tokens) in t.ordinals.into_iter().zip(t.tokens) {
            if !self.warned_long && tokens.len() > 16 * cap {
                self.warned_long = true;
                let (_, unit, _) = self.stream.locate(ordinal);
                log::warn!(
                    "data ({:?}): a document of {} tokens; rows hold {cap}, so best-fit keeps at most its first {cap} tokens \
                     and drops the rest\n  HINT: split long texts into documents (--txt-delimiter for .txt)",
                    ds.files()[self.stream.units[unit].file].path,
                    tokens.len()
                );
            }
            self.buffer.push(Doc { ordinal, tokens });
        }
    }

    /// Pack one batch of B rows (spec §5.3).
    fn pack(&mut self, ds: &Dataset, reorder: &mut Reorder) -> Result<Batch> {
        let (b, t) = (self.opts.batch_size, self.opts.seq_len);
        let cap = t + 1;
        // Rows are built T+1 long and split into inputs/targets at the end (one copy each).
        let mut rows = vec![0u32; b * cap];
        for row in rows.chunks_mut(cap) {
            let mut pos = 0;
            while pos < cap {
                while self.buffer.len() < self.opts.buffer_docs {
                    let d = reorder.next()?;
                    let tokenised = d.payload?;
                    self.next_doc = tokenised.next;
                    self.append(ds, tokenised);
                }
                let remaining = cap - pos;
                // Largest document that fits; strict `>` keeps the earliest on a tie.
                let mut best: Option<usize> = None;
                let mut best_len = 0;
                for (i, d) in self.buffer.iter().enumerate() {
                    let n = d.tokens.len();
                    if n <= remaining && n > best_len {
                        best = Some(i);
                        best_len = n;
                    }
                }
                match best {
                    Some(i) => {
                        let d = self.buffer.remove(i);
                        row[pos..pos + d.tokens.len()].copy_from_slice(&d.tokens);
                        pos += d.tokens.len();
                    }
                    None => {
                        // Nothing fits: crop the shortest document (earliest on a tie).
                        let mut i = 0;
                        for (k, d) in self.buffer.iter().enumerate() {
                            if d.tokens.len() < self.buffer[i].tokens.len() {
                                i = k;
                            }
                        }
                        let d = self.buffer.remove(i);
                        row[pos..].copy_from_slice(&d.tokens[..remaining]);
                        pos = cap;
                    }
                }
            }
        }
        let mut inputs = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * t);
        for row in rows.chunks(cap) {
            inputs.extend(row[..t].iter().map(|&x| x as i32));
            targets.extend(row[1..].iter().map(|&x| x as i32));
        }
        Ok(Batch { inputs, targets, batch_size: b, seq_len: t })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_locates_groups_inside_units() {
        let units = vec![Unit { file: 0, chunk: 0, docs: 0..300 }, Unit { file: 1, chunk: 0, docs: 5..10 }];
        let s = Stream::new(&units, 128);
        assert_eq!(s.epoch_docs, 305);
        let g = s.group_at(256);
        assert_eq!((g.first, g.end, g.unit, g.offset), (256, 300, 0, 256));
        let g = s.group_at(300);
        assert_eq!((g.first, g.end, g.unit, g.offset), (300, 305, 1, 0));
        // Second epoch starts again at unit 0.
        assert_eq!(s.locate(305), (2, 0, 0));
        assert!(s.is_group_start(305 + 128) && !s.is_group_start(305 + 100));
    }

    #[test]
    fn state_buffer_is_stored_as_runs() {
        let units = vec![Unit { file: 0, chunk: 0, docs: 0..1000 }];
        let s = Stream::new(&units, 128);
        let st = make_state(&s, Split::Train, 256, [1u64, 2, 3, 7, 9, 10].iter(), "d", "t");
        assert_eq!(st.buffer, vec![[1, 3], [7, 1], [9, 2]]);
        assert_eq!((st.epoch, st.shard, st.row_group), (1, 0, 0));
        // The reader is in its second pass over a 100-document split, but only 90 documents have
        // left the buffer: the consumer is still in epoch 1.
        let s = Stream::new(&[Unit { file: 0, chunk: 0, docs: 0..100 }], 10);
        let st = make_state(&s, Split::Train, 150, (90..150).collect::<Vec<u64>>().iter(), "d", "t");
        assert_eq!(st.epoch, 1);
        let st = make_state(&s, Split::Train, 150, (140..150).collect::<Vec<u64>>().iter(), "d", "t");
        assert_eq!(st.epoch, 2);
    }
}
