//! [`GpuContext`]: the one object that owns the wgpu instance, adapter, device and queue, compiles
//! every shader once, caches pipelines by typed kernel name, allocates buffers and runs dispatches.
//!
//! Failure policy: nothing here panics on a GPU problem. Shader and pipeline creation run inside
//! error scopes and come back as [`Error::Shader`] naming the file and entry point; buffer creation
//! runs inside an out-of-memory scope; a lost device or any uncaptured wgpu error is recorded by
//! callbacks and returned from the next [`GpuContext::wait`] (every readback and every `run` waits).

use super::adapters;
use super::autotune::{AutotuneMode, Autotuner};
use super::coop::{self, CoopConfig, CoopGate, CoopMode, CoopStatus};
use super::immediates::Immediates;
use super::pipelines::{Kernel, Overrides, PipelineKey, Shader, Specialization};
use super::tensor::{DType, GpuTensor, Window};
use crate::error::{Error, Result};
use crate::kernels::matmul::{self, MatmulVariant};
use std::any::TypeId;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How to open a context. [`GpuOptions::from_env`] reads the environment; the CLI overrides it.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Backends to search (Vulkan unless told otherwise).
    pub backends: wgpu::Backends,
    /// Adapter index or name substring (`--adapter`, `WGPT_ADAPTER`).
    pub adapter: Option<String>,
    /// Pretend the adapter's max storage-buffer binding is this many bytes (never more than the
    /// real limit). Forces the chunked paths on small problems; `WGPT_MAX_BINDING_BYTES`.
    pub max_binding_bytes: Option<u64>,
    /// Variant selection: time the candidates on first use, or take the per-adapter default.
    pub autotune: AutotuneMode,
    /// Where the autotune cache lives (`WGPT_CACHE_DIR`, else `$XDG_CACHE_HOME/wgpt`, else
    /// `~/.cache/wgpt`); `None` keeps choices in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Most time spent timing kernel variants in one context; classes met after it take the
    /// family default, uncached (`WGPT_AUTOTUNE_BUDGET_SECS`, see `gpu::autotune`).
    pub autotune_budget: Duration,
    /// Compile shaders with wgpu's injected bounds checks and loop bounding
    /// (`WGPT_SHADER_CHECKS=1`). Off by default: see `GpuContext::module`.
    pub shader_checks: bool,
    /// Cooperative matrices: where the gates allow, never, or despite the deny list (`WGPT_COOP`).
    pub coop: CoopMode,
    /// Force this matmul variant (a `MatmulVariant` name) on every product whose precision admits
    /// it (`WGPT_MATMUL_VARIANT`, for experiments). Read here once rather than per product;
    /// checked against the adapter when the context opens.
    pub matmul_variant: Option<String>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            backends: wgpu::Backends::VULKAN,
            adapter: None,
            max_binding_bytes: None,
            autotune: AutotuneMode::On,
            cache_dir: default_cache_dir(),
            // Default cannot fail: a malformed value is reported and the default budget used
            // (`from_env` refuses it instead).
            autotune_budget: super::autotune::budget_from_env().unwrap_or_else(|e| {
                log::warn!("{e}; using {} s", super::autotune::DEFAULT_BUDGET.as_secs());
                super::autotune::DEFAULT_BUDGET
            }),
            shader_checks: std::env::var("WGPT_SHADER_CHECKS").is_ok_and(|v| v == "1"),
            coop: CoopMode::from_env().unwrap_or(CoopMode::Auto),
            matmul_variant: std::env::var("WGPT_MATMUL_VARIANT").ok(),
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WGPT_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("wgpt"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("wgpt"))
}

impl GpuOptions {
    /// Defaults (which read `WGPT_SHADER_CHECKS` and `WGPT_CACHE_DIR`) plus `WGPT_BACKEND`,
    /// `WGPT_ADAPTER`, `WGPT_MAX_BINDING_BYTES`, `WGPT_AUTOTUNE`, `WGPT_AUTOTUNE_BUDGET_SECS`.
    pub fn from_env() -> Result<Self> {
        let mut o = Self::default();
        if let Ok(b) = std::env::var("WGPT_BACKEND") {
            o.backends = adapters::parse_backends(&b)?;
        }
        if let Ok(a) = std::env::var("WGPT_ADAPTER") {
            o.adapter = Some(a);
        }
        if let Ok(v) = std::env::var("WGPT_MAX_BINDING_BYTES") {
            o.max_binding_bytes = Some(v.trim().parse().map_err(|_| Error::Env {
                var: "WGPT_MAX_BINDING_BYTES",
                message: format!("`{v}` is not a byte count"),
            })?);
        }
        o.autotune = AutotuneMode::from_env()?;
        o.autotune_budget = super::autotune::budget_from_env()?;
        o.coop = CoopMode::from_env()?;
        Ok(o)
    }
}

