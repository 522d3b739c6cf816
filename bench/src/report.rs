//! Figures as the harness prints them: percentiles of latency samples, Markdown rows — and the
//! same output for machines. Every line a scenario prints goes through [`out!`], which also
//! keeps it; at the end [`json`] turns the kept Markdown (headings, prose, tables) into JSON,
//! one object per table with its rows keyed by column, so the printed and the machine-readable
//! figures can never disagree.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value, json};

/// What a scenario returns.
pub type BenchResult = Result<(), Box<dyn std::error::Error>>;

/// Latency percentiles of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p99: Duration,
    pub count: usize,
}

/// The percentiles of `samples` (which must not be empty).
pub fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Percentiles { p50: at(0.50), p99: at(0.99), count: samples.len() }
}

/// One Markdown row: name, samples, p50, p99, note.
pub fn row(name: &str, p: &Percentiles, note: &str) {
    crate::out!("| {name} | {} | {:.1?} | {:.1?} | {note} |", p.count, p.p50, p.p99);
}

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Prints a line and keeps it for [`json`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        $crate::report::keep(line);
    }};
}

/// Keeps a printed line (see [`out!`]).
pub fn keep(line: String) {
    LINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(line.lines().map(str::to_owned));
}

/// Resets the process's peak resident set size (Linux: `5` to `/proc/self/clear_refs`), so
/// a scenario's peak is its own.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A process's peak resident set size in bytes (`VmHWM`), `self` or a pid.
pub fn peak_rss(pid: &str) -> Option<u64> {
    status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

/// A process's resident set size now in bytes (`VmRSS`).
pub fn rss(pid: &str) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

fn status_kib(pid: &str, field: &str) -> Option<u64> {
    kib_in(&format!("/proc/{pid}/status"), field)
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The machine the figures come from.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_owned())
        .unwrap_or_default();
    let memory = kib_in("/proc/meminfo", "MemTotal:").unwrap_or(0) * 1024;
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "memory_bytes": memory,
        "os": std::env::consts::OS,
    })
}

/// The `field:` line of a `/proc` file, in KiB.
fn kib_in(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The kept output as JSON: `{"scenario", "quick", "machine", "peak_rss_bytes", "tables": [{"title",
/// "context", "columns", "rows": [{column: cell}]}]}`. A table's title is the last heading
/// before it; its context, the prose between that heading and the table.
pub fn json(scenario: &str, quick: bool, peak_rss_bytes: Option<u64>) -> Value {
    let lines = LINES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let mut tables = Vec::new();
    let mut title = String::new();
    let mut context: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(heading) = line.strip_prefix('#') {
            title = heading.trim_start_matches('#').trim().to_owned();
            context.clear();
            i += 1;
        } else if line.starts_with('|') {
            let columns = cells(line);
            i += 1;
            if lines.get(i).is_some_and(|l| l.trim().starts_with("| ---")) {
                i += 1;
            }
            let mut rows = Vec::new();
            while let Some(next) = lines.get(i).map(|l| l.trim()).filter(|l| l.starts_with('|')) {
                let row: Map<String, Value> = columns
                    .iter()
                    .cloned()
                    .zip(cells(next).into_iter().map(Value::String))
                    .collect();
                rows.push(Value::Object(row));
                i += 1;
            }
            tables.push(json!({"title": title, "context": context.join(" "), "columns": columns, "rows": rows}));
            context.clear();
        } else {
            if !line.is_empty() {
                context.push(line.to_owned());
            }
            i += 1;
        }
    }
    json!({
        "scenario": scenario,
        "quick": quick,
        "machine": machine(),
        "peak_rss_bytes": peak_rss_bytes,
        "tables": tables,
    })
}

fn cells(line: &str) -> Vec<String> {
    line.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_tables_become_json_rows() {
        keep("## grpc\n\nsome prose\n\n| call | p50 |\n| --- | --- |\n| bare | 1ms |\n| node | 2ms |".into());
        let value = json("grpc", true, Some(1));
        let table = &value["tables"][0];
        assert_eq!(table["title"], "grpc");
        assert_eq!(table["context"], "some prose");
        assert_eq!(table["rows"][1], json!({"call": "node", "p50": "2ms"}));
    }
}
