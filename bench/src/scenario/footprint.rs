//! `gridnode-bench footprint`: the `gridnode` binary as users run it, as a process on loopback —
//! its size, its resident memory idle and holding 100 000 tools, and its start-up time with 100 000
//! tools (the search index reused, not rebuilt).
//!
//! It runs the `gridnode` binary built beside this one (`cargo build --release -p gridnode`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridnode_search::SearchIndex;
use gridnode_store::{Store, StoreConfig};

use crate::corpus;
use crate::out;
use crate::report::{self, BenchResult};

const IDLE_RSS_TARGET: u64 = 64 * 1024 * 1024;
const START_TARGET: Duration = Duration::from_secs(2);
const BINARY_TARGET: u64 = 60 * 1000 * 1000;

/// The `gridnode` binary beside this executable.
fn binary() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let here = std::env::current_exe()?;
    let path = here.parent().ok_or("no directory")?.join("gridnode");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it first (cargo build --release -p gridnode, or without --release for a debug run)",
            path.display()
        )
        .into())
    }
}

/// A running node process; killed when dropped.
struct Running {
    child: Child,
    http: String,
    /// What it wrote on stderr (its logs).
    logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

/// Starts the binary on `data_dir` and waits until `/readyz` answers 200; returns it and the
/// time from spawn to ready.
fn start(
    binary: &Path,
    data_dir: &Path,
) -> Result<(Running, Duration), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["--data-dir", &data_dir.to_string_lossy(), "--node-id", "footprint"])
        .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--p2p", "/ip4/127.0.0.1/tcp/0"])
        .args(["--cluster", &format!("footprint-{}", std::process::id()), "--no-mdns"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logs = logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                logs.push_str(&line);
                logs.push('\n');
            }
        });
    }
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let http = loop {
        match lines.next() {
            Some(line) => {
                if let Some(addr) = line?.strip_prefix("http listening on ") {
                    break addr.to_owned();
                }
            }
            None => {
                return Err(format!(
                    "the node exited: {}",
                    logs.lock().map(|l| l.clone()).unwrap_or_default()
                )
                .into());
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let running = Running { child, http: http.clone(), logs };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if get(&http, "/readyz").is_some_and(|status| status == 200) {
            return Ok((running, started.elapsed()));
        }
        if Instant::now() > deadline {
            return Err("the node never became ready".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A GET over a fresh connection; the status, when the node answered.
fn get(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

pub fn run(quick: bool) -> BenchResult {
    let binary = binary()?;
    let n = if quick { 5_000 } else { 100_000 };
    let idle_for = Duration::from_secs(if quick { 1 } else { 10 });
    let dir = tempfile::tempdir()?;
    let size = std::fs::metadata(&binary)?.len();
    let profile = if binary.to_string_lossy().contains("/release/") { "release" } else { "debug" };

    out!("## footprint scenario{}\n", if quick { " (quick)" } else { "" });
    out!(
        "The `gridnode` binary ({profile} build) run as a process on loopback, mDNS off, logs at warn. \
         RSS read from /proc/<pid>/status.\n"
    );
    out!("| measure | value | target | verdict |");
    out!("| --- | --- | --- | --- |");
    out!(
        "| {profile} binary size | {:.1} MB | ≤ 60 MB (release) | {} |",
        size as f64 / 1e6,
        if profile == "release" {
            verdict(size <= BINARY_TARGET)
        } else {
            "(debug build: not compared)"
        }
    );

    // Idle: a fresh data dir, nothing registered.
    let (idle, start_empty) = start(&binary, &dir.path().join("empty"))?;
    std::thread::sleep(idle_for);
    let idle_rss = report::rss(&idle.pid()).unwrap_or(0);
    out!("| start-up, empty data dir (spawn → /readyz 200) | {start_empty:.1?} | | |");
    out!(
        "| idle RSS after {idle_for:?} (store, index, REST, gRPC, federation of one) | {} | ≤ 64 MiB | {} |",
        report::mib(idle_rss),
        verdict(idle_rss <= IDLE_RSS_TARGET)
    );
    drop(idle);

    // 100k tools, written and indexed beforehand, as a node that ran before would have them.
    let full = dir.path().join("full");
    {
        let store = Store::open(&StoreConfig::new(full.join("store"), "footprint"))?;
        store.import(&corpus::tools(n, 42))?;
        let index = SearchIndex::open(&full.join("index"), store.clone())?;
        index.close();
        store.sync()?;
    }
    let (node, start_full) = start(&binary, &full)?;
    let rebuilt =
        node.logs.lock().map(|l| l.contains("rebuilding the search index")).unwrap_or(false);
    let loaded_rss = report::rss(&node.pid()).unwrap_or(0);
    // Touch the data the way users do: searches and reads.
    for (i, query) in corpus::queries(200, 7).iter().enumerate() {
        let query = query.replace(' ', "+");
        let searched = get(&node.http, &format!("/tools/query/by-keyword?keyword={query}"));
        let read = get(&node.http, &format!("/tools/{}", corpus::tool_id((i * 7919) % n)));
        if searched != Some(200) || read != Some(200) {
            return Err(format!("the node answered {searched:?} and {read:?}").into());
        }
    }
    let used_rss = report::rss(&node.pid()).unwrap_or(0);
    let peak = report::peak_rss(&node.pid()).unwrap_or(0);
    let target = if quick { "≤ 2 s (at 100k)" } else { "≤ 2 s" };
    out!(
        "| start-up with {n} tools, index reused{} | {start_full:.1?} | {target} | {} |",
        if rebuilt { " (REBUILT: unexpected)" } else { "" },
        verdict(start_full <= START_TARGET && !rebuilt)
    );
    out!("| RSS with {n} tools, just started | {} | | |", report::mib(loaded_rss));
    out!("| RSS with {n} tools after 200 searches and 200 reads | {} | | |", report::mib(used_rss));
    out!("| peak RSS of the node process | {} | | |", report::mib(peak));
    let on_disk = dir_size(&full.join("store")) + dir_size(&full.join("index"));
    out!("| data on disk for {n} tools (store + index) | {:.1} MB | | |", on_disk as f64 / 1e6);
    drop(node);
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(kind) if kind.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
