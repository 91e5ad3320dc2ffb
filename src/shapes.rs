//! Shapes shared by a kernel family's launcher and its CPU reference: the reference takes the
//! same shape value the launcher does, and neither imports the other.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The least precision a caller accepts for a product. Ordered from most to least precise: a
/// caller accepting `p` may get any variant whose precision is `<= p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// f32 inputs, f32 accumulation: the SIMT kernels.
    #[default]
    F32,
    /// Inputs rounded to f16, products accumulated in f32: cooperative matrices (tensor cores).
    F16,
    /// f16 inputs, accumulation in f16 within K blocks and in f32 across them.
    #[serde(rename = "f16acc")]
    F16Acc,
}

impl MatmulPrecision {
    pub fn name(self) -> &'static str {
        match self {
            MatmulPrecision::F32 => "f32",
            MatmulPrecision::F16 => "f16",
            MatmulPrecision::F16Acc => "f16acc",
        }
    }
}

/// Shape and memory layout of one (batched) product. All sizes in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm {
    /// A is stored K×M (read transposed) instead of M×K.
    pub trans_a: bool,
    /// B is stored N×K (read transposed) instead of K×N.
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    /// Row pitch of A, B and C as stored.
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    /// Elements between consecutive matrices of a batch.
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    /// The least precision the caller accepts (f32 unless it asks for less).
    pub precision: MatmulPrecision,
}

impl Gemm {
    /// A dense, unbatched product with the given layout.
    pub fn new(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> Self {
        let lda = if trans_a { m } else { k };
        let ldb = if trans_b { k } else { n };
        Gemm {
            trans_a,
            trans_b,
            m,
            n,
            k,
            batch: 1,
            lda,
            ldb,
            ldc: n,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            precision: MatmulPrecision::F32,
        }
    }

    /// The same product, accepting `precision` (see [`MatmulPrecision`]).
    pub fn with_precision(mut self, precision: MatmulPrecision) -> Self {
        self.precision = precision;
        self
    }

    /// Linear-layer forward: Y (M×N) = X (M×K) · Wᵀ, W stored N×K as PyTorch keeps it.
    pub fn nt(m: usize, n: usize, k: usize) -> Self {
        Self::new(false, true, m, n, k)
    }

    /// Linear-layer input gradient: dX (M×N) = dY (M×K) · W (K×N).
    pub fn nn(m: usize, n: usize, k: usize) -> Self {
        Self::new(false, false, m, n, k)
    }

    /// Linear-layer weight gradient: dW (M×N) = dYᵀ · X, dY stored K×M, X stored K×N.
    pub fn tn(m: usize, n: usize, k: usize) -> Self {
        Self::new(true, false, m, n, k)
    }

    /// The same product over `batch` matrices packed back to back.
    pub fn batched(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// "NT", "NN", "TN" or "TT": how A and B are read.
    pub fn layout(&self) -> &'static str {
        match (self.trans_a, self.trans_b) {
            (false, true) => "NT",
            (false, false) => "NN",
            (true, false) => "TN",
            (true, true) => "TT",
        }
    }

    /// Whether the row pitches of A and B are multiples of 4 elements: with 4-aligned offsets,
    /// the precondition for the shader's vec4 loads.
    pub fn rows_vec4_aligned(&self) -> bool {
        self.lda.is_multiple_of(4) && self.ldb.is_multiple_of(4)
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// (rows, cols) of A and B as stored.
    fn a_stored(&self) -> (usize, usize) {
        if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        }
    }

    fn b_stored(&self) -> (usize, usize) {
        if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        }
    }

    /// Elements an operand buffer must hold: last matrix's last row's last element, plus one.
    pub fn a_len(&self) -> usize {
        let (r, c) = self.a_stored();
        (self.batch - 1) * self.stride_a + (r - 1) * self.lda + c
    }

    pub fn b_len(&self) -> usize {
        let (r, c) = self.b_stored();
        (self.batch - 1) * self.stride_b + (r - 1) * self.ldb + c
    }

    pub fn c_len(&self) -> usize {
        (self.batch - 1) * self.stride_c + (self.m - 1) * self.ldc + self.n
    }

    /// Reject impossible shapes with a message that says which number is wrong.
    pub fn check(&self, a_len: usize, b_len: usize, c_len: usize) -> Result<()> {
        let bad = |message: String| Err(Error::Shape { op: "matmul", message });
        if self.m == 0 || self.n == 0 || self.k == 0 || self.batch == 0 {
            return bad(format!("M, N, K and batch must be >= 1, got {self:?}"));
        }
        let (_, ac) = self.a_stored();
        let (_, bc) = self.b_stored();
        if self.lda < ac || self.ldb < bc || self.ldc < self.n {
            return bad(format!(
                "leading dimensions too small: lda {} < {ac}, ldb {} < {bc} or ldc {} < {}",
                self.lda, self.ldb, self.ldc, self.n
            ));
        }
        for (name, need, have) in [("A", self.a_len(), a_len), ("B", self.b_len(), b_len), ("C", self.c_len(), c_len)] {
            if have < need {
                return bad(format!("{name} has {have} elements but a {} {self:?} needs {need}", self.layout()));
            }
        }
        if self.a_len().max(self.b_len()).max(self.c_len()) > u32::MAX as usize {
            return bad("an operand exceeds 2^32 elements".into());
        }
        Ok(())
    }
}

/// One attention call: B sequences of T positions, H query heads and Hkv KV heads of size D
/// (query head h reads KV head h / (H / Hkv)), each query t seeing keys t − window ≤ j ≤ t, scores
/// scaled by `scale`. Layouts (row n = b·T + t): q and out (B, T, H, D); k and v (B, T, Hkv, D);
/// lse (B, T, H).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnShape {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub hkv: usize,
    pub d: usize,
    pub window: usize,
    pub scale: f32,
    /// The least precision the caller accepts for the products Q·Kᵀ, P·V and their gradients.
    /// Below f32 the cooperative-matrix kernels run where the adapter has them: q, k, v and dout
    /// rounded to f16, softmax, statistics and accumulation in f32 (the reference rounds the same
    /// inputs). Elsewhere the f32 kernels run, which is within any tolerance of the f16 ones.
    pub precision: MatmulPrecision,
}

impl AttnShape {
    /// Elements of q, out, dq, dout.
    pub fn q_len(&self) -> usize {
        self.b * self.t * self.h * self.d
    }

    /// Elements of k, v, dk, dv.
    pub fn kv_len(&self) -> usize {
        self.b * self.t * self.hkv * self.d
    }

    /// Elements of lse (and of the backward's Δ).
    pub fn lse_len(&self) -> usize {
        self.b * self.t * self.h
    }
}
