//! The Kubernetes manifests' cluster file: the ConfigMap's template parses, and its render
//! script (run with `sh`, as the init container does) gives each pod its node id, a founder
//! its own entry, a pod beyond the founders an entry of its own and the mark to join.

use agora_cluster_config::addr::ClusterAddr;
use agora_cluster_config::cluster::ClusterConfig;
use std::path::Path;
use std::process::Command;

const CONFIGMAP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/kubernetes/configmap.yaml"
);

/// The block under `  <key>: |` of the ConfigMap, unindented.
fn configmap_entry(key: &str) -> String {
    let manifest = std::fs::read_to_string(CONFIGMAP).expect("read configmap.yaml");
    manifest
        .lines()
        .skip_while(|l| *l != format!("  {key}: |"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect()
}

#[test]
fn the_template_parses_with_every_node_named_by_its_pod() {
    let c = ClusterConfig::parse(&configmap_entry("cluster.toml.template"), Path::new("/"))
        .expect("the template parses");
    assert_eq!(c.nodes.len(), 3);
    for (i, n) in c.nodes.iter().enumerate() {
        let pod = format!("agora-{i}.agora-headless");
        for a in [&n.cluster_addr, &n.http_addr, &n.admin_addr] {
            assert!(
                matches!(a, ClusterAddr::Host { name, .. } if *name == pod),
                "{a}"
            );
        }
    }
    assert!(c.tls.is_some(), "the manifests speak TLS between nodes");
    assert!(
        c.admin_mutations,
        "scale-down.sh removes nodes through the admin API"
    );
}

/// A pod's view after the init container ran.
struct Rendered {
    config: ClusterConfig,
    id: u64,
    joins: bool,
    stderr: String,
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

/// Runs the render script as pod `pod` with the data volume `data` and the joiner offset.
fn render(dir: &Path, data: &Path, pod: &str, offset: Option<u64>) -> Result<Rendered, String> {
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).map_err(io)?;
    std::fs::create_dir_all(data).map_err(io)?;
    let template = dir.join("cluster.toml.template");
    std::fs::write(&template, configmap_entry("cluster.toml.template")).map_err(io)?;
    let script = dir.join("render.sh");
    std::fs::write(&script, configmap_entry("render-cluster-file.sh")).map_err(io)?;
    let mut cmd = Command::new("sh");
    cmd.arg(&script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOSTNAME", pod)
        .env("AGORA_CLUSTER_SECRET", "a-test-secret-of-32-characters!!")
        .env("AGORA_TEMPLATE", &template)
        .env("AGORA_CONFIG", etc.join("cluster.toml"))
        .env("AGORA_DATA", data);
    if let Some(o) = offset {
        cmd.env("AGORA_JOINER_ID_OFFSET", o.to_string());
    }
    let out = cmd.output().map_err(io)?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        return Err(stderr);
    }
    let text = std::fs::read_to_string(etc.join("cluster.toml")).map_err(io)?;
    let config = ClusterConfig::parse(&text, Path::new("/")).map_err(|e| format!("{e}\n{text}"))?;
    let id_text = std::fs::read_to_string(etc.join("node-id")).map_err(io)?;
    let id = id_text
        .trim()
        .parse()
        .map_err(|e| format!("{e}: {id_text}"))?;
    let kept = std::fs::read_to_string(data.join("node-id")).map_err(io)?;
    assert_eq!(kept, id_text, "the id is kept on the data volume");
    Ok(Rendered {
        config,
        id,
        joins: etc.join("join").exists(),
        stderr,
    })
}

#[test]
fn a_founder_pod_is_its_ordinal_plus_one_and_does_not_join() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = render(dir.path(), &dir.path().join("data"), "agora-1", Some(40)).expect("render");
    assert_eq!((r.id, r.joins), (2, false), "{}", r.stderr);
    assert_eq!(r.config.nodes.len(), 3);
    assert_eq!(r.config.secret, "a-test-secret-of-32-characters!!");
}

#[test]
fn a_pod_beyond_the_founders_adds_its_own_entry_and_joins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = render(dir.path(), &dir.path().join("data"), "agora-3", None).expect("render");
    assert_eq!((r.id, r.joins), (4, true), "{}", r.stderr);
    let me = r
        .config
        .nodes
        .iter()
        .find(|n| n.id == 4)
        .expect("its own entry");
    assert_eq!(me.cluster_addr.to_string(), "agora-3.agora-headless:7100");
    assert_eq!(me.http_addr.to_string(), "agora-3.agora-headless:8080");
    assert_eq!(me.admin_addr.to_string(), "agora-3.agora-headless:9090");
    assert_eq!(me.data_dir, Path::new("/data/node-4"));
    assert_eq!(r.config.nodes.len(), 4);
}

#[test]
fn after_a_scale_down_a_new_joiner_takes_a_fresh_id_and_a_restart_keeps_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    // scale-down.sh removed node 4 and raised the offset to 4: a fresh volume joins as 8.
    let fresh = dir.path().join("fresh");
    let r = render(dir.path(), &fresh, "agora-3", Some(4)).expect("render");
    assert_eq!((r.id, r.joins), (8, true), "{}", r.stderr);
    // The same pod restarted keeps the id on its volume, whatever the offset says now.
    let r = render(dir.path(), &fresh, "agora-3", Some(100)).expect("render again");
    assert_eq!((r.id, r.joins), (8, true), "{}", r.stderr);
    // A founder whose disk was replaced comes back under its own id (rebuilt by its peers).
    let r = render(dir.path(), &dir.path().join("new-disk"), "agora-0", Some(4)).expect("render");
    assert_eq!((r.id, r.joins), (1, false), "{}", r.stderr);
}

#[test]
fn a_bad_pod_name_or_kept_id_is_refused_with_its_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let Err(e) = render(dir.path(), &data, "agora", None) else {
        panic!("a pod name without an ordinal was rendered");
    };
    assert!(e.contains("cannot take a pod ordinal"), "{e}");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("node-id"), "four\n").expect("write");
    let Err(e) = render(dir.path(), &data, "agora-3", None) else {
        panic!("a kept id that is no number was used");
    };
    assert!(e.contains("not a node id"), "{e}");
}
