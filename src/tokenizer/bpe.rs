//! Byte-level BPE: the model (the bytes of every token, the merge table, the split pattern) and
//! the encoder that applies it.
//!
//! Encoding splits the text with the pattern, then inside each chunk repeatedly merges the
//! adjacent pair with the lowest merge rank (the leftmost one on a tie) until no pair merges. That
//! is how training built every token, so a training word encodes to exactly the segmentation
//! training ended with, and it is what the `tokenizers` crate's BPE model does with the same
//! merges (the tests check token-for-token equality). tiktoken, which nanochat encodes with,
//! instead looks up the *concatenated bytes* of a pair; the two agree unless two different pairs
//! spell the same bytes, which [`BpeModel::duplicate_tokens`] counts.

use fancy_regex::Regex;
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};

/// nanochat's split pattern: GPT-4's cl100k pattern with `\p{N}{1,2}` instead of `{1,3}`. The
/// possessive quantifiers (`?+`, `++`) and the lookahead `(?!\S)` are why this needs fancy-regex.
pub const NANOCHAT_PATTERN: &str =
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// GPT-2's pattern, which the `tokenizers` crate's `ByteLevel { use_regex: true }` pre-tokenizer
/// applies.
pub const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Rank value meaning "this pair does not merge".
const NO_MERGE: u32 = u32::MAX;
/// Chunks up to this many bytes use the quadratic merge loop (cheapest for words); longer ones
/// (runs of whitespace, long URLs, DNA strings) use the heap so a 100 kB chunk stays O(n log n).
const SMALL_CHUNK: usize = 128;
/// Chunks up to this many bytes are memoised per encoder; longer ones rarely repeat.
const CACHE_MAX_CHUNK: usize = 64;
/// Entries before a per-encoder cache is cleared, bounding its memory to a few MB.
const CACHE_MAX_ENTRIES: usize = 1 << 16;

#[inline]
fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// Compile a split pattern with a backtrack limit far above what the patterns need, so a
/// pathological document cannot make a match fail.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    fancy_regex::RegexBuilder::new(pattern)
        .backtrack_limit(100_000_000)
        .build()
        .map_err(|e| format!("split pattern does not compile: {e}"))
}

static SPLIT_ERROR_LOGGED: AtomicBool = AtomicBool::new(false);

/// Call `f` on every chunk of `text`, in order, covering every byte exactly once: the regex
/// matches plus any text between them (the `tokenizers` crate's "Isolated" split behaviour; the
/// patterns here match every character, so in practice there are no gaps). If the regex engine
/// gives up, the rest of the text becomes one chunk so no byte is ever lost.
pub fn split_chunks<'t>(regex: &Regex, text: &'t str, mut f: impl FnMut(&'t str)) {
    let mut last = 0;
    for m in regex.find_iter(text) {
        match m {
            Ok(m) => {
                if m.start() > last {
                    f(&text[last..m.start()]);
                }
                if m.end() > m.start() {
                    f(m.as_str());
                }
                last = m.end();
            }
            Err(e) => {
                if !SPLIT_ERROR_LOGGED.swap(true, Ordering::Relaxed) {
                    log::warn!("split pattern failed at byte {last} ({e}); encoding the rest as one chunk");
                }
                break;
            }
        }
    }
    if last < text.len() {
        f(&text[last..]);
    }
}

/// A byte-level BPE model. Token ids need not be contiguous with the merges (GPT-2's are not);
/// ids without bytes (special tokens) have an empty byte range and never come out of a merge.
pub struct BpeModel {
    pattern: String,
    regex: Regex,
    /// `byte_ids[b]`: the id of the token that is the single byte `b`.
    byte_ids: [u32; 256],
    /// Bytes of token `id` are `token_data[token_offsets[id]..token_offsets[id + 1]]`.
    token_offsets: Vec<u32>,
    token_data: Vec<u8>,
    has_bytes: Vec<bool>,
    /// (left, right) -> merge rank; the result id is `merge_list[rank].2`.
    merges: FxHashMap<u64, u32>,
    /// Merges in rank order: (left, right, result).
    merge_list: Vec<(u32, u32, u32)>,
}

