//! Process tools (contract section 6): each folder `<tools-dir>/<name>/` holds `tool.json`
//! (`name`, `description`, `input_spec`, `metadata`, optional `timeout_ms`) and an executable
//! `run`. A call writes the input to `run`'s stdin and takes its stdout as the output; exit 0 is
//! success, otherwise the error is its stderr (cut to 4 KiB).
//!
//! Each run gets a cleared environment, a working directory of its own, its own process group
//! (killed whole on timeout, on oversized output, and after it exits, so nothing is left behind),
//! and a bound on concurrent runs per tool with a clear error when saturated.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use gridnode_store::JsonMap;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::{Tool, ToolFuture};

/// Most stderr kept for the error message.
pub const STDERR_KEPT: usize = 4096;
/// The PATH a process tool sees.
const TOOL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Limits every process tool runs under.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// Timeout when `tool.json` gives none.
    pub default_timeout: Duration,
    /// Output past this is a failure (the run is killed).
    pub max_output_bytes: usize,
    /// Runs of one tool at once; one more is refused.
    pub max_concurrent: usize,
    /// Each tool's working directory is `<work_root>/<name>`.
    pub work_root: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    input_spec: JsonMap,
    #[serde(default)]
    metadata: JsonMap,
    timeout_ms: Option<u64>,
}

/// A tool run as a child process.
#[derive(Debug)]
pub struct ProcessTool {
    name: String,
    description: String,
    input_spec: JsonMap,
    metadata: JsonMap,
    run: PathBuf,
    workdir: PathBuf,
    timeout: Duration,
    max_output: usize,
    slots: Arc<Semaphore>,
    max_concurrent: usize,
}

/// Loads every tool folder under `dir`. A folder that cannot be used is reported (in the
/// second list, with the reason) and skipped; the rest load. A missing `dir` holds no tools.
pub fn load_dir(dir: &Path, settings: &ProcessSettings) -> (Vec<ProcessTool>, Vec<String>) {
    let mut tools = Vec::new();
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (tools, problems) };
    let mut folders: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    folders.sort();
    for folder in folders {
        match load_one(&folder, settings) {
            Ok(tool) => tools.push(tool),
            Err(why) => problems.push(format!("{}: {why}", folder.display())),
        }
    }
    (tools, problems)
}

fn load_one(folder: &Path, settings: &ProcessSettings) -> Result<ProcessTool, String> {
    let text = std::fs::read_to_string(folder.join("tool.json"))
        .map_err(|e| format!("cannot read tool.json: {e}"))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("tool.json is not valid: {e}"))?;
    let folder_name = folder.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let name = manifest.name.unwrap_or(folder_name);
    gridnode_store::validate_id("tool", &name).map_err(|e| e.to_string())?;
    let run = folder.join("run");
    if !run.is_file() {
        return Err("no executable 'run' file".into());
    }
    make_executable(&run).map_err(|e| format!("cannot make 'run' executable: {e}"))?;
    let workdir = settings.work_root.join(&name);
    std::fs::create_dir_all(&workdir)
        .map_err(|e| format!("cannot create working directory {}: {e}", workdir.display()))?;
    let timeout = manifest.timeout_ms.map_or(settings.default_timeout, Duration::from_millis);
    Ok(ProcessTool {
        name,
        description: manifest.description,
        input_spec: manifest.input_spec,
        metadata: manifest.metadata,
        run,
        workdir,
        timeout,
        max_output: settings.max_output_bytes,
        slots: Arc::new(Semaphore::new(settings.max_concurrent)),
        max_concurrent: settings.max_concurrent,
    })
}

/// Zip files often lose file modes: the node sets the executable bits itself.
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path)?.permissions();
    if permissions.mode() & 0o111 != 0o111 {
        permissions.set_mode(permissions.mode() | 0o755);
        std::fs::set_permissions(path, permissions)?;
    }
    Ok(())
}

impl Tool for ProcessTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn input_spec(&self) -> JsonMap {
        self.input_spec.clone()
    }

    fn metadata(&self) -> JsonMap {
        self.metadata.clone()
    }

    fn call<'a>(&'a self, input: &'a [u8]) -> ToolFuture<'a> {
        Box::pin(async move {
            let Ok(_slot) = self.slots.try_acquire() else {
                return Err(format!(
                    "tool '{}' is busy: {} runs are in progress, the most it allows; try again shortly",
                    self.name, self.max_concurrent
                ));
            };
            self.run_once(input).await
        })
    }
}

impl ProcessTool {
    async fn run_once(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let mut child = tokio::process::Command::new(&self.run)
            .current_dir(&self.workdir)
            .env_clear()
            .env("PATH", TOOL_PATH)
            .env("HOME", &self.workdir)
            .env("LANG", "C.UTF-8")
            .env("GRIDNODE_TOOL", &self.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("tool '{}' could not start: {e}", self.name))?;
        let group = child.id().map(|pid| Pid::from_raw(pid as i32));
        // stdin is written and stderr drained beside the stdout read, so no pipe can fill up.
        let mut stdin = child.stdin.take();
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            if let Some(pipe) = stdin.as_mut() {
                // A tool that does not read its input closes the pipe early: not an error.
                let _ = pipe.write_all(&input).await;
            }
        });
        let stderr = child.stderr.take().map(|pipe| tokio::spawn(read_head(pipe, STDERR_KEPT)));
        let stdout = child.stdout.take();
        let outcome = tokio::time::timeout(self.timeout, async {
            let output = match stdout {
                Some(pipe) => read_capped(pipe, self.max_output).await?,
                None => Vec::new(),
            };
            let status = child.wait().await.map_err(|e| Stop::Failed(e.to_string()))?;
            Ok::<_, Stop>((output, status))
        })
        .await;
        // Whatever happened, nothing of this run outlives it.
        if let Some(group) = group {
            let _ = killpg(group, Signal::SIGKILL);
        }
        writer.abort();
        let result = match outcome {
            Ok(Ok((output, status))) if status.success() => Ok(output),
            Ok(Ok((_, status))) => {
                let stderr = match stderr {
                    Some(task) => task.await.unwrap_or_default(),
                    None => String::new(),
                };
                let stderr = stderr.trim();
                Err(if stderr.is_empty() {
                    format!("tool '{}' failed: {status}", self.name)
                } else {
                    stderr.to_owned()
                })
            }
            Ok(Err(Stop::TooMuchOutput)) => Err(format!(
                "tool '{}' wrote more than {} bytes of output, the limit: it was stopped",
                self.name, self.max_output
            )),
            Ok(Err(Stop::Failed(why))) => Err(format!("tool '{}' failed: {why}", self.name)),
            Err(_) => Err(format!(
                "tool '{}' timed out after {} ms and was stopped",
                self.name,
                self.timeout.as_millis()
            )),
        };
        let _ = child.wait().await;
        result
    }
}

enum Stop {
    TooMuchOutput,
    Failed(String),
}

/// Reads a pipe to its end, failing as soon as it passes `limit` bytes.
async fn read_capped(mut pipe: impl AsyncRead + Unpin, limit: usize) -> Result<Vec<u8>, Stop> {
    let mut output = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut chunk).await.map_err(|e| Stop::Failed(e.to_string()))?;
        if n == 0 {
            return Ok(output);
        }
        if output.len() + n > limit {
            return Err(Stop::TooMuchOutput);
        }
        output.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a pipe to its end, keeping the first `keep` bytes (as text) and discarding the rest.
async fn read_head(mut pipe: impl AsyncRead + Unpin, keep: usize) -> String {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 8192];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let room = keep.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}
