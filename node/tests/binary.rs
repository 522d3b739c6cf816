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

/// The peak resident size of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test]
async fn a_large_upload_is_streamed_not_held_whole_in_memory_twice() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(command(dir.path()));
    let api = Api::new(node.base.clone());
    // Incompressible code: the zip is as large as what it holds.
    const SIZE: usize = 60 << 20;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let code: Vec<u8> = (0..SIZE / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let spec = json!({"tool_id": "big", "tool_type": "bundle"});
    let upload = gridnode_tests::bundle::zip(&[
        ("spec.json", spec.to_string().as_bytes()),
        ("tool.zip", &code),
    ]);
    drop(code);
    assert!(upload.len() > SIZE, "{}", upload.len());
    let size = upload.len() as u64;
    let before = peak_rss(node.child.id());
    let (status, body) = api.upload("/tools/upload", upload).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let grew = peak_rss(node.child.id()).saturating_sub(before);
    // Twice the upload: sled's buffer of the blob, and the log record it writes from it (the
    // zip itself is on disk, the code read from it moves into sled's buffer). 8 MiB for the
    // allocator's rounding and the request's other buffers.
    let bound = 2 * size + (8 << 20);
    assert!(
        grew <= bound,
        "the peak RSS grew by {} MiB for a {} MiB upload",
        grew >> 20,
        size >> 20
    );
    assert_eq!(api.get("/tools/big").await.0, StatusCode::OK);
}

#[tokio::test]
async fn beyond_loopback_access_control_is_on_and_the_cli_makes_and_uses_tokens() {
    let dir = tempfile::tempdir().unwrap();
    // Open beyond loopback is refused, naming the flags.
    let mut open = command(dir.path());
    open.env("GRIDNODE_HTTP", "0.0.0.0:0").env("GRIDNODE_ACL", "false");
    let output = open.output().unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("--insecure") && said.contains("--acl"), "{said}");

    let mut cmd = command(dir.path());
    cmd.env("GRIDNODE_HTTP", "0.0.0.0:0");
    let mut node = start(cmd);
    let port = node.base.rsplit(':').next().unwrap().to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let admin_file = dir.path().join("admin.token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&admin_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let admin = std::fs::read_to_string(&admin_file).unwrap().trim().to_owned();
    let cli = |token: &str, args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_gridnode"))
            .args(args)
            .env("GRIDNODE_URL", &base)
            .env("GRIDNODE_TOKEN", token)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, _, err) = cli("", &["tools", "list"]);
    assert!(!ok && err.contains("missing or invalid token"), "{err}");
    let (ok, out, err) = cli(
        &admin,
        &["acl", "token", "create", "--scopes", "read", "--description", "ci", "--json"],
    );
    assert!(ok, "{err}");
    let made: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secret = made["secret"].as_str().unwrap().to_owned();
    let (ok, out, _) = cli(&secret, &["acl", "whoami"]);
    assert!(ok && out.contains("read"), "{out}");
    assert!(cli(&secret, &["tools", "list"]).0);
    let (ok, _, err) = cli(&secret, &["tools", "delete", "x"]);
    assert!(!ok && err.contains("'write' scope"), "{err}");
    let (ok, out, _) = cli(&admin, &["acl", "token", "list"]);
    assert!(ok && out.contains(made["token_id"].as_str().unwrap()) && !out.contains(&secret));
    let id = made["token_id"].as_str().unwrap();
    assert!(cli(&admin, &["acl", "token", "delete", id]).0);
    assert!(!cli(&secret, &["tools", "list"]).0, "revoked");
    let _ = node.child.kill();
}
