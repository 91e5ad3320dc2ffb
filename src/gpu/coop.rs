//! Whether this adapter's cooperative matrices (tensor cores) may be used, before any kernel runs.
//!
//! Three static gates, in order; the fourth, a start-up self-test of the kernels themselves, is
//! `kernels::matmul_coop::coop_status`:
//! 1. the device has `EXPERIMENTAL_COOPERATIVE_MATRIX` (with SHADER_F16 and SUBGROUP, which the
//!    kernels also use) and advertises a configuration WGSL can express: square 8×8×8 or
//!    16×16×16, f16 inputs, f32 accumulator (f16 accumulation is a second, optional one);
//! 2. `WGPT_COOP=off` is not set;
//! 3. the adapter is not on the deny list below (unless `WGPT_COOP=force`).
//!
//! The tile size is the largest advertised one: 16 on NVIDIA and AMD, 8 on lavapipe. A size the
//! adapter does not advertise is never chosen by autotuning; `wgpt validate` still runs it where
//! the feature exists (lavapipe runs 16×16 kernels correctly) and labels those rows unadvertised.

use crate::error::{Error, Result};

/// Adapters whose cooperative matrices wgpt does not use by default, with the reason. llama.cpp,
/// the largest user of KHR cooperative matrices through Vulkan, has met wrong results from driver
/// bugs (caught here by the self-test, which poisons outputs and compares with the f32 kernel)
/// and slow emulation on Intel GPUs before Xe2, where the "matrix" path runs on the vector units.
/// Entries match the PCI vendor and a substring of the driver name (empty matches any).
pub const DENY_LIST: &[DenyEntry] = &[DenyEntry {
    vendor: 0x8086,
    driver: "",
    reason: "Intel: cooperative matrices are emulated (slower than the f32 kernels) on GPUs before Xe2; \
             WGPT_COOP=force tries them anyway",
}];

#[derive(Clone, Copy, Debug)]
pub struct DenyEntry {
    pub vendor: u32,
    pub driver: &'static str,
    pub reason: &'static str,
}

/// What `WGPT_COOP` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoopMode {
    /// Use them where the gates pass (the default).
    Auto,
    /// Never use them.
    Off,
    /// Ignore the deny list (the self-test still runs).
    Force,
}

impl CoopMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" | "on" | "1" => Ok(CoopMode::Auto),
            "off" | "0" | "no" => Ok(CoopMode::Off),
            "force" => Ok(CoopMode::Force),
            _ => Err(Error::Env { var: "WGPT_COOP", message: format!("`{s}`: expected auto, off or force") }),
        }
    }

    pub fn from_env() -> Result<Self> {
        match std::env::var("WGPT_COOP") {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(CoopMode::Auto),
        }
    }
}

/// One configuration the adapter reports, reduced to what the kernels care about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopConfig {
    /// M = N = K.
    pub size: u32,
    /// The accumulator is f16 (else f32).
    pub f16_accumulator: bool,
}

/// The configurations of `adapter` that matmul_coop.wgsl can use: square, f16 inputs, f16 or f32
/// accumulator (wgpu-hal already dropped bf16, fp8, int8 and sizes other than 8 and 16).
pub fn usable_configs(adapter: &wgpu::Adapter, features: wgpu::Features) -> Vec<CoopConfig> {
    if !features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Vec::new();
    }
    adapter
        .cooperative_matrix_properties()
        .into_iter()
        .filter(|c| c.m_size == c.n_size && c.n_size == c.k_size && matches!(c.m_size, 8 | 16))
        .filter(|c| c.ab_type == wgpu::CooperativeScalarType::F16 && !c.saturating_accumulation)
        .filter_map(|c| match c.cr_type {
            wgpu::CooperativeScalarType::F32 => Some(CoopConfig { size: c.m_size, f16_accumulator: false }),
            wgpu::CooperativeScalarType::F16 => Some(CoopConfig { size: c.m_size, f16_accumulator: true }),
            _ => None,
        })
        .collect()
}

/// The outcome of the static gates: a tile size to use, or why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoopGate {
    Open {
        /// Coop tile edge, 8 or 16.
        tile: u32,
        /// The adapter also accumulates in f16 at that size.
        f16_accumulator: bool,
    },
    Closed(String),
}

