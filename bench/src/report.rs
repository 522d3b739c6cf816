//! Figures as the harness prints them: percentiles of latency samples, Markdown rows.

use std::time::Duration;

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
    println!("| {name} | {} | {:.1?} | {:.1?} | {note} |", p.count, p.p50, p.p99);
}