/// One compute dispatch, fully bound: replaying it costs only the recording.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub kernel: Kernel,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    /// Bytes for `var<immediate>` (the kernel's parameter struct).
    pub immediates: Vec<u8>,
    pub workgroups: [u32; 3],
}

pub struct GpuContext {
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    /// Effective max bytes per storage binding (the adapter's, or lower on request).
    max_binding: u64,
    modules: Mutex<HashMap<(Shader, Specialization), Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Replacement WGSL per shader; only [`GpuContext::replace_shader_source`] sets it.
    source_overrides: Mutex<HashMap<Shader, String>>,
    /// First uncaptured wgpu error or device-lost reason, reported by the next `wait`.
    fault: Arc<Mutex<Option<Error>>>,
    pub autotune: Autotuner,
    allocated: Mutex<u64>,
    opts: GpuOptions,
    /// Cooperative-matrix configurations the kernels can use, and the static gates' verdict.
    pub coop_configs: Vec<CoopConfig>,
    pub coop_gate: CoopGate,
    /// The verdict after the start-up self-test, computed on first use
    /// (`kernels::matmul_coop::coop_status`).
    coop_status: OnceLock<CoopStatus>,
    /// [`GpuOptions::matmul_variant`], parsed and checked against this adapter.
    forced_matmul: Option<MatmulVariant>,
    /// Which kernels have been encoded for execution since [`GpuContext::take_ran`] last
    /// cleared them, indexed by `Kernel as usize`: how the validation suite knows what each row
    /// ran. A relaxed store per encoded dispatch, so replays pay nothing measurable.
    ran: Vec<AtomicBool>,
}

/// Optional features wgpt uses when the adapter has them.
const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::SHADER_FLOAT32_ATOMIC)
    .union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

/// Largest `var<immediate>` struct any kernel declares, computed from the kernel table.
pub use super::pipelines::IMMEDIATE_BYTES;

impl GpuContext {
    /// Open the adapter the options select, with its real limits and every useful feature it has.
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        let instance = adapters::create_instance(opts.backends);
        let list = adapters::enumerate(&instance, opts.backends);
        let adapter = adapters::select(list, opts.adapter.as_deref(), opts.backends)?;
        let info = adapter.get_info();
        log::info!(
            "adapter: {} ({:?}, {:?}, driver {} {})",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info
        );

        let offered = adapter.features();
        if !offered.contains(wgpu::Features::IMMEDIATES) {
            return Err(Error::MissingFeature {
                adapter: info.name.clone(),
                feature: "IMMEDIATES",
                why: "every wgpt kernel takes its parameters as immediates (Vulkan push constants); \
                      use the Vulkan backend, which always has them",
            });
        }
        let features = wgpu::Features::IMMEDIATES | (offered & OPTIONAL_FEATURES);
        // Ask for everything the adapter can do, not WebGPU's conservative defaults (128 MiB
        // bindings, 16 KiB workgroup memory, 256 invocations).
        let limits = adapter.limits();
        if limits.max_immediate_size < IMMEDIATE_BYTES {
            return Err(Error::RequestDevice {
                adapter: info.name.clone(),
                message: format!(
                    "max_immediate_size is {} bytes; wgpt's kernels need {IMMEDIATE_BYTES}",
                    limits.max_immediate_size
                ),
            });
        }
        let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: wgpu requires this token for any EXPERIMENTAL_* feature. wgpt only uses
            // cooperative matrices in kernels validated against CPU references on the same device.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgpt"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;

