//! `gridnode bundle init NAME` and `gridnode bundle pack DIR`: tool bundles on the user's
//! machine. `pack` checks `spec.json` as the node will (a tool record, its id, its
//! `tool_api_spec`) before anything is zipped, so mistakes show before an upload.

use std::io::Write;
use std::path::{Path, PathBuf};

use gridnode_store::{Record, ToolEntry};
use serde_json::{Value, json};
use zip::write::SimpleFileOptions;

use super::Outcome;
use crate::cli::BundleCommand;
use crate::runtime::spec::InputValidator;

/// The default upload limit (`limits.max_upload_bytes`): a bigger bundle gets a warning.
const UPLOAD_LIMIT: u64 = 64 * 1024 * 1024;

pub fn run(command: &BundleCommand) -> Outcome {
    match command {
        BundleCommand::Init { name, into } => {
            let dir = into.clone().unwrap_or_else(|| PathBuf::from(".")).join(name);
            init(name, &dir)?;
            println!("created {}/ with spec.json, tool.md and code/run", dir.display());
            println!(
                "next: gridnode bundle pack {0} && gridnode tools upload {0}.zip && gridnode exec {name} '{{\"text\": \"hello\"}}'",
                dir.display()
            );
            Ok(())
        }
        BundleCommand::Pack { dir, output, json } => {
            let output = output.clone().unwrap_or_else(|| default_output(dir));
            let packed = pack(dir, &output)?;
            if packed.bytes > UPLOAD_LIMIT {
                eprintln!(
                    "warning: {} is {} bytes, more than a node's default upload limit ({UPLOAD_LIMIT})",
                    output.display(),
                    packed.bytes
                );
            }
            if *json {
                let answer = json!({
                    "bundle": output, "tool_id": packed.tool_id, "files": packed.files,
                    "code_files": packed.code_files, "bytes": packed.bytes,
                });
                println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
            } else {
                println!(
                    "packed {} ({} bytes): tool '{}', {} with {} code file(s)",
                    output.display(),
                    packed.bytes,
                    packed.tool_id,
                    packed.files.join(", "),
                    packed.code_files
                );
            }
            Ok(())
        }
    }
}

/// What `pack` wrote.
#[derive(Debug)]
pub struct Packed {
    pub tool_id: String,
    pub files: Vec<String>,
    pub code_files: usize,
    pub bytes: u64,
}

fn default_output(dir: &Path) -> PathBuf {
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "bundle".into());
    dir.parent().unwrap_or(Path::new(".")).join(format!("{name}.zip"))
}

/// Writes a runnable example tool folder: a spec taking `{"text": string}`, a manual, and a
/// `code/run` script that answers with what it received and the text upper-cased.
pub fn init(name: &str, dir: &Path) -> Outcome {
    gridnode_store::validate_id("tool", name).map_err(|e| e.to_string())?;
    if dir.exists() {
        return Err(format!("{} exists already: choose another name or --into", dir.display()));
    }
    let spec = json!({
        "tool_id": name,
        "tool_type": "example",
        "tool_tags": ["example"],
        "tool_search_description": format!("{name}: an example tool that upper-cases a text"),
        "tool_api_spec": {"text": "string"},
        "tool_metadata": {"version": "0.1.0", "runtime": "bundle", "timeout_ms": 10000},
        "tool_execution_mode": "sync",
    });
    let manual = format!(
        "# {name}\n\nUpper-cases `text`.\n\nInput: `{{\"text\": \"hello\"}}`\nOutput: `{{\"text\": \"HELLO\"}}`\n\n\
         `code/run` reads the input (JSON) on stdin and writes the output (JSON) on stdout; exit 0 is\n\
         success, anything else a failure whose message is its stderr. Credentials in the record's\n\
         `default_tool_usage_credentials` arrive as the environment variable `GRIDNODE_CREDENTIALS`.\n"
    );
    let run = "#!/bin/sh\n# Input JSON on stdin, output JSON on stdout.\ninput=$(cat)\ntext=$(printf '%s' \"$input\" | sed -n 's/.*\"text\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p')\nprintf '{\"text\": \"%s\"}\\n' \"$(printf '%s' \"$text\" | tr '[:lower:]' '[:upper:]')\"\n";
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir.join("code"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write(
        &dir.join("spec.json"),
        serde_json::to_string_pretty(&spec).unwrap_or_default().as_bytes(),
    )?;
    write(&dir.join("tool.md"), manual.as_bytes())?;
    write(&dir.join("code/run"), run.as_bytes())?;
    set_mode(&dir.join("code/run"), 0o755)
}

/// Checks `dir/spec.json`, then writes the upload bundle to `output`.
pub fn pack(dir: &Path, output: &Path) -> Result<Packed, String> {
    let spec_path = dir.join("spec.json");
    let spec_text = std::fs::read_to_string(&spec_path).map_err(|e| {
        format!("cannot read {}: {e} (a bundle folder holds spec.json)", spec_path.display())
    })?;
    let tool = check_spec(&spec_text).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let code = code_zip(dir)?;
    let mut files = vec!["spec.json".to_owned()];
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().unix_permissions(0o644);
    let mut add = |name: &str, bytes: &[u8]| -> Result<(), String> {
        writer.start_file(name, options).map_err(|e| e.to_string())?;
        writer.write_all(bytes).map_err(|e| e.to_string())
    };
    add("spec.json", spec_text.as_bytes())?;
    if let Ok(manual) = std::fs::read(dir.join("tool.md")) {
        add("tool.md", &manual)?;
        files.push("tool.md".into());
    }
    add("tool.zip", &code.bytes)?;
    files.push("tool.zip".into());
    let bytes = writer.finish().map_err(|e| e.to_string())?.into_inner();
    std::fs::write(output, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    Ok(Packed { tool_id: tool.tool_id, files, code_files: code.files, bytes: bytes.len() as u64 })
}

/// The record the node will read, checked the way it checks it.
fn check_spec(text: &str) -> Result<ToolEntry, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err("spec.json must be a JSON object (a tool record)".into());
    }
    let tool: ToolEntry =
        serde_json::from_value(value).map_err(|e| format!("not a tool record: {e}"))?;
    tool.validate().map_err(|e| e.to_string())?;
    InputValidator::compile(&tool.tool_api_spec).map_err(|e| format!("tool_api_spec: {e}"))?;
    Ok(tool)
}

