//! Weights on disk: safetensors with nanochat's state-dict names and PyTorch shapes, and the model
//! config as nanochat keeps it (a JSON whose `model_config` object is what `meta_*.json` holds).
//!
//! A state dict saved from nanochat with the `safetensors` library (f32 or bf16; an
//! `_orig_mod.` prefix from torch.compile is stripped, as nanochat's loader does) loads unchanged,
//! and what wgpt writes loads back into nanochat with `load_state_dict` after `safetensors.torch.load_file`.
//! Every write is atomic (temporary file, fsync, rename).

use super::{GptConfig, ParamLayout};
use crate::error::{Error, Result};
use crate::util::write_atomic;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

fn file_err(path: &Path, message: impl Into<String>) -> Error {
    Error::File { path: path.to_path_buf(), message: message.into() }
}

/// Write named f32 tensors (name, shape, values) as one safetensors file.
pub fn save_f32(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes = serialize_f32(path, tensors, metadata)?;
    write_atomic(path, &bytes).map_err(|e| file_err(path, format!("cannot write: {e}")))
}

/// The bytes of a safetensors file of named f32 tensors (`path` only names it in errors).
pub fn serialize_f32(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map_err(|e| file_err(path, format!("tensor {name}: {e}")))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, metadata).map_err(|e| file_err(path, e.to_string()))
}

/// Every parameter of an arena under its nanochat name, with its PyTorch shape.
fn named_params<'a>(layout: &ParamLayout, arena: &'a [f32]) -> Vec<(String, Vec<usize>, &'a [f32])> {
    layout
        .specs
        .iter()
        .zip(&layout.offsets)
        .map(|(p, &o)| (p.name.clone(), p.shape.clone(), &arena[o..o + p.numel()]))
        .collect()
}

/// Save every parameter of an arena under its nanochat name.
pub fn save_weights(path: &Path, layout: &ParamLayout, arena: &[f32]) -> Result<()> {
    save_f32(path, &named_params(layout, arena), None)
}

/// The bytes [`save_weights`] writes.
pub fn weights_bytes(path: &Path, layout: &ParamLayout, arena: &[f32]) -> Result<Vec<u8>> {
    serialize_f32(path, &named_params(layout, arena), None)
}

/// Convert one stored tensor to f32 values.
fn to_f32(path: &Path, name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => {
            return Err(file_err(path, format!("tensor {name} has dtype {other:?}; expected F32, BF16 or F16")));
        }
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))
}

/// Load a full parameter arena. Every parameter of the layout must be present with its exact
/// shape; a missing, misshapen or unexpected tensor is an error that lists what is wrong.
pub fn load_weights(path: &Path, layout: &ParamLayout) -> Result<Vec<f32>> {
    weights_from_bytes(path, &read_file(path)?, layout)
}

/// [`load_weights`] on a file already read (`path` only names it in errors).
pub fn weights_from_bytes(path: &Path, bytes: &[u8], layout: &ParamLayout) -> Result<Vec<f32>> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| file_err(path, format!("not a safetensors file: {e}")))?;
    let mut by_name: HashMap<String, TensorView<'_>> = HashMap::new();
    for (name, view) in st.tensors() {
        let key = name.strip_prefix("_orig_mod.").unwrap_or(&name).to_string();
        by_name.insert(key, view);
    }
    let mut arena = vec![0.0f32; layout.len];
    let mut problems = Vec::new();
    for (p, &o) in layout.specs.iter().zip(&layout.offsets) {
        match by_name.remove(&p.name) {
            None => problems.push(format!("missing {} {:?}", p.name, p.shape)),
            Some(v) if v.shape() != p.shape.as_slice() => {
                problems.push(format!("{}: shape {:?}, the model config needs {:?}", p.name, v.shape(), p.shape))
            }
            Some(v) => arena[o..o + p.numel()].copy_from_slice(&to_f32(path, &p.name, &v)?),
        }
    }
    let mut extra: Vec<String> = by_name.into_keys().filter(|k| !k.ends_with("cos") && !k.ends_with("sin")).collect();
    extra.sort();
    problems.extend(extra.into_iter().map(|k| format!("unexpected tensor {k}")));
    if !problems.is_empty() {
        return Err(file_err(
            path,
            format!(
                "does not match the model config:\n  {}\n  HINT: check that the meta JSON's model_config describes these weights",
                problems.join("\n  ")
            ),
        ));
    }
    Ok(arena)
}

