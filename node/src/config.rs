//! Node configuration: defaults that run on a laptop, a TOML file, environment variables and
//! flags, with precedence flag > env > file > default (contract section 2).
//!
//! `cli` parses flags and environment (clap reads both); this module holds the settled config,
//! loads the file and validates the result before any port is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

const MIB: u64 = 1024 * 1024;
/// Largest accepted `store.cache_mb` (1 TiB).
const MAX_CACHE_MB: u64 = 1 << 20;
/// Largest accepted size limit (1 TiB): far beyond any sane upload, far below overflow.
const MAX_LIMIT_BYTES: u64 = 1 << 40;

/// Every key with its default, commented (`gridnode config print-default`). A test keeps it equal
/// to [`NodeConfig::default`].
pub const DEFAULT_TOML: &str = include_str!("default-config.toml");

/// Everything a node needs to start.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// sled store, search index and tools; created if missing.
    pub data_dir: PathBuf,
    /// This node's id; the host name when empty.
    pub node_id: String,
    /// REST listener and what guards it.
    pub http: HttpSettings,
    /// The base of links this node hands out; `http://` + the bound address when empty.
    pub advertise_http: String,
    /// ToolExecutor gRPC listener.
    pub grpc: SocketAddr,
    /// The `host:port` other nodes are told to call; the bound gRPC address when empty.
    pub advertise_grpc: String,
    /// Node-local process tools; `<data_dir>/tools` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools_dir: Option<PathBuf>,
    /// Nodes only federate within one cluster name.
    pub cluster: String,
    /// libp2p listen addresses (multiaddrs); port 0 picks a free port.
    pub p2p: Vec<String>,
    /// Peers to dial at start and keep dialing while they are down (with `/p2p/<peer id>` or
    /// without).
    pub bootstrap: Vec<String>,
    /// LAN discovery (mDNS).
    pub mdns: bool,
    pub federation: FederationSettings,
    pub store: StoreSettings,
    pub limits: Limits,
    pub runtime: RuntimeSettings,
    pub resolver: ResolverSettings,
    pub execute: ExecuteSettings,
    pub bundles: BundleSettings,
    pub audit: AuditSettings,
    pub egress: EgressSettings,
    pub acl: AclConfig,
    pub tls: TlsSettings,
}

/// `[tls]` (contract section 14): HTTPS and gRPC over TLS on the same ports.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The node's certificate chain (PEM); with `key_file`, turns TLS on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// The CA peers' certificates are verified against (PEM); unset: the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether the node serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// `[http]`: the REST listener and the web origins it takes requests from (contract sections
/// 2 and 14). `http = "ADDR"` (the listener alone, as the flag takes it) is read too.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// `scheme://host[:port]` origins whose pages may send requests besides the node's own.
    pub allowed_origins: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allowed_origins: Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for HttpSettings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Table {
            listen: SocketAddr,
            allowed_origins: Vec<String>,
        }
        impl Default for Table {
            fn default() -> Self {
                let HttpSettings { listen, allowed_origins } = HttpSettings::default();
                Table { listen, allowed_origins }
            }
        }
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "an address such as \"0.0.0.0:8080\", or an [http] table with listen and allowed_origins"
        )]
        enum Form {
            Listen(SocketAddr),
            Table(Table),
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::Listen(listen) => HttpSettings { listen, ..HttpSettings::default() },
            Form::Table(Table { listen, allowed_origins }) => {
                HttpSettings { listen, allowed_origins }
            }
        })
    }
}

/// `[acl]`: access control (contract section 12).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclConfig {
    /// Unset: on, except when every listener is on loopback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The management secret's file; unset: `GRIDNODE_ADMIN_TOKEN`, else `<data_dir>/admin.token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// `/metrics` without a token.
    pub open_metrics: bool,
    /// Access control off on a non-loopback listener (logged every minute).
    pub insecure: bool,
    /// The management secret from `GRIDNODE_ADMIN_TOKEN` (never from the file, never shown).
    #[serde(skip)]
    pub admin_token: Option<Secret>,
}

