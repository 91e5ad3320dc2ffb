//! `cargo xtask lavapipe -- <command…>`: run a command against Mesa >= 26 lavapipe, the CPU Vulkan
//! driver that exposes `VK_KHR_cooperative_matrix`, without touching the system's packages.
//!
//! Why a chroot. Debian 12 ships Mesa 22.3, whose lavapipe has no cooperative matrices. Mesa 26
//! (trixie-backports) is built against glibc 2.38+, and a process holds exactly one glibc: the
//! dynamic loader and libc are mapped before `main`, so `libvulkan_lvp.so` cannot be loaded into a
//! program started on Debian 12's glibc 2.36. `LD_LIBRARY_PATH` does not help: pointing it at
//! trixie's libc pairs a 2.41 libc with the host's 2.36 `ld.so`, which breaks at the first symbol.
//! So the program runs in a root made only of trixie's libraries (libc6, libvulkan1, Mesa and
//! their dependencies); a Rust binary built on Debian 12 runs fine on the newer glibc.
//!
//! How the root is made. `apt-get --download-only` with every apt directory (sources, lists,
//! archives, status, configuration) pointed into a staging folder, so the host's `/etc/apt`, dpkg
//! database and installed packages stay as they were; then `dpkg-deb -x` of each package and
//! `ldconfig -r`. The staging folder is renamed into place only when complete, and holds a stamp
//! with the Mesa version, so an interrupted install never leaves a root that later runs trust.
//!
//! How a command runs in it. A command whose program is `cargo` runs on the host (cargo, rustc
//! and the linker are not in the root) with cargo's target runner set to a copy of this binary
//! (`lavapipe-run`), so every program cargo executes (test binaries, `cargo run`, `cargo bench`)
//! goes into the root, and the programs those spawn (tests run `CARGO_BIN_EXE_wgpt`) are already
//! inside. Any other command goes into the root directly. Entering is `unshare --mount` (a private
//! mount namespace: every mount below vanishes when the program exits), bind mounts of the paths
//! the program may touch at their own absolute paths, `chroot`, and `exec`.
//!
//! Why an xtask binary is exec'd directly. `cargo xtask …` is an alias for `cargo run --package
//! xtask`, so under the runner the xtask binary itself arrives at `lavapipe-run`. It drives cargo,
//! which is not in the root, so it runs on the host; the runner variable it inherits sends the
//! `wgpt` it runs through cargo into the root.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

pub const HELP: &str = "\
cargo xtask lavapipe [--reinstall] [--print-root] -- <command...>

Runs <command...> against Mesa >= 26 lavapipe (a CPU Vulkan driver with VK_KHR_cooperative_matrix),
installed once from Debian trixie-backports into a chroot under the cache folder ($WGPT_CACHE_DIR,
else $XDG_CACHE_HOME/wgpt, else ~/.cache/wgpt; then lavapipe/). The system's packages are not changed.

  cargo xtask lavapipe -- cargo test --workspace     every binary cargo runs executes in the root
  cargo xtask lavapipe -- cargo xtask adapters       cargo xtask itself runs on the host, wgpt in the root
  cargo xtask lavapipe -- ./target/release/wgpt adapters   any other command runs in the root

  --reinstall    download and unpack the root again
  --print-root   print the root's path and Mesa version (then run the command, if any)

Needs root or passwordless sudo (for unshare, mount and chroot), apt-get, dpkg-deb, ldconfig and
the network once. WGPT_LAVAPIPE_MIRROR replaces the Debian mirror (default http://deb.debian.org/debian).
";

const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const MIRROR_ENV: &str = "WGPT_LAVAPIPE_MIRROR";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The packages the root is made of; apt adds their dependencies (libc6 among them).
const PACKAGES: &[&str] = &["mesa-vulkan-drivers", "libvulkan1"];
const SUITES: &[&str] = &["trixie", "trixie-backports"];
const TARGET_RELEASE: &str = "trixie-backports";
const MIN_MESA_MAJOR: u32 = 26;
/// Inside the root.
const ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.json";
/// In the root's top folder; its presence marks a complete install.
const STAMP: &str = ".wgpt-mesa-version";
/// Host files bind-mounted over the root's `/etc` so names, users and DNS resolve as on the host.
const ETC_FILES: &[&str] = &["passwd", "group", "hosts", "resolv.conf", "nsswitch.conf"];
/// Never bind-mounted over the root: it is made of these (and `/` would hide it entirely).
const SYSTEM_DIRS: &[&str] = &["/usr", "/etc", "/lib", "/lib64", "/bin", "/sbin"];
/// Mounted wholesale (proc, and rbinds of the host's /dev and /sys).
const SPECIAL_DIRS: &[&str] = &["/proc", "/dev", "/sys"];

type Result<T> = std::result::Result<T, String>;

/// `cargo xtask lavapipe ARGS…`.
pub fn main(args: &[OsString]) -> i32 {
    match lavapipe(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask lavapipe: {e}");
            2
        }
    }
}

