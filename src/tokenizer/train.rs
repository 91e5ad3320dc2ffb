//! BPE training as nanochat's `rustbpe` does it, so the same text gives the same merges:
//!
//! 1. Split every document with the pattern and count each distinct chunk.
//! 2. Each distinct chunk is a "word": its UTF-8 bytes as token ids 0..=255, weighted by its count.
//! 3. Count adjacent pairs (weighted) into a max-heap keyed by count; ties go to the smaller
//!    (left, right) pair.
//! 4. Pop the top. If its count is stale, push it back with the fresh count (lazy refresh); skip
//!    pairs whose count dropped to 0. Record the merge as the next id, apply it in every word that
//!    may contain the pair, update the pair counts by each word's local deltas times its weight,
//!    and push the pairs the merge created.
//!
//! The merge sequence depends only on the multiset of chunk counts, never on the order words or
//! documents arrive in, because each pair has at most one live heap entry: a pair is first pushed
//! when it comes into existence, and every pair a merge creates contains the brand-new id.

use super::bpe::split_chunks;
use fancy_regex::Regex;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

type Pair = (u32, u32);

/// Counts of distinct chunks, accumulated batch by batch (documents are streamed, never all held).
pub struct ChunkCounter {
    regex: Regex,
    counts: FxHashMap<Box<str>, i64>,
}

impl ChunkCounter {
    pub fn new(regex: Regex) -> Self {
        ChunkCounter { regex, counts: FxHashMap::default() }
    }

    /// Split and count a batch of documents on all cores.
    pub fn add_batch<S: AsRef<str> + Sync>(&mut self, docs: &[S]) {
        let regex = &self.regex;
        let local = docs
            .par_iter()
            .fold(FxHashMap::<&str, i64>::default, |mut m, doc| {
                split_chunks(regex, doc.as_ref(), |c| *m.entry(c).or_insert(0) += 1);
                m
            })
            .reduce(FxHashMap::default, |mut a, mut b| {
                // Fold the smaller map into the larger one.
                if a.len() < b.len() {
                    std::mem::swap(&mut a, &mut b);
                }
                for (k, v) in b {
                    *a.entry(k).or_insert(0) += v;
                }
                a
            });
        for (k, v) in local {
            match self.counts.get_mut(k) {
                Some(c) => *c += v,
                None => {
                    self.counts.insert(k.into(), v);
                }
            }
        }
    }

    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// Run the merge loop for `n_merges` merges. Returns the merges as (left, right) in order;
    /// merge `i` creates id `256 + i`. Fewer than `n_merges` come back when the text runs out of
    /// pairs.
    pub fn train(self, n_merges: usize, mut progress: impl FnMut(usize, Pair, i64)) -> Vec<Pair> {
        // Sorting the words makes the run reproducible bit for bit (hash-map order would only
        // reorder words, which cannot change the merges, but keeps logs and timing stable).
        let mut entries: Vec<(Box<str>, i64)> = self.counts.into_iter().collect();
        entries.sort_unstable();
        let counts: Vec<i64> = entries.iter().map(|e| e.1).collect();
        let mut words: Vec<Vec<u32>> = entries.iter().map(|e| e.0.bytes().map(u32::from).collect()).collect();
        drop(entries);
        train_words(&mut words, &counts, n_merges, &mut progress)
    }
}

#[derive(Debug)]
struct Job {
    pair: Pair,
    count: i64,
    /// Words where the pair may occur (a superset: merging elsewhere is a no-op).
    pos: Vec<u32>,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.pair == other.pair
    }
}
impl Eq for Job {}
impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Job {
    /// Max-heap on count; on a tie the smaller pair is "greater" so it pops first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.count.cmp(&other.count).then_with(|| other.pair.cmp(&self.pair))
    }
}

