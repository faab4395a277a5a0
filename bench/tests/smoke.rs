//! Runs `agora-bench smoke` — every scenario for ~2 s against a self-started node, tiny
//! ceilings and a 10k-entity memory run — so the benchmark tool keeps working. It checks
//! correctness only (no speed). The `agora` binary must be built in the same target dir
//! (`cargo build --workspace --bins && cargo test --workspace`), or given by `AGORA_BIN`.

use std::path::PathBuf;
use std::process::Command;

/// The smoke passes and writes its JSON and chart.
#[test]
fn smoke_runs_every_scenario_and_ceiling_correctly() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_agora-bench"));
    let agora = bench.with_file_name(format!("agora{}", std::env::consts::EXE_SUFFIX));
    let agora = std::env::var_os("AGORA_BIN").map_or(agora, PathBuf::from);
    assert!(
        agora.is_file(),
        "the agora binary is not at {}: build it first (cargo build --workspace --bins)",
        agora.display()
    );
    let out = tempfile::tempdir().expect("temp dir");
    let run = Command::new(&bench)
        .arg("smoke")
        .arg("--agora-bin")
        .arg(&agora)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run agora-bench smoke");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "agora-bench smoke failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        run.status
    );
    assert!(stdout.contains("smoke passed"), "{stdout}");
    let written: Vec<_> = std::fs::read_dir(out.path())
        .expect("output dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(written.iter().any(|f| f.ends_with(".json")), "{written:?}");
    assert!(written.iter().any(|f| f.ends_with(".svg")), "{written:?}");
}

/// The cross-node comparison starts its three-node cluster, measures both variants without
/// errors and writes its JSON.
#[test]
fn cross_node_comparison_runs_on_a_local_cluster() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_agora-bench"));
    let agora = bench.with_file_name(format!("agora{}", std::env::consts::EXE_SUFFIX));
    let agora = std::env::var_os("AGORA_BIN").map_or(agora, PathBuf::from);
    let out = tempfile::tempdir().expect("temp dir");
    let run = Command::new(&bench)
        .args([
            "cross-node",
            "--rounds",
            "1",
            "--window",
            "0.5",
            "--warmup",
            "0.2",
        ])
        .args(["--rate", "50", "--products", "24", "--agora-bin"])
        .arg(&agora)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run agora-bench cross-node");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "agora-bench cross-node failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("ratio p50"), "{stdout}");
}
