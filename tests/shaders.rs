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

/// Every specialisation of the coop shader (tile 8 and 16, f32 and f16 operands) is valid WGSL,
/// and only matmul_coop.wgsl enables cooperative matrices: every other kernel must compile on an
/// adapter without them.
#[test]
fn coop_specializations_validate_and_stay_in_their_file() {
    for (name, spec) in wgpt::kernels::matmul_coop::all_specializations() {
        let src = spec.apply(Shader::MatmulCoop.source()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let module = parse_and_validate(&format!("matmul_coop.wgsl ({name})"), &src);
        assert!(module.entry_points.iter().any(|e| e.name == "matmul_coop"));
    }
    for &shader in Shader::ALL {
        let uses = shader.source().contains("enable wgpu_cooperative_matrix");
        assert_eq!(uses, shader == Shader::MatmulCoop, "{}", shader.file());
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
