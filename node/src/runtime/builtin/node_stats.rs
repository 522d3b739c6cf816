//! `node_stats`: this node's CPU, memory and load, from sysinfo.

use gridnode_store::JsonMap;
use serde_json::json;
use sysinfo::System;

use super::builtin_metadata;
use crate::load::Sampler;
use crate::runtime::{Input, Tool, ToolFuture};

pub struct NodeStats {
    node_id: String,
    sampler: Sampler,
}

impl NodeStats {
    pub fn new(node_id: &str) -> NodeStats {
        NodeStats { node_id: node_id.to_owned(), sampler: Sampler::default() }
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

    fn call<'a>(&'a self, _input: &'a Input) -> ToolFuture<'a> {
        Box::pin(async move {
            let Some(sample) = self.sampler.sample() else {
                return Err("system statistics cannot be read on this machine".to_owned());
            };
            let load = System::load_average().ok();
            let stats = json!({
                "node_id": self.node_id,
                "cpu_percent": sample.cpu_percent,
                "cpus": sample.cpus,
                "memory_total_bytes": sample.memory_total_bytes,
                "memory_used_bytes": sample.memory_used_bytes,
                "load_average": load.map(|l| json!({"one": l.one, "five": l.five, "fifteen": l.fifteen})),
                "uptime_s": System::uptime().ok(),
            });
            serde_json::to_vec(&stats).map_err(|e| e.to_string())
        })
    }
}
