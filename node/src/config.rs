//! Node configuration: defaults that run on a laptop, a TOML file, environment variables and
//! flags, with precedence flag > env > file > default (contract section 2).
//!
//! `cli` parses flags and environment (clap reads both); this module holds the settled config,
//! loads the file and validates the result before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

const MIB: u64 = 1024 * 1024;
/// Largest accepted `store.cache_mb` (1 TiB).
const MAX_CACHE_MB: u64 = 1 << 20;
/// Largest accepted size limit (1 TiB): far beyond any sane upload, far below overflow.
const MAX_LIMIT_BYTES: u64 = 1 << 40;

/// Everything a node needs to start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// sled store, search index and tools; created if missing.
    pub data_dir: PathBuf,
    /// This node's id; the host name when empty.
    pub node_id: String,
    /// REST listener.
    pub http: SocketAddr,
    /// The base of links this node hands out; `http://` + the bound address when empty.
    pub advertise_http: String,
    /// ToolExecutor gRPC listener.
    pub grpc: SocketAddr,
    /// The `host:port` other nodes are told to call; the bound gRPC address when empty.
    pub advertise_grpc: String,
    /// Node-local process tools; `<data_dir>/tools` when unset.
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
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationSettings {
    /// How often this node gossips its heartbeat; silent for three is not alive.
    pub heartbeat_ms: u64,
    /// How often this node compares digests with each connected peer.
    pub anti_entropy_ms: u64,
    /// How long a delete's tombstone is kept for peers that were away; a peer away for longer
    /// may bring the deleted record back.
    pub tombstone_ttl_secs: u64,
}

impl Default for FederationSettings {
    fn default() -> Self {
        FederationSettings {
            heartbeat_ms: 1000,
            anti_entropy_ms: 5000,
            tombstone_ttl_secs: 7 * 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Bound on sled's page cache, in MiB.
    pub cache_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest upload accepted (`POST /tools/upload`), in bytes.
    pub max_upload_bytes: u64,
    /// Largest total unpacked size of an upload zip, in bytes.
    pub max_unpacked_bytes: u64,
    /// Largest JSON request body, in bytes.
    pub max_json_body_bytes: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./gridnode-data"),
            node_id: String::new(),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
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
        }
    }
}

impl NodeConfig {
    /// The defaults with every listener on 127.0.0.1, port 0, and mDNS off: for tests, benches
    /// and several nodes on one machine.
    pub fn loopback(data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.into(),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
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
        toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message().trim())))
    }

    /// Fills in derived defaults and checks every value. Call before binding anything.
    pub fn validate(mut self) -> Result<NodeConfig> {
        if self.node_id.is_empty() {
            self.node_id = host_name();
        }
        gridnode_store::validate_id("node", &self.node_id)
            .map_err(|e| Error::Config(format!("node_id: {e}")))?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::Config("data_dir: must not be empty".into()));
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
        if !self.advertise_grpc.is_empty() && !self.advertise_grpc.contains(':') {
            return Err(Error::Config(format!(
                "advertise_grpc: '{}' must be host:port",
                self.advertise_grpc
            )));
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

    /// Where process tools get their working directories.
    pub fn work_dir(&self) -> PathBuf {
        self.data_dir.join("work")
    }

    /// This node's libp2p key (its peer id is derived from it).
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join("p2p.key")
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

    #[test]
    fn defaults_validate() {
        let config = NodeConfig::default().validate().unwrap();
        assert!(!config.node_id.is_empty());
        assert_eq!(config.http.port(), 8080);
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
