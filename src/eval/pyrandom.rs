//! A bit-exact port of the parts of CPython 3.11's `random.Random` that nanochat's CORE evaluation
//! draws from: the 1337-seeded shuffle that orders each task's items (`scripts/base_eval.py`) and
//! the `Random(1234 + idx).sample(...)` that picks each item's few-shot examples
//! (`nanochat/core_eval.py`). Matching CPython draw for draw is what makes our prompts, and so our
//! CORE numbers, the same as nanochat's.
//!
//! The generator is MT19937 seeded by `init_by_array` exactly as CPython's `random_seed` does for
//! an int seed; the derived methods follow `Lib/random.py` line by line.

/// MT19937 state size (words).
const N: usize = 624;
/// MT19937 middle word offset.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// CPython's `random.Random`, restricted to what the CORE evaluation uses.
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    mti: usize,
}

impl PyRandom {
    /// `random.Random(seed)` for a non-negative int seed: CPython splits the seed into 32-bit words,
    /// least significant first (seed 0 gives the key `[0]`), and seeds with `init_by_array`.
    pub fn new(seed: u64) -> Self {
        let key: Vec<u32> = if seed >> 32 == 0 { vec![seed as u32] } else { vec![seed as u32, (seed >> 32) as u32] };
        let mut rng = PyRandom { mt: [0; N], mti: N + 1 };
        rng.init_by_array(&key);
        rng
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        self.mti = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = self.mt[i - 1];
            self.mt[i] = (self.mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                self.mt[0] = self.mt[N - 1];
                i = 1;
            }
        }
        // MSB is 1, assuring a non-zero initial array.
        self.mt[0] = 0x8000_0000;
    }

    /// One 32-bit output of MT19937 (CPython's `genrand_uint32`).
    pub fn genrand_uint32(&mut self) -> u32 {
        if self.mti >= N {
            let mag = |y: u32| if y & 1 == 0 { 0 } else { MATRIX_A };
            for kk in 0..N - M {
                let y = (self.mt[kk] & UPPER_MASK) | (self.mt[kk + 1] & LOWER_MASK);
                self.mt[kk] = self.mt[kk + M] ^ (y >> 1) ^ mag(y);
            }
            for kk in N - M..N - 1 {
                let y = (self.mt[kk] & UPPER_MASK) | (self.mt[kk + 1] & LOWER_MASK);
                self.mt[kk] = self.mt[kk + M - N] ^ (y >> 1) ^ mag(y);
            }
            let y = (self.mt[N - 1] & UPPER_MASK) | (self.mt[0] & LOWER_MASK);
            self.mt[N - 1] = self.mt[M - 1] ^ (y >> 1) ^ mag(y);
            self.mti = 0;
        }
        let mut y = self.mt[self.mti];
        self.mti += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `getrandbits(k)` for `k <= 64`. Up to 32 bits it is one draw shifted right; beyond, CPython
    /// fills 32-bit words least significant first, the last word keeping its top `k % 32` bits.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits supports at most 64 bits here, got {k}");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.genrand_uint32() >> (32 - k));
        }
        let low = u64::from(self.genrand_uint32());
        let high = u64::from(self.genrand_uint32() >> (64 - k));
        low | (high << 32)
    }

    /// `_randbelow_with_getrandbits(n)`: a uniform integer in `[0, n)` by rejection on
    /// `getrandbits(n.bit_length())`. `n` must be positive.
    pub fn randbelow(&mut self, n: usize) -> usize {
        assert!(n > 0, "randbelow needs a positive bound");
        let n = n as u64;
        let k = 64 - n.leading_zeros();
        let mut r = self.getrandbits(k);
        while r >= n {
            r = self.getrandbits(k);
        }
        r as usize
    }

    /// `random()`: a float in `[0, 1)` with 53 random bits.
    pub fn random(&mut self) -> f64 {
        let a = f64::from(self.genrand_uint32() >> 5);
        let b = f64::from(self.genrand_uint32() >> 6);
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `shuffle(x)` in place (CPython 3.11: Fisher-Yates from the end with `randbelow(i + 1)`).
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i + 1);
            x.swap(i, j);
        }
    }

    /// `sample(range(n), k)`: `k` distinct indices into a population of length `n`, in the order
    /// CPython 3.11 returns them. Panics if `k > n`, where CPython raises `ValueError`.
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "sample larger than population ({k} > {n})");
        let mut setsize = 21usize;
        if k > 5 {
            // `4 ** _ceil(_log(k * 3, 4))`; math.log(x, base) is log(x) / log(base).
            let exp = (((k * 3) as f64).ln() / 4f64.ln()).ceil() as u32;
            setsize += 4usize.pow(exp);
        }
        let mut result = Vec::with_capacity(k);
        if n <= setsize {
            // The pool method: a partial Fisher-Yates over a copy of the population.
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow(n - i);
                result.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n);
                while selected.contains(&j) {
                    j = self.randbelow(n);
                }
                selected.insert(j);
                result.push(j);
            }
        }
        result
    }
}

/// The few-shot example indices nanochat's `evaluate_example` draws for item `idx` of a task with
/// `n_items` items: `Random(1234 + idx).sample([i for i in range(n_items) if i != idx], k)`.
/// Panics if `k > n_items - 1` (CPython's `ValueError`); callers check `num_fewshot` against the
/// task size first.
pub fn fewshot_indices(n_items: usize, idx: usize, k: usize) -> Vec<usize> {
    if k == 0 {
        // nanochat skips the draw entirely when num_fewshot is 0.
        return Vec::new();
    }
    let available = n_items - usize::from(idx < n_items);
    let mut rng = PyRandom::new(1234 + idx as u64);
    // Position p in the list without idx is item p below idx and p + 1 from idx on.
    rng.sample(available, k).into_iter().map(|p| if p < idx { p } else { p + 1 }).collect()
}