#[derive(Debug, PartialEq)]
struct Options {
    reinstall: bool,
    print_root: bool,
    help: bool,
    command: Vec<OsString>,
}

/// Options come before the command; `--` ends them, and so does the first word that is not one.
fn parse_args(args: &[OsString]) -> Result<Options> {
    let mut o = Options { reinstall: false, print_root: false, help: false, command: Vec::new() };
    for (i, a) in args.iter().enumerate() {
        match a.to_str() {
            Some("--reinstall") => o.reinstall = true,
            Some("--print-root") => o.print_root = true,
            Some("-h" | "--help") => o.help = true,
            Some("--") => {
                o.command = args[i + 1..].to_vec();
                break;
            }
            Some(s) if s.starts_with('-') => return Err(format!("unknown option {s}\n\n{HELP}")),
            _ => {
                o.command = args[i..].to_vec();
                break;
            }
        }
    }
    if o.command.is_empty() && !o.print_root && !o.help {
        return Err(format!("no command given\n\n{HELP}"));
    }
    Ok(o)
}

fn lavapipe(args: &[OsString]) -> Result<i32> {
    let o = parse_args(args)?;
    if o.help {
        print!("{HELP}");
        return Ok(0);
    }
    let runner_var = runner_env_var(host_triple()?);
    if !o.command.is_empty() {
        check_can_enter()?;
    }
    let dir = lavapipe_dir()?;
    let install = ensure_installed(&dir, o.reinstall)?;
    if o.print_root {
        println!("{}", install.root.display());
        println!("Mesa {}", install.version);
    }
    let Some(program) = o.command.first() else { return Ok(0) };
    let runner = install_runner(&dir)?;
    if is_cargo(program) {
        let runner = runner.to_str().filter(|s| !s.contains(char::is_whitespace)).ok_or_else(|| {
            format!(
                "cargo splits its runner setting at whitespace, and {} has some (or is not UTF-8)\n  \
                 HINT: set WGPT_CACHE_DIR to a plain path",
                runner.display()
            )
        })?;
        let status = crate::scrub_cargo_run_env(&mut Command::new(program))
            .args(&o.command[1..])
            .env(&runner_var, format!("{runner} lavapipe-run"))
            .status()
            .map_err(|e| format!("could not run {}: {e}", program.to_string_lossy()))?;
        Ok(exit_code(status))
    } else {
        let e = Command::new(&runner).arg("lavapipe-run").args(&o.command).exec();
        Err(format!("could not run {}: {e}", runner.display()))
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The root holds amd64 packages, and cargo's runner variable names the target triple.
fn host_triple() -> Result<&'static str> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")) {
        Ok("x86_64-unknown-linux-gnu")
    } else {
        Err("only x86_64 Linux (glibc) hosts are supported: the root is made of Debian amd64 packages".into())
    }
}

/// `CARGO_TARGET_<TRIPLE>_RUNNER`, the environment form of `target.<triple>.runner`.
fn runner_env_var(triple: &str) -> String {
    format!("CARGO_TARGET_{}_RUNNER", triple.to_uppercase().replace(['-', '.'], "_"))
}

fn is_cargo(program: &OsStr) -> bool {
    Path::new(program).file_name().is_some_and(|n| n == "cargo")
}

/// `target/debug/xtask` (what `cargo xtask` runs) or `target/debug/deps/xtask-<hash>` (its tests).
fn is_xtask(program: &OsStr) -> bool {
    Path::new(program).file_name().and_then(OsStr::to_str).is_some_and(|n| n == "xtask" || n.starts_with("xtask-"))
}

