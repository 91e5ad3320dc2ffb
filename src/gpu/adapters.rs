//! Adapter discovery and selection.
//!
//! `wgpt adapters` prints what [`describe`] finds for every adapter wgpu sees; [`select`] picks the
//! one a run uses: Vulkan by default (`--backend` for another), `--adapter NAME_OR_INDEX` or
//! `WGPT_ADAPTER` when given, otherwise the first discrete GPU, then integrated, then anything else,
//! with CPU drivers such as lavapipe last.

use crate::error::{Error, Result};
use serde::Serialize;

/// Which wgpu backends to search, parsed from `--backend`.
/// A graphics backend to search, as `--backend` (clap, which lists the choices) and
/// `WGPT_BACKEND` ([`parse_backends`]) name it; both read this one table, aliases included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    #[value(alias = "vk")]
    Vulkan,
    Metal,
    #[value(alias = "d3d12")]
    Dx12,
    #[value(aliases = ["gles", "opengl"])]
    Gl,
    All,
}

impl Backend {
    pub fn backends(self) -> wgpu::Backends {
        match self {
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
            Backend::All => wgpu::Backends::all(),
        }
    }
}

pub fn parse_backends(name: &str) -> Result<wgpu::Backends> {
    <Backend as clap::ValueEnum>::from_str(name, true)
        .map(Backend::backends)
        .map_err(|_| Error::UnknownBackend(name.to_string()))
}

/// The instance every wgpt process uses. Validation layers and wgpu's indirect-call validation are
/// off (we never dispatch indirectly, and that check caps buffers at 4 GiB); `WGPU_VALIDATION=1`
/// and the other `WGPU_*` instance variables still turn them on for debugging.
pub fn create_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    desc.flags = wgpu::InstanceFlags::empty().with_env();
    wgpu::Instance::new(desc)
}

pub fn enumerate(instance: &wgpu::Instance, backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(backends))
}

/// Lower is preferred.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Pick an adapter. `query` is an index into the enumeration order or a case-insensitive substring
/// of the adapter name; `None` applies the default preference.
pub fn select(adapters: Vec<wgpu::Adapter>, query: Option<&str>, backends: wgpu::Backends) -> Result<wgpu::Adapter> {
    if adapters.is_empty() {
        return Err(Error::NoAdapter { backends: format!("{backends:?}") });
    }
    let listing = || {
        adapters
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let info = a.get_info();
                format!("  [{i}] {} ({:?}, {:?})", info.name, info.backend, info.device_type)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let index = match query.map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => {
            if let Ok(i) = q.parse::<usize>() {
                if i >= adapters.len() {
                    return Err(Error::AdapterNotFound { query: q.to_string(), available: listing() });
                }
                i
            } else {
                let needle = q.to_ascii_lowercase();
                match adapters.iter().position(|a| a.get_info().name.to_ascii_lowercase().contains(&needle)) {
                    Some(i) => i,
                    None => return Err(Error::AdapterNotFound { query: q.to_string(), available: listing() }),
                }
            }
        }
        None => (0..adapters.len()).min_by_key(|&i| rank(adapters[i].get_info().device_type)).unwrap(),
    };
    Ok(adapters.into_iter().nth(index).unwrap())
}

/// One cooperative-matrix configuration, as `Adapter::cooperative_matrix_properties` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct CoopMatrixConfig {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub ab: String,
    pub cr: String,
    pub saturating: bool,
}

/// Everything `wgpt adapters` prints about one adapter.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub vendor: u32,
    pub device: u32,
    pub driver: String,
    pub driver_info: String,
    pub shader_f16: bool,
    pub subgroup: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub timestamp_query: bool,
    pub timestamp_query_inside_encoders: bool,
    pub timestamp_query_inside_passes: bool,
    pub immediates: bool,
    pub shader_float32_atomic: bool,
    pub cooperative_matrix: bool,
    pub cooperative_matrix_configs: Vec<CoopMatrixConfig>,
    /// Whether wgpt's coop kernels would be used, by the static gates (`gpu::coop::gate`): the
    /// tile size, or why not. The self-test's verdict needs a device: `wgpt adapters` adds it for
    /// the adapter a run would choose.
    pub cooperative_matrix_use: String,
    /// That verdict after the start-up self-test, where it was run.
    pub cooperative_matrix_status: Option<String>,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size: [u32; 3],
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_immediate_size: u32,
}

