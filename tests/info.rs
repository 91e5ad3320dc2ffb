//! `wgpt info` on the seed-run config reports nanochat's numbers (no GPU needed).

use std::process::Command;

#[test]
fn info_json_reports_the_seed_run_counts() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["info", "--config", &format!("{root}/configs/rtx4070-d12.toml"), "--json"])
        .output()
        .expect("run wgpt info");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["total_params"], 286_261_730);
    assert_eq!(v["scaling_params"], 110_100_912);
    assert_eq!(v["flops_per_token"], 887_098_032);
    // The plan the runtime allocates fits a 12 GiB card with room to spare.
    assert!(v["memory_total_bytes"].as_u64().unwrap() < 10u64 << 30);
}

#[test]
fn info_refuses_a_bad_config_with_the_numbers() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args([
            "info",
            "--config",
            &format!("{root}/configs/rtx4070-d12.toml"),
            "--set",
            "train.total_batch_size=50000",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("50000") && err.contains("16384"), "{err}");
}