struct Code {
    bytes: Vec<u8>,
    files: usize,
}

/// `dir/code/**` zipped under `code/`, or — without a code folder — `dir/run` at the root.
/// `run` must be there and is marked executable.
fn code_zip(dir: &Path) -> Result<Code, String> {
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    let code = dir.join("code");
    if code.is_dir() {
        collect(&code, "code", &mut entries)?;
        if !code.join("run").is_file() {
            return Err(format!(
                "{} is missing: it is the tool's executable",
                code.join("run").display()
            ));
        }
    } else if dir.join("run").is_file() {
        entries.push(("run".into(), dir.join("run")));
    } else {
        return Err(format!(
            "{} has no code/run (nor run): put the tool's executable there (gridnode bundle init shows one)",
            dir.display()
        ));
    }
    entries.sort();
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, path) in &entries {
        let executable = name == "run" || name == "code/run" || is_executable(path);
        let options =
            SimpleFileOptions::default().unix_permissions(if executable { 0o755 } else { 0o644 });
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        writer.start_file(name.as_str(), options).map_err(|e| e.to_string())?;
        writer.write_all(&bytes).map_err(|e| e.to_string())?;
    }
    let bytes = writer.finish().map_err(|e| e.to_string())?.into_inner();
    Ok(Code { bytes, files: entries.len() })
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        let path = entry.path();
        if kind.is_symlink() {
            return Err(format!(
                "{} is a symbolic link: bundles hold plain files only",
                path.display()
            ));
        } else if kind.is_dir() {
            collect(&path, &format!("{prefix}/{name}"), out)?;
        } else {
            out.push((format!("{prefix}/{name}"), path));
        }
    }
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

fn set_mode(path: &Path, mode: u32) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot make {} executable: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_pack_makes_a_bundle_the_node_reads() {
        let dir = tempfile::tempdir().unwrap();
        init("upper", &dir.path().join("upper")).unwrap();
        assert!(init("upper", &dir.path().join("upper")).unwrap_err().contains("exists already"));
        let out = dir.path().join("upper.zip");
        let packed = pack(&dir.path().join("upper"), &out).unwrap();
        assert_eq!(packed.tool_id, "upper");
        assert_eq!(packed.files, ["spec.json", "tool.md", "tool.zip"]);
        let bytes = std::fs::read(&out).unwrap();
        let bundle = crate::service::bundle::read(&bytes, "tool.zip", "tool.md", 1 << 20).unwrap();
        assert!(bundle.code.is_some() && bundle.doc.is_some());
    }

    #[test]
    fn pack_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("t");
        std::fs::create_dir_all(tool.join("code")).unwrap();
        let out = dir.path().join("t.zip");
        for (spec, expected) in [
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"tool_id": "a b"}"#, "invalid tool id"),
            (r#"{"tool_id": "t", "bogus": 1}"#, "unknown field `bogus`"),
            (r#"{"tool_id": "t", "tool_api_spec": {"x": "complex"}}"#, "tool_api_spec"),
        ] {
            std::fs::write(tool.join("spec.json"), spec).unwrap();
            let error = pack(&tool, &out).unwrap_err();
            assert!(error.contains(expected), "{spec}: {error}");
        }
        std::fs::write(tool.join("spec.json"), r#"{"tool_id": "t"}"#).unwrap();
        assert!(pack(&tool, &out).unwrap_err().contains("code/run"));
        assert!(!out.exists(), "nothing is written when a check fails");
    }
}