/// Apply gates 1–3 of the module doc.
pub fn gate(info: &wgpu::AdapterInfo, features: wgpu::Features, configs: &[CoopConfig], mode: CoopMode) -> CoopGate {
    if !features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return CoopGate::Closed("the adapter has no cooperative matrices (EXPERIMENTAL_COOPERATIVE_MATRIX)".into());
    }
    for (f, name) in [(wgpu::Features::SHADER_F16, "SHADER_F16"), (wgpu::Features::SUBGROUP, "SUBGROUP")] {
        if !features.contains(f) {
            return CoopGate::Closed(format!(
                "the cooperative-matrix kernels also need {name}, which the adapter lacks"
            ));
        }
    }
    let Some(tile) = configs.iter().filter(|c| !c.f16_accumulator).map(|c| c.size).max() else {
        return CoopGate::Closed("no advertised 8×8×8 or 16×16×16 f16·f16 → f32 configuration".into());
    };
    if mode == CoopMode::Off {
        return CoopGate::Closed("switched off by WGPT_COOP=off".into());
    }
    if mode != CoopMode::Force {
        if let Some(d) = DENY_LIST.iter().find(|d| d.vendor == info.vendor && info.driver.contains(d.driver)) {
            return CoopGate::Closed(format!("deny list: {}", d.reason));
        }
    }
    let f16_accumulator = configs.contains(&CoopConfig { size: tile, f16_accumulator: true });
    CoopGate::Open { tile, f16_accumulator }
}

/// What the context concluded about cooperative matrices, gates and self-test included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoopStatus {
    Available {
        tile: u32,
        /// Subgroup size the kernels are launched for (the one the self-test passed with).
        subgroup_size: u32,
        f16_accumulator: bool,
    },
    Unavailable(String),
}

impl CoopStatus {
    /// One line for logs, `wgpt adapters` and reports.
    pub fn describe(&self) -> String {
        match self {
            CoopStatus::Available { tile, subgroup_size, f16_accumulator } => format!(
                "in use: {tile}×{tile}×{tile} f16 tiles, f32 accumulation{}, subgroup size {subgroup_size}, self-test passed",
                if *f16_accumulator { " (and f16 accumulation)" } else { "" }
            ),
            CoopStatus::Unavailable(why) => format!("not used: {why}"),
        }
    }

    pub fn is_available(&self) -> bool {
        matches!(self, CoopStatus::Available { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(vendor: u32) -> wgpu::AdapterInfo {
        wgpu::AdapterInfo {
            name: "test".into(),
            vendor,
            device: 0,
            device_type: wgpu::DeviceType::DiscreteGpu,
            device_pci_bus_id: String::new(),
            driver: "some driver".into(),
            driver_info: String::new(),
            backend: wgpu::Backend::Vulkan,
            subgroup_min_size: 32,
            subgroup_max_size: 32,
            transient_saves_memory: None,
            limit_bucket: None,
        }
    }

    #[test]
    fn gates_pick_the_largest_f32_accumulating_tile_and_honour_the_switches() {
        let all =
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let cfgs = [
            CoopConfig { size: 8, f16_accumulator: false },
            CoopConfig { size: 16, f16_accumulator: false },
            CoopConfig { size: 16, f16_accumulator: true },
        ];
        assert_eq!(gate(&info(0x10de), all, &cfgs, CoopMode::Auto), CoopGate::Open { tile: 16, f16_accumulator: true });
        assert_eq!(
            gate(&info(0x10de), all, &cfgs[..1], CoopMode::Auto),
            CoopGate::Open { tile: 8, f16_accumulator: false }
        );
        assert!(
            matches!(gate(&info(0x10de), all, &cfgs, CoopMode::Off), CoopGate::Closed(w) if w.contains("WGPT_COOP"))
        );
        assert!(matches!(gate(&info(0x8086), all, &cfgs, CoopMode::Auto), CoopGate::Closed(w) if w.contains("deny")));
        assert!(matches!(gate(&info(0x8086), all, &cfgs, CoopMode::Force), CoopGate::Open { .. }));
        // f16 accumulation alone is not enough: the default kernels accumulate in f32.
        let only16 = [CoopConfig { size: 16, f16_accumulator: true }];
        assert!(matches!(gate(&info(0x10de), all, &only16, CoopMode::Auto), CoopGate::Closed(_)));
        assert!(matches!(
            gate(&info(0x10de), wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX, &cfgs, CoopMode::Auto),
            CoopGate::Closed(w) if w.contains("SHADER_F16")
        ));
        assert!(matches!(gate(&info(0x10de), wgpu::Features::empty(), &cfgs, CoopMode::Auto), CoopGate::Closed(_)));
        assert!(CoopMode::parse("bogus").is_err());
    }
}