/// Merge every non-overlapping occurrence of `pair` (left to right) in `word`, pushing the pair
/// count changes this causes (per unit of the word's weight) into `deltas`.
fn merge_word(word: &mut Vec<u32>, pair: Pair, new_id: u32, deltas: &mut Vec<(Pair, i64)>) {
    let (a, b) = pair;
    let n = word.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if i + 1 < n && word[i] == a && word[i + 1] == b {
            if let Some(&x) = out.last() {
                deltas.push(((x, a), -1));
                deltas.push(((x, new_id), 1));
            }
            deltas.push(((a, b), -1));
            if i + 2 < n {
                let y = word[i + 2];
                deltas.push(((b, y), -1));
                deltas.push(((new_id, y), 1));
            }
            out.push(new_id);
            i += 2;
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
    *word = out;
}

fn train_words(
    words: &mut [Vec<u32>],
    counts: &[i64],
    n_merges: usize,
    progress: &mut impl FnMut(usize, Pair, i64),
) -> Vec<Pair> {
    // Initial pair counts and the words each pair occurs in, on all cores.
    let (mut pair_counts, where_to_update) = words
        .par_iter()
        .enumerate()
        .fold(
            || (FxHashMap::<Pair, i64>::default(), FxHashMap::<Pair, Vec<u32>>::default()),
            |(mut pc, mut wtu), (i, w)| {
                for p in w.windows(2) {
                    let pair = (p[0], p[1]);
                    *pc.entry(pair).or_insert(0) += counts[i];
                    let list = wtu.entry(pair).or_default();
                    if list.last() != Some(&(i as u32)) {
                        list.push(i as u32);
                    }
                }
                (pc, wtu)
            },
        )
        .reduce(
            || (FxHashMap::default(), FxHashMap::default()),
            |(mut pc, mut wtu), (pc2, wtu2)| {
                for (k, v) in pc2 {
                    *pc.entry(k).or_insert(0) += v;
                }
                for (k, v) in wtu2 {
                    wtu.entry(k).or_default().extend(v);
                }
                (pc, wtu)
            },
        );
    let mut heap: BinaryHeap<Job> = where_to_update
        .into_iter()
        .filter_map(|(pair, pos)| {
            let count = pair_counts.get(&pair).copied().unwrap_or(0);
            (count > 0).then_some(Job { pair, count, pos })
        })
        .collect();

    let mut merges = Vec::with_capacity(n_merges);
    let mut deltas = Vec::new();
    while merges.len() < n_merges {
        let Some(mut top) = heap.pop() else { break };
        let current = pair_counts.get(&top.pair).copied().unwrap_or(0);
        if current <= 0 {
            continue;
        }
        if current != top.count {
            top.count = current;
            heap.push(top);
            continue;
        }
        let new_id = 256 + merges.len() as u32;
        merges.push(top.pair);
        let mut created: FxHashMap<Pair, Vec<u32>> = FxHashMap::default();
        for &w in &top.pos {
            deltas.clear();
            merge_word(&mut words[w as usize], top.pair, new_id, &mut deltas);
            let weight = counts[w as usize];
            for &(pair, d) in &deltas {
                *pair_counts.entry(pair).or_insert(0) += d * weight;
                if d > 0 {
                    let list = created.entry(pair).or_default();
                    if list.last() != Some(&w) {
                        list.push(w);
                    }
                }
            }
        }
        for (pair, pos) in created {
            let count = pair_counts.get(&pair).copied().unwrap_or(0);
            if count > 0 {
                heap.push(Job { pair, count, pos });
            }
        }
        progress(merges.len(), top.pair, top.count);
    }
    merges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train_text(texts: &[&str], n: usize) -> Vec<Pair> {
        let mut c = ChunkCounter::new(super::super::bpe::compile_pattern(r"\S+|\s+").unwrap());
        c.add_batch(texts);
        c.train(n, |_, _, _| {})
    }

    #[test]
    fn most_frequent_pair_first_ties_to_smaller_pair() {
        // "ab" x3 and "cd" x3 tie on count; (a,b) < (c,d) so it merges first.
        let m = train_text(&["cd ab cd ab cd ab"], 2);
        assert_eq!(m, vec![(b'a' as u32, b'b' as u32), (b'c' as u32, b'd' as u32)]);
        // (c,d) now more frequent than (a,b).
        let m = train_text(&["cd ab cd cd"], 1);
        assert_eq!(m, vec![(b'c' as u32, b'd' as u32)]);
    }

    #[test]
    fn overlapping_pairs_are_counted_and_merged_left_to_right() {
        // "aaaa": (a,a) occurs 3 times; after merging it, the word is [aa, aa] and (aa,aa) has count 1.
        let m = train_text(&["aaaa"], 5);
        assert_eq!(m, vec![(97, 97), (256, 256)]);
    }

    #[test]
    fn stops_when_pairs_run_out() {
        assert_eq!(train_text(&["ab"], 10).len(), 1);
    }

    #[test]
    fn order_of_documents_does_not_matter() {
        let docs = ["the cat sat on the mat", "then the hat", "that thin theme", "mat hat cat that"];
        let a = train_text(&docs, 20);
        let rev: Vec<&str> = docs.iter().rev().copied().collect();
        assert_eq!(a, train_text(&rev, 20));
    }
}
