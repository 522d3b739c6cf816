//! The real `gridnode` binary: started on a temp data dir, driven over HTTP, killed with SIGKILL
//! after acknowledged writes, restarted, and checked for every acknowledged record.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gridnode_tests::api::{Api, ids};
use gridnode_tests::walk;
use reqwest::StatusCode;
use serde_json::json;

const START_TIMEOUT: Duration = Duration::from_secs(60);

struct Running {
    child: Child,
    base: String,
    /// The `p2p listening on` addresses.
    p2p: Vec<String>,
    /// The `cluster key:` path, when the node made its own.
    cluster_key: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gridnode"));
    cmd.env_remove("GRIDNODE_CONFIG")
        .env("GRIDNODE_HTTP", "127.0.0.1:0")
        .env("GRIDNODE_GRPC", "127.0.0.1:0")
        .env("GRIDNODE_P2P", "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1")
        .env("GRIDNODE_MDNS", "false")
        .env("GRIDNODE_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the binary and waits for its start-up lines: `cluster key` (when it made its own),
/// `http`, `grpc`, then one `p2p` line per libp2p listener (two here).
fn start(mut cmd: Command) -> Running {
    let mut child = cmd.spawn().expect("the gridnode binary runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines: Vec<String> = Vec::new();
    while lines.iter().filter(|l| l.starts_with("p2p listening on ")).count() < 2 {
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let cluster_key = lines
        .iter()
        .find_map(|l| l.strip_prefix("cluster key: "))
        .and_then(|rest| rest.split(" (").next())
        .map(String::from);
    let http = lines.iter().find_map(|l| l.strip_prefix("http listening on "));
    let p2p: Vec<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("p2p listening on "))
        .map(String::from)
        .collect();
    let addr = match http {
        Some(addr) if p2p.len() == 2 => addr.to_owned(),
        _ => {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("gridnode did not start: {}", String::from_utf8_lossy(&output.stderr));
        }
    };
    Running { child, base: format!("http://{addr}"), p2p, cluster_key }
}

#[tokio::test]
async fn every_route_then_sigkill_after_acknowledged_writes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(command(dir.path()));
    let api = Api::new(node.base.clone());
    walk::every_route(&api).await;

    // 64 concurrent creates, each acknowledged with 201, then an update and a delete.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let tool = json!({"tool_id": format!("t{i:02}"), "tool_tags": ["acked"], "tool_metadata": {"i": i}});
            api.post("/tools", &tool).await.0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(api.put("/tools/t00", &json!({"tool_type": "updated"})).await.0, StatusCode::OK);
    assert_eq!(api.delete("/tools/t01").await.0, StatusCode::OK);

    drop(node); // SIGKILL: no shutdown, no final flush.

    let node = start(command(dir.path()));
    let api = Api::new(node.base.clone());
    walk::check_state(&api).await;
    let acked = ids(&api.get("/tools/query/by-tag?tag=acked").await.1, "tool_id");
    assert_eq!(acked.len(), 63, "every acknowledged create but the deleted one: {acked:?}");
    assert!(!acked.contains(&"t01".to_owned()));
    let (_, t00) = api.get("/tools/t00").await;
    assert_eq!(t00["tool_type"], "updated");
    assert_eq!(t00["tool_metadata"], json!({"i": 0}));
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_flags_beat_env_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gridnode.toml");
    // The file names a data dir that the env var overrides, and a port the flag overrides.
    std::fs::write(
        &config,
        "data_dir = \"/nonexistent/never-used\"\nhttp = \"127.0.0.1:1\"\nnode_id = \"from-file\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    // The env var names a port that is taken: only the flag lets the node start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = command(&data);
    cmd.env("GRIDNODE_HTTP", taken.local_addr().unwrap().to_string());
    cmd.args(["serve", "--config", config.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    let mut node = start(cmd);
    let api = gridnode_tests::api::Api::new(node.base.clone());
    assert_eq!(api.post("/tools", &json!({"tool_id": "x"})).await.0, StatusCode::CREATED);
    assert_eq!(api.get("/readyz").await.0, StatusCode::OK);

    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut exit = None;
    for _ in 0..300 {
        if let Some(status) = node.child.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let exit = exit.expect("gridnode exits on SIGTERM");
    assert!(exit.success(), "{exit:?}");
    assert!(data.join("store").exists(), "the env var's data dir was used");

    // What was acknowledged before SIGTERM is there after a restart.
    let node = start(command(&data));
    let api = gridnode_tests::api::Api::new(node.base.clone());
    assert_eq!(api.get("/tools/x").await.0, StatusCode::OK);
}

#[test]
fn bad_configuration_fails_fast_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "data_dri = \"typo\"\n").unwrap();
    let run = |args: &[&str]| {
        let output = command(dir.path()).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(run(&["--config", config.to_str().unwrap()]).contains("data_dri"));
    assert!(run(&["--config", "/nonexistent/gridnode.toml"]).contains("cannot read config file"));
    assert!(run(&["--http", "not-an-address"]).contains("--http"));
    assert!(run(&["--node-id", "bad id!"]).contains("node_id"));

    // A port already taken is a clear error, not a panic.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let stderr = run(&["--http", &addr]);
    assert!(stderr.contains("cannot listen for http"), "{stderr}");
}

#[tokio::test]
async fn two_binaries_federate_through_a_bootstrap_address() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = format!("binary-{}", std::process::id());
    let mut first = command(&dir.path().join("a"));
    first.env("GRIDNODE_NODE_ID", "bin-a").env("GRIDNODE_CLUSTER", &cluster);
    let a = start(first);
    let tcp = gridnode_tests::tcp_addr(&a.p2p);
    assert!(tcp.contains("/p2p/12D3KooW"), "the p2p line carries the peer id: {tcp}");
    // a made its cluster key and said where; b joins with that one flag.
    let key = a.cluster_key.clone().expect("a prints its cluster key's path");
    assert_eq!(Path::new(&key), dir.path().join("a").join("cluster.key"));
    let mut second = command(&dir.path().join("b"));
    second
        .env("GRIDNODE_NODE_ID", "bin-b")
        .env("GRIDNODE_CLUSTER", &cluster)
        .env("GRIDNODE_BOOTSTRAP", &tcp)
        .args(["--cluster-key", &key]);
    let b = start(second);
    assert_eq!(b.cluster_key, None, "b uses the key it was given");
    let (api_a, api_b) = (Api::new(a.base.clone()), Api::new(b.base.clone()));

    let (status, node) = api_a.get("/node").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node["node_id"], "bin-a");
    assert_eq!(node["cluster"], cluster.as_str());
    assert!(tcp.ends_with(node["peer_id"].as_str().unwrap()));
    assert_eq!(node["listeners"]["p2p"].as_array().unwrap().len(), 2);

    assert_eq!(api_a.post("/tools", &json!({"tool_id": "shared", "tool_search_description": "replicated across binaries"})).await.0, StatusCode::CREATED);
    walk::eventually_ids(&api_b, "/search?q=replicated&kind=tools", "id", &["shared"]).await;
    // b lists itself always; a is there only once its heartbeats arrive.
    walk::eventually(&api_b, "/peers", |peers| {
        ids(peers, "node_id").iter().any(|node| node == "bin-a")
    })
    .await;
}