/// The rule wgpt uses for its autotune cache (src/gpu/context.rs), then `lavapipe/`.
fn cache_dir_from(wgpt: Option<OsString>, xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    if let Some(d) = wgpt {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = xdg {
        return Some(PathBuf::from(d).join("wgpt"));
    }
    home.map(|h| PathBuf::from(h).join(".cache").join("wgpt"))
}

fn lavapipe_dir() -> Result<PathBuf> {
    let cache = cache_dir_from(env::var_os("WGPT_CACHE_DIR"), env::var_os("XDG_CACHE_HOME"), env::var_os("HOME"))
        .ok_or("no cache folder: set WGPT_CACHE_DIR (or HOME)")?;
    let dir = absolute(&cache.join("lavapipe"))?;
    fs::create_dir_all(&dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    env::current_dir().map(|d| d.join(p)).map_err(|e| format!("no current directory: {e}"))
}

struct Install {
    root: PathBuf,
    version: String,
}

/// The Mesa major of a Debian version such as `26.1.6-1~bpo13+1` (an epoch `N:` is skipped).
fn mesa_major(version: &str) -> Option<u32> {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    v.split('.').next()?.parse().ok()
}

/// The root's Mesa version, when the root is complete and new enough.
fn read_stamp(root: &Path) -> Option<String> {
    let v = fs::read_to_string(root.join(STAMP)).ok()?.trim().to_string();
    mesa_major(&v).is_some_and(|m| m >= MIN_MESA_MAJOR).then_some(v)
}

fn ensure_installed(dir: &Path, reinstall: bool) -> Result<Install> {
    let root = dir.join("root");
    if !reinstall {
        if let Some(version) = read_stamp(&root) {
            eprintln!("lavapipe: Mesa {version} in {} (reused)", root.display());
            return Ok(Install { root, version });
        }
    }
    let t0 = Instant::now();
    let mirror = env::var(MIRROR_ENV).unwrap_or_else(|_| DEFAULT_MIRROR.to_string());
    eprintln!("lavapipe: installing Mesa lavapipe from {mirror} ({TARGET_RELEASE}) into {} ...", dir.display());
    remove_stale(dir);
    let stage = dir.join(format!(".stage-{}", std::process::id()));
    let _ = fs::remove_dir_all(&stage);
    let result = build_root(&stage, &mirror);
    let version = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&stage);
            return Err(e);
        }
    };
    // Into place: an old root (--reinstall, or one without a stamp) is moved aside first, so the
    // path holds either a complete old root or a complete new one.
    let old = dir.join(format!(".old-{}", std::process::id()));
    if fs::symlink_metadata(&root).is_ok() {
        fs::rename(&root, &old).map_err(|e| format!("could not move the old root aside: {e}"))?;
    }
    if let Err(e) = fs::rename(stage.join("root"), &root) {
        let _ = fs::remove_dir_all(&stage);
        // Another install finished first: use it.
        if let Some(version) = read_stamp(&root) {
            return Ok(Install { root, version });
        }
        return Err(format!("could not move the new root into {}: {e}", root.display()));
    }
    let _ = fs::remove_dir_all(&old);
    let _ = fs::remove_dir_all(&stage);
    eprintln!("lavapipe: Mesa {version} in {} (installed in {:.1} s)", root.display(), t0.elapsed().as_secs_f64());
    Ok(Install { root, version })
}

/// Staging folders, set-aside roots and runner copies left by runs that were interrupted (their
/// process is gone).
fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) =
            name.to_str().and_then(|n| [".stage-", ".old-", ".runner-"].iter().find_map(|p| n.strip_prefix(p)))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
        }
    }
}

/// Finds a program on PATH, then in the sbin folders (ldconfig lives there and PATH may omit them).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn require(name: &str, package: &str) -> Result<PathBuf> {
    find_program(name).ok_or_else(|| format!("{name} not found\n  HINT: it comes with Debian's {package} package"))
}

