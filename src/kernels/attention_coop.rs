//! The cooperative-matrix (tensor-core) members of the attention family,
//! `shaders/attention_coop.wgsl`: the shader specialisation per coop tile size and the tiling of
//! each pass ([`CoopTiles`]). They are launched by `kernels::attention` like the f32 kernels (the
//! same contract, bindings and parameters) when the caller accepts f16 products and the adapter
//! uses cooperative matrices (`kernels::attention::AttnPlan`); `reference::attention` checks them,
//! fed the same f16-rounded inputs, and `validate/cases/attention.rs` holds their rows.

use crate::error::{Error, Result};
use crate::gpu::{DType, Overrides, Specialization};
use crate::kernels::attention::AttnPass;

fn bad(message: String) -> Error {
    Error::Shape { op: "attention", message }
}

/// The shader text of attention_coop.wgsl for coop tiles of `tile`×`tile` and v and out stored
/// as `v` and `out` (see its header: WGSL cannot parameterise types).
pub fn specialization(tile: u32, v: DType, out: DType) -> Specialization {
    let ty = |scalar: &str, role: &str| format!("coop_mat{tile}x{tile}<{scalar}, {role}>");
    let elem = |d: DType| match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
    };
    Specialization::new()
        .set("CT", format!("{tile}u"))
        .set("TileA", ty("f16", "A"))
        .set("TileB", ty("f16", "B"))
        .set("Acc", ty("f32", "C"))
        .set("ElemV", elem(v))
        .set("ElemO", elem(out))
}

/// Every (tile, v storage, out storage) specialisation, for the no-GPU shader checks.
pub fn all_specializations() -> Vec<(String, Specialization)> {
    let mut all = Vec::new();
    for tile in [8, 16] {
        for v in [DType::F32, DType::F16] {
            for out in [DType::F32, DType::F16] {
                all.push((format!("tile {tile}, v {v:?}, out {out:?}"), specialization(tile, v, out)));
            }
        }
    }
    all
}

/// The override constants of one attention_coop.wgsl pipeline (names as in the shader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopTiles {
    /// Coop tile size (CT), from the adapter.
    pub ct: u32,
    /// Query rows and keys per workgroup tile, multiples of `ct`.
    pub bq: u32,
    pub bk: u32,
    /// Subgroups per workgroup, and invocations per subgroup (from the adapter).
    pub ns: u32,
    pub sg: u32,
}

/// (bq, bk) tried in order, the largest first: bigger tiles re-read K/V (or Q/dout) less often.
const COOP_FORWARD_TILES: &[(u32, u32)] = &[(32, 32), (32, 16), (16, 16), (16, 8), (8, 8)];
const COOP_DKDV_TILES: &[(u32, u32)] = &[(32, 32), (16, 32), (16, 16), (8, 16), (8, 8)];

impl CoopTiles {
    /// Tiles kept by the pass: (A_TILES, S_TILES, P_TILES, ACC_TILES); see the shader.
    fn counts(pass: AttnPass) -> (u32, u32, u32, u32) {
        match pass {
            AttnPass::Forward => (1, 1, 1, 1),
            AttnPass::BackwardDq => (2, 2, 1, 1),
            AttnPass::BackwardDkdv => (2, 2, 2, 2),
        }
    }

    /// Rows of the accumulators and of the f16 probability tile (ROWS), and that tile's pitch (PP).
    fn rows_and_pitch(&self, pass: AttnPass) -> (u32, u32) {
        match pass {
            AttnPass::BackwardDkdv => (self.bk, self.bq + 8),
            _ => (self.bq, self.bk + 8),
        }
    }

    /// D rounded up to a multiple of the coop tile (DT).
    fn dt(&self, d: usize) -> u32 {
        (d as u32).div_ceil(self.ct) * self.ct
    }

    /// Output tiles of the pass's score products and of its accumulator products, which the
    /// shader deals over NS subgroups.
    fn product_tiles(&self, pass: AttnPass, d: usize) -> (u32, u32) {
        let (rows, _) = self.rows_and_pitch(pass);
        ((self.bq / self.ct) * (self.bk / self.ct), (rows / self.ct) * (self.dt(d) / self.ct))
    }

    /// Workgroup memory of the pass's pipeline in bytes, mirroring the shader's declarations
    /// (each array rounded up to 16 bytes).
    pub fn workgroup_bytes(&self, pass: AttnPass, d: usize) -> u64 {
        let (a, s, p, acc) = Self::counts(pass);
        let (rows, pp) = self.rows_and_pitch(pass);
        let dtp = (self.dt(d) + 8) as u64;
        let (bq, bk) = (self.bq as u64, self.bk as u64);
        let r16 = |bytes: u64| bytes.div_ceil(16) * 16;
        r16(a as u64 * bq * dtp * 2)
            + r16(2 * bk * dtp * 2)
            + r16(s as u64 * bq * bk * 4)
            + r16(p as u64 * rows as u64 * pp as u64 * 2)
            + r16(acc as u64 * rows as u64 * self.dt(d) as u64 * 4)
            + r16(3 * bq * 4)
    }