/// A secret that debug output never shows.
#[derive(Clone, Default, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where a node's gRPC endpoint comes from (contract sections 6 and 8).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolverSettings {
    /// Resolvers asked in order; the first that knows a node gives its endpoint.
    pub chain: Vec<ResolverKind>,
    /// `node_id = "host:port"`, for nodes outside the federation with fixed addresses.
    #[serde(rename = "static")]
    pub static_table: BTreeMap<String, String>,
    /// The Kubernetes node-label resolver. Present (a `[resolver.kubernetes]` table,
    /// `--kube-resolver` or `--kubeconfig`) puts it in the chain, after the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSettings>,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            chain: vec![ResolverKind::Federation, ResolverKind::Static],
            static_table: BTreeMap::new(),
            kubernetes: None,
        }
    }
}

impl ResolverSettings {
    /// The chain to build: the configured one, with `kubernetes` appended when it is
    /// configured but not named.
    pub fn effective_chain(&self) -> Vec<ResolverKind> {
        let mut chain = self.chain.clone();
        if self.kubernetes.is_some() && !chain.contains(&ResolverKind::Kubernetes) {
            chain.push(ResolverKind::Kubernetes);
        }
        chain
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolverKind {
    Federation,
    Static,
    Kubernetes,
}

/// `[resolver.kubernetes]` (contract section 8).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesSettings {
    /// The node label whose value is the node id.
    pub label: String,
    /// The port of the gRPC runtime on every Kubernetes node.
    pub grpc_port: u16,
    /// How long an answer from the API server is kept: seconds, or "500ms", "60s", "5m".
    #[serde(deserialize_with = "duration", serialize_with = "duration_text")]
    pub cache_ttl: Duration,
    /// A kubeconfig file; else the pod's service account, else `$KUBECONFIG` or
    /// `~/.kube/config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// This machine's Kubernetes node name (the downward API's `spec.nodeName`). With no
    /// `node_id` given, the node id is that node's `label` value, else its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        KubernetesSettings {
            label: "nodeID".into(),
            grpc_port: 50051,
            cache_ttl: Duration::from_secs(60),
            kubeconfig: None,
            node_name: None,
        }
    }
}

/// `[execute]`: how `POST /cluster-tools/execute` reaches other nodes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecuteSettings {
    /// How long connecting to a node may take before the next candidate is tried.
    pub connect_timeout_ms: u64,
    /// How long one call may take (keep it above the tools' own timeouts).
    pub call_timeout_ms: u64,
    /// Nodes tried per call, the first included.
    pub max_attempts: usize,
    /// The whole call, every attempt included.
    pub deadline_ms: u64,
    /// How long a node outside the federation counts as not alive after a call to it failed.
    pub unreachable_for_ms: u64,
}

impl Default for ExecuteSettings {
    fn default() -> Self {
        ExecuteSettings {
            connect_timeout_ms: 2_000,
            call_timeout_ms: 120_000,
            max_attempts: 3,
            deadline_ms: 130_000,
            unreachable_for_ms: 30_000,
        }
    }
}

/// `[bundles]`: the cache of unpacked bundle tools (contract section 11).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BundleSettings {
    /// Unpacked bundles kept at most, in bytes; the least recently used go first past it.
    pub cache_max_bytes: u64,
    /// How long fetching a bundle from a peer may take, in milliseconds.
    pub fetch_timeout_ms: u64,
}

impl Default for BundleSettings {
    fn default() -> Self {
        BundleSettings { cache_max_bytes: 1024 * MIB, fetch_timeout_ms: 30_000 }
    }
}

/// `[egress]`: where the node itself may connect (contract section 14).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSettings {
    /// Destinations let through: CIDRs (`10.0.0.0/8`), addresses, or `host:port`.
    pub allow: Vec<String>,
    /// Also refuse private (RFC 1918, unique-local) addresses.
    pub deny_private: bool,
}

