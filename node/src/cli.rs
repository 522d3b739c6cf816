//! Command-line flags and their environment variables (clap reads both: flag > env), merged
//! over the config file and the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{NodeConfig, ResolverKind};
use crate::error::Result;

/// gridnode: a self-contained registry-and-execution node for AI tools and functions.
#[derive(Debug, Parser)]
#[command(
    name = "gridnode",
    version,
    about = "gridnode: a self-contained registry-and-execution node for AI tools and functions.\n\nWith no subcommand (or `serve`) it runs a node; the other subcommands talk to a running node\nover its REST API (--node URL, GRIDNODE_URL).",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand, gridnode serves.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node (the default).
    Serve(Box<ServeArgs>),
    /// The configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `gridnode completions bash > /etc/bash_completion.d/gridnode`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The Tools Registry of a node.
    #[command(subcommand)]
    Tools(RegistryCommand),
    /// The Functions Registry of a node.
    #[command(subcommand)]
    Functions(RegistryCommand),
    /// Run a tool: a registry tool by id, else a node-local tool by name.
    Exec(ExecArgs),
    /// Which node would run a node-local tool now, and its gRPC endpoint.
    Resolve {
        /// The node-local tool's name.
        tool: String,
        /// Only this node.
        #[arg(long, value_name = "NODE_ID")]
        on: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The nodes of the cluster, with liveness and load.
    Peers {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The node: its ids, version and listeners.
    Node {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The node's audit log of executions, newest first.
    Audit {
        /// Only this org's.
        #[arg(long)]
        org: Option<String>,
        /// Only this tool's.
        #[arg(long)]
        tool: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Tool bundles on this machine: start one, pack one for upload.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// The cluster: its key, its members' identities.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Access control: tokens, and who you are.
    #[command(subcommand)]
    Acl(AclCommand),
    /// TLS: certificates for sites without a PKI.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a CA and a node certificate signed by it: DIR/ca.pem, DIR/ca-key.pem, DIR/node.pem,
    /// DIR/node-key.pem (keys mode 0600). Give every node the CA (--ca-file) and its own node
    /// certificate (--tls-cert, --tls-key).
    Init {
        /// Where to write the files (created if missing; existing files are not overwritten).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The names and addresses the node certificate is for, comma-separated (every node's,
        /// when the nodes share it).
        #[arg(long, value_delimiter = ',', required = true)]
        hosts: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Tokens (admin scope).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The token you present: its id, scopes and org.
    Whoami {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; its secret is printed once.
    Create {
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Scopes, comma-separated: read, write, execute, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Bind it to an org: its requests act as that org.
        #[arg(long)]
        org: Option<String>,
        /// Expire it after this long: seconds, or "90s", "24h", "30d".
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every token (never their secrets).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token on every node.
    Delete {
        token_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Write a new cluster key to FILE (mode 0600); give it to every node with --cluster-key FILE.
    Keygen { file: PathBuf },
    /// The members: each node id and the peer id (key) bound to it.
    Members {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Release NODE_ID's binding to its key, so a replaced node (a new disk, a new key) can
    /// rejoin under its old id.
    Forget {
        node_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented TOML file with every key and its default.
    PrintDefault,
    /// Check a configuration (file, environment and flags, as `serve` would read them) without
    /// starting anything, and print the effective one.
    Check(Box<ServeArgs>),
}

/// Where the node is and how to print.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The node's REST address.
    #[arg(long, env = "GRIDNODE_URL", value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub node: String,
    /// Print the node's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The CA the node's certificate is verified against (PEM) [default: the system roots].
    #[arg(long, env = "GRIDNODE_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The token to present (a secret: prefer the environment variable).
    #[arg(long, env = "GRIDNODE_TOKEN", value_name = "SECRET", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Upload a bundle zip (spec.json, and optionally the code archive and the manual).
    Upload {
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Register a record given as JSON (text, @file or - for stdin).
    Create {
        record: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One record by id.
    Get {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Records, in id order.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Full-text search, best match first.
    Search {
        text: String,
        #[arg(long, default_value_t = 10)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change fields of a record (a partial JSON object: text, @file or - for stdin).
    Update {
        id: String,
        patch: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a record.
    Delete {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A registry tool id, or a node-local tool name.
    pub tool: String,
    /// The input: JSON text, @file, or - for stdin [default: {}].
    pub input: Option<String>,
    /// Run the node-local tool of this name on this node only (skips the registry).
    #[arg(long, value_name = "NODE_ID")]
    pub on: Option<String>,
    /// The org the call is made for (its allow-list applies).
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Create a runnable example tool folder to start from.
    Init {
        /// The tool id (and the folder's name).
        name: String,
        /// Where to create the folder [default: the current directory].
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
    },
    /// Check DIR/spec.json, then zip spec.json, tool.md and the code (DIR/code, zipped as
    /// tool.zip) into an upload bundle.
    Pack {
        dir: PathBuf,
        /// The bundle to write [default: <DIR>.zip].
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print what was packed as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "GRIDNODE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the store; created if missing [default: ./gridnode-data].
    #[arg(long, env = "GRIDNODE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// This node's id [default: the host name].
    #[arg(long, env = "GRIDNODE_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// REST listener; port 0 picks a free port [default: 127.0.0.1:8080].
    #[arg(long, env = "GRIDNODE_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// The base of links this node hands out [default: http:// + the bound --http address].
    #[arg(long, env = "GRIDNODE_ADVERTISE_HTTP", value_name = "URL")]
    pub advertise_http: Option<String>,
    /// ToolExecutor gRPC listener; port 0 picks a free port [default: 127.0.0.1:50051].
    #[arg(long, env = "GRIDNODE_GRPC", value_name = "ADDR")]
    pub grpc: Option<SocketAddr>,
    /// The endpoint other nodes are told to call [default: the bound --grpc address].
    #[arg(long, env = "GRIDNODE_ADVERTISE_GRPC", value_name = "HOST:PORT")]
    pub advertise_grpc: Option<String>,
    /// Node-local process tools, one folder each [default: <data-dir>/tools].
    #[arg(long, env = "GRIDNODE_TOOLS_DIR", value_name = "DIR")]
    pub tools_dir: Option<PathBuf>,
    /// Nodes only federate within one cluster name [default: default].
    #[arg(long, env = "GRIDNODE_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,
    /// libp2p listener, repeatable; port 0 picks a free port
    /// [default: /ip4/0.0.0.0/udp/4001/quic-v1 and /ip4/0.0.0.0/tcp/4001].
    #[arg(long, env = "GRIDNODE_P2P", value_name = "MULTIADDR", value_delimiter = ',')]
    pub p2p: Vec<String>,
    /// A peer to dial at start, repeatable (with /p2p/<peer id> or without).
    #[arg(long, env = "GRIDNODE_BOOTSTRAP", value_name = "MULTIADDR", value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// LAN discovery for zero-config clusters [default: on].
    #[arg(long, env = "GRIDNODE_MDNS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", overrides_with = "no_mdns")]
    pub mdns: Option<bool>,
    /// Turns LAN discovery off.
    #[arg(long, overrides_with = "mdns")]
    pub no_mdns: bool,
    /// The cluster key file: only peers that hold the same key are admitted
    /// [default: <data-dir>/cluster.key, created at the first start].
    #[arg(long, env = "GRIDNODE_CLUSTER_KEY_FILE", value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
    /// Access control (bearer tokens with scopes) [default: on, except when every listener is
    /// on loopback].
    #[arg(long, env = "GRIDNODE_ACL", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", overrides_with = "no_acl")]
    pub acl: Option<bool>,
    /// Turns access control off (a node beyond loopback then also needs --insecure).
    #[arg(long, overrides_with = "acl")]
    pub no_acl: bool,
    /// Run with access control off on a non-loopback listener (not recommended).
    #[arg(long, env = "GRIDNODE_INSECURE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub insecure: Option<bool>,
    /// The management secret [default: <data-dir>/admin.token, made at the first start].
    #[arg(long = "admin-token-file", env = "GRIDNODE_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The management secret itself (environment only).
    #[arg(skip = std::env::var("GRIDNODE_ADMIN_TOKEN").ok())]
    pub admin_token: Option<String>,
    /// The node's TLS certificate (PEM): HTTPS and gRPC over TLS on the same ports.
    #[arg(long, env = "GRIDNODE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "GRIDNODE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, env = "GRIDNODE_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// The CA peers' certificates are verified against [default: the system roots].
    #[arg(long, env = "GRIDNODE_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Federate without a cluster key: any host that reaches the p2p port can join.
    #[arg(long, env = "GRIDNODE_OPEN_CLUSTER", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub open_cluster: Option<bool>,
    /// Resolves nodes outside the federation by their Kubernetes node label (contract
    /// section 8); settings in [resolver.kubernetes].
    #[arg(long, env = "GRIDNODE_KUBE_RESOLVER", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub kube_resolver: Option<bool>,
    /// The kubeconfig of the Kubernetes resolver (turns it on) [default: the pod's service
    /// account, else ~/.kube/config].
    #[arg(long, env = "GRIDNODE_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// This machine's Kubernetes node name (turns the resolver on); with no --node-id, the node
    /// id is that node's label (resolver.kubernetes.label, default nodeID), else its name.
    #[arg(long, env = "GRIDNODE_K8S_NODE_NAME", value_name = "NAME")]
    pub k8s_node_name: Option<String>,
}

impl Cli {
    /// The serve arguments, whether given with or without the `serve` subcommand.
    pub fn serve_args(&self) -> &ServeArgs {
        match &self.command {
            Some(Command::Serve(args)) => args,
            _ => &self.serve,
        }
    }
}

impl ServeArgs {
    /// The settled config: defaults, then the file, then env and flags; validated.
    pub fn resolve(&self) -> Result<NodeConfig> {
        let mut config = match &self.config {
            Some(path) => NodeConfig::from_file(path)?,
            None => NodeConfig::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(id) = &self.node_id {
            config.node_id = id.clone();
        }
        if let Some(http) = self.http {
            config.http.listen = http;
        }
        if let Some(url) = &self.advertise_http {
            config.advertise_http = url.clone();
        }
        if let Some(grpc) = self.grpc {
            config.grpc = grpc;
        }
        if let Some(endpoint) = &self.advertise_grpc {
            config.advertise_grpc = endpoint.clone();
        }
        if let Some(dir) = &self.tools_dir {
            config.tools_dir = Some(dir.clone());
        }
        if let Some(cluster) = &self.cluster {
            config.cluster = cluster.clone();
        }
        if !self.p2p.is_empty() {
            config.p2p = self.p2p.clone();
        }
        if !self.bootstrap.is_empty() {
            config.bootstrap = self.bootstrap.clone();
        }
        if self.no_mdns {
            config.mdns = false;
        } else if let Some(mdns) = self.mdns {
            config.mdns = mdns;
        }
        if let Some(file) = &self.cluster_key {
            config.federation.cluster_key_file = Some(file.clone());
        }
        for (given, setting) in [
            (&self.tls_cert, &mut config.tls.cert_file),
            (&self.tls_key, &mut config.tls.key_file),
            (&self.tls_client_ca, &mut config.tls.client_ca_file),
            (&self.ca_file, &mut config.tls.ca_file),
        ] {
            if let Some(file) = given {
                *setting = Some(file.clone());
            }
        }
        if self.no_acl {
            config.acl.enabled = Some(false);
        } else if let Some(acl) = self.acl {
            config.acl.enabled = Some(acl);
        }
        if let Some(insecure) = self.insecure {
            config.acl.insecure = insecure;
        }
        if let Some(file) = &self.admin_token_file {
            config.acl.admin_token_file = Some(file.clone());
        }
        if let Some(secret) = self.admin_token.as_ref().filter(|s| !s.trim().is_empty()) {
            config.acl.admin_token = Some(crate::config::Secret(secret.trim().to_owned()));
        }
        if let Some(open) = self.open_cluster {
            config.federation.open_cluster = open;
        }
        match (self.kube_resolver, &self.kubeconfig) {
            (Some(false), _) => {
                config.resolver.kubernetes = None;
                config.resolver.chain.retain(|kind| *kind != ResolverKind::Kubernetes);
            }
            (on, file) if on == Some(true) || file.is_some() || self.k8s_node_name.is_some() => {
                let kube = config.resolver.kubernetes.get_or_insert_with(Default::default);
                if let Some(file) = file {
                    kube.kubeconfig = Some(file.clone());
                }
                if let Some(name) = &self.k8s_node_name {
                    kube.node_name = Some(name.clone());
                }
            }
            _ => {}
        }
        config.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "node_id = \"from-file\"\nhttp = \"127.0.0.1:9000\"\n").unwrap();
        let cli = Cli::try_parse_from([
            "gridnode",
            "--config",
            path.to_str().unwrap(),
            "--node-id",
            "from-flag",
        ])
        .unwrap();
        let config = cli.serve_args().resolve().unwrap();
        assert_eq!(config.node_id, "from-flag");
        assert_eq!(config.http.listen.port(), 9000);
    }

    #[test]
    fn serve_is_the_default_subcommand() {
        let cli = Cli::try_parse_from(["gridnode", "serve", "--node-id", "x"]).unwrap();
        assert_eq!(cli.serve_args().node_id.as_deref(), Some("x"));
        let cli = Cli::try_parse_from(["gridnode", "--node-id", "y"]).unwrap();
        assert_eq!(cli.serve_args().node_id.as_deref(), Some("y"));
        assert!(Cli::try_parse_from(["gridnode", "--http", "nonsense"]).is_err());
    }

    #[test]
    fn federation_flags() {
        let cli = Cli::try_parse_from([
            "gridnode",
            "--cluster",
            "edge",
            "--p2p",
            "/ip4/127.0.0.1/tcp/0",
            "--p2p",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--bootstrap",
            "/ip4/10.0.0.5/tcp/4001,/ip4/10.0.0.6/tcp/4001",
            "--no-mdns",
        ])
        .unwrap();
        let config = cli.serve_args().resolve().unwrap();
        assert_eq!(config.cluster, "edge");
        assert_eq!(config.p2p.len(), 2);
        assert_eq!(config.bootstrap.len(), 2);
        assert!(!config.mdns);
        let config = Cli::try_parse_from(["gridnode"]).unwrap().serve_args().resolve().unwrap();
        assert!(config.mdns);
        assert_eq!(config.cluster, "default");
        let off = Cli::try_parse_from(["gridnode", "--mdns", "false"]).unwrap();
        assert!(!off.serve_args().resolve().unwrap().mdns);
    }

    #[test]
    fn kubernetes_resolver_flags() {
        let resolve = |args: &[&str]| {
            let mut argv = vec!["gridnode"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).unwrap().serve_args().resolve().unwrap().resolver
        };
        assert!(resolve(&[]).kubernetes.is_none());
        let on = resolve(&["--kube-resolver"]);
        assert_eq!(on.effective_chain().last(), Some(&ResolverKind::Kubernetes));
        assert_eq!(on.kubernetes.unwrap().label, "nodeID");
        let file = resolve(&["--kubeconfig", "/etc/kube.yaml"]);
        assert_eq!(file.kubernetes.unwrap().kubeconfig, Some(PathBuf::from("/etc/kube.yaml")));
        assert!(resolve(&["--kube-resolver", "false"]).kubernetes.is_none());
    }
}
