//! Peak FLOPS per adapter and precision, for model FLOPs utilisation (MFU).
//!
//! nanochat's table knows datacenter cards and the 3090/4090/5090, and shows 0% on everything else
//! (an RTX 4070 included). This one knows the consumer cards people train on, for the precision
//! the kernels actually use: f32 on the SIMD units (what wgpt's f32 kernels run) and dense f16/bf16
//! with f32 accumulation on the matrix units (what nanochat's bf16 matmuls run). Figures are the
//! vendors' boost-clock specifications (dense, no sparsity); the RTX 4070 bf16 figure is the spec
//! summary's 58.3e12. Matching is an ordered, case-insensitive test that every pattern substring
//! occurs in the adapter name; the first match wins, so more specific names come first.
//! An unknown card gives `None` (shown as "n/a" with a hint to pass `--peak-tflops`), never 0%.

use serde::Serialize;

/// The arithmetic the matmuls run in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Precision {
    /// f32 FMA on the SIMD units (wgpt's kernels today).
    F32,
    /// f16/bf16 inputs with f32 accumulation on the matrix units (nanochat's bf16).
    Bf16Dense,
}

/// (name patterns, f32 TFLOPS, bf16/f16-dense-with-f32-accumulate TFLOPS)
const TABLE: &[(&[&str], f64, f64)] = &[
    // NVIDIA datacenter
    (&["h200"], 67.0, 989.0),
    (&["h100", "pcie"], 51.0, 756.0),
    (&["h100"], 67.0, 989.0),
    (&["a100"], 19.5, 312.0),
    (&["l40s"], 91.6, 362.0),
    (&["l40"], 90.5, 181.0),
    (&["l4"], 30.3, 121.0),
    (&["a10"], 31.2, 125.0),
    // NVIDIA GeForce 50
    (&["5090"], 104.8, 209.5),
    (&["5080"], 56.3, 112.6),
    (&["5070", "ti"], 43.9, 87.9),
    (&["5070"], 30.9, 61.7),
    // NVIDIA GeForce 40
    (&["4090"], 82.6, 165.2),
    (&["4080", "super"], 52.2, 104.4),
    (&["4080"], 48.7, 97.5),
    (&["4070", "ti", "super"], 44.1, 88.2),
    (&["4070", "ti"], 40.1, 80.2),
    (&["4070", "super"], 35.5, 71.0),
    (&["4070"], 29.1, 58.3),
    (&["4060", "ti"], 22.1, 44.2),
    (&["4060"], 15.1, 30.2),
    // NVIDIA GeForce 30
    (&["3090", "ti"], 40.0, 80.0),
    (&["3090"], 35.6, 71.0),
    (&["3080", "ti"], 34.1, 68.2),
    (&["3080"], 29.8, 59.5),
    (&["3070", "ti"], 21.7, 43.5),
    (&["3070"], 20.3, 40.6),
    (&["3060", "ti"], 16.2, 32.4),
    (&["3060"], 12.7, 25.4),
    // AMD Radeon (RDNA 3: dual-issue f32, WMMA f16/bf16)
    (&["7900", "xtx"], 61.4, 122.8),
    (&["7900", "xt"], 51.5, 103.0),
    (&["7900", "gre"], 46.0, 92.0),
    (&["7800", "xt"], 37.3, 74.6),
    (&["7700", "xt"], 35.2, 70.4),
    (&["7600"], 21.8, 43.5),
    // Intel Arc (XMX matrix engines)
    (&["a770"], 19.7, 137.6),
    (&["a750"], 17.2, 114.7),
    (&["b580"], 13.7, 109.0),
];

/// Peak FLOP/s of the named adapter at a precision, if the table knows it.
pub fn peak_flops(adapter_name: &str, precision: Precision) -> Option<f64> {
    let name = adapter_name.to_ascii_lowercase();
    TABLE.iter().find(|(pats, _, _)| pats.iter().all(|p| name.contains(p))).map(|&(_, f32_tf, bf16_tf)| {
        1e12 * match precision {
            Precision::F32 => f32_tf,
            Precision::Bf16Dense => bf16_tf,
        }
    })
}

/// MFU in percent: achieved model FLOP/s over peak. `None` when the peak is unknown.
pub fn mfu_percent(flops_per_token: f64, tokens_per_sec: f64, peak: Option<f64>) -> Option<f64> {
    peak.filter(|p| *p > 0.0).map(|p| 100.0 * flops_per_token * tokens_per_sec / p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_cards_match_their_most_specific_entry() {
        assert_eq!(peak_flops("NVIDIA GeForce RTX 4070", Precision::Bf16Dense), Some(58.3e12));
        assert_eq!(peak_flops("NVIDIA GeForce RTX 4070", Precision::F32), Some(29.1e12));
        assert_eq!(peak_flops("NVIDIA GeForce RTX 4070 Ti SUPER", Precision::Bf16Dense), Some(88.2e12));
        assert_eq!(peak_flops("NVIDIA GeForce RTX 4070 SUPER", Precision::Bf16Dense), Some(71.0e12));
        assert_eq!(peak_flops("NVIDIA GeForce RTX 4070 Ti", Precision::Bf16Dense), Some(80.2e12));
        assert_eq!(peak_flops("AMD Radeon RX 7900 XTX (RADV NAVI31)", Precision::F32), Some(61.4e12));
        assert_eq!(peak_flops("NVIDIA H100 80GB HBM3", Precision::Bf16Dense), Some(989e12));
        assert_eq!(peak_flops("llvmpipe (LLVM 15.0.6, 256 bits)", Precision::F32), None);
    }

    #[test]
    fn unknown_peak_gives_none_never_zero() {
        assert_eq!(mfu_percent(1e9, 1000.0, None), None);
        let m = mfu_percent(887_098_032.0, 20_000.0, Some(58.3e12)).unwrap();
        assert!((m - 30.43).abs() < 0.01, "{m}");
    }
}