/// `[audit]`: the execution audit log (contract section 11).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Entries kept; the oldest are removed past it.
    pub max_entries: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { max_entries: 100_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// A process tool's timeout when its `tool.json` sets none, in milliseconds.
    pub default_timeout_ms: u64,
    /// Output past this fails the call, in bytes.
    pub max_output_bytes: u64,
    /// Concurrent runs of one process tool; one more is refused with a clear error.
    pub max_concurrent_per_tool: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            default_timeout_ms: 30_000,
            max_output_bytes: 16 * MIB,
            max_concurrent_per_tool: 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationSettings {
    /// How often this node gossips its heartbeat; silent for three is not alive.
    pub heartbeat_ms: u64,
    /// How often this node compares digests with each connected peer.
    pub anti_entropy_ms: u64,
    /// How long a delete's tombstone is kept for peers that were away; a peer away for longer
    /// may bring the deleted record back.
    pub tombstone_ttl_secs: u64,
    /// The cluster key (`--cluster-key FILE`: 32 random bytes, base64; `gridnode cluster keygen
    /// FILE` writes one). Unset: `<data_dir>/cluster.key`, created at the first start.
    pub cluster_key_file: Option<PathBuf>,
    /// Federate without a cluster key: any host that reaches the p2p port can join.
    pub open_cluster: bool,
}

impl Default for FederationSettings {
    fn default() -> Self {
        FederationSettings {
            heartbeat_ms: 1000,
            anti_entropy_ms: 5000,
            tombstone_ttl_secs: 7 * 24 * 3600,
            cluster_key_file: None,
            open_cluster: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Bound on sled's page cache, in MiB.
    pub cache_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest upload accepted (`POST /tools/upload`), in bytes.
    pub max_upload_bytes: u64,
    /// Largest total unpacked size of an upload zip, in bytes.
    pub max_unpacked_bytes: u64,
    /// Largest JSON request body, in bytes.
    pub max_json_body_bytes: u64,
    /// How long a client may take to send a request's headers (REST).
    pub header_timeout_ms: u64,
    /// How long a request may take, except uploads and executions (they have their own).
    pub request_timeout_ms: u64,
    /// Requests served at once per door (REST, gRPC); past it, 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Requests served at once for one client address.
    pub max_requests_per_client: usize,
    /// Concurrent streams on one gRPC connection.
    pub grpc_max_concurrent_streams: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./gridnode-data"),
            node_id: String::new(),
            http: HttpSettings::default(),
            advertise_http: String::new(),
            grpc: SocketAddr::from(([127, 0, 0, 1], 50051)),
            advertise_grpc: String::new(),
            tools_dir: None,
            cluster: "default".into(),
            p2p: vec!["/ip4/0.0.0.0/udp/4001/quic-v1".into(), "/ip4/0.0.0.0/tcp/4001".into()],
            bootstrap: Vec::new(),
            mdns: true,
            federation: FederationSettings::default(),
            store: StoreSettings::default(),
            limits: Limits::default(),
            runtime: RuntimeSettings::default(),
            resolver: ResolverSettings::default(),
            execute: ExecuteSettings::default(),
            bundles: BundleSettings::default(),
            audit: AuditSettings::default(),
            egress: EgressSettings::default(),
            acl: AclConfig::default(),
            tls: TlsSettings::default(),
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings { cache_mb: 64 }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_bytes: 64 * MIB,
            max_unpacked_bytes: 256 * MIB,
            max_json_body_bytes: 2 * MIB,
            header_timeout_ms: 10_000,
            request_timeout_ms: 60_000,
            max_concurrent_requests: 1024,
            max_requests_per_client: 128,
            grpc_max_concurrent_streams: 256,
        }
    }
}

impl NodeConfig {
    /// The defaults with every listener on 127.0.0.1, port 0, and mDNS off: for tests, benches
    /// and several nodes on one machine.
    pub fn loopback(data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            http: HttpSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..HttpSettings::default()
            },
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            p2p: vec!["/ip4/127.0.0.1/udp/0/quic-v1".into(), "/ip4/127.0.0.1/tcp/0".into()],
            mdns: false,
            ..NodeConfig::default()
        }
    }

    /// Reads a TOML config file; unknown keys and wrong types are errors naming the key.
    pub fn from_file(path: &Path) -> Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read config file {}", path.display()), e))?;
        NodeConfig::from_toml(&text, &path.display().to_string())
    }

    /// Parses TOML text (`source` names it in errors, with the key and the reason).
    pub fn from_toml(text: &str, source: &str) -> Result<NodeConfig> {
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| {
                    let line = before.matches('\n').count() + 1;
                    match key_at(before) {
                        Some(key) => format!(" (line {line}, key {key})"),
                        None => format!(" (line {line})"),
                    }
                })
                .unwrap_or_default();
            Error::Config(format!("{source}{at}: {}", e.message().trim()))
        })
    }

    /// Fills in derived defaults and checks every value. Call before binding anything.
    /// The egress rules: loopback destinations allowed when every listener is on loopback.
    pub fn egress_rules(&self) -> Result<crate::service::egress::Egress> {
        crate::service::egress::Egress::new(
            self.all_loopback(),
            self.egress.deny_private,
            &self.egress.allow,
        )
        .map_err(Error::Config)
    }

    /// Whether the HTTP and gRPC listeners are both on loopback (the laptop case).
    pub fn all_loopback(&self) -> bool {
        self.http.listen.ip().is_loopback() && self.grpc.ip().is_loopback()
    }

    /// Whether access control is on: as configured, else on unless every listener is on
    /// loopback (contract section 12).
    pub fn acl_enabled(&self) -> bool {
        self.acl.enabled.unwrap_or(!self.all_loopback())
    }

    /// The management secret's file, when access control is on and no secret is in the
    /// environment: the configured one, else `<data_dir>/admin.token`.
    pub fn admin_token_file(&self) -> PathBuf {
        self.acl.admin_token_file.clone().unwrap_or_else(|| self.data_dir.join("admin.token"))
    }

    pub fn validate(mut self) -> Result<NodeConfig> {
        let from_label = self.resolver.kubernetes.as_ref().and_then(|k| k.node_name.as_ref());
        if let Some(node_name) = from_label {
            gridnode_store::validate_id("node", node_name)
                .map_err(|e| Error::Config(format!("resolver.kubernetes.node_name: {e}")))?;
        }
        if self.node_id.is_empty() && from_label.is_none() {
            self.node_id = host_name();
        }
        // Left empty when it comes from the Kubernetes node's label: Node::start reads it.
        if !self.node_id.is_empty() {
            gridnode_store::validate_id("node", &self.node_id)
                .map_err(|e| Error::Config(format!("node_id: {e}")))?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::Config("data_dir: must not be empty".into()));
        }
        self.egress_rules()?;
        if !self.acl_enabled() && !self.all_loopback() && !self.acl.insecure {
            return Err(Error::Config(format!(
                "access control is off but the node listens beyond loopback (http {}, grpc {}): \
                 turn it on (--acl, the default there) or pass --insecure to run open",
                self.http.listen, self.grpc
            )));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(Error::Config(
                "tls: give both cert_file and key_file (--tls-cert, --tls-key), or neither".into(),
            ));
        }
        if self.tls.client_ca_file.is_some() && !self.tls.enabled() {
            return Err(Error::Config(
                "tls.client_ca_file: client certificates need TLS on (cert_file, key_file)".into(),
            ));
        }
        for origin in &self.http.allowed_origins {
            crate::http::origin::parse(origin)
                .map_err(|e| Error::Config(format!("http.allowed_origins: {e}")))?;
        }
        let limits = &self.limits;
        for (key, value, max) in [
            ("limits.header_timeout_ms", limits.header_timeout_ms, 3_600_000),
            ("limits.request_timeout_ms", limits.request_timeout_ms, 86_400_000),
            ("limits.max_concurrent_requests", limits.max_concurrent_requests as u64, 1_000_000),
            ("limits.max_requests_per_client", limits.max_requests_per_client as u64, 1_000_000),
            (
                "limits.grpc_max_concurrent_streams",
                limits.grpc_max_concurrent_streams as u64,
                1_000_000,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(Error::Config(format!("{key}: must be from 1 to {max}")));
            }
        }
        if !(1..=MAX_CACHE_MB).contains(&self.store.cache_mb) {
            return Err(Error::Config(format!("store.cache_mb: must be from 1 to {MAX_CACHE_MB}")));
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_upload_bytes", limits.max_upload_bytes),
            ("limits.max_unpacked_bytes", limits.max_unpacked_bytes),
            ("limits.max_json_body_bytes", limits.max_json_body_bytes),
        ] {
            if !(1..=MAX_LIMIT_BYTES).contains(&value) {
                return Err(Error::Config(format!(
                    "{key}: must be from 1 to {MAX_LIMIT_BYTES} bytes"
                )));
            }
        }
        let runtime = &self.runtime;
        if runtime.default_timeout_ms == 0 || runtime.default_timeout_ms > 24 * 3600 * 1000 {
            return Err(Error::Config(
                "runtime.default_timeout_ms: must be from 1 to 86400000".into(),
            ));
        }
        if !(1..=MAX_LIMIT_BYTES).contains(&runtime.max_output_bytes) {
            return Err(Error::Config(format!(
                "runtime.max_output_bytes: must be from 1 to {MAX_LIMIT_BYTES} bytes"
            )));
        }
        if !(1..=10_000).contains(&runtime.max_concurrent_per_tool) {
            return Err(Error::Config(
                "runtime.max_concurrent_per_tool: must be from 1 to 10000".into(),
            ));
        }
        gridnode_federation::validate_cluster(&self.cluster)
            .map_err(|e| Error::Config(format!("cluster: {e}")))?;
        if self.p2p.is_empty() {
            return Err(Error::Config("p2p: give at least one listen multiaddr".into()));
        }
        for (key, addrs) in [("p2p", &self.p2p), ("bootstrap", &self.bootstrap)] {
            for addr in addrs {
                addr.parse::<gridnode_federation::Multiaddr>().map_err(|e| {
                    Error::Config(format!(
                        "{key}: '{addr}' is not a multiaddr ({e}); for example /ip4/10.0.0.5/tcp/4001"
                    ))
                })?;
            }
        }
        let federation = &self.federation;
        for (key, value, max) in [
            ("federation.heartbeat_ms", federation.heartbeat_ms, 3_600_000),
            ("federation.anti_entropy_ms", federation.anti_entropy_ms, 86_400_000),
            ("federation.tombstone_ttl_secs", federation.tombstone_ttl_secs, 10 * 365 * 86_400),
        ] {
            if !(1..=max).contains(&value) {
                return Err(Error::Config(format!("{key}: must be from 1 to {max}")));
            }
        }
        if RESERVED_NODE_IDS.contains(&self.node_id.as_str()) {
            return Err(Error::Config(format!(
                "node_id: '{}' names a route under /cluster-tools; pick another",
                self.node_id
            )));
        }
        if !self.advertise_grpc.is_empty() {
            crate::resolve::check_endpoint(&self.advertise_grpc)
                .map_err(|e| Error::Config(format!("advertise_grpc: {e}")))?;
        }
        self.resolver.validate()?;
        self.execute.validate()?;
        if self.bundles.cache_max_bytes < MIB {
            return Err(Error::Config(
                "bundles.cache_max_bytes: must be at least 1048576 (1 MiB)".into(),
            ));
        }
        if !(1..=24 * 3600 * 1000).contains(&self.bundles.fetch_timeout_ms) {
            return Err(Error::Config(
                "bundles.fetch_timeout_ms: must be from 1 to 86400000".into(),
            ));
        }
        if !(1..=100_000_000).contains(&self.audit.max_entries) {
            return Err(Error::Config("audit.max_entries: must be from 1 to 100000000".into()));
        }
        if !self.advertise_http.is_empty() {
            let url = self.advertise_http.trim_end_matches('/').to_owned();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "advertise_http: '{url}' must be a url starting with http:// or https://"
                )));
            }
            self.advertise_http = url;
        }
        Ok(self)
    }

    /// Where sled keeps its files.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// Where process tools are loaded from.
    pub fn tools_dir(&self) -> PathBuf {
        self.tools_dir.clone().unwrap_or_else(|| self.data_dir.join("tools"))
    }

    /// Where bundle tools are unpacked.
    pub fn bundle_dir(&self) -> PathBuf {
        self.data_dir.join("bundles")
    }

    /// Where process tools get their working directories.
    pub fn work_dir(&self) -> PathBuf {
        self.data_dir.join("work")
    }

    /// This node's libp2p key (its peer id is derived from it).
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join("p2p.key")
    }

    /// The cluster key this node uses: the configured file, else `<data_dir>/cluster.key`.
    /// `None` in an open cluster.
    pub fn cluster_key_file(&self) -> Option<PathBuf> {
        if self.federation.open_cluster {
            return None;
        }
        Some(
            self.federation
                .cluster_key_file
                .clone()
                .unwrap_or_else(|| self.data_dir.join("cluster.key")),
        )
    }

    /// The listen and bootstrap addresses, parsed (checked by [`NodeConfig::validate`]).
    pub fn multiaddrs(
        &self,
    ) -> (Vec<gridnode_federation::Multiaddr>, Vec<gridnode_federation::Multiaddr>) {
        let parse = |addrs: &[String]| addrs.iter().filter_map(|a| a.parse().ok()).collect();
        (parse(&self.p2p), parse(&self.bootstrap))
    }

    /// Where the search index keeps its files (rebuilt from the store when missing).
    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }
}

