//! `node_stats`: this node's CPU, memory and load, from sysinfo.

use std::sync::Mutex;

use gridnode_store::JsonMap;
use serde_json::json;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use super::builtin_metadata;
use crate::runtime::{Tool, ToolFuture};

pub struct NodeStats {
    node_id: String,
    /// CPU usage is a difference between two refreshes: the system is kept between calls.
    /// `None` where sysinfo cannot read this machine.
    system: Mutex<Option<System>>,
}

impl NodeStats {
    pub fn new(node_id: &str) -> NodeStats {
        let refresh = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::nothing().with_ram());
        let system = System::new_with_specifics(refresh).ok();
        NodeStats { node_id: node_id.to_owned(), system: Mutex::new(system) }
    }
}

impl Tool for NodeStats {
    fn name(&self) -> &str {
        "node_stats"
    }

    fn description(&self) -> &str {
        "Reports this node's CPU, memory and load"
    }

    fn metadata(&self) -> JsonMap {
        builtin_metadata()
    }

    fn call<'a>(&'a self, _input: &'a [u8]) -> ToolFuture<'a> {
        Box::pin(async move {
            let stats = {
                let mut guard =
                    self.system.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let Some(system) = guard.as_mut() else {
                    return Err("system statistics cannot be read on this machine".to_owned());
                };
                system.refresh_cpu_usage();
                system.refresh_memory();
                let load = System::load_average().ok();
                json!({
                    "node_id": self.node_id,
                    "cpu_percent": system.global_cpu_usage(),
                    "cpus": system.cpus().len(),
                    "memory_total_bytes": system.total_memory(),
                    "memory_used_bytes": system.used_memory(),
                    "load_average": load.map(|l| json!({"one": l.one, "five": l.five, "fifteen": l.fifteen})),
                    "uptime_s": System::uptime().ok(),
                })
            };
            serde_json::to_vec(&stats).map_err(|e| e.to_string())
        })
    }
}
