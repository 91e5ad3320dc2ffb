//! The typed kernel table: every WGSL file and every entry point wgpt dispatches.
//!
//! Pipelines are cached by [`Kernel`] plus the values of its pipeline-overridable constants, so a
//! typo cannot silently create a new pipeline, and the naga test in `tests/shaders.rs` can walk this
//! table and check that each entry point exists in its file.

/// One WGSL file in `shaders/`, embedded in the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    Matmul,
    MatmulCoop,
    Elementwise,
    Reduce,
    Crossentropy,
    Rmsnorm,
    Embedding,
    Rope,
    Activation,
    Residual,
    Smear,
    Vegate,
    Attention,
    Adamw,
    GradNorm,
    Muon,
}

impl Shader {
    pub const ALL: &'static [Shader] = &[
        Shader::Matmul,
        Shader::MatmulCoop,
        Shader::Elementwise,
        Shader::Reduce,
        Shader::Crossentropy,
        Shader::Rmsnorm,
        Shader::Embedding,
        Shader::Rope,
        Shader::Activation,
        Shader::Residual,
        Shader::Smear,
        Shader::Vegate,
        Shader::Attention,
        Shader::Adamw,
        Shader::GradNorm,
        Shader::Muon,
    ];

    /// File name under `shaders/`, used in error messages.
    pub fn file(self) -> &'static str {
        match self {
            Shader::Matmul => "shaders/matmul.wgsl",
            Shader::MatmulCoop => "shaders/matmul_coop.wgsl",
            Shader::Elementwise => "shaders/elementwise.wgsl",
            Shader::Reduce => "shaders/reduce.wgsl",
            Shader::Crossentropy => "shaders/crossentropy.wgsl",
            Shader::Rmsnorm => "shaders/rmsnorm.wgsl",
            Shader::Embedding => "shaders/embedding.wgsl",
            Shader::Rope => "shaders/rope.wgsl",
            Shader::Activation => "shaders/activation.wgsl",
            Shader::Residual => "shaders/residual.wgsl",
            Shader::Smear => "shaders/smear.wgsl",
            Shader::Vegate => "shaders/vegate.wgsl",
            Shader::Attention => "shaders/attention.wgsl",
            Shader::Adamw => "shaders/adamw.wgsl",
            Shader::GradNorm => "shaders/grad_norm.wgsl",
            Shader::Muon => "shaders/muon.wgsl",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Shader::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Shader::MatmulCoop => include_str!("../../shaders/matmul_coop.wgsl"),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Crossentropy => include_str!("../../shaders/crossentropy.wgsl"),
            Shader::Rmsnorm => include_str!("../../shaders/rmsnorm.wgsl"),
            Shader::Embedding => include_str!("../../shaders/embedding.wgsl"),
            Shader::Rope => include_str!("../../shaders/rope.wgsl"),
            Shader::Activation => include_str!("../../shaders/activation.wgsl"),
            Shader::Residual => include_str!("../../shaders/residual.wgsl"),
            Shader::Smear => include_str!("../../shaders/smear.wgsl"),
            Shader::Vegate => include_str!("../../shaders/vegate.wgsl"),
            Shader::Attention => include_str!("../../shaders/attention.wgsl"),
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
    MatmulTiled8,
    MatmulCoop,
    ElementwiseFill,
    ElementwiseCopy,
    ElementwiseAdd,
    ElementwiseScale,
    ElementwiseAxpy,
    ReduceSumSquaresPartial,
    ReduceSumFinal,
    ReduceDotPartial,
    ReduceWeightedCols,
    CrossentropySoftcap,
    RmsnormForward,
    RmsnormBackward,
    EmbeddingForward,
    EmbeddingBackward,
    RopeForward,
    RopeBackward,
    ActivationRelu2Forward,
    ActivationRelu2Backward,
    ResidualLambdaMixForward,
    ResidualLambdaMixBackward,
    ResidualBackoutForward,
    ResidualBackoutBackward,
    SmearForward,
    SmearBackward,
    VegateForward,
    VegateBackward,
    VegateBackwardDu,
    AttentionForward,
    AttentionBackwardDq,
    AttentionBackwardDkdv,
    AttentionDecodePartial,
    AttentionDecodeCombine,
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
        Kernel::MatmulTiled8,
        Kernel::MatmulCoop,
        Kernel::ElementwiseFill,
        Kernel::ElementwiseCopy,
        Kernel::ElementwiseAdd,
        Kernel::ElementwiseScale,
        Kernel::ElementwiseAxpy,
        Kernel::ReduceSumSquaresPartial,
        Kernel::ReduceSumFinal,
        Kernel::ReduceDotPartial,
        Kernel::ReduceWeightedCols,
        Kernel::CrossentropySoftcap,
        Kernel::RmsnormForward,
        Kernel::RmsnormBackward,
        Kernel::EmbeddingForward,
        Kernel::EmbeddingBackward,
        Kernel::RopeForward,
        Kernel::RopeBackward,
        Kernel::ActivationRelu2Forward,
        Kernel::ActivationRelu2Backward,
        Kernel::ResidualLambdaMixForward,
        Kernel::ResidualLambdaMixBackward,
        Kernel::ResidualBackoutForward,
        Kernel::ResidualBackoutBackward,
        Kernel::SmearForward,
        Kernel::SmearBackward,
        Kernel::VegateForward,
        Kernel::VegateBackward,
        Kernel::VegateBackwardDu,
        Kernel::AttentionForward,
        Kernel::AttentionBackwardDq,
        Kernel::AttentionBackwardDkdv,
        Kernel::AttentionDecodePartial,
        Kernel::AttentionDecodeCombine,
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
            Kernel::MatmulNaive | Kernel::MatmulRegister | Kernel::MatmulTiled | Kernel::MatmulTiled8 => Shader::Matmul,
            Kernel::MatmulCoop => Shader::MatmulCoop,
            Kernel::ElementwiseFill
            | Kernel::ElementwiseCopy
            | Kernel::ElementwiseAdd
            | Kernel::ElementwiseScale
            | Kernel::ElementwiseAxpy => Shader::Elementwise,
            Kernel::ReduceSumSquaresPartial
            | Kernel::ReduceSumFinal
            | Kernel::ReduceDotPartial
            | Kernel::ReduceWeightedCols => Shader::Reduce,
            Kernel::CrossentropySoftcap => Shader::Crossentropy,
            Kernel::RmsnormForward | Kernel::RmsnormBackward => Shader::Rmsnorm,
            Kernel::EmbeddingForward | Kernel::EmbeddingBackward => Shader::Embedding,
            Kernel::RopeForward | Kernel::RopeBackward => Shader::Rope,
            Kernel::ActivationRelu2Forward | Kernel::ActivationRelu2Backward => Shader::Activation,
            Kernel::ResidualLambdaMixForward
            | Kernel::ResidualLambdaMixBackward
            | Kernel::ResidualBackoutForward
            | Kernel::ResidualBackoutBackward => Shader::Residual,
            Kernel::SmearForward | Kernel::SmearBackward => Shader::Smear,
            Kernel::VegateForward | Kernel::VegateBackward | Kernel::VegateBackwardDu => Shader::Vegate,
            Kernel::AttentionForward
            | Kernel::AttentionBackwardDq
            | Kernel::AttentionBackwardDkdv
            | Kernel::AttentionDecodePartial
            | Kernel::AttentionDecodeCombine => Shader::Attention,
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
            Kernel::MatmulTiled8 => "matmul_tiled8",
            Kernel::MatmulCoop => "matmul_coop",
            Kernel::ElementwiseFill => "elementwise_fill",
            Kernel::ElementwiseCopy => "elementwise_copy",
            Kernel::ElementwiseAdd => "elementwise_add",
            Kernel::ElementwiseScale => "elementwise_scale",
            Kernel::ElementwiseAxpy => "elementwise_axpy",
            Kernel::ReduceSumSquaresPartial => "reduce_sum_squares_partial",
            Kernel::ReduceSumFinal => "reduce_sum_final",
            Kernel::ReduceDotPartial => "reduce_dot_partial",
            Kernel::ReduceWeightedCols => "reduce_weighted_cols",
            Kernel::CrossentropySoftcap => "crossentropy_softcap",
            Kernel::RmsnormForward => "rmsnorm_forward",
            Kernel::RmsnormBackward => "rmsnorm_backward",
            Kernel::EmbeddingForward => "embedding_forward",
            Kernel::EmbeddingBackward => "embedding_backward",
            Kernel::RopeForward => "rope_forward",
            Kernel::RopeBackward => "rope_backward",
            Kernel::ActivationRelu2Forward => "activation_relu2_forward",
            Kernel::ActivationRelu2Backward => "activation_relu2_backward",
            Kernel::ResidualLambdaMixForward => "residual_lambda_mix_forward",
            Kernel::ResidualLambdaMixBackward => "residual_lambda_mix_backward",
            Kernel::ResidualBackoutForward => "residual_backout_forward",
            Kernel::ResidualBackoutBackward => "residual_backout_backward",
            Kernel::SmearForward => "smear_forward",
            Kernel::SmearBackward => "smear_backward",
            Kernel::VegateForward => "vegate_forward",
            Kernel::VegateBackward => "vegate_backward",
            Kernel::VegateBackwardDu => "vegate_backward_du",
            Kernel::AttentionForward => "attention_forward",
            Kernel::AttentionBackwardDq => "attention_backward_dq",
            Kernel::AttentionBackwardDkdv => "attention_backward_dkdv",
            Kernel::AttentionDecodePartial => "attention_decode_partial",
            Kernel::AttentionDecodeCombine => "attention_decode_combine",
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

/// A textual specialisation of a shader file, for what `override` constants cannot express
/// (types: the operand element type and the cooperative-matrix tile size of matmul_coop.wgsl).
/// Each entry names a module-scope `alias NAME = …;` or `const NAME: T = …;` declaration, which
/// must appear exactly once on a line of its own, and the new right-hand side. The file as
/// written is itself one valid specialisation, so naga validates it without the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Specialization(Vec<(&'static str, String)>);

impl Specialization {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replace the right-hand side of declaration `name` with `value`.
    pub fn set(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value.into()));
        self.0.sort();
        self
    }

    /// The source with every declaration rewritten; `Err` names a declaration that is missing or
    /// ambiguous.
    pub fn apply(&self, source: &str) -> std::result::Result<String, String> {
        let mut lines: Vec<String> = source.lines().map(str::to_string).collect();
        for (name, value) in &self.0 {
            let alias = format!("alias {name} =");
            let constant = format!("const {name}:");
            let hits: Vec<usize> = (0..lines.len())
                .filter(|&i| {
                    let l = lines[i].trim_start();
                    l.starts_with(&alias) || l.starts_with(&constant)
                })
                .collect();
            let [i] = hits[..] else {
                return Err(format!("declaration `{name}` appears {} times (expected once)", hits.len()));
            };
            let line = &lines[i];
            let eq = line.find('=').ok_or_else(|| format!("`{name}` has no `=`"))?;
            let semi = line.rfind(';').filter(|&s| s > eq).ok_or_else(|| format!("`{name}` has no `;`"))?;
            lines[i] = format!("{} {value}{}", &line[..=eq], &line[semi..]);
        }
        let mut out = lines.join("\n");
        out.push('\n');
        Ok(out)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub spec: Specialization,
    pub overrides: Overrides,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specialization_rewrites_exactly_the_named_declarations() {
        let src = "alias Elem = f32;\nconst CT: u32 = 8u;\n  alias TileA = coop_mat8x8<f16, A>; // tile\nfn f() {}\n";
        let out = Specialization::new()
            .set("Elem", "f16")
            .set("CT", "16u")
            .set("TileA", "coop_mat16x16<f16, A>")
            .apply(src)
            .unwrap();
        assert_eq!(
            out,
            "alias Elem = f16;\nconst CT: u32 = 16u;\n  alias TileA = coop_mat16x16<f16, A>; // tile\nfn f() {}\n"
        );
        assert!(Specialization::new().set("Missing", "x").apply(src).is_err());
        assert!(Specialization::new().set("Elem", "f16").apply(&format!("{src}{src}")).is_err());
        assert_eq!(Specialization::new().apply(src).unwrap(), src);
    }
}
