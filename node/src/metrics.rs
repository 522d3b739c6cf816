//! Prometheus metrics (contract section 10), kept in process through `prometheus-client` and
//! rendered at `GET /metrics`: HTTP requests by route, method and status with a latency
//! histogram; tool calls by tool and result; executions by kind and status; peers; replication.
//!
//! The exposition is OpenMetrics text (what `prometheus-client` writes), served as
//! `application/openmetrics-text; version=1.0.0`: its counter `# TYPE` lines name the family
//! without `_total` and it ends with `# EOF`, so calling it `text/plain; version=0.0.4` would
//! mislabel it (a 0.0.4 parser would find no type for `…_total` samples). Prometheus has read
//! OpenMetrics since 2.5 and asks for it first; the series it stores keep the names and labels
//! they had (`gridnode_http_requests_total{route,method,status}`, …). What reads differently:
//! histogram bounds are canonical floats (`le="1.0"` where it was `le="1"`, as Prometheus 3
//! normalises them anyway), `le` is written first among a bucket's labels (their order carries no
//! meaning), a histogram's `_sum` and `_count` come before its buckets, and a counter's `# HELP`
//! and `# TYPE` lines name it without `_total`.
//!
//! Label values are bounded: routes are axum's route templates (`/tools/{id}`, never the raw
//! path), tools are names this node hosts or registry ids that existed when called (a call of an
//! unknown tool counts under `_unknown`; past 1 000 distinct tools, under `_other`: a `Family`
//! grows without end otherwise), peers are capped at 1 000.
//!
//! What only exists when asked (peers, the store's sequence, replication counters, calls in
//! flight) is read by the `/metrics` handler into [`Gauges`] and encoded by a collector made for
//! that one scrape, so a peer that left has no series left behind.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of one node. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Everything below, registered once. (`prometheus-client` names a counter's samples
    /// `<name>_total` itself, and adds the final `.` of each help text.)
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    tool_calls: Family<ToolLabels, Counter>,
    /// The tools that have a label of their own, at most [`MAX_TOOL_SERIES`].
    tools: Mutex<HashSet<String>>,
    executions: Family<ExecutionLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    kind: &'static str,
    status: u16,
}

impl Default for Inner {
    fn default() -> Inner {
        let inner = Inner {
            registry: Registry::default(),
            requests: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            tool_calls: Family::default(),
            tools: Mutex::default(),
            executions: Family::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "gridnode_http_requests",
            "HTTP requests answered, by route template, method and status",
            inner.requests.clone(),
        );
        registry.register(
            "gridnode_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            inner.durations.clone(),
        );
        registry.register(
            "gridnode_tool_calls",
            "Tool calls this node ran, by tool and result",
            inner.tool_calls.clone(),
        );
        registry.register(
            "gridnode_executions",
            "Executions asked of this node (as audited), by kind and status",
            inner.executions.clone(),
        );
        Inner { registry, ..inner }
    }
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
        let route = route.to_owned();
        self.inner
            .durations
            .get_or_create(&RouteLabels { route: route.clone(), method })
            .observe(took.as_secs_f64());
        self.inner.requests.get_or_create(&RequestLabels { route, method, status }).inc();
    }

    /// One tool call run by this node (its runtime, a bundle, a remote tool's HTTP call).
    pub fn tool_call(&self, tool: &str, success: bool) {
        let admitted = {
            let mut tools = self.inner.tools.lock().unwrap_or_else(PoisonError::into_inner);
            tools.contains(tool) || (tools.len() < MAX_TOOL_SERIES && tools.insert(tool.to_owned()))
        };
        let tool = if admitted { tool } else { OTHER_TOOLS };
        let result = if success { "success" } else { "failure" };
        self.inner.tool_calls.get_or_create(&ToolLabels { tool: tool.to_owned(), result }).inc();
    }

    /// One execution asked of this node, as audited (`kind`: tool, function, cluster_tool).
    pub fn execution(&self, kind: &'static str, status: u16) {
        self.inner.executions.get_or_create(&ExecutionLabels { kind, status }).inc();
    }

    /// The OpenMetrics text of every metric (see [`CONTENT_TYPE`]).
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(AtScrape(gauges.clone())));
        // Writing to a `String` cannot fail, and neither can the encoders of these metrics.
        if let Err(error) = text::encode_registry(&mut out, &self.inner.registry)
            .and_then(|()| text::encode(&mut out, &scrape))
        {
            tracing::warn!(%error, "metrics could not be encoded");
        }
        out
    }
}