/// An integer tensor read from disk: shape and values.
pub type IntTensor = (Vec<usize>, Vec<i32>);

/// Integer tensors of a batch file (`idx`, `targets`: int32, or int64 as PyTorch writes them).
pub fn load_i32(path: &Path) -> Result<HashMap<String, IntTensor>> {
    let bytes = read_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| file_err(path, format!("not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, v) in st.tensors() {
        let d = v.data();
        let vals: Vec<i32> = match v.dtype() {
            Dtype::I32 => d.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::I64 => d
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .map(|x| i32::try_from(x).map_err(|_| file_err(path, format!("{name}: value {x} does not fit int32"))))
                .collect::<Result<_>>()?,
            other => return Err(file_err(path, format!("{name} has dtype {other:?}; expected I32 or I64"))),
        };
        out.insert(name, (v.shape().to_vec(), vals));
    }
    Ok(out)
}

/// Write the model config as nanochat's meta JSON (`{"model_config": {...}, ...extra}`).
pub fn save_meta(path: &Path, cfg: &GptConfig, extra: serde_json::Value) -> Result<()> {
    let mut obj = match extra {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    obj.insert("model_config".into(), cfg.nanochat_json());
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(obj)).unwrap();
    write_atomic(path, text.as_bytes()).map_err(|e| file_err(path, format!("cannot write: {e}")))
}

/// Read the model config from a meta JSON (nanochat's `meta_*.json` or ours).
pub fn load_meta(path: &Path) -> Result<(GptConfig, serde_json::Value)> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(path, format!("not JSON: {e}")))?;
    let mc = v
        .get("model_config")
        .ok_or_else(|| file_err(path, "no `model_config` object (expected nanochat's meta_*.json layout)"))?;
    let cfg = GptConfig::from_nanochat_json(mc).map_err(|e| file_err(path, e.to_string()))?;
    Ok((cfg, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("wgpt-ckpt-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn weights_round_trip_and_mismatches_are_listed() {
        let cfg = GptConfig::new(2, 2, 1, 64, 100, 32, "SL").unwrap();
        let layout = ParamLayout::new(&cfg);
        let arena = layout.init(5);
        let dir = tmp("rt");
        let w = dir.join("model.safetensors");
        save_weights(&w, &layout, &arena).unwrap();
        assert_eq!(load_weights(&w, &layout).unwrap(), arena);
        save_meta(&dir.join("meta.json"), &cfg, serde_json::json!({"step": 3})).unwrap();
        let (back, meta) = load_meta(&dir.join("meta.json")).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(meta["step"], 3);
        // A different depth: the error names what is missing.
        let other = ParamLayout::new(&GptConfig::new(3, 2, 1, 64, 100, 32, "SL").unwrap());
        let e = load_weights(&w, &other).unwrap_err().to_string();
        assert!(e.contains("missing transformer.h.2"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bf16_and_compiled_prefix_load() {
        let cfg = GptConfig::new(1, 1, 1, 32, 64, 8, "L").unwrap();
        let layout = ParamLayout::new(&cfg);
        let arena = layout.init(1);
        // What torch.compile'd nanochat saves: bf16 embeddings under an _orig_mod. prefix.
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = Vec::new();
        for (p, &o) in layout.specs.iter().zip(&layout.offsets) {
            let vals = &arena[o..o + p.numel()];
            let (bytes, dt) = if p.name.contains("wte") {
                (vals.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect(), Dtype::BF16)
            } else {
                (bytemuck::cast_slice(vals).to_vec(), Dtype::F32)
            };
            owned.push((format!("_orig_mod.{}", p.name), p.shape.clone(), bytes, dt));
        }
        let views: Vec<(String, TensorView<'_>)> =
            owned.iter().map(|(n, s, b, d)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        let dir = tmp("bf16");
        let w = dir.join("w.safetensors");
        std::fs::write(&w, safetensors::serialize(views, None).unwrap()).unwrap();
        let back = load_weights(&w, &layout).unwrap();
        let (o, n) = layout.range("transformer.wte.weight");
        for i in o..o + n {
            assert!((back[i] - arena[i]).abs() <= arena[i].abs() / 128.0 + 1e-30, "bf16 rounding");
        }
        let (o, n) = layout.range("lm_head.weight");
        assert_eq!(&back[o..o + n], &arena[o..o + n]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