/// Node ids that would be shadowed by a fixed route under `/cluster-tools/…`.
pub const RESERVED_NODE_IDS: &[&str] = &["tools", "resolve", "execute"];

impl ResolverSettings {
    fn validate(&self) -> Result<()> {
        let chain = self.effective_chain();
        if chain.is_empty() {
            return Err(Error::Config(
                "resolver.chain: name at least one of federation, static, kubernetes".into(),
            ));
        }
        for (i, kind) in chain.iter().enumerate() {
            if chain[..i].contains(kind) {
                return Err(Error::Config(format!("resolver.chain: {kind:?} is named twice")));
            }
        }
        for (node_id, endpoint) in &self.static_table {
            gridnode_store::validate_id("node", node_id)
                .map_err(|e| Error::Config(format!("resolver.static: {e}")))?;
            crate::resolve::check_endpoint(endpoint)
                .map_err(|e| Error::Config(format!("resolver.static.{node_id}: {e}")))?;
        }
        if let Some(kube) = &self.kubernetes {
            if !crate::resolve::kubernetes::is_label_key(&kube.label) {
                return Err(Error::Config(format!(
                    "resolver.kubernetes.label: '{}' is not a kubernetes label key",
                    kube.label
                )));
            }
            if kube.grpc_port == 0 {
                return Err(Error::Config("resolver.kubernetes.grpc_port: must not be 0".into()));
            }
            if kube.cache_ttl > Duration::from_secs(86_400) {
                return Err(Error::Config(
                    "resolver.kubernetes.cache_ttl: must be at most one day".into(),
                ));
            }
        }
        Ok(())
    }
}

