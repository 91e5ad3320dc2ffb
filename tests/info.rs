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
    // Both precisions' totals: f16 adds 2 bytes per weight of the matrices the products read, the
    // 110,100,912 scaling params (block matrices and lm_head) less the value-embedding gates
    // (6 layers × 6 heads × 12, which feed no product), in 73 buffers of whole 256-byte blocks,
    // and saves 2 bytes per element of each layer's v and attention output (12 layers × 2 tensors
    // × 8·2048 rows × 768).
    let (t32, t16) = (v["memory_total_bytes_f32"].as_u64().unwrap(), v["memory_total_bytes_f16"].as_u64().unwrap());
    let (copies, acts) = (2 * (110_100_912 - 6 * 6 * 12), 2 * 12 * 2 * 8 * 2048 * 768);
    assert_eq!(t16 + acts - t32, copies);
    // `auto`, the default, is planned as f16; both stay under the seed run's 9,448 MiB peak.
    assert_eq!(v["memory_total_bytes"].as_u64().unwrap(), t16);
    assert!(t16 < 9_448 << 20, "{} MiB", t16 >> 20);
}

/// The text form names the precision it planned and sets both totals beside the seed's peak.
#[test]
fn info_shows_the_plan_in_both_precisions_beside_the_seed_peak() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["info", "--config", &format!("{root}/configs/rtx4070-d12.toml"), "--set", "train.precision=f16"])
        .output()
        .expect("run wgpt info");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("train.precision = f16):"), "{text}");
    assert!(text.contains("f16 weight copies"), "{text}");
    let line = text.lines().find(|l| l.contains("totals by precision")).expect("a totals line");
    assert!(
        line.contains("f32 9224.5 MiB") && line.contains("f16 8858.5 MiB") && line.contains("9,448.0 MiB"),
        "{line}"
    );
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
