//! Prometheus metrics (contract section 10), kept in process and rendered as text at
//! `GET /metrics`: HTTP requests by route, method and status with a latency histogram; tool
//! calls by tool and result; executions by kind and status; peers; replication. No exporter
//! crate: a few maps of counters and the text format, which is small and stable.
//!
//! Label values are bounded: routes are axum's route templates (`/tools/{id}`, never the raw
//! path), tools are names this node hosts or registry ids that existed when called (a call of an
//! unknown tool counts under `_unknown`; past 1 000 distinct tools, under `_other`), peers are
//! capped at 1 000.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
pub const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The label a call of a tool this node does not know counts under.
pub const UNKNOWN_TOOL: &str = "_unknown";
/// Distinct tool labels kept at most; calls of further tools count under [`OTHER_TOOLS`] (a
/// registry whose ids churn must not grow the series without end).
pub const MAX_TOOL_SERIES: usize = 1000;
/// The label of tools past [`MAX_TOOL_SERIES`].
pub const OTHER_TOOLS: &str = "_other";
/// Peers listed by `gridnode_peer_last_seen_seconds` at most (the first by node id).
pub const MAX_PEER_SERIES: usize = 1000;

/// The metrics of one node. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By route, then by (method, status): a request allocates nothing once its route is known.
    requests: Mutex<BTreeMap<String, RouteSeries>>,
    /// Per tool: `[successes, failures]`.
    tool_calls: Mutex<BTreeMap<String, [u64; 2]>>,
    executions: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