/// Downloads and unpacks the packages into `stage/root`; returns the Mesa version.
fn build_root(stage: &Path, mirror: &str) -> Result<String> {
    let apt = require("apt-get", "apt")?;
    let apt_config = require("apt-config", "apt")?;
    let dpkg_deb = require("dpkg-deb", "dpkg")?;
    let ldconfig = require("ldconfig", "libc-bin")?;
    if !Path::new(KEYRING).is_file() {
        return Err(format!("{KEYRING} not found\n  HINT: apt-get install debian-archive-keyring"));
    }
    let s = stage.to_str().filter(|s| !s.contains('"')).ok_or("the cache path must be UTF-8 without quotes")?;
    for d in ["lists/partial", "cache/archives/partial", "state", "log", "empty.d", "root"] {
        fs::create_dir_all(stage.join(d)).map_err(|e| format!("could not create {}: {e}", stage.display()))?;
    }
    let sources: String =
        SUITES.iter().map(|suite| format!("deb [signed-by={KEYRING}] {mirror} {suite} main\n")).collect();
    write(&stage.join("sources.list"), &sources)?;
    write(&stage.join("status"), "")?;
    // Read through APT_CONFIG, which apt reads before /etc/apt/apt.conf.d, so that folder (hooks
    // such as docker-clean's, appstream's, packagekit's) is skipped altogether.
    let mut conf = format!(
        "Dir::Etc::Parts \"{s}/empty.d\";\nDir::Etc::Main \"/dev/null\";\n\
         Dir::Etc::SourceList \"{s}/sources.list\";\nDir::Etc::SourceParts \"{s}/empty.d\";\n\
         Dir::Etc::Preferences \"/dev/null\";\nDir::Etc::PreferencesParts \"{s}/empty.d\";\n\
         Dir::Etc::TrustedParts \"{s}/empty.d\";\n\
         Dir::State \"{s}/state\";\nDir::State::Lists \"{s}/lists\";\nDir::State::status \"{s}/status\";\n\
         Dir::Cache \"{s}/cache\";\nDir::Log \"{s}/log\";\n\
         APT::Architecture \"amd64\";\nAPT::Architectures {{ \"amd64\"; }};\n\
         Debug::NoLocking \"true\";\nAcquire::Languages \"none\";\n"
    );
    if is_root() {
        // apt drops to _apt for downloads, which cannot enter a cache under /root.
        conf.push_str("APT::Sandbox::User \"root\";\n");
    }
    write(&stage.join("apt.conf"), &conf)?;
    // The host's network settings (proxies, timeouts, Check-Valid-Until) still apply.
    let acquire = host_acquire_options(&apt_config);
    let apt_get = |args: &[&str]| {
        let mut c = Command::new(&apt);
        c.env("APT_CONFIG", stage.join("apt.conf")).env("DEBIAN_FRONTEND", "noninteractive").arg("-q");
        for (k, v) in &acquire {
            c.arg("-o").arg(format!("{k}={v}"));
        }
        c.args(args);
        c
    };
    let out = output(apt_get(&["update", "--error-on=any"]))?;
    if !out.status.success() {
        return Err(format!(
            "apt-get update could not fetch {} from {mirror}:\n{}\n  HINT: check the network, or set {MIRROR_ENV} to another Debian mirror",
            SUITES.join(" and "),
            tail(&out)
        ));
    }
    let mut install = vec!["install", "-y", "--download-only", "--no-install-recommends", "-t", TARGET_RELEASE];
    install.extend_from_slice(PACKAGES);
    let out = output(apt_get(&install))?;
    if !out.status.success() {
        return Err(format!(
            "apt-get could not download {} from {mirror}:\n{}\n  HINT: check the network, or set {MIRROR_ENV} to another Debian mirror",
            PACKAGES.join(" "),
            tail(&out)
        ));
    }
    let archives = stage.join("cache/archives");
    let mut debs: Vec<PathBuf> = fs::read_dir(&archives)
        .map_err(|e| format!("could not read {}: {e}", archives.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    let mesa = debs
        .iter()
        .find(|p| p.file_name().and_then(OsStr::to_str).is_some_and(|n| n.starts_with("mesa-vulkan-drivers_")))
        .ok_or("apt downloaded no mesa-vulkan-drivers package")?;
    let out = output({
        let mut c = Command::new(&dpkg_deb);
        c.arg("-f").arg(mesa).arg("Version");
        c
    })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match mesa_major(&version) {
        Some(m) if m >= MIN_MESA_MAJOR => {}
        _ => {
            return Err(format!(
            "{TARGET_RELEASE} at {mirror} offers Mesa {version:?}; cooperative matrices need Mesa >= {MIN_MESA_MAJOR}"
        ))
        }
    }
    let root = stage.join("root");
    for deb in &debs {
        let out = output({
            let mut c = Command::new(&dpkg_deb);
            c.arg("-x").arg(deb).arg(&root);
            c
        })?;
        if !out.status.success() {
            return Err(format!("dpkg-deb -x {} failed:\n{}", deb.display(), tail(&out)));
        }
    }
    // Trixie is merged-/usr: the top-level links come from base-files, which is not unpacked.
    // Programs name their loader /lib64/ld-linux-x86-64.so.2.
    for (link, to) in [("lib", "usr/lib"), ("lib64", "usr/lib64"), ("bin", "usr/bin")] {
        if fs::symlink_metadata(root.join(link)).is_err() {
            std::os::unix::fs::symlink(to, root.join(link)).map_err(|e| format!("could not link {link}: {e}"))?;
        }
    }
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        fs::create_dir_all(root.join(d)).map_err(|e| format!("could not create {d} in the root: {e}"))?;
    }
    if !root.join("etc/ld.so.conf").exists() {
        write(&root.join("etc/ld.so.conf"), "include /etc/ld.so.conf.d/*.conf\n")?;
    }
    let out = output({
        let mut c = Command::new(&ldconfig);
        c.arg("-r").arg(&root);
        c
    })?;
    if !out.status.success() {
        return Err(format!("ldconfig -r {} failed:\n{}", root.display(), tail(&out)));
    }
    if !root.join(ICD.trim_start_matches('/')).is_file() {
        return Err(format!("the unpacked packages have no {ICD}"));
    }
    write(&root.join(STAMP), &format!("{version}\n"))?;
    Ok(version)
}

/// The host's network settings for apt (proxies, timeouts, retries, Check-Valid-Until), which the
/// skipped /etc/apt/apt.conf.d may hold.
fn host_acquire_options(apt_config: &Path) -> Vec<(String, String)> {
    const FORWARDED: &[&str] = &[
        "Acquire::http::",
        "Acquire::https::",
        "Acquire::ftp::",
        "Acquire::socks::",
        "Acquire::Check-",
        "Acquire::Retries",
        "Acquire::ForceIPv",
    ];
    let Ok(out) = Command::new(apt_config).args(["dump", "--no-empty", "--format", "%f=%v%n", "Acquire"]).output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| FORWARDED.iter().any(|f| k.starts_with(f)) && !k.ends_with("::"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| format!("could not write {}: {e}", path.display()))
}

fn output(mut c: Command) -> Result<std::process::Output> {
    c.stdin(Stdio::null()).output().map_err(|e| format!("could not run {:?}: {e}", c.get_program()))
}

/// The last lines a failed command printed.
fn tail(out: &std::process::Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(12)..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// The real user and group ids, from /proc (std has no getuid).
fn ids() -> (u32, u32) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status_id(&status, "Uid:").unwrap_or(u32::MAX), status_id(&status, "Gid:").unwrap_or(u32::MAX))
}

