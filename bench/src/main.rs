//! `gridnode-bench`: the whole-system benchmark harness.
//!
//! Its scenarios (registry, search, grpc, execute, replication, footprint) arrive with the
//! benchmarks issue; until then it generates the shared corpus so its shape can be inspected:
//! `cargo run --release -p gridnode-bench -- corpus 3`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, n] if cmd == "corpus" => match n.parse::<usize>() {
            Ok(n) => {
                for tool in gridnode_bench::corpus::tools(n, 42) {
                    println!("{}", serde_json::to_string(&tool).expect("records serialise"));
                }
                std::process::ExitCode::SUCCESS
            }
            Err(_) => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> std::process::ExitCode {
    eprintln!("usage: gridnode-bench corpus N   (prints N corpus records as JSON lines)");
    eprintln!("criterion micro-benchmarks: cargo bench -p gridnode-bench");
    std::process::ExitCode::FAILURE
}