impl BpeModel {
    /// Build and validate a model.
    /// - `tokens[id]`: the bytes of token `id`, or `None` for ids that are not byte tokens
    ///   (specials); every single byte must be some token.
    /// - `merges`: `(left, right, result)` in rank order; `result`'s bytes must be left's + right's.
    pub fn new(pattern: &str, tokens: &[Option<Vec<u8>>], merges: &[(u32, u32, u32)]) -> Result<Self, String> {
        let regex = compile_pattern(pattern)?;
        let n = tokens.len();
        let mut byte_ids = [u32::MAX; 256];
        let mut token_offsets = Vec::with_capacity(n + 1);
        let mut token_data = Vec::new();
        let mut has_bytes = Vec::with_capacity(n);
        token_offsets.push(0u32);
        for (id, t) in tokens.iter().enumerate() {
            if let Some(b) = t {
                if b.is_empty() {
                    return Err(format!("token {id} has no bytes"));
                }
                if b.len() == 1 && byte_ids[b[0] as usize] == u32::MAX {
                    byte_ids[b[0] as usize] = id as u32;
                }
                token_data.extend_from_slice(b);
            }
            has_bytes.push(t.is_some());
            let end = u32::try_from(token_data.len()).map_err(|_| "token table larger than 4 GiB".to_string())?;
            token_offsets.push(end);
        }
        if let Some(b) = byte_ids.iter().position(|&id| id == u32::MAX) {
            return Err(format!(
                "byte 0x{b:02x} has no single-byte token, so some text could not be encoded (not a byte-level BPE)"
            ));
        }
        let mut model = BpeModel {
            pattern: pattern.to_string(),
            regex,
            byte_ids,
            token_offsets,
            token_data,
            has_bytes,
            merges: FxHashMap::default(),
            merge_list: Vec::with_capacity(merges.len()),
        };
        model.merges.reserve(merges.len());
        for (rank, &(a, b, id)) in merges.iter().enumerate() {
            let (ta, tb, tid) = match (model.token(a), model.token(b), model.token(id)) {
                (Some(ta), Some(tb), Some(tid)) => (ta, tb, tid),
                _ => return Err(format!("merge #{rank} ({a}, {b}) -> {id} refers to a token that has no bytes")),
            };
            if tid.len() != ta.len() + tb.len() || &tid[..ta.len()] != ta || &tid[ta.len()..] != tb {
                return Err(format!(
                    "merge #{rank} ({a}, {b}) -> {id}: token {id}'s bytes are not token {a}'s followed by token {b}'s"
                ));
            }
            let prev = model.merges.insert(pair_key(a, b), rank as u32);
            if prev.is_some() {
                return Err(format!("merge #{rank} ({a}, {b}) appears twice"));
            }
            model.merge_list.push((a, b, id));
        }
        Ok(model)
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// Number of ids the token table covers (including ids without bytes).
    pub fn n_ids(&self) -> usize {
        self.has_bytes.len()
    }

    /// The bytes of token `id`, or `None` for an unknown id or one without bytes (a special).
    #[inline]
    pub fn token(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        if i < self.has_bytes.len() && self.has_bytes[i] {
            Some(&self.token_data[self.token_offsets[i] as usize..self.token_offsets[i + 1] as usize])
        } else {
            None
        }
    }

    pub fn byte_ids(&self) -> &[u32; 256] {
        &self.byte_ids
    }

    /// Merges in rank order as (left, right, result).
    pub fn merges(&self) -> &[(u32, u32, u32)] {
        &self.merge_list
    }

    /// Tokens whose bytes equal an earlier token's bytes (possible when two different pairs
    /// concatenate to the same string). Such a token cannot be told apart in a `tokenizer.json`
    /// vocabulary, whose keys are strings; 0 in every tokenizer we have trained.
    pub fn duplicate_tokens(&self) -> usize {
        let mut seen: FxHashMap<&[u8], u32> = FxHashMap::default();
        let mut dups = 0;
        for id in 0..self.n_ids() as u32 {
            if let Some(t) = self.token(id) {
                if seen.insert(t, id).is_some() {
                    dups += 1;
                }
            }
        }
        dups
    }

    #[inline]
    fn rank(&self, a: u32, b: u32) -> u32 {
        self.merges.get(&pair_key(a, b)).copied().unwrap_or(NO_MERGE)
    }

    /// Apply the merges to one chunk's bytes, writing token ids into `parts`.
    fn merge_chunk(&self, bytes: &[u8], parts: &mut Vec<u32>, ranks: &mut Vec<u32>) {
        parts.clear();
        parts.extend(bytes.iter().map(|&b| self.byte_ids[b as usize]));
        if parts.len() < 2 {
            return;
        }
        if parts.len() > SMALL_CHUNK {
            self.merge_long(parts);
            return;
        }
        // ranks[i] is the rank of (parts[i], parts[i+1]); after a merge only the two neighbouring
        // pairs change, so each step costs one scan of `ranks` plus two hash lookups.
        ranks.clear();
        ranks.extend(parts.windows(2).map(|w| self.rank(w[0], w[1])));
        loop {
            let mut best = NO_MERGE;
            let mut at = 0;
            for (i, &r) in ranks.iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == NO_MERGE {
                break;
            }
            parts[at] = self.merge_list[best as usize].2;
            parts.remove(at + 1);
            ranks.remove(at);
            if at > 0 {
                ranks[at - 1] = self.rank(parts[at - 1], parts[at]);
            }
            if at < ranks.len() {
                ranks[at] = self.rank(parts[at], parts[at + 1]);
            }
        }
    }

    /// The same merge order as the quadratic loop (lowest rank, then leftmost position), over a
    /// linked list with a heap of candidate pairs; stale heap entries are skipped on pop.
    fn merge_long(&self, parts: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        let n = parts.len();
        let mut ids = parts.clone();
        let mut next: Vec<usize> = (1..=n).map(|i| if i < n { i } else { NONE }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| if i > 0 { i - 1 } else { NONE }).collect();
        let mut alive = vec![true; n];
        let mut heap: BinaryHeap<Reverse<(u32, usize)>> = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            let r = self.rank(ids[i], ids[i + 1]);
            if r != NO_MERGE {
                heap.push(Reverse((r, i)));
            }
        }
        while let Some(Reverse((r, i))) = heap.pop() {
            if !alive[i] || next[i] == NONE {
                continue;
            }
            let j = next[i];
            // A rank names exactly one pair, so an equal rank means the entry is still current.
            if self.rank(ids[i], ids[j]) != r {
                continue;
            }
            ids[i] = self.merge_list[r as usize].2;
            alive[j] = false;
            next[i] = next[j];
            if next[j] != NONE {
                prev[next[j]] = i;
            }
            if prev[i] != NONE {
                let p = prev[i];
                let rp = self.rank(ids[p], ids[i]);
                if rp != NO_MERGE {
                    heap.push(Reverse((rp, p)));
                }
            }
            if next[i] != NONE {
                let rn = self.rank(ids[i], ids[next[i]]);
                if rn != NO_MERGE {
                    heap.push(Reverse((rn, i)));
                }
            }
        }
        parts.clear();
        let mut i = 0;
        while i != NONE {
            parts.push(ids[i]);
            i = next[i];
        }
    }