impl ExecuteSettings {
    fn validate(&self) -> Result<()> {
        for (key, value) in [
            ("execute.connect_timeout_ms", self.connect_timeout_ms),
            ("execute.call_timeout_ms", self.call_timeout_ms),
            ("execute.deadline_ms", self.deadline_ms),
            ("execute.unreachable_for_ms", self.unreachable_for_ms),
        ] {
            if !(1..=86_400_000).contains(&value) {
                return Err(Error::Config(format!("{key}: must be from 1 to 86400000")));
            }
        }
        if !(1..=16).contains(&self.max_attempts) {
            return Err(Error::Config("execute.max_attempts: must be from 1 to 16".into()));
        }
        Ok(())
    }
}

/// A duration from TOML: whole seconds, or a string with a unit (`500ms`, `60s`, `5m`, `1h`).
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Seconds(u64),
        Text(String),
    }
    match Given::deserialize(deserializer)? {
        Given::Seconds(secs) => Ok(Duration::from_secs(secs)),
        Given::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
    }
}

/// The dotted key a TOML error points into, from the text before the error: the `key =` of
/// its line, under the last `[table]` header above it.
fn key_at(before: &str) -> Option<String> {
    let mut lines = before.lines().rev();
    let current = before.rsplit('\n').next().unwrap_or(before);
    let key = current.split_once('=').map(|(key, _)| key.trim().trim_matches('"').to_owned())?;
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    lines.next();
    let table = lines
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(['[', ']']).trim().to_owned());
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key,
    })
}

