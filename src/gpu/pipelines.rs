//! The typed kernel table: every WGSL file and every entry point wgpt dispatches.
//!
//! Pipelines are cached by [`Kernel`] plus the values of its pipeline-overridable constants, so a
//! typo cannot silently create a new pipeline, and the naga test in `tests/shaders.rs` can walk this
//! table and check that each entry point exists in its file and that each file's parameter struct
//! matches the Rust one.

use super::immediates::{max_size, Immediates, ParamsLayout};
use crate::kernels::{
    adamw, argmax, attention, cast, cross_entropy, elementwise, embedding, grad_norm, matmul, muon, reduce, relu2,
    residual, rmsnorm, rope, smear, ve_gate,
};
use std::any::TypeId;

/// Write the kernel table once: each row is a shader file with its parameter struct and the
/// entry points it holds. Everything else (the [`Shader`] and [`Kernel`] enums, their `ALL`
/// lists, file names, embedded sources, entry-point names, the shader of each kernel and the
/// immediate size the device must offer) is generated from it, so the lists cannot drift apart.
macro_rules! kernel_table {
    ($(
        $shader:ident($file:literal, $params:ty) {
            $($kernel:ident => $entry:literal),* $(,)?
        }
    )*) => {
        /// One WGSL file in `shaders/`, embedded in the binary.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Shader {
            $($shader),*
        }

        impl Shader {
            pub const ALL: &'static [Shader] = &[$(Shader::$shader),*];

            /// File name under `shaders/`, used in error messages.
            pub fn file(self) -> &'static str {
                match self {
                    $(Shader::$shader => concat!("shaders/", $file)),*
                }
            }

            pub fn source(self) -> &'static str {
                match self {
                    $(Shader::$shader => include_str!(concat!("../../shaders/", $file))),*
                }
            }

            /// Layout of the Rust struct the launchers pass as this file's `var<immediate>`
            /// (`tests/shaders.rs` compares it with the WGSL struct).
            pub fn params(self) -> ParamsLayout {
                match self {
                    $(Shader::$shader => <$params as Immediates>::LAYOUT),*
                }
            }

            /// The Rust type of [`Shader::params`], so a dispatch can refuse any other.
            pub(crate) fn params_type(self) -> TypeId {
                match self {
                    $(Shader::$shader => TypeId::of::<$params>()),*
                }
            }

            /// The entry points of this file that wgpt dispatches.
            pub fn kernels(self) -> &'static [Kernel] {
                match self {
                    $(Shader::$shader => &[$(Kernel::$kernel),*]),*
                }
            }
        }

        /// One compute entry point.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kernel {
            $($($kernel),*),*
        }

        impl Kernel {
            pub const ALL: &'static [Kernel] = &[$($(Kernel::$kernel),*),*];

            pub fn shader(self) -> Shader {
                match self {
                    $($(Kernel::$kernel => Shader::$shader,)*)*
                }
            }

            pub fn entry(self) -> &'static str {
                match self {
                    $($(Kernel::$kernel => $entry,)*)*
                }
            }
        }

        /// Largest parameter struct of any shader: the immediate bytes a device must offer.
        pub const IMMEDIATE_BYTES: u32 = max_size(&[$(<$params as Immediates>::LAYOUT),*]) as u32;
    };
}

