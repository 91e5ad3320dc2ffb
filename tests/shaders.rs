//! Tier 1 shader checks, no GPU needed: every `shaders/*.wgsl` parses and validates with naga
//! under the capabilities the kernels use, and every entry point in the kernel table exists in its
//! file as a compute entry point.

use wgpt::gpu::{Kernel, Shader};

/// What wgpt's kernels may use: immediates (parameters), subgroup operations, f16 and cooperative
/// matrices (matmul_coop.wgsl only). Anything more (say a kernel that needs 64-bit atomics) must
/// be added here deliberately.
fn capabilities() -> naga::valid::Capabilities {
    naga::valid::Capabilities::IMMEDIATES
        | naga::valid::Capabilities::SUBGROUP
        | naga::valid::Capabilities::SHADER_FLOAT16
        | naga::valid::Capabilities::COOPERATIVE_MATRIX
}

fn parse_and_validate(name: &str, src: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    module
}

#[test]
fn every_wgsl_file_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let src = std::fs::read_to_string(&path).unwrap();
            parse_and_validate(&path.display().to_string(), &src);
            n += 1;
        }
    }
    assert!(n >= Shader::ALL.len(), "found {n} .wgsl files");
}

#[test]
fn every_shader_file_is_embedded() {
    // A .wgsl file that no Shader variant embeds would never be validated on the GPU.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let file = format!("shaders/{}", path.file_name().unwrap().to_str().unwrap());
            assert!(Shader::ALL.iter().any(|s| s.file() == file), "{file} is not in the Shader table");
            let on_disk = std::fs::read_to_string(&path).unwrap();
            let s = Shader::ALL.iter().find(|s| s.file() == file).unwrap();
            assert_eq!(s.source(), on_disk, "{file}: embedded source differs from disk (rebuild)");
        }
    }
}

#[test]
fn every_kernel_entry_point_exists() {
    for &shader in Shader::ALL {
        let module = parse_and_validate(shader.file(), shader.source());
        for k in Kernel::ALL.iter().filter(|k| k.shader() == shader) {
            let ep = module.entry_points.iter().find(|e| e.name == k.entry());
            let ep = ep.unwrap_or_else(|| panic!("{}: no entry point `{}`", shader.file(), k.entry()));
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{} is not a compute entry point", k.entry());
        }
    }
}

/// Every specialisation of the coop shaders (tile 8 and 16; matmul: f32 and f16 operands;
/// attention: f32 and f16 v and out) is valid WGSL, and only those two files enable cooperative matrices:
/// every other kernel must compile on an adapter without them.
#[test]
fn coop_specializations_validate_and_stay_in_their_file() {
    for (name, spec) in wgpt::kernels::matmul_coop::all_specializations() {
        let src = spec.apply(Shader::MatmulCoop.source()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let module = parse_and_validate(&format!("matmul_coop.wgsl ({name})"), &src);
        assert!(module.entry_points.iter().any(|e| e.name == "matmul_coop"));
    }
    for (name, spec) in wgpt::kernels::attention_coop::all_specializations() {
        let src = spec.apply(Shader::AttentionCoop.source()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let module = parse_and_validate(&format!("attention_coop.wgsl ({name})"), &src);
        assert_eq!(module.entry_points.len(), 3, "{name}");
    }
    for &shader in Shader::ALL {
        let uses = shader.source().contains("enable wgpu_cooperative_matrix");
        let coop = matches!(shader, Shader::MatmulCoop | Shader::AttentionCoop);
        assert_eq!(uses, coop, "{}", shader.file());
    }
}

/// matmul.wgsl and matmul_coop.wgsl are one family with one launcher: their parameter structs
/// must be the same struct, or the coop kernels would read the immediates wrongly. (WGSL has no
/// include, so the text is repeated; this keeps the copies equal.)
#[test]
fn matmul_families_share_one_parameter_struct() {
    let block = |src: &'static str| {
        let start = src.find("struct MatmulParams {").expect("struct MatmulParams");
        let end = start + src[start..].find('}').unwrap();
        &src[start..=end]
    };
    assert_eq!(block(Shader::Matmul.source()), block(Shader::MatmulCoop.source()));
}

/// The same for attention.wgsl and attention_coop.wgsl, which one launcher drives.
#[test]
fn attention_families_share_one_parameter_struct() {
    let block = |src: &'static str| {
        let start = src.find("struct AttnParams {").expect("struct AttnParams");
        let end = start + src[start..].find('}').unwrap();
        &src[start..=end]
    };
    assert_eq!(block(Shader::Attention.source()), block(Shader::AttentionCoop.source()));
}

