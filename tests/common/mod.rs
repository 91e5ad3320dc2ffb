//! Helpers shared by the data and tokenizer tests: the third-party data location, generated
//! text, scratch directories.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use wgpt::util::Rng;

/// `$WGPT_TEST_DATA` (the shared third-party data, e.g. `../shared/data`), or `None` after
/// printing why the calling test is skipped.
pub fn test_data(test: &str) -> Option<PathBuf> {
    match std::env::var_os("WGPT_TEST_DATA") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.join("fineweb-edu/nanochat_shards").is_dir(),
                "WGPT_TEST_DATA={} does not hold fineweb-edu/nanochat_shards",
                p.display()
            );
            Some(p)
        }
        _ => {
            eprintln!(
                "{test}: skipped: WGPT_TEST_DATA not set (it must point at the shared third-party data folder, e.g. \
                 WGPT_TEST_DATA=../shared/data; .ci/run sets it)"
            );
            None
        }
    }
}

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Unique per call (tests run in parallel threads of one process).
    pub fn new(name: &str) -> Scratch {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("wgpt-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "to", "ri", "the", "an", "ing", "st", "qu", "ze", "lo", "mi", "pr", "é", "ü", "ño", "你", "好", "th", "er",
    "on", "ly", "ed", "Α", "ω",
];
const PUNCT: [&str; 14] = [", ", ". ", "! ", "? ", "; ", " - ", "\n", "\n\n", " (", ") ", "'s ", "'ll ", " 🌍 ", "\t"];

/// A document of about `words` words: made-up words, numbers, punctuation, contractions,
/// whitespace runs, non-ASCII text, and now and then special-token text.
pub fn synthetic_doc(rng: &mut Rng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        let r = rng.next_u64();
        match r % 23 {
            0 => s += &format!("{}", rng.next_u64() % 100_000),
            1 => s += "<|bos|>",
            2 => s += "   ",
            3 => s += "<|endoftext|>",
            _ => {
                for _ in 0..1 + (rng.next_u64() % 4) {
                    s += SYLLABLES[(rng.next_u64() % SYLLABLES.len() as u64) as usize];
                }
            }
        }
        if i + 1 < words {
            s += if r.is_multiple_of(7) { PUNCT[(rng.next_u64() % PUNCT.len() as u64) as usize] } else { " " };
        }
    }
    s
}

/// `n` synthetic documents of 5..~200 words.
pub fn synthetic_docs(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let w = 5 + (rng.next_u64() % 200) as usize;
            synthetic_doc(&mut rng, w)
        })
        .collect()
}