kernel_table! {
    Matmul("matmul.wgsl", matmul::MatmulParams) {
        MatmulNaive => "matmul_naive",
        MatmulRegister => "matmul_register",
        MatmulTiled => "matmul_tiled",
        MatmulTiled8 => "matmul_tiled8",
    }
    // The same contract as matmul.wgsl on cooperative matrices, hence the same parameters.
    MatmulCoop("matmul_coop.wgsl", matmul::MatmulParams) {
        MatmulCoop => "matmul_coop",
    }
    Elementwise("elementwise.wgsl", elementwise::ElementwiseParams) {
        ElementwiseFill => "elementwise_fill",
        ElementwiseCopy => "elementwise_copy",
        ElementwiseAdd => "elementwise_add",
        ElementwiseScale => "elementwise_scale",
        ElementwiseAxpy => "elementwise_axpy",
    }
    // f32 -> f16 copies of the weight matrices the f16 products read (needs SHADER_F16).
    Cast("cast.wgsl", cast::CastParams) {
        CastF32ToF16 => "cast_f32_to_f16",
    }
    Reduce("reduce.wgsl", reduce::ReduceParams) {
        ReduceSumSquaresPartial => "reduce_sum_squares_partial",
        ReduceSumFinal => "reduce_sum_final",
        ReduceDotPartial => "reduce_dot_partial",
        ReduceWeightedCols => "reduce_weighted_cols",
    }
    CrossEntropy("cross_entropy.wgsl", cross_entropy::CrossEntropyParams) {
        CrossEntropy => "cross_entropy",
    }
    // Greedy predictions of an evaluation pass (CORE's language-modelling tasks).
    Argmax("argmax.wgsl", argmax::ArgmaxParams) {
        Argmax => "argmax",
    }
    Rmsnorm("rmsnorm.wgsl", rmsnorm::RmsnormParams) {
        RmsnormForward => "rmsnorm_forward",
        RmsnormBackward => "rmsnorm_backward",
    }
    Embedding("embedding.wgsl", embedding::EmbeddingParams) {
        EmbeddingForward => "embedding_forward",
        EmbeddingBackward => "embedding_backward",
    }
    Rope("rope.wgsl", rope::RopeParams) {
        RopeForward => "rope_forward",
        RopeBackward => "rope_backward",
    }
    Relu2("relu2.wgsl", relu2::Relu2Params) {
        Relu2Forward => "relu2_forward",
        Relu2Backward => "relu2_backward",
    }
    Residual("residual.wgsl", residual::ResidualParams) {
        ResidualLambdaMixForward => "residual_lambda_mix_forward",
        ResidualLambdaMixBackward => "residual_lambda_mix_backward",
        ResidualBackoutForward => "residual_backout_forward",
        ResidualBackoutBackward => "residual_backout_backward",
    }
    Smear("smear.wgsl", smear::SmearParams) {
        SmearForward => "smear_forward",
        SmearBackward => "smear_backward",
    }
    VeGate("ve_gate.wgsl", ve_gate::VeGateParams) {
        VeGateForward => "ve_gate_forward",
        VeGateBackward => "ve_gate_backward",
        VeGateBackwardDu => "ve_gate_backward_du",
    }
    Attention("attention.wgsl", attention::AttnParams) {
        AttentionForward => "attention_forward",
        AttentionBackwardDq => "attention_backward_dq",
        AttentionBackwardDkdv => "attention_backward_dkdv",
        AttentionDecodePartial => "attention_decode_partial",
        AttentionDecodeCombine => "attention_decode_combine",
    }
    // The training passes of attention.wgsl on cooperative matrices: the same contract, bindings
    // and parameters (f16 products, f32 softmax and accumulation).
    AttentionCoop("attention_coop.wgsl", attention::AttnParams) {
        AttentionCoopForward => "attention_coop_forward",
        AttentionCoopBackwardDq => "attention_coop_backward_dq",
        AttentionCoopBackwardDkdv => "attention_coop_backward_dkdv",
    }
    Adamw("adamw.wgsl", adamw::AdamwParams) {
        AdamwStep => "adamw_step",
    }
    GradNorm("grad_norm.wgsl", grad_norm::GradNormParams) {
        GradNormPartial => "grad_norm_partial",
        GradNormFinal => "grad_norm_final",
        GradNormTotal => "grad_norm_total",
    }
    Muon("muon.wgsl", muon::MuonParams) {
        MuonMomentum => "muon_momentum",
        MuonRowSumsq => "muon_row_sumsq",
        MuonColSumsq => "muon_col_sumsq",
        MuonPreScale => "muon_pre_scale",
        MuonRowScale => "muon_row_scale",
        MuonPolyInit => "muon_poly_init",
        MuonPostScale => "muon_post_scale",
        MuonUpdate => "muon_update",
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