/// A duration as the config file writes it: `60s`, or `500ms` when not whole seconds.
fn duration_text<S: serde::Serializer>(
    value: &Duration,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let ms = value.as_millis();
    if ms.is_multiple_of(1000) {
        s.serialize_str(&format!("{}s", ms / 1000))
    } else {
        s.serialize_str(&format!("{ms}ms"))
    }
}

/// `500ms`, `60s`, `5m`, `1h`, or bare seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 500ms, 60s or 5m"))?;
    let millis = match unit.trim() {
        "ms" => Some(number),
        "" | "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => return Err(format!("'{text}' has an unknown unit (use ms, s, m or h)")),
    };
    millis.map(Duration::from_millis).ok_or_else(|| format!("'{text}' is too long"))
}

/// The machine's host name, or "gridnode" when it cannot be read or is not a valid id.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|n| n.trim().to_owned())
        .unwrap_or_default();
    if gridnode_store::validate_id("node", &name).is_ok() { name } else { "gridnode".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key path of a TOML table (`federation.heartbeat_ms`).
    fn key_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = format!("{prefix}{key}");
            match value {
                toml::Value::Table(inner) if !inner.is_empty() => {
                    key_paths(inner, &format!("{path}."), out)
                }
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn the_printed_default_config_is_the_default_and_names_every_key() {
        let parsed = NodeConfig::from_toml(DEFAULT_TOML, "default-config.toml").unwrap();
        assert_eq!(parsed, NodeConfig::default());
        let mut expected = Vec::new();
        key_paths(&toml::Table::try_from(NodeConfig::default()).unwrap(), "", &mut expected);
        let mut written = Vec::new();
        key_paths(&toml::from_str(DEFAULT_TOML).unwrap(), "", &mut written);
        for key in &expected {
            assert!(written.contains(key), "default-config.toml lacks '{key}'");
        }
        // Keys whose default is "unset" are there, commented out, with an example.
        for key in [
            "tools_dir",
            "cluster_key_file",
            "[resolver.kubernetes]",
            "label",
            "grpc_port",
            "cache_ttl",
            "kubeconfig",
        ] {
            assert!(DEFAULT_TOML.contains(&format!("# {key}")), "no commented '{key}'");
        }
        // Uncommenting the Kubernetes table parses too.
        let enabled = DEFAULT_TOML
            .replace("# [resolver.kubernetes]", "[resolver.kubernetes]")
            .replace("# label =", "label =")
            .replace("# grpc_port =", "grpc_port =")
            .replace("# cache_ttl =", "cache_ttl =");
        let with_kube = NodeConfig::from_toml(&enabled, "edited").unwrap();
        assert_eq!(with_kube.resolver.kubernetes, Some(KubernetesSettings::default()));
    }

    #[test]
    fn config_errors_name_the_key_and_the_line() {
        let error = NodeConfig::from_toml("cluster = \"x\"\n[store]\ncache_mbs = 3\n", "c.toml")
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("c.toml (line 3)") && message.contains("cache_mbs"), "{message}");
        let error = NodeConfig::from_toml("[store]\ncache_mb = \"big\"\n", "c.toml").unwrap_err();
        assert!(error.to_string().contains("(line 2, key store.cache_mb)"), "{error}");
        let error = NodeConfig::from_toml("http = \"0.0.0.0\"\n", "c.toml").unwrap_err();
        assert!(error.to_string().contains("key http)"), "{error}");
        let error = NodeConfig::from_toml("[audit]\nmax_entries = 0\n", "c.toml")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(error.to_string().contains("audit.max_entries"), "{error}");
    }

    #[test]
    fn defaults_validate() {
        let config = NodeConfig::default().validate().unwrap();
        assert!(!config.node_id.is_empty());
        assert_eq!(config.http.listen.port(), 8080);
    }

    #[test]
    fn file_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "data_dir = \"/tmp/x\"\nnode_id = \"n1\"\n[limits]\nmax_upload_bytes = 10\n",
        )
        .unwrap();
        let config = NodeConfig::from_file(&path).unwrap();
        assert_eq!(config.node_id, "n1");
        assert_eq!(config.limits.max_upload_bytes, 10);
        assert_eq!(config.limits.max_unpacked_bytes, Limits::default().max_unpacked_bytes);

        std::fs::write(&path, "nodeid = \"n1\"\n").unwrap();
        let err = NodeConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("nodeid"), "{err}");
        std::fs::write(&path, "http = \"not an address\"\n").unwrap();
        assert!(NodeConfig::from_file(&path).is_err());
    }

    #[test]
    fn resolver_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[resolver]\nchain = [\"static\", \"federation\"]\n[resolver.static]\n\"k8s-node-1\" = \"10.0.0.7:50051\"\n[resolver.kubernetes]\nlabel = \"example.com/node\"\ncache_ttl = \"5m\"\n",
        )
        .unwrap();
        let config = NodeConfig::from_file(&path).unwrap().validate().unwrap();
        assert_eq!(
            config.resolver.effective_chain(),
            vec![ResolverKind::Static, ResolverKind::Federation, ResolverKind::Kubernetes]
        );
        let kube = config.resolver.kubernetes.unwrap();
        assert_eq!(kube.cache_ttl, Duration::from_secs(300));
        assert_eq!(kube.grpc_port, 50051);
        assert_eq!(config.resolver.static_table["k8s-node-1"], "10.0.0.7:50051");

        std::fs::write(&path, "[resolver.kubernetes]\ncache_ttl = 30\n").unwrap();
        let config = NodeConfig::from_file(&path).unwrap();
        assert_eq!(config.resolver.kubernetes.unwrap().cache_ttl, Duration::from_secs(30));

        for (text, key) in [
            ("[resolver]\nchain = [\"dns\"]\n", "dns"),
            ("[resolver.kubernetes]\ncache_ttl = \"5 fortnights\"\n", "unit"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = NodeConfig::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        let mut config = NodeConfig::default();
        config.resolver.static_table.insert("n".into(), "10.0.0.1".into());
        assert!(config.validate().unwrap_err().to_string().contains("resolver.static.n"));
        let mut config = NodeConfig::default();
        config.resolver.chain = vec![];
        assert!(config.validate().unwrap_err().to_string().contains("resolver.chain"));
        let mut config = NodeConfig::default();
        config.resolver.chain = vec![ResolverKind::Static, ResolverKind::Static];
        assert!(config.validate().unwrap_err().to_string().contains("twice"));
        let mut config = NodeConfig::default();
        config.resolver.kubernetes =
            Some(KubernetesSettings { label: "a,b".into(), ..KubernetesSettings::default() });
        assert!(config.validate().unwrap_err().to_string().contains("label"));
        let config = NodeConfig { node_id: "resolve".into(), ..NodeConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("route"));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let config = NodeConfig { node_id: "bad id".into(), ..NodeConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("node_id"));
        let config = NodeConfig { advertise_http: "ftp://x".into(), ..NodeConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("advertise_http"));
        let config = NodeConfig { cluster: "a/b".into(), ..NodeConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("cluster"));
        let config =
            NodeConfig { bootstrap: vec!["10.0.0.1:4001".into()], ..NodeConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("bootstrap"));
        let config = NodeConfig { p2p: vec![], ..NodeConfig::default() };
        assert!(config.validate().unwrap_err().to_string().contains("p2p"));
    }
}
