//! `gridnode-bench`: whole-system figures, measured through real nodes, each beside the limit it
//! chases or the alternative a user would pick instead, in the same run.
//!
//! ```text
//! gridnode-bench registry [--quick]     REST reads and writes vs a bare axum handler
//! gridnode-bench access [--quick]       token checks, GET with a token, HTTPS, TLS gRPC
//! gridnode-bench search [N] [--quick]   keyword search through REST vs SQLite FTS5 and a scan
//! gridnode-bench grpc [--quick]         CallFunction vs bare tonic and a Python grpcio server
//! gridnode-bench execute [--quick]      POST /cluster-tools/execute, local and remote, vs direct gRPC
//! gridnode-bench tools [--quick]        bundle first vs warm call, selection over 10k tools, audit cost
//! gridnode-bench replication [--quick]  write → visible everywhere at N = 3, 10, 30; catch-up
//! gridnode-bench footprint [--quick]    idle RSS, RSS and start-up with 100k tools, binary size
//! gridnode-bench corpus N               print N corpus records as JSON lines
//! ```
//!
//! Every scenario prints Markdown tables and writes the same figures as JSON to
//! `target/gridnode-bench/<scenario>.json` (or `--json PATH`), with the machine and the process's
//! peak resident set size.

use gridnode_bench::report;
use gridnode_bench::{corpus, out, scenario};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json_path = args.iter().position(|a| a == "--json").and_then(|i| args.get(i + 1)).cloned();
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--json"))
        .map(|(_, a)| a)
        .collect();
    let number = |i: usize, default: usize| -> Option<usize> {
        positional.get(i).map_or(Some(default), |n| n.parse().ok())
    };
    let Some(name) = positional.first().map(|s| s.as_str()) else { return usage() };
    report::reset_peak_rss();
    let result = match name {
        "registry" => scenario::registry::run(quick),
        "access" => scenario::access::run(quick),
        "search" => match number(1, if quick { 2_000 } else { 100_000 }) {
            Some(n) => scenario::search::run(n, quick),
            None => return usage(),
        },
        "grpc" => scenario::grpc::run(quick),
        "replication" | "federation" => scenario::federation::run(quick),
        "execute" => scenario::execute::run(quick),
        "tools" => scenario::tools::run(quick),
        "footprint" => scenario::footprint::run(quick),
        "corpus" => {
            let Some(n) = number(1, 3) else { return usage() };
            for tool in corpus::tools(n, 42) {
                println!("{}", serde_json::to_string(&tool).expect("records serialise"));
            }
            return std::process::ExitCode::SUCCESS;
        }
        _ => return usage(),
    };
    if let Err(error) = result {
        eprintln!("gridnode-bench: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let peak = report::peak_rss("self");
    if let Some(peak) = peak {
        out!(
            "\nPeak RSS of the benchmark process (every in-process node included): {}",
            report::mib(peak)
        );
    }
    let path = json_path.unwrap_or_else(|| format!("target/gridnode-bench/{name}.json"));
    let value = report::json(name, quick, peak);
    let written =
        std::path::Path::new(&path).parent().map_or(Ok(()), std::fs::create_dir_all).and_then(
            |()| std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap_or_default()),
        );
    match written {
        Ok(()) => {
            println!("JSON: {path}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("gridnode-bench: cannot write {path}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn usage() -> std::process::ExitCode {
    eprintln!(
        "usage: gridnode-bench registry|access|search [N]|grpc|execute|tools|replication|footprint [--quick] [--json PATH] | corpus N"
    );
    eprintln!("criterion micro-benchmarks: cargo bench -p gridnode-bench");
    std::process::ExitCode::FAILURE
}
