//! The client subcommands of the real `gridnode` binary against a real node started here:
//! every subcommand's success and failure paths, `--json` answers parsed, and the bundle round
//! trip (`bundle init` → `bundle pack` → `tools upload` → `exec`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gridnode::Node;
use serde_json::{Value, json};

/// Runs `gridnode ARGS` against `node` (its URL in `GRIDNODE_URL`), with `stdin` given.
fn gridnode(node: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridnode"))
        .args(args)
        .env("GRIDNODE_URL", node)
        .env_remove("GRIDNODE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// Succeeds, and returns stdout.
fn ok(node: &str, args: &[&str]) -> String {
    let out = gridnode(node, args, None);
    assert!(
        out.status.success(),
        "gridnode {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Succeeds with `--json`, and returns the parsed answer.
fn json_of(node: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = ok(node, &args);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("gridnode {args:?}: not JSON ({e}): {out}"))
}

/// Fails with exit code 1 and one line on stderr, which is returned.
fn fails(node: &str, args: &[&str]) -> String {
    let out = gridnode(node, args, None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "gridnode {args:?} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("gridnode: "), "{stderr}");
    stderr
}

async fn start(dir: &Path) -> (Node, String) {
    let (node, api) = gridnode_tests::node(dir, "cli-node").start().await;
    (node, api.base)
}

/// Runs blocking binary calls off the test's runtime (the node in-process keeps serving).
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_subcommands_with_tables_json_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (node, url) = start(&dir.path().join("node")).await;
    let record = dir.path().join("tool.json");
    std::fs::write(&record, r#"{"tool_id": "ner", "tool_type": "extractor", "tool_tags": ["nlp"], "tool_search_description": "extracts named entities"}"#).unwrap();
    let at_record = format!("@{}", record.display());
    blocking(move || {
        let u = url.as_str();
        assert_eq!(ok(u, &["tools", "create", &at_record]).trim(), "created tool 'ner'");
        let created = gridnode(u, &["tools", "create", "-"], Some(r#"{"tool_id": "ocr", "tool_type": "vision"}"#));
        assert!(created.status.success());
        let table = ok(u, &["tools", "list"]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ID") && lines[0].contains("DESCRIPTION"), "{table}");
        assert!(lines[1].starts_with("ner") && lines[1].contains("extractor") && lines[1].contains("nlp"), "{table}");
        let listed = json_of(u, &["tools", "list", "--limit", "1"]);
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        let got = json_of(u, &["tools", "get", "ner"]);
        assert_eq!(got["tool_type"], "extractor");
        assert_eq!(ok(u, &["tools", "update", "ner", r#"{"tool_type": "tagger"}"#]).trim(), "updated tool 'ner'");
        assert_eq!(json_of(u, &["tools", "get", "ner"])["tool_type"], "tagger");
        // Search follows the index: poll until the write is searchable.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hits = json_of(u, &["tools", "search", "named entities"]);
            if hits.as_array().is_some_and(|h| h.iter().any(|hit| hit["id"] == "ner")) {
                break;
            }
            assert!(Instant::now() < deadline, "never found: {hits}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(ok(u, &["tools", "search", "named entities"]).contains("ner"));
        assert_eq!(ok(u, &["tools", "delete", "ocr"]).trim(), "deleted tool 'ocr'");

        // Failures: the node's message, one line, exit 1.
        assert!(fails(u, &["tools", "get", "ocr"]).contains("tool 'ocr' not found (404"));
        let duplicate = fails(u, &["tools", "create", &at_record]);
        assert!(duplicate.contains("already exists") && duplicate.contains("(409"), "{duplicate}");
        assert!(fails(u, &["tools", "create", "{not json"]).contains("is not JSON"));
        assert!(fails(u, &["tools", "create", "@/no/such/file"]).contains("cannot read the record"));
        assert!(fails(u, &["tools", "update", "ner", r#"{"tool_id": "other"}"#]).contains("(400"));
        assert!(fails(u, &["tools", "list", "--limit", "0"]).contains("limit"));
        assert!(fails("http://127.0.0.1:9", &["tools", "list"]).contains("cannot reach the node"));

        let not_zip = std::env::temp_dir().join(format!("not-a-zip-{}.zip", std::process::id()));
        std::fs::write(&not_zip, b"plain text").unwrap();
        assert!(fails(u, &["tools", "upload", not_zip.to_str().unwrap()]).contains("not a readable zip"));
        assert!(fails(u, &["tools", "upload", "/no/such.zip"]).contains("cannot read /no/such.zip"));
        std::fs::remove_file(&not_zip).unwrap();

        // Functions alike.
        let function = r#"{"function_id": "sum", "function_type": "math", "function_search_description": "adds"}"#;
        assert_eq!(ok(u, &["functions", "create", function]).trim(), "created function 'sum'");
        assert!(ok(u, &["functions", "list"]).lines().nth(1).unwrap().starts_with("sum"));
        assert_eq!(json_of(u, &["functions", "get", "sum"])["function_type"], "math");
        assert_eq!(ok(u, &["functions", "delete", "sum"]).trim(), "deleted function 'sum'");
        assert!(fails(u, &["functions", "get", "sum"]).contains("not found"));
    })
    .await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_round_trip_exec_resolve_peers_node_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let (node, url) = start(&dir.path().join("node")).await;
    let work = dir.path().to_owned();
    blocking(move || {
        let u = url.as_str();
        let into = work.to_string_lossy().into_owned();
        let created = ok(u, &["bundle", "init", "shout", "--into", &into]);
        assert!(created.contains("next: gridnode bundle pack"), "{created}");
        assert!(fails(u, &["bundle", "init", "shout", "--into", &into]).contains("exists already"));
        let folder = work.join("shout");
        let packed = json_of(u, &["bundle", "pack", folder.to_str().unwrap()]);
        assert_eq!(packed["tool_id"], "shout");
        assert_eq!(packed["files"], json!(["spec.json", "tool.md", "tool.zip"]));
        let zip = work.join("shout.zip");
        assert!(zip.is_file());
        // A broken spec is found before anything is zipped or uploaded.
        let spec = std::fs::read_to_string(folder.join("spec.json")).unwrap();
        std::fs::write(
            folder.join("spec.json"),
            r#"{"tool_id": "shout", "tool_api_spec": {"text": "strnig"}}"#,
        )
        .unwrap();
        assert!(
            fails(u, &["bundle", "pack", folder.to_str().unwrap(), "-o", "/tmp/never.zip"])
                .contains("tool_api_spec")
        );
        std::fs::write(folder.join("spec.json"), spec).unwrap();

        let uploaded = ok(u, &["tools", "upload", zip.to_str().unwrap()]);
        assert_eq!(uploaded.trim(), "uploaded tool 'shout'");
        let output = ok(u, &["exec", "shout", r#"{"text": "hello"}"#]);
        assert_eq!(serde_json::from_str::<Value>(&output).unwrap(), json!({"text": "HELLO"}));
        let answer = json_of(u, &["exec", "shout", r#"{"text": "json"}"#]);
        assert_eq!(
            (answer["success"].clone(), answer["metadata"]["runtime"].clone()),
            (json!(true), json!("bundle"))
        );
        let piped = gridnode(u, &["exec", "shout", "-"], Some(r#"{"text": "piped"}"#));
        assert!(piped.status.success());
        assert!(String::from_utf8_lossy(&piped.stdout).contains("PIPED"));
        assert!(fails(u, &["exec", "shout", r#"{"text": 5}"#]).contains("invalid input"));

        // Not a registry id: the node-local tool of that name; --on pins it to a node.
        let reversed = ok(u, &["exec", "reverse_text", r#"{"text": "abc"}"#]);
        assert_eq!(serde_json::from_str::<Value>(&reversed).unwrap(), json!({"result": "cba"}));
        assert!(ok(u, &["exec", "echo", "--on", "cli-node", "[1,2]"]).contains('1'));
        assert!(fails(u, &["exec", "ghost"]).contains("not found on any node (404"));
        assert!(fails(u, &["exec", "reverse_text", "--org", "bad org"]).contains("(400"));
        assert!(ok(u, &["resolve", "reverse_text"]).starts_with("cli-node at 127.0.0.1:"));
        assert_eq!(json_of(u, &["resolve", "reverse_text"])["node_id"], "cli-node");
        assert!(fails(u, &["resolve", "ghost"]).contains("404"));

        let peers = ok(u, &["peers"]);
        assert!(
            peers.lines().nth(1).is_some_and(|l| l.starts_with("cli-node") && l.contains("yes")),
            "{peers}"
        );
        assert_eq!(json_of(u, &["peers"])[0]["node_id"], "cli-node");
        assert!(
            ok(u, &["node"]).lines().any(|l| l.starts_with("node_id") && l.ends_with("cli-node"))
        );
        assert_eq!(json_of(u, &["node"])["node_id"], "cli-node");

        let audit = json_of(u, &["audit", "--tool", "shout"]);
        assert!(
            audit.as_array().is_some_and(|a| a.len() == 5
                && a.iter().all(|e| e["tool"] == "shout")
                && a.iter().filter(|e| e["operation"] == "execute").count() == 4
                && a.iter().any(|e| e["operation"] == "upload")),
            "{audit}"
        );
        let table = ok(u, &["audit", "--limit", "3"]);
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table.lines().next().unwrap().starts_with("TIME (UTC)"));
        assert!(fails(u, &["audit", "--limit", "5000"]).contains("limit"));

        // An upload over 1 MiB draws a progress bar on a terminal (`script` gives it one).
        if Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success()) {
            // Incompressible bytes (xorshift), so the zip stays over 1 MiB.
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            let big_code: Vec<u8> = (0..2_000_000)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let big = work.join("big.zip");
            std::fs::write(
                &big,
                gridnode_tests::bundle::zip(&[
                    ("spec.json", br#"{"tool_id": "big"}"#.as_slice()),
                    ("tool.zip", &big_code),
                ]),
            )
            .unwrap();
            let line = format!("{} tools upload {}", env!("CARGO_BIN_EXE_gridnode"), big.display());
            let out = Command::new("script")
                .args(["-qec", &line, "/dev/null"])
                .env("GRIDNODE_URL", u)
                .output()
                .unwrap();
            let shown = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{shown}");
            assert!(shown.contains("100%") && shown.contains("uploaded tool 'big'"), "{shown}");
        } else {
            eprintln!("no `script` here: the progress bar was not checked");
        }

        for shell in ["bash", "zsh", "fish"] {
            assert!(ok(u, &["completions", shell]).contains("gridnode"));
        }
        // Input from a file; a bad config stops `serve` at once, naming the key and the line.
        let input = work.join("input.json");
        std::fs::write(&input, r#"{"text": "from a file"}"#).unwrap();
        assert!(
            ok(u, &["exec", "shout", &format!("@{}", input.display())]).contains("FROM A FILE")
        );
        let bad = work.join("bad.toml");
        std::fs::write(&bad, "cluster = \"x\"\n[runtime]\ndefault_timeout = 5\n").unwrap();
        let error = fails(u, &["serve", "--config", bad.to_str().unwrap()]);
        assert!(error.contains("(line 3)") && error.contains("default_timeout"), "{error}");
        let error = fails(u, &["config", "check", "--config", bad.to_str().unwrap()]);
        assert!(error.contains("default_timeout"), "{error}");
        let printed = ok(u, &["config", "print-default"]);
        let config = gridnode::config::NodeConfig::from_toml(&printed, "printed").unwrap();
        assert_eq!(config, gridnode::config::NodeConfig::default());
    })
    .await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keygen_members_and_forget() {
    let dir = tempfile::tempdir().unwrap();
    let (node, url) = start(dir.path()).await;
    let key = dir.path().join("site.key");
    let key_arg = key.to_str().unwrap().to_owned();
    let said = ok(&url, &["cluster", "keygen", &key_arg]);
    assert!(said.contains("--cluster-key"), "{said}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(gridnode::ClusterKey::load(&key).is_ok());
    // Never over an existing key: a typo must not lock a site out of its cluster.
    let again = fails(&url, &["cluster", "keygen", &key_arg]);
    assert!(again.contains("cannot write the cluster key"), "{again}");

    let members = blocking({
        let url = url.clone();
        move || json_of(&url, &["cluster", "members"])
    })
    .await;
    assert_eq!(members[0]["node_id"], "cli-node");
    let table = blocking({
        let url = url.clone();
        move || ok(&url, &["cluster", "members"])
    })
    .await;
    assert!(table.starts_with("NODE") && table.contains("cli-node"), "{table}");
    let url2 = url.clone();
    let own = blocking(move || fails(&url2, &["cluster", "forget", "cli-node"])).await;
    assert!(own.contains("this node") && own.contains("(400"), "{own}");
    let url2 = url.clone();
    let unknown = blocking(move || fails(&url2, &["cluster", "forget", "nobody"])).await;
    assert!(unknown.contains("not a bound member") && unknown.contains("(404"), "{unknown}");
    node.shutdown().await.unwrap();
}