/// One member of a parameter struct, as either side declares it.
#[derive(Debug)]
struct Member {
    name: String,
    offset: usize,
    scalar: &'static str,
}

/// The WGSL struct behind the file's only `var<immediate>`: its name, members and size.
fn wgsl_params(shader: Shader) -> (String, Vec<Member>, usize) {
    let module = parse_and_validate(shader.file(), shader.source());
    let vars: Vec<_> = module
        .global_variables
        .iter()
        .filter(|(_, v)| v.space == naga::AddressSpace::Immediate)
        .map(|(_, v)| v)
        .collect();
    let [var] = vars[..] else {
        panic!("{}: {} `var<immediate>` declarations (expected one)", shader.file(), vars.len());
    };
    let ty = &module.types[var.ty];
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        panic!("{}: `var<immediate>` is not a struct", shader.file());
    };
    let members = members
        .iter()
        .map(|m| {
            let name = m.name.clone().unwrap_or_default();
            let scalar = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Uint, width: 4 }) => "u32",
                naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Sint, width: 4 }) => "i32",
                naga::TypeInner::Scalar(naga::Scalar { kind: naga::ScalarKind::Float, width: 4 }) => "f32",
                ref other => panic!("{}: member `{name}` is {other:?}; only 4-byte scalars are checked", shader.file()),
            };
            Member { name, offset: m.offset as usize, scalar }
        })
        .collect();
    (ty.name.clone().unwrap_or_default(), members, *span as usize)
}

/// The Rust struct's fields, arrays expanded into one member per element (named `field{i}`).
fn rust_params(layout: &wgpt::gpu::immediates::ParamsLayout) -> Vec<(Member, Option<String>)> {
    use wgpt::gpu::immediates::ParamScalar;
    let mut out = Vec::new();
    for f in layout.fields {
        let scalar = match f.scalar {
            ParamScalar::U32 => "u32",
            ParamScalar::I32 => "i32",
            ParamScalar::F32 => "f32",
        };
        for i in 0..f.count {
            // An array element's other accepted spelling: `field_{i}`.
            let (name, alt) = if f.count == 1 {
                (f.name.to_string(), None)
            } else {
                (format!("{}{i}", f.name), Some(format!("{}_{i}", f.name)))
            };
            out.push((Member { name, offset: f.offset + 4 * i, scalar }, alt));
        }
    }
    out
}

