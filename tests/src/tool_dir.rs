//! Process tool folders (contract section 6), as a node's tools dir holds them.

use std::path::Path;

use serde_json::Value;

/// Writes `<dir>/<name>/tool.json` and a shell `run` (left unexecutable: the node fixes that).
pub fn write_tool(dir: &Path, name: &str, manifest: Value, script: &str) {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("tool.json"), manifest.to_string()).unwrap();
    std::fs::write(folder.join("run"), format!("#!/bin/sh\n{script}\n")).unwrap();
}