pub fn describe(index: usize, adapter: &wgpu::Adapter) -> AdapterReport {
    let info = adapter.get_info();
    let f = adapter.features();
    let l = adapter.limits();
    let coop = if f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        adapter
            .cooperative_matrix_properties()
            .into_iter()
            .map(|c| CoopMatrixConfig {
                m: c.m_size,
                n: c.n_size,
                k: c.k_size,
                ab: format!("{:?}", c.ab_type).to_lowercase(),
                cr: format!("{:?}", c.cr_type).to_lowercase(),
                saturating: c.saturating_accumulation,
            })
            .collect()
    } else {
        Vec::new()
    };
    AdapterReport {
        index,
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        vendor: info.vendor,
        device: info.device,
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroup: f.contains(wgpu::Features::SUBGROUP),
        subgroup_min_size: info.subgroup_min_size,
        subgroup_max_size: info.subgroup_max_size,
        timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        timestamp_query_inside_encoders: f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS),
        timestamp_query_inside_passes: f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        immediates: f.contains(wgpu::Features::IMMEDIATES),
        shader_float32_atomic: f.contains(wgpu::Features::SHADER_FLOAT32_ATOMIC),
        cooperative_matrix: f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        cooperative_matrix_configs: coop,
        cooperative_matrix_use: match super::coop::gate(
            &info,
            f,
            &super::coop::usable_configs(adapter, f),
            super::coop::CoopMode::from_env().unwrap_or(super::coop::CoopMode::Auto),
        ) {
            super::coop::CoopGate::Open { tile, f16_accumulator } => format!(
                "wgpt would use {tile}×{tile}×{tile} tiles (f32 accumulation{}), after its self-test",
                if f16_accumulator { "; f16 accumulation too" } else { "" }
            ),
            super::coop::CoopGate::Closed(why) => format!("not used: {why}"),
        },
        cooperative_matrix_status: None,
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_compute_workgroup_size: [
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z,
        ],
        max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
        max_immediate_size: l.max_immediate_size,
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Human-readable block for one adapter; `chosen` marks the one [`select`] would use.
pub fn format_report(r: &AdapterReport, chosen: bool) -> String {
    let mut s = String::new();
    let mark = if chosen { "  <- default choice" } else { "" };
    s += &format!("[{}] {}{}\n", r.index, r.name, mark);
    s += &format!(
        "    backend {} · type {} · vendor 0x{:04x} device 0x{:04x}\n",
        r.backend, r.device_type, r.vendor, r.device
    );
    s += &format!("    driver  {} ({})\n", r.driver, r.driver_info);
    s += "    features\n";
    s += &format!("      SHADER_F16                        {}\n", yes_no(r.shader_f16));
    if r.subgroup {
        s += &format!(
            "      SUBGROUP                          yes (size {}..{})\n",
            r.subgroup_min_size, r.subgroup_max_size
        );
    } else {
        s += "      SUBGROUP                          no\n";
    }
    s += &format!("      TIMESTAMP_QUERY                   {}\n", yes_no(r.timestamp_query));
    s += &format!("      TIMESTAMP_QUERY_INSIDE_ENCODERS   {}\n", yes_no(r.timestamp_query_inside_encoders));
    s += &format!("      TIMESTAMP_QUERY_INSIDE_PASSES     {}\n", yes_no(r.timestamp_query_inside_passes));
    s += &format!("      IMMEDIATES (required by wgpt)     {}\n", yes_no(r.immediates));
    s += &format!("      SHADER_FLOAT32_ATOMIC             {}\n", yes_no(r.shader_float32_atomic));
    if r.cooperative_matrix {
        s += &format!(
            "      EXPERIMENTAL_COOPERATIVE_MATRIX   yes, {} configuration(s):\n",
            r.cooperative_matrix_configs.len()
        );
        for c in &r.cooperative_matrix_configs {
            s += &format!(
                "        {}x{}x{} {}·{} -> {}{}\n",
                c.m,
                c.n,
                c.k,
                c.ab,
                c.ab,
                c.cr,
                if c.saturating { " (saturating)" } else { "" }
            );
        }
    } else {
        s += "      EXPERIMENTAL_COOPERATIVE_MATRIX   no\n";
    }
    match &r.cooperative_matrix_status {
        Some(status) => s += &format!("      cooperative matrices: {status}\n"),
        None => s += &format!("      cooperative matrices: {}\n", r.cooperative_matrix_use),
    }
    s += "    limits\n";
    s += &format!(
        "      max storage buffer binding        {} ({} bytes)\n",
        mib(r.max_storage_buffer_binding_size),
        r.max_storage_buffer_binding_size
    );
    s += &format!("      max buffer size                   {} ({} bytes)\n", mib(r.max_buffer_size), r.max_buffer_size);
    s += &format!("      max workgroup storage             {} bytes\n", r.max_compute_workgroup_storage_size);
    s += &format!("      max invocations per workgroup     {}\n", r.max_compute_invocations_per_workgroup);
    s += &format!(
        "      max workgroup size                {} x {} x {}\n",
        r.max_compute_workgroup_size[0], r.max_compute_workgroup_size[1], r.max_compute_workgroup_size[2]
    );
    s += &format!("      max workgroups per dimension      {}\n", r.max_compute_workgroups_per_dimension);
    s += &format!("      max storage buffers per stage     {}\n", r.max_storage_buffers_per_shader_stage);
    s += &format!("      max immediate size                {} bytes\n", r.max_immediate_size);
    s
}

/// Bytes of device-local memory the adapter has (the sum of its DEVICE_LOCAL Vulkan heaps: VRAM
/// on a discrete GPU, shared system memory on integrated and CPU drivers), or `None` when the
/// backend is not Vulkan. Used to refuse a memory plan that cannot fit before allocating it.
pub fn device_memory_bytes(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: only reads physical-device properties through the raw handles wgpu-hal exposes;
    // nothing is created or destroyed, and the adapter outlives the call.
    unsafe {
        let hal = adapter.as_hal::<wgpu::hal::api::Vulkan>()?;
        let instance = hal.shared_instance().raw_instance();
        let props = instance.get_physical_device_memory_properties(hal.raw_physical_device());
        let heaps = &props.memory_heaps[..props.memory_heap_count as usize];
        // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT = 0x1
        let total: u64 = heaps.iter().filter(|h| h.flags.as_raw() & 1 != 0).map(|h| h.size).sum();
        (total > 0).then_some(total)
    }
}