/// The metrics read at scrape time, encoded in a fixed order. (A collector writes its help
/// texts as given: they end with their `.` here.)
#[derive(Debug)]
struct AtScrape(Gauges);

impl Collector for AtScrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = &self.0;
        let mut peers = encoder.encode_descriptor(
            "gridnode_peers",
            "Nodes of the cluster heard from, by state (this node included).",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in [("alive", gauges.peers_alive), ("silent", gauges.peers_silent)] {
            ConstGauge::new(count).encode(peers.encode_family(&[("state", state)])?)?;
        }
        let mut last_seen = encoder.encode_descriptor(
            "gridnode_peer_last_seen_seconds",
            "Seconds since each node's last heartbeat.",
            None,
            MetricType::Gauge,
        )?;
        for (node, age) in gauges.peer_ages.iter().take(MAX_PEER_SERIES) {
            // Milliseconds are all a heartbeat age can tell.
            let age = (age * 1000.0).round() / 1000.0;
            ConstGauge::new(age).encode(last_seen.encode_family(&[("node", node.as_str())])?)?;
        }
        ConstGauge::new(gauges.replication_backlog).encode(encoder.encode_descriptor(
            "gridnode_replication_backlog_changes",
            "Changes committed here not yet handed to the federation (replication lag, in changes).",
            None,
            MetricType::Gauge,
        )?)?;
        for (name, help, count) in [
            (
                "gridnode_replication_published_versions",
                "Versions of this node's writes published to peers.",
                gauges.published_versions,
            ),
            (
                "gridnode_replication_merged_versions",
                "Versions from peers that changed this node's store.",
                gauges.merged_versions,
            ),
            (
                "gridnode_replication_rejected",
                "Messages and versions from peers dropped.",
                gauges.rejected,
            ),
        ] {
            ConstCounter::new(count).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        let mut rejected = encoder.encode_descriptor(
            "gridnode_peer_rejected",
            "Connections, messages and versions refused from peers, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in &gauges.peer_rejected {
            ConstCounter::new(*count).encode(rejected.encode_family(&[("reason", *reason)])?)?;
        }
        ConstGauge::new(gauges.store_seq).encode(encoder.encode_descriptor(
            "gridnode_store_last_seq",
            "The store's change-feed sequence number.",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(gauges.in_flight_calls).encode(encoder.encode_descriptor(
            "gridnode_in_flight_calls",
            "Tool calls running on this node now.",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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
        assert!(
            text.contains("gridnode_tool_calls_total{tool=\"_other\",result=\"success\"} 50\n")
        );
        assert!(text.contains("gridnode_tool_calls_total{tool=\"t0\",result=\"failure\"} 1\n"));
        assert!(!text.contains("tool=\"t1000\""));
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
        assert!(text.contains("gridnode_http_request_duration_seconds_bucket{le=\"0.0005\",route=\"/tools/{id}\",method=\"GET\"} 1"));
        assert!(text.contains("gridnode_http_request_duration_seconds_bucket{le=\"0.05\",route=\"/tools/{id}\",method=\"GET\"} 2"));
        assert!(text.contains("gridnode_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/tools/{id}\",method=\"GET\"} 2"));
        assert!(text.contains(
            "gridnode_http_request_duration_seconds_count{route=\"/tools/{id}\",method=\"GET\"} 2"
        ));
        assert!(
            text.contains(
                "gridnode_tool_calls_total{tool=\"say \\\"hi\\\"\",result=\"success\"} 1"
            )
        );
        assert!(text.contains("gridnode_executions_total{kind=\"tool\",status=\"403\"} 1"));
        assert!(text.contains("gridnode_peers{state=\"alive\"} 2"));
        assert!(text.contains("gridnode_peers{state=\"silent\"} 0"));
    }

    /// The exposed names, types and help texts are what dashboards know: byte for byte.
    #[test]
    fn metrics_keep_their_names_types_and_help() {
        let metrics = Metrics::new();
        metrics.request("/healthz", "GET", 200, Duration::from_millis(1));
        metrics.tool_call("t", true);
        metrics.execution("function", 200);
        let gauges = Gauges {
            peers_alive: 3,
            peers_silent: 1,
            store_seq: 42,
            replication_backlog: 2,
            published_versions: 7,
            merged_versions: 5,
            rejected: 1,
            peer_rejected: vec![("admission", 0), ("signature", 4)],
            in_flight_calls: 6,
            peer_ages: vec![("n1".into(), 1.2344), ("we\"ird\n".into(), 0.5)],
        };
        let text = metrics.render(&gauges);
        let samples: BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(['{', ' ']).next().unwrap_or_default())
            .collect();
        let expected = BTreeSet::from([
            "gridnode_http_requests_total",
            "gridnode_http_request_duration_seconds_bucket",
            "gridnode_http_request_duration_seconds_sum",
            "gridnode_http_request_duration_seconds_count",
            "gridnode_tool_calls_total",
            "gridnode_executions_total",
            "gridnode_peers",
            "gridnode_peer_last_seen_seconds",
            "gridnode_replication_backlog_changes",
            "gridnode_replication_published_versions_total",
            "gridnode_replication_merged_versions_total",
            "gridnode_replication_rejected_total",
            "gridnode_peer_rejected_total",
            "gridnode_store_last_seq",
            "gridnode_in_flight_calls",
        ]);
        assert_eq!(samples, expected, "{text}");
        for line in [
            "# HELP gridnode_http_requests HTTP requests answered, by route template, method and status.",
            "# TYPE gridnode_http_requests counter",
            "# HELP gridnode_http_request_duration_seconds Time to answer an HTTP request, by route template and method.",
            "# TYPE gridnode_http_request_duration_seconds histogram",
            "# TYPE gridnode_tool_calls counter",
            "# HELP gridnode_executions Executions asked of this node (as audited), by kind and status.",
            "# TYPE gridnode_peers gauge",
            "# HELP gridnode_peers Nodes of the cluster heard from, by state (this node included).",
            "# TYPE gridnode_peer_last_seen_seconds gauge",
            "# TYPE gridnode_replication_backlog_changes gauge",
            "# TYPE gridnode_replication_published_versions counter",
            "# HELP gridnode_replication_rejected Messages and versions from peers dropped.",
            "# TYPE gridnode_peer_rejected counter",
            "# TYPE gridnode_store_last_seq gauge",
            "# HELP gridnode_in_flight_calls Tool calls running on this node now.",
            "gridnode_http_request_duration_seconds_bucket{le=\"0.001\",route=\"/healthz\",method=\"GET\"} 1",
            "gridnode_http_request_duration_seconds_bucket{le=\"10.0\",route=\"/healthz\",method=\"GET\"} 1",
            "gridnode_executions_total{kind=\"function\",status=\"200\"} 1",
            "gridnode_peers{state=\"alive\"} 3",
            "gridnode_peers{state=\"silent\"} 1",
            "gridnode_peer_last_seen_seconds{node=\"n1\"} 1.234",
            "gridnode_peer_last_seen_seconds{node=\"we\\\"ird\\n\"} 0.5",
            "gridnode_replication_backlog_changes 2",
            "gridnode_replication_published_versions_total 7",
            "gridnode_replication_merged_versions_total 5",
            "gridnode_replication_rejected_total 1",
            "gridnode_peer_rejected_total{reason=\"admission\"} 0",
            "gridnode_peer_rejected_total{reason=\"signature\"} 4",
            "gridnode_store_last_seq 42",
            "gridnode_in_flight_calls 6",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with("gridnode_in_flight_calls 6\n# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn peer_series_are_capped() {
        let gauges = Gauges {
            peer_ages: (0..MAX_PEER_SERIES + 10).map(|i| (format!("n{i:05}"), 1.0)).collect(),
            ..Gauges::default()
        };
        let text = Metrics::new().render(&gauges);
        let series =
            text.lines().filter(|l| l.starts_with("gridnode_peer_last_seen_seconds{")).count();
        assert_eq!(series, MAX_PEER_SERIES);
    }
}