    /// Concatenate the bytes of `ids`; `special` supplies the text of ids without bytes. Errors
    /// name the first id that is neither.
    pub fn decode_bytes(&self, ids: &[u32], special: impl Fn(u32) -> Option<String>) -> Result<Vec<u8>, u32> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            match self.token(id) {
                Some(b) => out.extend_from_slice(b),
                None => out.extend_from_slice(special(id).ok_or(id)?.as_bytes()),
            }
        }
        Ok(out)
    }
}

/// Encodes text with a [`BpeModel`], memoising chunk encodings. One per thread: it is cheap to
/// create, and the cache is what makes repeated words nearly free.
pub struct Encoder<'m> {
    model: &'m BpeModel,
    cache: FxHashMap<Box<[u8]>, Box<[u32]>>,
    parts: Vec<u32>,
    ranks: Vec<u32>,
}

impl<'m> Encoder<'m> {
    pub fn new(model: &'m BpeModel) -> Self {
        Encoder { model, cache: FxHashMap::default(), parts: Vec::new(), ranks: Vec::new() }
    }

    /// Append the tokens of `text` to `out`. Special-token text is ordinary text here.
    pub fn encode_into(&mut self, text: &str, out: &mut Vec<u32>) {
        let model = self.model;
        split_chunks(&model.regex, text, |chunk| self.encode_chunk(chunk.as_bytes(), out));
    }