fn status_id(status: &str, key: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse().ok()
}

fn is_root() -> bool {
    ids().0 == 0
}

/// Unshare, mount and chroot need root: check once, before cargo builds anything, that entering
/// works here (no sudo, or a container without CAP_SYS_ADMIN, fail now with a hint).
fn check_can_enter() -> Result<()> {
    require("unshare", "util-linux")?;
    require("mount", "mount")?;
    let mut c;
    if is_root() {
        c = Command::new("unshare");
    } else {
        if find_program("sudo").is_none() {
            return Err(
                "running in the lavapipe root needs root (unshare, mount, chroot), and sudo is not installed\n  \
                 HINT: run as root, or install sudo with a passwordless rule for this user"
                    .into(),
            );
        }
        c = Command::new("sudo");
        c.args(["-n", "unshare"]);
    }
    c.args(["--mount", "--propagation", "private", "true"]).stdin(Stdio::null());
    let out = c.output().map_err(|e| format!("could not run unshare: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "could not enter a private mount namespace:\n{}\n  HINT: run as root or with passwordless sudo; \
             in a container, it needs CAP_SYS_ADMIN",
            tail(&out)
        ));
    }
    Ok(())
}

/// Copies this binary into the cache: cargo may rebuild `target/debug/xtask` while the runner is
/// in use, and the runner finds the root beside itself.
fn install_runner(dir: &Path) -> Result<PathBuf> {
    let me = env::current_exe().map_err(|e| format!("could not find the xtask binary: {e}"))?;
    let dst = dir.join("runner");
    let tmp = dir.join(format!(".runner-{}", std::process::id()));
    fs::copy(&me, &tmp).map_err(|e| format!("could not copy {} to {}: {e}", me.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    fs::rename(&tmp, &dst).map_err(|e| format!("could not rename {} to {}: {e}", tmp.display(), dst.display()))?;
    Ok(dst)
}

/// The root beside the runner copy (`<cache>/lavapipe/runner` and `<cache>/lavapipe/root`).
fn runner_root() -> Result<PathBuf> {
    let me = env::current_exe().map_err(|e| format!("could not find the runner binary: {e}"))?;
    let root = me.parent().ok_or("the runner has no folder")?.join("root");
    if read_stamp(&root).is_none() {
        return Err(format!(
            "no complete lavapipe root at {}\n  HINT: run it through cargo xtask lavapipe",
            root.display()
        ));
    }
    Ok(root)
}

/// `lavapipe-run BIN ARGS…`: cargo's target runner.
pub fn run(args: &[OsString]) -> i32 {
    let Some(bin) = args.first() else {
        eprintln!("xtask lavapipe-run: usage: lavapipe-run BIN ARGS...");
        return 2;
    };
    if is_xtask(bin) {
        let e = Command::new(bin).args(&args[1..]).exec();
        eprintln!("xtask lavapipe-run: could not run {}: {e}", bin.to_string_lossy());
        return 127;
    }
    match enter_command(args) {
        Ok(mut c) => {
            let e = c.exec();
            eprintln!("xtask lavapipe-run: could not run {:?}: {e}", c.get_program());
            127
        }
        Err(e) => {
            eprintln!("xtask lavapipe-run: {e}");
            2
        }
    }
}

/// `[sudo -n] unshare --mount --propagation private <runner> lavapipe-enter [...] -- BIN ARGS`.
fn enter_command(args: &[OsString]) -> Result<Command> {
    let root = runner_root()?;
    let me = root.parent().ok_or("the root has no folder")?.join("runner");
    let mut c;
    let mut enter: Vec<OsString> = vec!["lavapipe-enter".into()];
    if is_root() {
        c = Command::new("unshare");
    } else {
        // sudo resets the environment; it travels in a private file instead (never on sudo's
        // command line, which is logged), with the ids to drop back to before exec.
        let (uid, gid) = ids();
        let file = write_env_file()?;
        enter.extend(["--uid".into(), uid.to_string().into(), "--gid".into(), gid.to_string().into()]);
        enter.extend(["--env-file".into(), file.into_os_string()]);
        c = Command::new("sudo");
        c.args(["-n", "unshare"]);
    }
    c.args(["--mount", "--propagation", "private"]).arg(me).args(enter).arg("--").args(args);
    Ok(c)
}

fn write_env_file() -> Result<PathBuf> {
    let path = env::temp_dir().join(format!("wgpt-lavapipe-env-{}", std::process::id()));
    let _ = fs::remove_file(&path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("could not create {}: {e}", path.display()))?;
    f.write_all(&encode_env(env::vars_os())).map_err(|e| format!("could not write {}: {e}", path.display()))?;
    Ok(path)
}

/// `KEY=VALUE\0` per variable (a value cannot hold a NUL, a key cannot hold `=`).
fn encode_env(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in vars {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn decode_env(bytes: &[u8]) -> Vec<(OsString, OsString)> {
    bytes
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .filter_map(|r| {
            let eq = r.iter().position(|&b| b == b'=')?;
            Some((OsString::from_vec(r[..eq].to_vec()), OsString::from_vec(r[eq + 1..].to_vec())))
        })
        .collect()
}

#[derive(Debug, Default, PartialEq)]
struct EnterOptions {
    owner: Option<(u32, u32)>,
    env_file: Option<PathBuf>,
    command: Vec<OsString>,
}

fn parse_enter(args: &[OsString]) -> Result<EnterOptions> {
    let mut o = EnterOptions::default();
    let (mut uid, mut gid) = (None, None);
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).and_then(|v| v.to_str()).ok_or("an option lacks its value");
        match args[i].to_str() {
            Some("--uid") => uid = Some(value()?.parse::<u32>().map_err(|e| e.to_string())?),
            Some("--gid") => gid = Some(value()?.parse::<u32>().map_err(|e| e.to_string())?),
            Some("--env-file") => o.env_file = Some(PathBuf::from(value()?)),
            Some("--") => {
                o.command = args[i + 1..].to_vec();
                break;
            }
            _ => return Err(format!("unexpected argument {:?}", args[i])),
        }
        i += 2;
    }
    o.owner = match (uid, gid) {
        (Some(u), Some(g)) => Some((u, g)),
        (None, None) => None,
        _ => return Err("--uid and --gid go together".into()),
    };
    if o.command.is_empty() {
        return Err("no command".into());
    }
    Ok(o)
}

/// `lavapipe-enter [--uid U --gid G] [--env-file F] -- BIN ARGS`: runs as root in a fresh private
/// mount namespace (unshare), mounts, chroots and execs.
pub fn enter(args: &[OsString]) -> i32 {
    match enter_inner(args) {
        Ok((program, e)) => {
            eprintln!(
                "xtask lavapipe-enter: could not run {} inside the lavapipe root: {e}",
                program.to_string_lossy()
            );
            127
        }
        Err(e) => {
            eprintln!("xtask lavapipe-enter: {e}");
            2
        }
    }
}

/// Returns only when the final exec failed.
fn enter_inner(args: &[OsString]) -> Result<(OsString, std::io::Error)> {
    let o = parse_enter(args)?;
    let root = runner_root()?;
    let cwd = env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
    let vars: Vec<(OsString, OsString)> = match &o.env_file {
        Some(f) => {
            let bytes = fs::read(f).map_err(|e| format!("could not read {}: {e}", f.display()))?;
            let _ = fs::remove_file(f);
            decode_env(&bytes)
        }
        None => env::vars_os().collect(),
    };
    let var = |k: &str| vars.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());

    // Everything the program may touch, at the same absolute paths.
    let mut wanted: Vec<PathBuf> = vec![cwd.clone(), crate::project_root(), PathBuf::from("/tmp")];
    wanted.extend(crate::project_root().parent().map(Path::to_path_buf));
    // The binary's folder: the cargo target dir, wherever it is.
    wanted.extend(Path::new(&o.command[0]).parent().filter(|p| !p.as_os_str().is_empty()).map(|p| cwd.join(p)));
    for k in ["HOME", "TMPDIR", "CARGO_TARGET_DIR", "CARGO_HOME", "RUSTUP_HOME", "WGPT_CACHE_DIR"] {
        wanted.extend(var(k).map(|v| cwd.join(v)));
    }
    if let Some(v) = var("WGPT_TEST_DATA") {
        wanted.extend(env::split_paths(&v).map(|p| cwd.join(p)));
    }
    let wanted: Vec<PathBuf> = wanted.into_iter().filter_map(|p| fs::canonicalize(p).ok()).collect();

    for p in bind_list(wanted, &root) {
        let Some(target) = mount_point(&root, &p, true, o.owner)? else { continue };
        mount(&["--rbind".as_ref(), p.as_os_str(), target.as_os_str()])?;
    }
    for f in ETC_FILES {
        let host = Path::new("/etc").join(f);
        if !host.exists() {
            continue;
        }
        let Some(target) = mount_point(&root, &host, false, o.owner)? else { continue };
        mount(&["--bind".as_ref(), host.as_os_str(), target.as_os_str()])?;
    }
    mount(&["-t".as_ref(), "proc".as_ref(), "proc".as_ref(), root.join("proc").as_os_str()])?;
    for d in ["/dev", "/sys"] {
        mount(&["--rbind".as_ref(), d.as_ref(), root.join(&d[1..]).as_os_str()])?;
    }

    std::os::unix::fs::chroot(&root).map_err(|e| format!("chroot {}: {e}", root.display()))?;
    env::set_current_dir(&cwd)
        .map_err(|e| format!("the current directory {} is not in the root: {e}", cwd.display()))?;
    // This Mesa has cooperative matrices: tests that check for them must find them (a driver or
    // wgpu change that loses them fails the suite instead of turning the coop rows into not-run).
    let expect_coop = !vars.iter().any(|(k, _)| k == "WGPT_EXPECT_COOP");
    let mut c = Command::new(&o.command[0]);
    c.args(&o.command[1..]).env_clear().envs(vars).env("VK_DRIVER_FILES", ICD).env("VK_ICD_FILENAMES", ICD);
    if expect_coop {
        c.env("WGPT_EXPECT_COOP", "1");
    }
    if let Some((uid, gid)) = o.owner {
        c.uid(uid).gid(gid);
    }
    Ok((o.command[0].clone(), c.exec()))
}

/// The paths to bind-mount: absolute, deduplicated, none below another (rbind brings those along),
/// none that would hide the root's own system folders or the mounts of /proc, /dev and /sys, none
/// inside the root itself.
fn bind_list(mut paths: Vec<PathBuf>, root: &Path) -> Vec<PathBuf> {
    paths.retain(|p| {
        p.is_absolute()
            && !SYSTEM_DIRS.iter().any(|s| Path::new(s).starts_with(p))
            && !SPECIAL_DIRS.iter().any(|s| p.starts_with(s))
            && !p.starts_with(root)
    });
    // Path ordering compares component by component, so an ancestor sorts before its descendants.
    paths.sort();
    paths.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for p in paths {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    kept
}

/// Creates `root/path` (a folder, or an empty file for a file mount) owned by `owner` where it is
/// new, so a non-root user can still delete their cache. `None` when a symlink lies on the way
/// (it could point out of the root).
fn mount_point(root: &Path, path: &Path, dir: bool, owner: Option<(u32, u32)>) -> Result<Option<PathBuf>> {
    let rel = path.strip_prefix("/").map_err(|_| format!("{} is not absolute", path.display()))?;
    let mut at = root.to_path_buf();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                eprintln!("xtask lavapipe: not mounting {}: {} is a symlink", path.display(), at.display());
                return Ok(None);
            }
            Ok(_) => {}
            Err(_) => {
                let made = if i + 1 == n && !dir { fs::write(&at, "") } else { fs::create_dir(&at) };
                made.map_err(|e| format!("could not create {}: {e}", at.display()))?;
                if let Some((uid, gid)) = owner {
                    let _ = std::os::unix::fs::chown(&at, Some(uid), Some(gid));
                }
            }
        }
    }
    Ok(Some(at))
}

