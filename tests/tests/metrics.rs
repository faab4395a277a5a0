//! What an operator scrapes: every metric family has HELP text, counters exist at zero
//! before their first event, latencies are histograms (they aggregate across nodes), and
//! the build is named.

use agora_tests::{AgoraProcess, ServerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_help_text_zeroed_counters_histograms_and_build_info() {
    let node = AgoraProcess::start(ServerOptions::fast());
    let r = node.admin_port_client().get("/metrics").await;
    assert_eq!(r.status, 200);
    let text = r.text;
    let mut families = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE agora_") {
            families += 1;
            let name = rest.split_whitespace().next().unwrap_or_default();
            assert!(
                text.contains(&format!("# HELP agora_{name} ")),
                "agora_{name} has no HELP text"
            );
        }
    }
    assert!(families > 30, "only {families} families exported");
    assert!(
        text.lines()
            .any(|l| l == "agora_store_commit_failures_total 0"),
        "a counter without events is not exported at zero"
    );
    assert!(text.contains("# TYPE agora_store_commit_seconds histogram"));
    assert!(text.contains("agora_store_commit_seconds_bucket{le=\"0.001\"}"));
    assert!(text.contains("agora_build_info{"));
}