    fn encode_chunk(&mut self, bytes: &[u8], out: &mut Vec<u32>) {
        if bytes.len() == 1 {
            out.push(self.model.byte_ids[bytes[0] as usize]);
            return;
        }
        let cacheable = bytes.len() <= CACHE_MAX_CHUNK;
        if cacheable {
            if let Some(ids) = self.cache.get(bytes) {
                out.extend_from_slice(ids);
                return;
            }
        }
        self.model.merge_chunk(bytes, &mut self.parts, &mut self.ranks);
        out.extend_from_slice(&self.parts);
        if cacheable {
            if self.cache.len() >= CACHE_MAX_ENTRIES {
                self.cache.clear();
            }
            self.cache.insert(bytes.into(), self.parts.as_slice().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Rng;

    /// A model over bytes with a few merges, some overlapping ("aa") to exercise tie order.
    fn toy() -> BpeModel {
        let mut tokens: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
        let mut merges = Vec::new();
        let mut add = |tokens: &mut Vec<Option<Vec<u8>>>, a: u32, b: u32| {
            let mut t = tokens[a as usize].clone().unwrap();
            t.extend(tokens[b as usize].clone().unwrap());
            tokens.push(Some(t));
            let id = tokens.len() as u32 - 1;
            merges.push((a, b, id));
            id
        };
        let aa = add(&mut tokens, b'a' as u32, b'a' as u32);
        let ab = add(&mut tokens, b'a' as u32, b'b' as u32);
        let _aaa = add(&mut tokens, aa, b'a' as u32);
        let _aab = add(&mut tokens, aa, b'b' as u32);
        let _abab = add(&mut tokens, ab, ab);
        let ba = add(&mut tokens, b'b' as u32, b'a' as u32);
        let _aba = add(&mut tokens, b'a' as u32, ba);
        BpeModel::new(r"\S+|\s+", &tokens, &merges).unwrap()
    }

    #[test]
    fn heap_merge_matches_quadratic_merge() {
        // Long random chunks over {a, b} go through both algorithms; they must agree exactly.
        let m = toy();
        let mut rng = Rng::new(7);
        let (mut parts, mut ranks) = (Vec::new(), Vec::new());
        for len in [2usize, 3, 5, 17, 64, 127, 128] {
            for _ in 0..50 {
                let s: Vec<u8> = (0..len).map(|_| if rng.next_u64().is_multiple_of(3) { b'b' } else { b'a' }).collect();
                m.merge_chunk(&s, &mut parts, &mut ranks);
                let mut long = s.iter().map(|&b| m.byte_ids[b as usize]).collect::<Vec<_>>();
                m.merge_long(&mut long);
                assert_eq!(parts, long, "chunk {:?}", String::from_utf8_lossy(&s));
                let back: Vec<u8> = parts.iter().flat_map(|&id| m.token(id).unwrap().to_vec()).collect();
                assert_eq!(back, s);
            }
        }
    }

    #[test]
    fn leftmost_lowest_rank_wins() {
        let m = toy();
        let (mut parts, mut ranks) = (Vec::new(), Vec::new());
        // "aaa": (a,a) is rank 0 -> [aa, a] -> (aa,a) -> [aaa].
        m.merge_chunk(b"aaa", &mut parts, &mut ranks);
        assert_eq!(m.token(parts[0]), Some(&b"aaa"[..]));
        // "aaaa": leftmost (a,a) first -> [aa, a, a]; then (a,a) again (rank 0) -> [aa, aa]; no (aa,aa) merge.
        m.merge_chunk(b"aaaa", &mut parts, &mut ranks);
        assert_eq!(parts.iter().map(|&i| m.token(i).unwrap()).collect::<Vec<_>>(), vec![&b"aa"[..], b"aa"]);
    }

    #[test]
    fn rejects_inconsistent_merges() {
        let tokens: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).chain([Some(b"xy".to_vec())]).collect();
        let err = BpeModel::new(r"\S+", &tokens, &[(b'x' as u32, b'z' as u32, 256)]).err().unwrap();
        assert!(err.contains("not token"), "{err}");
        let missing: Vec<Option<Vec<u8>>> = (0..=254u8).map(|b| Some(vec![b])).collect();
        let err = BpeModel::new(r"\S+", &missing, &[]).err().unwrap();
        assert!(err.contains("0xff"), "{err}");
    }

    #[test]
    fn split_covers_every_byte() {
        let re = compile_pattern(NANOCHAT_PATTERN).unwrap();
        let text = "Hello world!! It's 12345 apples\r\n\n   tabs\t\there 你好 🌍 <|bos|> x";
        let mut pieces = Vec::new();
        split_chunks(&re, text, |c| pieces.push(c));
        assert_eq!(pieces.concat(), text);
        assert!(pieces.contains(&"12") && pieces.contains(&"34") && pieces.contains(&"5"), "{pieces:?}");
        assert!(pieces.contains(&"'s"), "{pieces:?}");
        // A gap the pattern does not match is still a chunk.
        let digits = compile_pattern(r"\d+").unwrap();
        let mut pieces = Vec::new();
        split_chunks(&digits, "ab12cd", |c| pieces.push(c));
        assert_eq!(pieces, vec!["ab", "12", "cd"]);
    }
}
