//! `gridnode-bench`: whole-system figures, measured through a real node.
//!
//! ```text
//! gridnode-bench search [N] [--quick]   keyword queries through REST, write-to-searchable
//! gridnode-bench grpc [--quick]         CallFunction against a bare tonic server, process tools
//! gridnode-bench federation [--quick]   replication latency, bytes, catch-up, idle footprint
//! gridnode-bench execute [--quick]      POST /cluster-tools/execute, local and remote, vs direct gRPC
//! gridnode-bench tools [--quick]        bundle first vs warm call, selection over 10k tools, audit cost
//! gridnode-bench corpus N               print N corpus records as JSON lines
//! ```
//!
//! More scenarios (registry, footprint) arrive with the benchmarks issue. Every figure is printed beside the limit or the alternative it is compared with.

use gridnode_bench::corpus;
use gridnode_bench::scenario;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let number = |i: usize, default: usize| -> Option<usize> {
        positional.get(i).map_or(Some(default), |n| n.parse().ok())
    };
    let result = match positional.first().map(|s| s.as_str()) {
        Some("search") => match number(1, if quick { 2_000 } else { 100_000 }) {
            Some(n) => scenario::search::run(n, quick),
            None => return usage(),
        },
        Some("grpc") => scenario::grpc::run(quick),
        Some("federation") => scenario::federation::run(quick),
        Some("execute") => scenario::execute::run(quick),
        Some("tools") => scenario::tools::run(quick),
        Some("corpus") => match number(1, 3) {
            Some(n) => {
                for tool in corpus::tools(n, 42) {
                    println!("{}", serde_json::to_string(&tool).expect("records serialise"));
                }
                Ok(())
            }
            None => return usage(),
        },
        _ => return usage(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gridnode-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn usage() -> std::process::ExitCode {
    eprintln!(
        "usage: gridnode-bench search [N] [--quick] | grpc [--quick] | federation [--quick] | execute [--quick] | tools [--quick] | corpus N"
    );
    eprintln!("criterion micro-benchmarks: cargo bench -p gridnode-bench");
    std::process::ExitCode::FAILURE
}
