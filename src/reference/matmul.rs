//! Reference for `kernels::matmul`: C = α·op(A)·op(B) + β·C over a batch, f64 accumulation.

use super::Real;
use crate::shapes::{Gemm, MatmulPrecision};

/// Same contract as the GPU kernels, including β = 0 never reading C (so NaN in C is overwritten).
/// A product that accepts f16 (`g.precision`) sees its inputs rounded to nearest f16, as the
/// cooperative-matrix kernels do, and is still accumulated in f64: a comparison then measures
/// only the error the kernel's own accumulation adds. The inputs are first copied once into f64
/// op(A) rows and op(B) columns, so the inner loop is a contiguous dot product over k in
/// ascending order (the same sums as indexing the operands in place, without a strided walk of B
/// or an f16 rounding per multiply-add), and rows of C are spread over the machine's cores with
/// scoped threads: checking a 2048×3072×768 product takes seconds, not a minute.
pub fn matmul<R: Real>(c: &mut [R], a: &[R], b: &[R], g: &Gemm, alpha: f32, beta: f32) {
    g.check(a.len(), b.len(), c.len()).expect("reference matmul: bad shape");
    let f16_inputs = g.precision != MatmulPrecision::F32;
    let input = |x: R| if f16_inputs { half::f16::from_f64(x.f()).to_f64() } else { x.f() };
    // op(A)[bat][m][k] and op(B)ᵀ[bat][n][k], dense.
    let mut a_rows = vec![0.0f64; g.batch * g.m * g.k];
    let mut b_cols = vec![0.0f64; g.batch * g.n * g.k];
    for bat in 0..g.batch {
        for m in 0..g.m {
            for k in 0..g.k {
                let i = bat * g.stride_a + if g.trans_a { k * g.lda + m } else { m * g.lda + k };
                a_rows[(bat * g.m + m) * g.k + k] = input(a[i]);
            }
        }
        for k in 0..g.k {
            for n in 0..g.n {
                let i = bat * g.stride_b + if g.trans_b { n * g.ldb + k } else { k * g.ldb + n };
                b_cols[(bat * g.n + n) * g.k + k] = input(b[i]);
            }
        }
    }
    let (a_rows, b_cols) = (&a_rows, &b_cols);
    // Compute every output row in parallel into owned buffers, then write them back.
    let rows: Vec<(usize, usize)> = (0..g.batch).flat_map(|bat| (0..g.m).map(move |m| (bat, m))).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(rows.len()).max(1);
    let per = rows.len().div_ceil(threads);
    let results: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(part.len() * g.n);
                    for &(bat, m) in part {
                        let ar = &a_rows[(bat * g.m + m) * g.k..][..g.k];
                        for n in 0..g.n {
                            let bc = &b_cols[(bat * g.n + n) * g.k..][..g.k];
                            let mut acc = 0.0f64;
                            for (x, y) in ar.iter().zip(bc) {
                                acc += x * y;
                            }
                            out.push(acc);
                        }
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (&(bat, m), row) in rows.iter().zip(results.iter().flat_map(|r| r.chunks(g.n))) {
        for (n, &acc) in row.iter().enumerate() {
            let i = bat * g.stride_c + m * g.ldc + n;
            let mut v = alpha as f64 * acc;
            if beta != 0.0 {
                v += beta as f64 * c[i].f();
            }
            c[i] = R::of(v);
        }
    }
}
