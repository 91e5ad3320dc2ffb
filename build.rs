//! Records the git commit the binary was built from, and whether the tree had uncommitted
//! changes, for run reports and checkpoints (`WGPT_GIT_COMMIT`, `WGPT_GIT_DIRTY`). Outside a git
//! checkout (a source tarball) both say "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    // Any source edit can change the dirty flag; the crate rebuilds on those anyway.
    for p in ["src", "shaders", "configs", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={p}");
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // HEAD moves on checkout; logs/HEAD grows on every commit, checkout and reset.
        for f in ["HEAD", "logs/HEAD", "index"] {
            let p = std::path::Path::new(&dir).join(f);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    let dirty = match &commit {
        Some(_) => git(&["status", "--porcelain", "--untracked-files=no"]).map_or("unknown", |s| {
            if s.is_empty() {
                "false"
            } else {
                "true"
            }
        }),
        None => "unknown",
    };
    println!("cargo:rustc-env=WGPT_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    println!("cargo:rustc-env=WGPT_GIT_DIRTY={dirty}");
}
