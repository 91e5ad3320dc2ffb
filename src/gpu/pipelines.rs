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
    Attention,
}

impl Shader {
    pub const ALL: &'static [Shader] = &[Shader::Matmul, Shader::Elementwise, Shader::Reduce, Shader::Attention];

    /// File name under `shaders/`, used in error messages.
    pub fn file(self) -> &'static str {
        match self {
            Shader::Matmul => "shaders/matmul.wgsl",
            Shader::Elementwise => "shaders/elementwise.wgsl",
            Shader::Reduce => "shaders/reduce.wgsl",
            Shader::Attention => "shaders/attention.wgsl",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Shader::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Attention => include_str!("../../shaders/attention.wgsl"),
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
    ElementwiseAdd,
    ElementwiseScale,
    ElementwiseAxpy,
    ReduceSumSquaresPartial,
    ReduceSumFinal,
    AttentionForward,
    AttentionBackwardDq,
    AttentionBackwardDkdv,
}

impl Kernel {
    pub const ALL: &'static [Kernel] = &[
        Kernel::MatmulNaive,
        Kernel::MatmulRegister,
        Kernel::MatmulTiled,
        Kernel::ElementwiseFill,
        Kernel::ElementwiseAdd,
        Kernel::ElementwiseScale,
        Kernel::ElementwiseAxpy,
        Kernel::ReduceSumSquaresPartial,
        Kernel::ReduceSumFinal,
        Kernel::AttentionForward,
        Kernel::AttentionBackwardDq,
        Kernel::AttentionBackwardDkdv,
    ];

    pub fn shader(self) -> Shader {
        match self {
            Kernel::MatmulNaive | Kernel::MatmulRegister | Kernel::MatmulTiled => Shader::Matmul,
            Kernel::ElementwiseFill | Kernel::ElementwiseAdd | Kernel::ElementwiseScale | Kernel::ElementwiseAxpy => {
                Shader::Elementwise
            }
            Kernel::ReduceSumSquaresPartial | Kernel::ReduceSumFinal => Shader::Reduce,
            Kernel::AttentionForward | Kernel::AttentionBackwardDq | Kernel::AttentionBackwardDkdv => Shader::Attention,
        }
    }

    pub fn entry(self) -> &'static str {
        match self {
            Kernel::MatmulNaive => "matmul_naive",
            Kernel::MatmulRegister => "matmul_register",
            Kernel::MatmulTiled => "matmul_tiled",
            Kernel::ElementwiseFill => "elementwise_fill",
            Kernel::ElementwiseAdd => "elementwise_add",
            Kernel::ElementwiseScale => "elementwise_scale",
            Kernel::ElementwiseAxpy => "elementwise_axpy",
            Kernel::ReduceSumSquaresPartial => "reduce_sum_squares_partial",
            Kernel::ReduceSumFinal => "reduce_sum_final",
            Kernel::AttentionForward => "attention_forward",
            Kernel::AttentionBackwardDq => "attention_backward_dq",
            Kernel::AttentionBackwardDkdv => "attention_backward_dkdv",
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
