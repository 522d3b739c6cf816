//! The `gridnode` binary: parse flags; then either run a client subcommand, or start a node,
//! wait for a signal and shut down.

use clap::Parser;
use gridnode::cli::{Cli, Command};
use gridnode::{Node, Result};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Two rustls crypto providers are in the tree (libp2p's QUIC brings ring): pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    if let Some(command) = cli.command.as_ref().filter(|c| !matches!(c, Command::Serve(_))) {
        return match gridnode::client::run(command).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("gridnode: {}", one_line(&error));
                std::process::ExitCode::FAILURE
            }
        };
    }
    match run(&cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gridnode: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<()> {
    let config = cli.serve_args().resolve()?;
    // Signals are caught from before the node starts, so none is lost during start-up.
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| gridnode::Error::io("cannot catch SIGTERM", e))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| gridnode::Error::io("cannot catch SIGINT", e))?;
    let node = Node::start(config).await?;
    if let Some(key) = node.own_cluster_key() {
        let key = key.display();
        println!("cluster key: {key} (nodes that should join need it: --cluster-key {key})");
    }
    if let Some(file) = node.own_admin_token() {
        println!("admin token: {} (send it as 'Authorization: Bearer <token>')", file.display());
    }
    if !node.config().acl_enabled() {
        if node.config().all_loopback() {
            println!("access control off: every listener is on loopback");
        } else {
            println!("access control off (--insecure): anyone who reaches this node may use it");
        }
    }
    println!("http listening on {}", node.http_addr());
    println!("grpc listening on {}", node.grpc_addr());
    for addr in &node.p2p_addrs() {
        println!("p2p listening on {addr}");
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("shutting down");
    node.shutdown().await
}

/// A message as one line (a tool's stderr or a proxy's page may span many), cut to 1 000
/// characters.
fn one_line(message: &str) -> String {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(1000) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line,
    }
}