fn mount(args: &[&OsStr]) -> Result<()> {
    let out = Command::new("mount").args(args).stdin(Stdio::null()).output().map_err(|e| format!("mount: {e}"))?;
    if !out.status.success() {
        return Err(format!("mount {:?} failed:\n{}", args, tail(&out)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn options_end_at_double_dash_or_first_word() {
        let o = parse_args(&os(&["--reinstall", "--", "cargo", "test", "--workspace"])).unwrap();
        assert!(o.reinstall && !o.print_root);
        assert_eq!(o.command, os(&["cargo", "test", "--workspace"]));
        // Options of the command are the command's, with or without `--`.
        let o = parse_args(&os(&["./target/release/wgpt", "--print-root", "adapters"])).unwrap();
        assert!(!o.print_root);
        assert_eq!(o.command, os(&["./target/release/wgpt", "--print-root", "adapters"]));
        let o = parse_args(&os(&["--", "--reinstall"])).unwrap();
        assert_eq!(o.command, os(&["--reinstall"]));
        let o = parse_args(&os(&["--print-root"])).unwrap();
        assert!(o.print_root && o.command.is_empty());
        assert!(parse_args(&os(&["--reinstall"])).is_err(), "nothing to do");
        assert!(parse_args(&os(&["--"])).is_err());
        assert!(parse_args(&os(&["--bogus", "--", "true"])).is_err());
    }

    #[test]
    fn cache_dir_follows_wgpts_rule() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(cache_dir_from(s("/c"), s("/x"), s("/h")), Some(PathBuf::from("/c")));
        assert_eq!(cache_dir_from(None, s("/x"), s("/h")), Some(PathBuf::from("/x/wgpt")));
        assert_eq!(cache_dir_from(None, None, s("/h")), Some(PathBuf::from("/h/.cache/wgpt")));
        assert_eq!(cache_dir_from(None, None, None), None);
    }

    #[test]
    fn bind_list_drops_descendants_duplicates_and_system_paths() {
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        let root = Path::new("/root/.cache/wgpt/lavapipe/root");
        let got = bind_list(
            p(&[
                "/work/wt/target/debug/deps",
                "/work/wt",
                "/work",
                "/tmp",
                "/root",
                "/tmp",
                "/work/shared/data",
                "/workspace",
                "/",
                "/usr",
                "/usr/local/src/x",
                "/dev/shm",
                "/root/.cache/wgpt/lavapipe/root/tmp",
                "relative",
            ]),
            root,
        );
        assert_eq!(got, p(&["/root", "/tmp", "/usr/local/src/x", "/work", "/workspace"]));
        // /lib is a system folder even though /lib64 shares its prefix as a string.
        assert_eq!(bind_list(p(&["/lib", "/lib6"]), root), p(&["/lib6"]));
    }

    #[test]
    fn mesa_major_of_debian_versions() {
        assert_eq!(mesa_major("26.1.6-1~bpo13+1"), Some(26));
        assert_eq!(mesa_major("1:27.0.0-1"), Some(27));
        assert_eq!(mesa_major("22.3.6-1+deb12u1"), Some(22));
        assert_eq!(mesa_major(""), None);
        assert_eq!(mesa_major("garbage"), None);
    }

    #[test]
    fn runner_variable_and_program_kinds() {
        assert_eq!(runner_env_var("x86_64-unknown-linux-gnu"), "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER");
        assert!(is_cargo(OsStr::new("cargo")));
        assert!(is_cargo(OsStr::new("/root/.cargo/bin/cargo")));
        assert!(!is_cargo(OsStr::new("./target/release/wgpt")));
        assert!(!is_cargo(OsStr::new("cargo-fmt")));
        assert!(is_xtask(OsStr::new("/w/target/debug/xtask")));
        assert!(is_xtask(OsStr::new("/w/target/debug/deps/xtask-0123abcd")));
        assert!(!is_xtask(OsStr::new("/w/target/debug/deps/info-0123abcd")));
        assert!(!is_xtask(OsStr::new("/w/target/debug/wgpt")));
    }

    #[test]
    fn env_file_round_trips() {
        let vars = vec![
            (OsString::from("A"), OsString::from("1=2")),
            (OsString::from("EMPTY"), OsString::new()),
            (OsString::from("PATH"), OsString::from("/a:/b")),
        ];
        assert_eq!(decode_env(&encode_env(vars.clone().into_iter())), vars);
    }

    #[test]
    fn enter_arguments() {
        let o =
            parse_enter(&os(&["--uid", "1000", "--gid", "100", "--env-file", "/tmp/e", "--", "bin", "--x"])).unwrap();
        assert_eq!(o.owner, Some((1000, 100)));
        assert_eq!(o.env_file, Some(PathBuf::from("/tmp/e")));
        assert_eq!(o.command, os(&["bin", "--x"]));
        assert_eq!(parse_enter(&os(&["--", "bin"])).unwrap().owner, None);
        assert!(parse_enter(&os(&["--uid", "1000", "--", "bin"])).is_err());
        assert!(parse_enter(&os(&["--"])).is_err());
    }

    #[test]
    fn ids_from_proc_status() {
        let s = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n";
        assert_eq!(status_id(s, "Uid:"), Some(1000));
        assert_eq!(status_id(s, "Gid:"), Some(100));
        assert_eq!(status_id(s, "Groups:"), None);
    }
}
