//! The command line itself, no GPU needed: `wgpt config keys`, where `--help` shows the GPU
//! options, and config refusals as a user sees them (`train --dry-run` resolves the config and
//! exits before any data, tokenizer or GPU is touched).

use std::process::{Command, Output};

fn wgpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgpt")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_keys_lists_every_key_with_its_default() {
    let out = wgpt(&["config", "keys"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\n  train.num_iterations = -1\n"), "{text}");
    assert!(text.contains("\n  train.warmdown_ratio = 0.65\n"), "{text}");
    assert!(text.contains("\n  memory.recompute = \"mlp\"\n"), "{text}");
    assert!(text.contains("\n  model.depth  (required)\n"), "{text}");
    for (section, keys) in wgpt::config::SECTIONS {
        for k in keys {
            assert!(text.contains(&format!("  {section}.{}", k.key)), "{section}.{}", k.key);
        }
    }
    // With a config, the values the file sets appear beside the defaults.
    let out = wgpt(&["config", "keys", "--config", "configs/cpu-small.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text.lines().find(|l| l.starts_with("  train.num_iterations ")).unwrap();
    assert!(line.ends_with("configs/cpu-small.toml: 300"), "{line}");
    // `wgpt train --help` points at it.
    assert!(stdout(&wgpt(&["train", "--help"])).contains("wgpt config keys"));
}

#[test]
fn gpu_options_are_shown_only_where_a_gpu_is_opened() {
    for cmd in [
        &["adapters"][..],
        &["validate"],
        &["train"],
        &["step-check"],
        &["bench", "step"],
        &["bench", "matmul"],
        &["bench", "attention"],
        &["sample"],
        &["gpu-report"],
    ] {
        let out = wgpt(&[cmd, &["--help"]].concat());
        let help = stdout(&out);
        assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
        let gpu = help.find("GPU options:").unwrap_or_else(|| panic!("{cmd:?} --help has no GPU options:\n{help}"));
        for flag in ["--backend", "--adapter", "--autotune", "--max-binding-bytes"] {
            assert!(help[gpu..].contains(flag), "{cmd:?}: {flag} not under GPU options:\n{help}");
        }
        assert!(help.contains("[env: WGPT_ADAPTER="), "{cmd:?}");
    }
    for cmd in [
        &["info"][..],
        &["tokenizer"],
        &["tokenizer", "train"],
        &["data"],
        &["data", "download"],
        &["bench", "data"],
        &["config", "keys"],
    ] {
        let help = stdout(&wgpt(&[cmd, &["--help"]].concat()));
        assert!(!help.contains("GPU options") && !help.contains("--adapter"), "{cmd:?} offers GPU options:\n{help}");
    }
}

#[test]
fn gpu_options_still_come_from_the_environment() {
    // The backend is parsed (by clap, from the flag or the variable) before any adapter is looked
    // for, so this needs no GPU.
    let refused = "invalid value 'bogus' for '--backend <BACKEND>'\n  [possible values: vulkan, metal, dx12, gl, all]";
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt")).arg("adapters").env("WGPT_BACKEND", "bogus").output().unwrap();
    assert!(!out.status.success() && stderr(&out).contains(refused), "{}", stderr(&out));
    let out = wgpt(&["adapters", "--backend", "bogus"]);
    assert!(!out.status.success() && stderr(&out).contains(refused), "{}", stderr(&out));
    let out =
        Command::new(env!("CARGO_BIN_EXE_wgpt")).arg("adapters").env("WGPT_AUTOTUNE", "sometimes").output().unwrap();
    assert!(!out.status.success() && stderr(&out).contains("[possible values: on, off]"), "{}", stderr(&out));
}

/// Flags that take one of a fixed set of names are parsed by clap, which refuses anything else and
/// lists the choices (before any file is read or GPU opened).
#[test]
fn fixed_choice_flags_list_their_values() {
    let step_check = ["step-check", "--weights", "w", "--meta", "m", "--batch", "b"];
    let cases: [(Vec<&str>, &str); 5] = [
        ([&step_check[..], &["--muon", "bogus"]].concat(), "[possible values: seed, plus]"),
        ([&step_check[..], &["--recompute", "bogus"]].concat(), "[possible values: none, mlp, block]"),
        (vec!["bench", "matmul", "--layouts", "nt,bogus"], "[possible values: nt, nn, tn]"),
        (vec!["data", "download", "-n", "1", "--dataset", "bogus"], "[possible values: fineweb-edu, climbmix]"),
        (vec!["data", "info", "--format", "bogus"], "[possible values: parquet, jsonl, txt]"),
    ];
    for (args, choices) in cases {
        let out = wgpt(&args);
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains("invalid value 'bogus'") && err.contains(choices),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_bad_set_value_is_blamed_on_the_set_not_the_file() {
    let dry = |set: &str| wgpt(&["train", "--dry-run", "--config", "configs/cpu-small.toml", "--set", set]);
    let out = dry("train.num_iterations=abc");
    let err = stderr(&out);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        err.contains("error: bad configuration: --set train.num_iterations=abc: invalid type: string \"abc\", expected an integer"),
        "{err}"
    );
    assert!(!err.contains("cpu-small.toml"), "{err}");
    let out = dry("train.warmdown_ratio=2");
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("train.warmdown_ratio = 2 (from --set train.warmdown_ratio=2) is outside [0, 1]"), "{err}");
    let out = dry("train.eval_tokns=5");
    let err = stderr(&out);
    assert!(
        err.contains("did you mean `train.eval_tokens`?") && err.contains("keys of [train]: device_batch_size"),
        "{err}"
    );
    // Legal but self-defeating: a warning before the run, not a refusal.
    let out = dry("train.num_iterations=20");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\nWARNING: train.warmup_steps = 40 (the default) is longer than the run"), "{text}");
}
