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

use super::{Error, Input, Tool, ToolFuture};

/// Most stderr kept for the error message.
pub const STDERR_KEPT: usize = 4096;
/// The longest timeout a tool may ask for (a day).
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// How long a finished run's stderr may take to close (an escaped child may hold it open).
const STDERR_GRACE: Duration = Duration::from_millis(100);
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
    /// Variables set beside the fixed ones (a bundle tool's `GRIDNODE_CREDENTIALS`).
    env: Vec<(String, String)>,
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
    let timeout = match manifest.timeout_ms {
        None => settings.default_timeout,
        Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Duration::from_millis(ms),
        Some(ms) => return Err(format!("timeout_ms is {ms}; use 1 to {MAX_TIMEOUT_MS}")),
    };
    ProcessTool::prepare(
        Prepared {
            name,
            description: manifest.description,
            input_spec: manifest.input_spec,
            metadata: manifest.metadata,
            run,
            timeout,
            env: Vec::new(),
        },
        settings,
    )
    .map_err(|e| e.to_string())
}

/// What a process tool is made of: a tools-dir folder's manifest, or a bundle tool unpacked by
/// the node (contract section 11). `run` is its executable (it must exist); `env` adds to the
/// fixed environment.
#[derive(Debug, Default)]
pub struct Prepared {
    pub name: String,
    pub description: String,
    pub input_spec: JsonMap,
    pub metadata: JsonMap,
    pub run: PathBuf,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
}

impl ProcessTool {
    /// A tool run under the sandbox and limits of `settings`: `run` made executable and
    /// resolved, its working directory `<work_root>/<name>` created.
    pub fn prepare(tool: Prepared, settings: &ProcessSettings) -> Result<ProcessTool, Error> {
        let io = |what: String| {
            let name = tool.name.clone();
            move |source| Error::Io { tool: name, what, source }
        };
        make_executable(&tool.run).map_err(io("cannot make 'run' executable".into()))?;
        let workdir = settings.work_root.join(&tool.name);
        let what = format!("cannot create working directory {}", workdir.display());
        std::fs::create_dir_all(&workdir).map_err(io(what))?;
        // Absolute paths: a relative program path would be looked up from the working directory.
        let run = std::fs::canonicalize(&tool.run).map_err(io("cannot resolve 'run'".into()))?;
        let workdir = std::fs::canonicalize(&workdir)
            .map_err(io("cannot resolve the working directory".into()))?;
        Ok(ProcessTool {
            name: tool.name,
            description: tool.description,
            input_spec: tool.input_spec,
            metadata: tool.metadata,
            run,
            workdir,
            timeout: tool.timeout,
            max_output: settings.max_output_bytes,
            slots: Arc::new(Semaphore::new(settings.max_concurrent)),
            max_concurrent: settings.max_concurrent,
            env: tool.env,
        })
    }
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

    fn call<'a>(&'a self, input: &'a Input) -> ToolFuture<'a> {
        Box::pin(async move {
            let Ok(_slot) = self.slots.try_acquire() else {
                return Err(format!(
                    "tool '{}' is busy: {} runs are in progress, the most it allows; try again shortly",
                    self.name, self.max_concurrent
                ));
            };
            self.run_once(input.bytes()).await
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("tool '{}' could not start: {e}", self.name))?;
        // From here on, however this call ends — finished, failed, timed out, or cancelled by a
        // caller that went away — the guard kills the whole process group and the pipe tasks.
        let mut guard =
            RunGuard { group: child.id().map(|pid| Pid::from_raw(pid as i32)), tasks: Vec::new() };
        // stdin is written and stderr drained beside the stdout read, so no pipe can fill up.
        let mut stdin = child.stdin.take();
        let input = input.to_vec();
        guard.tasks.push(tokio::spawn(async move {
            if let Some(pipe) = stdin.as_mut() {
                // A tool that does not read its input closes the pipe early: not an error.
                let _ = pipe.write_all(&input).await;
            }
            String::new()
        }));
        let mut stderr = child.stderr.take().map(|pipe| tokio::spawn(read_head(pipe, STDERR_KEPT)));
        let stdout = child.stdout.take();
        let max_output = self.max_output;
        let outcome = tokio::time::timeout(self.timeout, async {
            let reading = async move {
                match stdout {
                    Some(pipe) => read_capped(pipe, max_output).await,
                    None => Ok(Vec::new()),
                }
            };
            tokio::pin!(reading);
            // Watch the exit beside the read: a tool that exits leaving a background child
            // holding stdout is done; the child goes with its group and stdout closes.
            tokio::select! {
                output = &mut reading => {
                    let output = output?;
                    let status = child.wait().await.map_err(|e| Stop::Failed(e.to_string()))?;
                    Ok::<_, Stop>((output, status))
                }
                status = child.wait() => {
                    let status = status.map_err(|e| Stop::Failed(e.to_string()))?;
                    guard.kill_group();
                    Ok((reading.await?, status))
                }
            }
        })
        .await;
        guard.kill_group();
        let result = match outcome {
            Ok(Ok((output, status))) if status.success() => Ok(output),
            Ok(Ok((_, status))) => {
                let stderr = match stderr.as_mut() {
                    Some(task) => {
                        tokio::time::timeout(STDERR_GRACE, task).await.ok().and_then(Result::ok)
                    }
                    None => None,
                };
                let stderr = stderr.unwrap_or_default();
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
        if let Some(task) = stderr {
            task.abort();
        }
        let _ = child.wait().await;
        result
    }
}

/// Kills a run's process group and stops its pipe tasks when dropped.
struct RunGuard {
    group: Option<Pid>,
    tasks: Vec<tokio::task::JoinHandle<String>>,
}

impl RunGuard {
    /// SIGKILL to every process of the run. The group id is the first process's pid; once that
    /// process is reaped and the group is empty the id could in principle be reused, so the kill
    /// happens right after the run, and only once.
    fn kill_group(&mut self) {
        if let Some(group) = self.group.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.kill_group();
        for task in &self.tasks {
            task.abort();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relative_tools_dir_works_and_bad_folders_are_reported() {
        // A tools dir given relative to the current directory, as the default one is.
        let cwd = std::env::current_dir().unwrap();
        let scratch = tempfile::tempdir_in(&cwd).unwrap();
        let relative = scratch.path().strip_prefix(&cwd).unwrap().to_path_buf();
        let folder = relative.join("tools/up");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("tool.json"), "{}").unwrap();
        std::fs::write(folder.join("run"), "#!/bin/sh\ntr a-z A-Z\n").unwrap();
        let zero = relative.join("tools/zero");
        std::fs::create_dir_all(&zero).unwrap();
        std::fs::write(zero.join("tool.json"), r#"{"timeout_ms": 0}"#).unwrap();
        std::fs::write(zero.join("run"), "#!/bin/sh\n").unwrap();
        let settings = ProcessSettings {
            default_timeout: Duration::from_secs(10),
            max_output_bytes: 1 << 20,
            max_concurrent: 2,
            work_root: relative.join("work"),
        };
        let (tools, problems) = load_dir(&relative.join("tools"), &settings);
        assert_eq!(tools.len(), 1);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("timeout_ms is 0"), "{problems:?}");
        assert_eq!(tools[0].call(&Input::from_bytes(b"abc".to_vec())).await.unwrap(), b"ABC");
    }
}