#[cfg(test)]
mod tests {
    //! Golden values from CPython 3.11.7 on this machine, e.g.
    //! `r = random.Random(1337); [r.getrandbits(32) for _ in range(6)]`,
    //! `r = random.Random(1337); [r.getrandbits(k) for k in [1, 7, 31, 32, 33, 64]]`,
    //! `l = list(range(50)); random.Random(1337).shuffle(l)` and
    //! `random.Random(1234 + idx).sample([i for i in range(n) if i != idx], k)`.
    use super::*;

    fn first_words(seed: u64) -> Vec<u64> {
        let mut r = PyRandom::new(seed);
        (0..6).map(|_| r.getrandbits(32)).collect()
    }

    #[test]
    fn getrandbits32_matches_cpython_for_seeds() {
        assert_eq!(first_words(0), [3626764237, 1654615998, 3255389356, 3823568514, 1806341205, 173879092]);
        assert_eq!(first_words(1), [577090037, 2444712010, 3639700191, 3445702192, 3280387012, 271041745]);
        assert_eq!(first_words(1337), [2653228291, 3975144315, 2290358181, 3048911309, 1571306751, 2452336048]);
        // A seed above 2**32 is two key words, low word first.
        assert_eq!(first_words((1 << 32) + 5), [675479763, 2085189291, 1213270837, 3822202474, 2596110301, 3587694693]);
    }

    #[test]
    fn getrandbits_of_various_widths_matches_cpython() {
        let mut r = PyRandom::new(1337);
        let got: Vec<u64> = [1, 7, 31, 32, 33, 64].iter().map(|&k| r.getrandbits(k)).collect();
        assert_eq!(got, [1, 118, 1145179090, 3048911309, 5866274047, 13501076693576984818]);
    }

    #[test]
    fn random_and_randbelow_match_cpython() {
        let mut r = PyRandom::new(42);
        let got: Vec<f64> = (0..3).map(|_| r.random()).collect();
        assert_eq!(got, [0.6394267984578837, 0.025010755222666936, 0.27502931836911926]);
        // r = random.Random(7); [r._randbelow(n) for n in [1, 2, 3, 10, 1000, 2**40 + 3]]
        let mut r = PyRandom::new(7);
        let got: Vec<usize> = [1, 2, 3, 10, 1000, (1 << 40) + 3].iter().map(|&n| r.randbelow(n)).collect();
        assert_eq!(got, [0, 0, 1, 0, 74, 803563169809]);
    }

    #[test]
    fn shuffle_matches_cpython() {
        let mut l: Vec<usize> = (0..50).collect();
        PyRandom::new(1337).shuffle(&mut l);
        assert_eq!(
            l,
            [
                2, 1, 20, 17, 48, 29, 8, 18, 31, 30, 41, 43, 15, 47, 32, 5, 7, 14, 3, 38, 33, 0, 28, 9, 35, 26, 12, 11,
                42, 22, 16, 4, 44, 27, 6, 49, 13, 25, 19, 46, 40, 24, 21, 10, 37, 36, 23, 45, 34, 39
            ]
        );
        let mut empty: [u8; 0] = [];
        PyRandom::new(1337).shuffle(&mut empty);
    }

    #[test]
    fn fewshot_indices_match_cpython_sample() {
        // (n, idx, k, expected). n = 8 and n = 30 with k = 10 use the pool method; n = 30 with
        // k <= 5, n = 100 and n = 2117 the selected-set method.
        #[rustfmt::skip]
        let cases: &[(usize, usize, usize, &[usize])] = &[
            (8, 0, 0, &[]),
            (8, 0, 3, &[7, 4, 1]),
            (8, 0, 5, &[7, 4, 1, 5, 6]),
            (8, 5, 3, &[0, 2, 3]),
            (8, 5, 5, &[0, 2, 3, 7, 4]),
            (8, 7, 5, &[4, 6, 3, 1, 5]),
            (30, 0, 3, &[25, 15, 4]),
            (30, 0, 10, &[25, 15, 4, 1, 3, 19, 2, 22, 29, 27]),
            (30, 5, 5, &[2, 9, 15, 29, 0]),
            (30, 5, 10, &[2, 9, 15, 0, 1, 3, 16, 23, 21, 6]),
            (30, 29, 10, &[25, 27, 5, 7, 9, 3, 20, 26, 16, 22]),
            (100, 0, 10, &[57, 15, 1, 12, 75, 5, 86, 89, 11, 13]),
            (100, 5, 3, &[10, 36, 59]),
            (100, 5, 10, &[10, 36, 59, 3, 7, 14, 62, 88, 83, 21]),
            (100, 99, 5, &[62, 45, 80, 10, 31]),
            (2117, 0, 10, &[1806, 479, 31, 372, 144, 344, 404, 1453, 970, 72]),
            (2117, 5, 3, &[306, 1141, 1868]),
            (2117, 5, 10, &[306, 1141, 1868, 101, 197, 419, 1955, 1973, 643, 1309]),
            (2117, 2116, 10, &[1851, 733, 148, 681, 1091, 289, 1159, 346, 1288, 727]),
        ];
        for &(n, idx, k, want) in cases {
            assert_eq!(fewshot_indices(n, idx, k), want, "n={n} idx={idx} k={k}");
        }
    }
}