/// One route's requests by (method, status).
type RouteSeries = BTreeMap<(&'static str, u16), Histogram>;

#[derive(Debug, Clone, Default)]
struct Histogram {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Gauges read when `/metrics` is asked for.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub peers_alive: usize,
    pub peers_silent: usize,
    /// The store's last feed sequence number.
    pub store_seq: u64,
    /// Local changes not yet handed to the federation.
    pub replication_backlog: u64,
    pub published_versions: u64,
    pub merged_versions: u64,
    pub rejected: u64,
    /// What was refused from peers, by reason (every reason, zeros included).
    pub peer_rejected: Vec<(&'static str, u64)>,
    pub in_flight_calls: u32,
    /// `(node id, seconds since its last heartbeat)` of every peer heard from.
    pub peer_ages: Vec<(String, f64)>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// One answered HTTP request.
    pub fn request(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut requests = self.inner.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if !requests.contains_key(route) {
            requests.insert(route.to_owned(), BTreeMap::new());
        }
        let Some(series) = requests.get_mut(route) else { return };
        let histogram = series.entry((method, status)).or_default();
        histogram.count += 1;
        histogram.sum += seconds;
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// One tool call run by this node (its runtime, a bundle, a remote tool's HTTP call).
    pub fn tool_call(&self, tool: &str, success: bool) {
        let mut calls = self.inner.tool_calls.lock().unwrap_or_else(PoisonError::into_inner);
        let result = usize::from(!success);
        if let Some(counts) = calls.get_mut(tool) {
            counts[result] += 1;
            return;
        }
        let label = if calls.len() < MAX_TOOL_SERIES { tool } else { OTHER_TOOLS };
        calls.entry(label.to_owned()).or_default()[result] += 1;
    }

    /// One execution asked of this node, as audited (`kind`: tool, function, cluster_tool).
    pub fn execution(&self, kind: &'static str, status: u16) {
        let mut executions = self.inner.executions.lock().unwrap_or_else(PoisonError::into_inner);
        *executions.entry((kind, status)).or_default() += 1;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let requests: Vec<((String, &str, u16), Histogram)> = self
            .inner
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .flat_map(|(route, series)| {
                series
                    .iter()
                    .map(|((method, status), h)| ((route.clone(), *method, *status), h.clone()))
            })
            .collect();
        header(
            &mut out,
            "gridnode_http_requests_total",
            "counter",
            "HTTP requests answered, by route template, method and status.",
        );
        for ((route, method, status), h) in &requests {
            let _ = writeln!(
                out,
                "gridnode_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                escape(method),
                h.count
            );
        }
        header(
            &mut out,
            "gridnode_http_request_duration_seconds",
            "histogram",
            "Time to answer an HTTP request, by route template and method.",
        );
        let mut merged: BTreeMap<(&str, &str), Histogram> = BTreeMap::new();
        for ((route, method, _), h) in &requests {
            let total = merged.entry((route.as_str(), method)).or_default();
            total.count += h.count;
            total.sum += h.sum;
            for (sum, add) in total.buckets.iter_mut().zip(h.buckets) {
                *sum += add;
            }
        }
        for ((route, method), h) in &merged {
            let labels = format!("route=\"{}\",method=\"{}\"", escape(route), escape(method));
            for (bound, count) in BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "gridnode_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "gridnode_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ =
                writeln!(out, "gridnode_http_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(
                out,
                "gridnode_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        header(
            &mut out,
            "gridnode_tool_calls_total",
            "counter",
            "Tool calls this node ran, by tool and result.",
        );
        for (tool, counts) in
            self.inner.tool_calls.lock().unwrap_or_else(PoisonError::into_inner).iter()
        {
            for (result, count) in ["success", "failure"].into_iter().zip(counts) {
                if *count > 0 {
                    let _ = writeln!(
                        out,
                        "gridnode_tool_calls_total{{tool=\"{}\",result=\"{result}\"}} {count}",
                        escape(tool)
                    );
                }
            }
        }
        header(
            &mut out,
            "gridnode_executions_total",
            "counter",
            "Executions asked of this node (as audited), by kind and status.",
        );
        for ((kind, status), count) in
            self.inner.executions.lock().unwrap_or_else(PoisonError::into_inner).iter()
        {
            let _ = writeln!(
                out,
                "gridnode_executions_total{{kind=\"{kind}\",status=\"{status}\"}} {count}"
            );
        }
        header(
            &mut out,
            "gridnode_peers",
            "gauge",
            "Nodes of the cluster heard from, by state (this node included).",
        );
        let _ = writeln!(out, "gridnode_peers{{state=\"alive\"}} {}", gauges.peers_alive);
        let _ = writeln!(out, "gridnode_peers{{state=\"silent\"}} {}", gauges.peers_silent);
        header(
            &mut out,
            "gridnode_peer_last_seen_seconds",
            "gauge",
            "Seconds since each node's last heartbeat.",
        );
        for (node, age) in gauges.peer_ages.iter().take(MAX_PEER_SERIES) {
            let _ = writeln!(
                out,
                "gridnode_peer_last_seen_seconds{{node=\"{}\"}} {age:.3}",
                escape(node)
            );
        }
        let gauge = |out: &mut String, name: &str, kind: &str, help: &str, value: String| {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        };
        gauge(
            &mut out,
            "gridnode_replication_backlog_changes",
            "gauge",
            "Changes committed here not yet handed to the federation (replication lag, in changes).",
            gauges.replication_backlog.to_string(),
        );
        gauge(
            &mut out,
            "gridnode_replication_published_versions_total",
            "counter",
            "Versions of this node's writes published to peers.",
            gauges.published_versions.to_string(),
        );
        gauge(
            &mut out,
            "gridnode_replication_merged_versions_total",
            "counter",
            "Versions from peers that changed this node's store.",
            gauges.merged_versions.to_string(),
        );
        gauge(
            &mut out,
            "gridnode_replication_rejected_total",
            "counter",
            "Messages and versions from peers dropped.",
            gauges.rejected.to_string(),
        );
        header(
            &mut out,
            "gridnode_peer_rejected_total",
            "counter",
            "Connections, messages and versions refused from peers, by reason.",
        );
        for (reason, count) in &gauges.peer_rejected {
            let _ = writeln!(out, "gridnode_peer_rejected_total{{reason=\"{reason}\"}} {count}");
        }
        gauge(
            &mut out,
            "gridnode_store_last_seq",
            "gauge",
            "The store's change-feed sequence number.",
            gauges.store_seq.to_string(),
        );
        gauge(
            &mut out,
            "gridnode_in_flight_calls",
            "gauge",
            "Tool calls running on this node now.",
            gauges.in_flight_calls.to_string(),
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_labels_are_capped() {
        let metrics = Metrics::new();
        for i in 0..MAX_TOOL_SERIES + 50 {
            metrics.tool_call(&format!("t{i}"), true);
        }
        metrics.tool_call("t0", false);
        let text = metrics.render(&Gauges::default());
        let series = text.lines().filter(|l| l.starts_with("gridnode_tool_calls_total{")).count();
        assert!(series <= 2 * MAX_TOOL_SERIES + 2, "{series}");
        assert!(text.contains("gridnode_tool_calls_total{tool=\"_other\",result=\"success\"} "));
        assert!(text.contains("gridnode_tool_calls_total{tool=\"t0\",result=\"failure\"} 1"));
    }

    #[test]
    fn renders_counters_histograms_and_escaped_labels() {
        let metrics = Metrics::new();
        metrics.request("/tools/{id}", "GET", 200, Duration::from_micros(300));
        metrics.request("/tools/{id}", "GET", 404, Duration::from_millis(30));
        metrics.tool_call("say \"hi\"", true);
        metrics.execution("tool", 403);
        let text = metrics.render(&Gauges { peers_alive: 2, ..Gauges::default() });
        assert!(text.contains(
            "gridnode_http_requests_total{route=\"/tools/{id}\",method=\"GET\",status=\"404\"} 1"
        ));
        assert!(text.contains("gridnode_http_request_duration_seconds_bucket{route=\"/tools/{id}\",method=\"GET\",le=\"0.0005\"} 1"));
        assert!(text.contains("gridnode_http_request_duration_seconds_bucket{route=\"/tools/{id}\",method=\"GET\",le=\"+Inf\"} 2"));
        assert!(
            text.contains(
                "gridnode_tool_calls_total{tool=\"say \\\"hi\\\"\",result=\"success\"} 1"
            )
        );
        assert!(text.contains("gridnode_executions_total{kind=\"tool\",status=\"403\"} 1"));
        assert!(text.contains("gridnode_peers{state=\"alive\"} 2"));
    }
}