        let fault: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        {
            let fault = fault.clone();
            device.set_device_lost_callback(move |reason, message| {
                let mut f = fault.lock().unwrap();
                if f.is_none() {
                    *f = Some(Error::DeviceLost { reason: format!("{reason:?}: {message}") });
                }
            });
        }
        {
            let fault = fault.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                log::error!("wgpu: {e}");
                let mut f = fault.lock().unwrap();
                if f.is_none() {
                    *f = Some(match e {
                        wgpu::Error::OutOfMemory { .. } => {
                            Error::OutOfMemory { what: "a GPU operation".into(), bytes: 0 }
                        }
                        other => Error::Validation { context: "a GPU operation".into(), message: other.to_string() },
                    });
                }
            }));
        }

        let real_max = limits.max_storage_buffer_binding_size;
        let max_binding = match opts.max_binding_bytes {
            Some(m) => m.min(real_max),
            None => real_max,
        };
        if max_binding < real_max {
            log::info!("max storage binding lowered to {max_binding} bytes (adapter allows {real_max})");
        }
        let autotune = Autotuner::new(opts.autotune, opts.cache_dir.clone(), opts.autotune_budget, &info);
        let coop_configs = coop::usable_configs(&adapter, features);
        let coop_gate = coop::gate(&info, features, &coop_configs, opts.coop);
        let mut ctx = Self {
            instance,
            adapter,
            device,
            queue,
            info,
            features,
            limits,
            max_binding,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            source_overrides: Mutex::new(HashMap::new()),
            fault,
            autotune,
            allocated: Mutex::new(0),
            opts: opts.clone(),
            coop_configs,
            coop_gate,
            coop_status: OnceLock::new(),
            ran: Kernel::ALL.iter().map(|_| AtomicBool::new(false)).collect(),
            forced_matmul: None,
        };
        if let Some(name) = &opts.matmul_variant {
            // Whether a variant fits depends on the adapter's limits and subgroup size, so this is
            // checked on the opened context, once, rather than at every product.
            let fitting = || matmul::all_variants().filter(|v| v.fits(&ctx));
            let forced = fitting().find(|v| v.name() == *name).ok_or_else(|| Error::Env {
                var: "WGPT_MATMUL_VARIANT",
                message: format!(
                    "`{name}` is not a variant this adapter can run; choose from: {}",
                    fitting().map(|v| v.name()).collect::<Vec<_>>().join(", ")
                ),
            })?;
            ctx.forced_matmul = Some(forced);
        }
        Ok(ctx)
    }

    /// The matmul variant `WGPT_MATMUL_VARIANT` forces, checked when the context opened.
    pub fn forced_matmul_variant(&self) -> Option<MatmulVariant> {
        self.forced_matmul
    }

    /// The options this context was opened with (to open a sibling with one setting changed).
    pub fn options(&self) -> &GpuOptions {
        &self.opts
    }

    /// Bytes one storage binding may span on this context.
    pub fn max_binding_bytes(&self) -> u64 {
        self.max_binding
    }

    /// The adapter's `min_storage_buffer_offset_alignment`: where a binding window may start.
    pub fn storage_align(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment as u64
    }

    /// The binding window of elements `[lo, hi)` of `t` on this context (aligned start, within the
    /// binding limit): what every launcher binds.
    pub fn window<'t>(&self, t: &'t GpuTensor, lo: usize, hi: usize) -> Result<crate::gpu::Window<'t>> {
        t.window(lo, hi, self.storage_align(), self.max_binding)
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, {} {})",
            self.info.name, self.info.backend, self.info.device_type, self.info.driver, self.info.driver_info
        )
    }

    /// The cell `kernels::matmul_coop::coop_status` fills once.
    pub(crate) fn coop_status_cell(&self) -> &OnceLock<CoopStatus> {
        &self.coop_status
    }

    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Total bytes of buffers allocated through this context so far.
    pub fn allocated_bytes(&self) -> u64 {
        *self.allocated.lock().unwrap()
    }

    // ---- shaders and pipelines ------------------------------------------------------------------

    /// Swap the WGSL of one shader file for this context and drop its cached pipelines. Exists so
    /// tests can prove that the validation harness catches a deliberately broken kernel.
    pub fn replace_shader_source(&self, shader: Shader, source: String) {
        self.source_overrides.lock().unwrap().insert(shader, source);
        self.modules.lock().unwrap().retain(|(s, _), _| *s != shader);
        self.pipelines.lock().unwrap().retain(|k, _| k.kernel.shader() != shader);
    }

    fn module(&self, shader: Shader, spec: &Specialization, entry: &'static str) -> Result<Arc<wgpu::ShaderModule>> {
        let key = (shader, spec.clone());
        if let Some(m) = self.modules.lock().unwrap().get(&key) {
            return Ok(m.clone());
        }
        let source = match self.source_overrides.lock().unwrap().get(&shader) {
            Some(s) => s.clone(),
            None => shader.source().to_string(),
        };
        let source = spec.apply(&source).map_err(|message| Error::Shader {
            file: shader.file(),
            entry,
            message: format!("specialisation: {message}"),
        })?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.file()),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = if self.opts.shader_checks {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: wgpt's kernels guard every buffer index against the bound sizes they are
            // given and every loop terminates; each is validated against its CPU reference at
            // ragged shapes with NaN-poisoned outputs. wgpu's injected checks clamp even indices
            // into private arrays, which keeps register tiles out of registers (8x slower on
            // lavapipe), so validated kernels run without them; WGPT_SHADER_CHECKS=1 restores them.
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader { file: shader.file(), entry, message: e.to_string() });
        }
        let module = Arc::new(module);
        self.modules.lock().unwrap().insert(key, module.clone());
        Ok(module)
    }

    /// The pipeline for `kernel` specialised with `overrides`, built on first use and cached.
    pub fn pipeline(&self, kernel: Kernel, overrides: &Overrides) -> Result<Arc<wgpu::ComputePipeline>> {
        self.pipeline_specialized(kernel, &Specialization::new(), overrides)
    }

    /// As [`GpuContext::pipeline`], from the shader source rewritten by `spec`.
    pub fn pipeline_specialized(
        &self,
        kernel: Kernel,
        spec: &Specialization,
        overrides: &Overrides,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = PipelineKey { kernel, spec: spec.clone(), overrides: overrides.clone() };
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(kernel.shader(), spec, kernel.entry())?;
        let constants = overrides.constants();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry()),
            // Derived from the entry point: each kernel's bindings and immediates are exactly what
            // it uses, and bind groups are built from `get_bind_group_layout(0)`.
            layout: None,
            module: &module,
            entry_point: Some(kernel.entry()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                // Every kernel writes its workgroup tiles before reading them.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader {
                file: kernel.shader().file(),
                entry: kernel.entry(),
                message: format!("{e}\n  (overrides: {constants:?}, specialisation: {spec:?})"),
            });
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Bind `windows[i]` to `@binding(i)` of group 0 of `pipeline` and package the dispatch with
    /// `params` as its immediates. `params` must be the struct the kernel table names for the
    /// kernel's shader: that is the one `tests/shaders.rs` checks against the WGSL declaration.
    pub fn dispatch<P: Immediates>(
        &self,
        kernel: Kernel,
        pipeline: Arc<wgpu::ComputePipeline>,
        windows: &[Window<'_>],
        params: &P,
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        if TypeId::of::<P>() != kernel.shader().params_type() {
            return Err(Error::Shape {
                op: kernel.entry(),
                message: format!(
                    "immediates are {} but {} declares {}",
                    P::LAYOUT.name,
                    kernel.shader().file(),
                    kernel.shader().params().name
                ),
            });
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::Shape {
                op: kernel.entry(),
                message: format!("grid {workgroups:?} exceeds {max} workgroups per dimension"),
            });
        }
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry<'_>> = windows
            .iter()
            .enumerate()
            .map(|(i, w)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: w.buffer,
                    offset: w.byte_offset,
                    size: wgpu::BufferSize::new(w.byte_size),
                }),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry()),
            layout: &layout,
            entries: &entries,
        });
        Ok(Dispatch { kernel, pipeline, bind_group, immediates: bytemuck::bytes_of(params).to_vec(), workgroups })
    }

    // ---- buffers --------------------------------------------------------------------------------

    /// Allocate a zero-filled f32 tensor of `len` elements. The buffer is rounded up to 256 bytes
    /// so that vec4 bindings and aligned binding windows never run past its end.
    pub fn tensor(&self, label: &str, len: usize) -> Result<GpuTensor> {
        let bytes = ((len.max(1) as u64 * 4).div_ceil(256)) * 256;
        let buffer = self.create_buffer(
            label,
            bytes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(GpuTensor::new(Arc::new(buffer), 0, len))
    }

    /// Allocate a zero-filled f16 tensor of `len` elements (needs SHADER_F16 to be bound).
    pub fn tensor_f16(&self, label: &str, len: usize) -> Result<GpuTensor> {
        let bytes = ((len.max(1) as u64 * 2).div_ceil(256)) * 256;
        let buffer = self.create_buffer(
            label,
            bytes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(GpuTensor::typed(Arc::new(buffer), 0, len, DType::F16))
    }

    /// Allocate an f16 tensor holding `data` rounded to nearest f16.
    pub fn upload_f16(&self, label: &str, data: &[f32]) -> Result<GpuTensor> {
        let t = self.tensor_f16(label, data.len())?;
        self.write(&t, data)?;
        Ok(t)
    }

    /// Allocate a tensor and upload `data` into it.
    pub fn upload(&self, label: &str, data: &[f32]) -> Result<GpuTensor> {
        let t = self.tensor(label, data.len())?;
        self.write(&t, data)?;
        Ok(t)
    }

    /// Allocate a tensor holding i32 values (token ids, targets): the same 4-byte storage, bound
    /// as `array<i32>` by the kernels that read it.
    pub fn upload_i32(&self, label: &str, data: &[i32]) -> Result<GpuTensor> {
        let t = self.tensor(label, data.len())?;
        self.write_i32(&t, data)?;
        Ok(t)
    }

    pub fn write_i32(&self, t: &GpuTensor, data: &[i32]) -> Result<()> {
        self.write(t, bytemuck::cast_slice(data))
    }

    pub fn read_i32(&self, t: &GpuTensor) -> Result<Vec<i32>> {
        Ok(bytemuck::cast_slice(&self.read(t)?).to_vec())
    }

    /// Copy host data into a tensor (ordered before any later submission); an f16 tensor gets
    /// each value rounded to nearest f16.
    pub fn write(&self, t: &GpuTensor, data: &[f32]) -> Result<()> {
        if data.len() != t.len() {
            return Err(Error::Shape {
                op: "write",
                message: format!("tensor has {} elements, data has {}", t.len(), data.len()),
            });
        }
        if data.is_empty() {
            return Ok(());
        }
        match t.dtype() {
            DType::F32 => self.queue.write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(data)),
            DType::F16 => {
                let mut halves: Vec<half::f16> = data.iter().map(|&x| half::f16::from_f32(x)).collect();
                // queue.write_buffer wants a multiple of 4 bytes; the buffer is rounded up to 256.
                if !halves.len().is_multiple_of(2) && t.byte_offset() + t.byte_len() + 2 <= t.buffer().size() {
                    halves.push(half::f16::ZERO);
                }
                if !t.byte_offset().is_multiple_of(4) || !halves.len().is_multiple_of(2) {
                    return Err(Error::Shape {
                        op: "write",
                        message: "an f16 view must start and end on a 4-byte boundary to be written".into(),
                    });
                }
                self.queue.write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(&halves))
            }
        }
        Ok(())
    }

    /// Create a buffer inside an out-of-memory scope, so exhaustion is an error, not a panic.
    pub fn create_buffer(&self, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> Result<wgpu::Buffer> {
        if bytes > self.limits.max_buffer_size {
            return Err(Error::BufferTooLarge { what: label.to_string(), bytes, max: self.limits.max_buffer_size });
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage,
            mapped_at_creation: false,
        });
        if pollster::block_on(scope.pop()).is_some() {
            return Err(Error::OutOfMemory { what: label.to_string(), bytes });
        }
        *self.allocated.lock().unwrap() += bytes;
        Ok(buffer)
    }

    /// Read a tensor back to the host (waits for all submitted work); f16 tensors are widened.
    pub fn read(&self, t: &GpuTensor) -> Result<Vec<f32>> {
        if t.is_empty() {
            return Ok(Vec::new());
        }
        if t.dtype() == DType::F16 {
            // Copies must be 4-byte aligned: read the enclosing f32 words and pick the halves.
            let lo = t.byte_offset() / 4;
            let words = (t.byte_offset() + t.byte_len()).div_ceil(4) - lo;
            let raw = self.read(&t.reinterpret(lo as usize, words as usize, DType::F32))?;
            let halves: &[half::f16] = bytemuck::cast_slice(&raw);
            let skip = (t.byte_offset() % 4 / 2) as usize;
            return Ok(halves[skip..skip + t.len()].iter().map(|h| h.to_f32()).collect());
        }
        let bytes = t.len() as u64 * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        enc.copy_buffer_to_buffer(t.buffer(), t.byte_offset(), &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Validation { context: "readback map".into(), message: e.to_string() }),
            Err(_) => return Err(Error::DeviceLost { reason: "readback callback never ran".into() }),
        }
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Validation { context: "readback".into(), message: e.to_string() })?;
        let out = bytemuck::cast_slice::<u8, f32>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    // ---- execution ------------------------------------------------------------------------------

    /// Record dispatches into one compute pass, `repeat` times over.
    pub fn encode(&self, dispatches: &[Dispatch], repeat: usize) -> wgpu::CommandBuffer {
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgpt") });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgpt"), timestamp_writes: None });
            for _ in 0..repeat {
                for d in dispatches {
                    self.ran[d.kernel as usize].store(true, Ordering::Relaxed);
                    pass.set_pipeline(&d.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    if !d.immediates.is_empty() {
                        pass.set_immediates(0, &d.immediates);
                    }
                    pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
                }
            }
        }
        enc.finish()
    }

    /// The kernels encoded for execution (by `submit`, `run`, `time` or `profile`) since the
    /// previous call, in `Kernel::ALL` order, and forget them.
    pub fn take_ran(&self) -> Vec<Kernel> {
        Kernel::ALL.iter().copied().filter(|&k| self.ran[k as usize].swap(false, Ordering::Relaxed)).collect()
    }

    /// Run `f` without what it encodes showing in [`GpuContext::take_ran`]'s next answer (what
    /// ran before it still does). Exact only while no other thread uses the context.
    pub(crate) fn untracked<R>(&self, f: impl FnOnce() -> R) -> R {
        let before = self.take_ran();
        let out = f();
        self.take_ran();
        for k in before {
            self.ran[k as usize].store(true, Ordering::Relaxed);
        }
        out
    }

    /// Submit dispatches without waiting.
    pub fn submit(&self, dispatches: &[Dispatch]) -> wgpu::SubmissionIndex {
        self.queue.submit([self.encode(dispatches, 1)])
    }

    /// Submit dispatches and wait for them to finish.
    pub fn run(&self, dispatches: &[Dispatch]) -> Result<()> {
        self.submit(dispatches);
        self.wait()
    }

    /// Wall time of `repeat` back-to-back executions of `dispatches` in one submission.
    pub fn time(&self, dispatches: &[Dispatch], repeat: usize) -> Result<Duration> {
        let cmd = self.encode(dispatches, repeat);
        let t0 = Instant::now();
        self.queue.submit([cmd]);
        self.wait()?;
        Ok(t0.elapsed())
    }

    /// GPU time of each dispatch, from timestamps written between dispatches inside the pass
    /// (TIMESTAMP_QUERY_INSIDE_PASSES). `None` when the adapter cannot time inside passes. Runs
    /// the dispatches once; each is timed from the end of the previous one to its own end, which
    /// on a serial queue is the dispatch plus the barrier before it.
    pub fn profile(&self, dispatches: &[Dispatch]) -> Result<Option<Vec<Duration>>> {
        if !self.features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) || dispatches.is_empty() {
            return Ok(None);
        }
        let period_ns = self.queue.get_timestamp_period() as f64;
        let mut out = Vec::with_capacity(dispatches.len());
        // One query set holds at most 4096 timestamps: n dispatches need n + 1.
        for part in dispatches.chunks(wgpu::QUERY_SET_MAX_QUERIES as usize - 1) {
            let count = part.len() as u32 + 1;
            let qs = self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
            let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile read"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc =
                self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("profile") });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("profile"),
                    timestamp_writes: None,
                });
                pass.write_timestamp(&qs, 0);
                for (i, d) in part.iter().enumerate() {
                    self.ran[d.kernel as usize].store(true, Ordering::Relaxed);
                    pass.set_pipeline(&d.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    if !d.immediates.is_empty() {
                        pass.set_immediates(0, &d.immediates);
                    }
                    pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
                    pass.write_timestamp(&qs, i as u32 + 1);
                }
            }
            enc.resolve_query_set(&qs, 0..count, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
            self.queue.submit([enc.finish()]);
            let (tx, rx) = std::sync::mpsc::channel();
            read.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = tx.send(r);
            });
            self.wait()?;
            if !matches!(rx.recv(), Ok(Ok(()))) {
                return Err(Error::Validation {
                    context: "profile".into(),
                    message: "timestamp readback failed".into(),
                });
            }
            let view = read
                .get_mapped_range(..)
                .map_err(|e| Error::Validation { context: "profile".into(), message: e.to_string() })?;
            let ticks: Vec<u64> = bytemuck::cast_slice(&view).to_vec();
            drop(view);
            read.unmap();
            for w in ticks.windows(2) {
                out.push(Duration::from_nanos((w[1].saturating_sub(w[0]) as f64 * period_ns) as u64));
            }
        }
        Ok(Some(out))
    }

    /// Block until all submitted work is done; report any fault wgpu signalled meanwhile.
    pub fn wait(&self) -> Result<()> {
        let polled = self.device.poll(wgpu::PollType::wait_indefinitely());
        if let Some(e) = self.fault.lock().unwrap().take() {
            return Err(e);
        }
        polled.map(|_| ()).map_err(|e| Error::DeviceLost { reason: e.to_string() })
    }
}