    /// The shader's invariants: tiles are whole coop tiles, and every product's tile count is a
    /// multiple of NS (no subgroup idles or writes twice).
    pub(crate) fn check(&self, pass: AttnPass, d: usize) -> Result<()> {
        let (s_tiles, acc_tiles) = self.product_tiles(pass, d);
        let ok = self.ct > 0
            && self.bq.is_multiple_of(self.ct)
            && self.bk.is_multiple_of(self.ct)
            && self.ns >= 1
            && s_tiles.is_multiple_of(self.ns)
            && acc_tiles.is_multiple_of(self.ns)
            && self.sg >= 1;
        if !ok {
            return Err(bad(format!("inconsistent coop tiles {self:?} for D = {d}")));
        }
        Ok(())
    }

    /// The largest tiles for `pass` at head size `d` with coop tiles of `ct` and subgroups of `sg`
    /// that fit `limits`, with as many subgroups (4, 2 or 1) as divide the products' tile counts.
    /// None if not even 8×8 (or ct×ct) fits.
    pub fn choose(pass: AttnPass, d: usize, ct: u32, sg: u32, limits: &wgpu::Limits) -> Option<Self> {
        let candidates = if pass == AttnPass::BackwardDkdv { COOP_DKDV_TILES } else { COOP_FORWARD_TILES };
        candidates.iter().find_map(|&(bq, bk)| {
            if !bq.is_multiple_of(ct) || !bk.is_multiple_of(ct) {
                return None;
            }
            let base = CoopTiles { ct, bq, bk, ns: 1, sg };
            let (s_tiles, acc_tiles) = base.product_tiles(pass, d);
            let ns = [4u32, 2, 1].into_iter().find(|&ns| {
                s_tiles.is_multiple_of(ns)
                    && acc_tiles.is_multiple_of(ns)
                    && ns * sg <= limits.max_compute_invocations_per_workgroup
                    && ns * sg <= limits.max_compute_workgroup_size_x
            })?;
            let tiles = CoopTiles { ns, ..base };
            let fits = tiles.workgroup_bytes(pass, d) <= limits.max_compute_workgroup_storage_size as u64;
            (fits && tiles.check(pass, d).is_ok()).then_some(tiles)
        })
    }

    pub(crate) fn overrides(&self, pass: AttnPass, d: usize, cpu: bool) -> Overrides {
        let (a, s, p, acc) = Self::counts(pass);
        let (rows, pp) = self.rows_and_pitch(pass);
        Overrides::new()
            .flag("RUNTIME_TRIPS", cpu)
            .set("D", d as f64)
            .set("BQ", self.bq as f64)
            .set("BK", self.bk as f64)
            .set("NS", self.ns as f64)
            .set("SG", self.sg as f64)
            .set("A_TILES", a as f64)
            .set("S_TILES", s as f64)
            .set("P_TILES", p as f64)
            .set("ACC_TILES", acc as f64)
            .set("ROWS", rows as f64)
            .set("PP", pp as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::attention::MAX_HEAD_DIM;

    /// Coop tiles exist for every head size on lavapipe (8×8 tiles, subgroups of 8, 32 KiB) and on
    /// an NVIDIA-like adapter (16×16, 32, 48 KiB), satisfy the shader's invariants and fit.
    #[test]
    fn coop_tiles_fit_every_head_size() {
        let limits = |bytes: u32| wgpu::Limits {
            max_compute_workgroup_storage_size: bytes,
            max_compute_invocations_per_workgroup: 256,
            max_compute_workgroup_size_x: 256,
            ..wgpu::Limits::default()
        };
        for (ct, sg, bytes) in [(8, 8, 32 << 10), (16, 32, 48 << 10)] {
            for pass in AttnPass::ALL {
                for d in (4..=MAX_HEAD_DIM).step_by(4) {
                    let t = CoopTiles::choose(pass, d, ct, sg, &limits(bytes))
                        .unwrap_or_else(|| panic!("{pass:?} D={d} tile {ct}: no tiling fits"));
                    t.check(pass, d).unwrap();
                    assert!(t.workgroup_bytes(pass, d) <= bytes as u64, "{pass:?} D={d}: {t:?}");
                }
            }
        }
        // The GPT shape on lavapipe: forward 16×16 (32×16 needs 36.9 KiB), four subgroups.
        let f = CoopTiles::choose(AttnPass::Forward, 128, 8, 8, &limits(32 << 10)).unwrap();
        assert_eq!((f.bq, f.bk, f.ns), (16, 16, 4));
        // By hand from the shader's declarations: qs 16·136 f16, kvs 2·16·136 f16, sf 16·16 f32,
        // ph 16·24 f16, acc 16·128 f32, row_s 3·16 f32.
        let want = 16 * 136 * 2 + 2 * 16 * 136 * 2 + 16 * 16 * 4 + 16 * 24 * 2 + 16 * 128 * 4 + 48 * 4;
        assert_eq!(f.workgroup_bytes(AttnPass::Forward, 128), want);
        let dkdv = CoopTiles::choose(AttnPass::BackwardDkdv, 128, 8, 8, &limits(32 << 10)).unwrap();
        assert_eq!((dkdv.bq, dkdv.bk), (8, 16));
    }
}