/// Every shader's `var<immediate>` struct agrees with the Rust struct its launchers pass
/// (`Shader::params`, the layout the compiler gave the `#[repr(C)]` struct). The rule:
/// - the WGSL struct has the Rust struct's name;
/// - its members, in order, are the Rust fields, where a Rust array field `name: [T; N]` stands
///   for N members `name0 … name{N-1}` (or `name_0 …`): so Rust `_pad: [u32; 2]` is WGSL
///   `_pad0, _pad1`, and `off: [u32; 5]` is `off0 … off4`. No other renaming is allowed;
/// - names compare ignoring ASCII case only, because Rust fields are snake_case while the shaders
///   keep the math names (`M`, `N`, `K`, `T`, `H`, `Hkv`);
/// - each member has the Rust field's byte offset (plus 4·i inside an array) and the same 4-byte
///   scalar type (u32, i32 or f32: a `u32` where WGSL reads `f32` reinterprets the bits);
/// - the struct sizes are equal, trailing padding included.
///
/// The Rust side cannot dodge the check: `GpuContext::dispatch` refuses a parameter type other
/// than the one the kernel table names for the kernel's shader, and this walks that table.
#[test]
fn parameter_structs_match_their_wgsl_declarations() {
    let mut problems = Vec::new();
    for &shader in Shader::ALL {
        let rust = shader.params();
        let (name, wgsl, span) = wgsl_params(shader);
        let rust_members = rust_params(&rust);
        let mut bad = Vec::new();
        if name != rust.name {
            bad.push(format!("struct is `{name}` in WGSL, `{}` in Rust", rust.name));
        }
        if span != rust.size {
            bad.push(format!("size is {span} bytes in WGSL, {} in Rust", rust.size));
        }
        for i in 0..wgsl.len().max(rust_members.len()) {
            match (wgsl.get(i), rust_members.get(i)) {
                (Some(w), Some((r, alt))) => {
                    let same_name = w.name.eq_ignore_ascii_case(&r.name)
                        || alt.as_ref().is_some_and(|a| w.name.eq_ignore_ascii_case(a));
                    if !same_name || w.offset != r.offset || w.scalar != r.scalar {
                        bad.push(format!("member {i}: WGSL {w:?}, Rust {r:?}"));
                    }
                }
                (Some(w), None) => bad.push(format!("member {i}: WGSL {w:?} has no Rust field")),
                (None, Some((r, _))) => bad.push(format!("member {i}: Rust {r:?} has no WGSL member")),
                (None, None) => unreachable!(),
            }
        }
        if !bad.is_empty() {
            problems.push(format!("{} ({}):\n    {}", shader.file(), rust.name, bad.join("\n    ")));
        }
    }
    assert!(problems.is_empty(), "parameter structs disagree:\n  {}", problems.join("\n  "));
}

/// The immediate size a device must offer is the largest parameter struct the shaders declare.
#[test]
fn immediate_size_is_the_largest_parameter_struct() {
    let largest = Shader::ALL.iter().map(|&s| wgsl_params(s).2).max().unwrap();
    assert_eq!(wgpt::gpu::context::IMMEDIATE_BYTES as usize, largest);
}

/// The `pub fn` names in a Rust source whose parameter list contains `needle` (a launcher takes
/// `&mut Stream` first), in file order.
fn pub_fns(src: &str, needle: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in src.match_indices("\npub fn ") {
        let rest = &src[at + "\npub fn ".len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let args = &rest[..rest.find(')').unwrap_or(rest.len())];
        if needle.is_none_or(|n| args.contains(n)) {
            out.push(name);
        }
    }
    out
}

/// One kernel family is one name: `shaders/X.wgsl` holds entry points named `X` or `X_…`, its
/// launchers are `src/kernels/X.rs`, its CPU reference `src/reference/X.rs` with a function of
/// the same name for every launcher, and its validation rows `src/validate/cases/X.rs`. Two
/// exceptions, by design: a `Y_coop` family is a variant of Y's contract (matmul_coop,
/// attention_coop: Y's launchers dispatch it, `reference::Y` checks it, `cases/Y.rs` holds its
/// rows; `src/kernels/Y_coop.rs` holds its tilings), and `matmul_variant` is `matmul` with the
/// variant forced, checked by the same reference.
#[test]
fn every_kernel_family_is_one_name_through_its_five_files() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let mut problems = Vec::new();
    for &shader in Shader::ALL {
        let family = shader.file().trim_start_matches("shaders/").trim_end_matches(".wgsl");
        for k in shader.kernels() {
            let e = k.entry();
            if e != family && !e.starts_with(&format!("{family}_")) {
                problems.push(format!("{}: entry point {e} does not start with {family}_", shader.file()));
            }
        }
        let coop_of = family.strip_suffix("_coop");
        let home = coop_of.unwrap_or(family);
        let launchers = read(&format!("src/kernels/{family}.rs"));
        let reference = read(&format!("src/reference/{home}.rs"));
        read(&format!("src/validate/cases/{home}.rs"));
        let refs = pub_fns(&reference, None);
        let found = pub_fns(&launchers, Some("&mut Stream"));
        if found.is_empty() && coop_of.is_none() {
            problems.push(format!("src/kernels/{family}.rs: no launcher (pub fn taking &mut Stream) found"));
        }
        for l in found {
            let checked_as = if l == "matmul_variant" { "matmul".to_string() } else { l.clone() };
            if !refs.contains(&checked_as) {
                problems.push(format!("kernels::{family}::{l} has no reference::{home}::{checked_as}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
