//! The typed kernel table: every WGSL file and every entry point wgpt dispatches.
//!
//! Pipelines are cached by [`Kernel`] plus the values of its pipeline-overridable constants, so a
//! typo cannot silently create a new pipeline, and the naga test in `tests/shaders.rs` can walk this
//! table and check that each entry point exists in its file.

/// One WGSL file in `shaders/`, embedded in the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    Matmul,
    Elementwise,
    Reduce,
    Adamw,
    GradNorm,
    Muon,
}

impl Shader {
    pub const ALL: &'static [Shader] =
        &[Shader::Matmul, Shader::Elementwise, Shader::Reduce, Shader::Adamw, Shader::GradNorm, Shader::Muon];

    /// File name under `shaders/`, used in error messages.
    pub fn file(self) -> &'static str {
        match self {
            Shader::Matmul => "shaders/matmul.wgsl",
            Shader::Elementwise => "shaders/elementwise.wgsl",
            Shader::Reduce => "shaders/reduce.wgsl",
            Shader::Adamw => "shaders/adamw.wgsl",
            Shader::GradNorm => "shaders/grad_norm.wgsl",
            Shader::Muon => "shaders/muon.wgsl",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Shader::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Adamw => include_str!("../../shaders/adamw.wgsl"),
            Shader::GradNorm => include_str!("../../shaders/grad_norm.wgsl"),
            Shader::Muon => include_str!("../../shaders/muon.wgsl"),
        }
    }
}

/// One compute entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    MatmulNaive,
    MatmulRegister,
    MatmulTiled,
    ElementwiseFill,
    ElementwiseCopy,
    ElementwiseAdd,
    ElementwiseScale,
    ElementwiseAxpy,
    ReduceSumSquaresPartial,
    ReduceSumFinal,
    AdamwStep,
    GradNormPartial,
    GradNormFinal,
    GradNormTotal,
    MuonMomentum,
    MuonRowSumsq,
    MuonColSumsq,
    MuonPreScale,
    MuonRowScale,
    MuonPolyInit,
    MuonPostScale,
    MuonUpdate,
}

impl Kernel {
    pub const ALL: &'static [Kernel] = &[
        Kernel::MatmulNaive,
        Kernel::MatmulRegister,
        Kernel::MatmulTiled,
        Kernel::ElementwiseFill,
        Kernel::ElementwiseCopy,
        Kernel::ElementwiseAdd,
        Kernel::ElementwiseScale,
        Kernel::ElementwiseAxpy,
        Kernel::ReduceSumSquaresPartial,
        Kernel::ReduceSumFinal,
        Kernel::AdamwStep,
        Kernel::GradNormPartial,
        Kernel::GradNormFinal,
        Kernel::GradNormTotal,
        Kernel::MuonMomentum,
        Kernel::MuonRowSumsq,
        Kernel::MuonColSumsq,
        Kernel::MuonPreScale,
        Kernel::MuonRowScale,
        Kernel::MuonPolyInit,
        Kernel::MuonPostScale,
        Kernel::MuonUpdate,
    ];

    pub fn shader(self) -> Shader {
        match self {
            Kernel::MatmulNaive | Kernel::MatmulRegister | Kernel::MatmulTiled => Shader::Matmul,
            Kernel::ElementwiseFill
            | Kernel::ElementwiseCopy
            | Kernel::ElementwiseAdd
            | Kernel::ElementwiseScale
            | Kernel::ElementwiseAxpy => Shader::Elementwise,
            Kernel::ReduceSumSquaresPartial | Kernel::ReduceSumFinal => Shader::Reduce,
            Kernel::AdamwStep => Shader::Adamw,
            Kernel::GradNormPartial | Kernel::GradNormFinal | Kernel::GradNormTotal => Shader::GradNorm,
            Kernel::MuonMomentum
            | Kernel::MuonRowSumsq
            | Kernel::MuonColSumsq
            | Kernel::MuonPreScale
            | Kernel::MuonRowScale
            | Kernel::MuonPolyInit
            | Kernel::MuonPostScale
            | Kernel::MuonUpdate => Shader::Muon,
        }
    }

    pub fn entry(self) -> &'static str {
        match self {
            Kernel::MatmulNaive => "matmul_naive",
            Kernel::MatmulRegister => "matmul_register",
            Kernel::MatmulTiled => "matmul_tiled",
            Kernel::ElementwiseFill => "elementwise_fill",
            Kernel::ElementwiseCopy => "elementwise_copy",
            Kernel::ElementwiseAdd => "elementwise_add",
            Kernel::ElementwiseScale => "elementwise_scale",
            Kernel::ElementwiseAxpy => "elementwise_axpy",
            Kernel::ReduceSumSquaresPartial => "reduce_sum_squares_partial",
            Kernel::ReduceSumFinal => "reduce_sum_final",
            Kernel::AdamwStep => "adamw_step",
            Kernel::GradNormPartial => "grad_norm_partial",
            Kernel::GradNormFinal => "grad_norm_final",
            Kernel::GradNormTotal => "grad_norm_total",
            Kernel::MuonMomentum => "muon_momentum",
            Kernel::MuonRowSumsq => "muon_row_sumsq",
            Kernel::MuonColSumsq => "muon_col_sumsq",
            Kernel::MuonPreScale => "muon_pre_scale",
            Kernel::MuonRowScale => "muon_row_scale",
            Kernel::MuonPolyInit => "muon_poly_init",
            Kernel::MuonPostScale => "muon_post_scale",
            Kernel::MuonUpdate => "muon_update",
        }
    }
}

/// Values for a pipeline's `override` constants, kept sorted so equal sets hash equally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Overrides(Vec<(&'static str, u64)>);

impl Overrides {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set one constant (booleans as 0/1, integers exactly: wgpu passes every override as f64).
    pub fn set(mut self, name: &'static str, value: f64) -> Self {
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value.to_bits()));
        self.0.sort_by_key(|(n, _)| *n);
        self
    }

    pub fn flag(self, name: &'static str, value: bool) -> Self {
        self.set(name, if value { 1.0 } else { 0.0 })
    }

    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        self.0.iter().map(|&(n, v)| (n, f64::from_bits(v))).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub overrides: Overrides,
}
