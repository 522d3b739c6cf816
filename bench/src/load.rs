//! An HTTP load generator: `calls` requests, `concurrency` at a time over one pooled client,
//! each timed; what every REST scenario measures with.

use std::sync::Arc;
use std::time::Instant;

use crate::report::{Percentiles, percentiles};

/// A measured run.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub latency: Percentiles,
    pub per_second: f64,
}

/// One request: method, URL and an optional JSON body.
pub type Request = (reqwest::Method, String, Option<Vec<u8>>);

/// Sends `calls` requests made by `make(i)`, `concurrency` at a time; any non-2xx answer is an
/// error (a benchmark of failures would measure the wrong thing).
pub async fn http<F>(
    client: &reqwest::Client,
    concurrency: usize,
    calls: usize,
    make: F,
) -> Result<Measured, Box<dyn std::error::Error>>
where
    F: Fn(usize) -> Request + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let share = (calls / concurrency).max(1);
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let (client, make) = (client.clone(), make.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(share);
            for k in 0..share {
                let (method, url, body) = make(worker * share + k);
                let mut request = client.request(method, &url);
                if let Some(body) = body {
                    request = request.header("content-type", "application/json").body(body);
                }
                let t = Instant::now();
                let response = request.send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                let bytes = response.bytes().await.map_err(|e| e.to_string())?;
                samples.push(t.elapsed());
                if !status.is_success() {
                    return Err(format!("{url}: {status}: {}", String::from_utf8_lossy(&bytes)));
                }
            }
            Ok(samples)
        }));
    }
    let mut samples = Vec::with_capacity(share * concurrency);
    for worker in workers {
        samples.extend(worker.await??);
    }
    let per_second = samples.len() as f64 / started.elapsed().as_secs_f64();
    Ok(Measured { latency: percentiles(samples), per_second })
}
