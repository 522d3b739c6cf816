//! `gridnode-bench access`: what access control and TLS cost (contract sections 12 and 14), each
//! beside the limit it chases, in the same run:
//! - a token check in-process (target: p50 ≤ 2 µs);
//! - `GET /tools/{id}` with a token on a node with access control, vs the same request on a node
//!   without (target ≥ 0.95 ×);
//! - the same GET over HTTPS vs plain HTTP, and vs a bare axum handler of the same bytes behind
//!   the same rustls (target ≥ 0.8 ×);
//! - `CallFunction` over TLS vs plaintext.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridnode::config::TlsSettings;
use gridnode::service::acl::{Acl, AclSettings, NewToken, Principal};
use gridnode::{Node, NodeConfig};
use gridnode_proto::ToolExecutorClient;
use gridnode_store::{Store, StoreConfig};
use reqwest::Method;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::corpus;
use crate::load::{self, Measured};
use crate::out;
use crate::report::{BenchResult, percentiles};

const TOKEN_TARGET: Duration = Duration::from_micros(2);
const WITH_TOKEN_TARGET: f64 = 0.95;
const HTTPS_TARGET: f64 = 0.8;
const ADMIN: &str = "bench-management-secret";
const N: usize = 2_000;

pub fn run(quick: bool) -> BenchResult {
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        out!("## access scenario{}\n", if quick { " (quick)" } else { "" });
        token_check(dir.path(), quick).await?;
        let made = gridnode::tls::init(&dir.path().join("tls"), &["127.0.0.1".into()])?;
        let start = |name: &str, acl: bool, tls: bool| {
            let data = dir.path().join(name);
            let made = made.clone();
            let name = name.to_owned();
            async move {
                Store::open(&StoreConfig::new(data.join("store"), &name))?.import(&corpus::tools(N, 42))?;
                let mut config = NodeConfig { node_id: name, ..NodeConfig::loopback(data) };
                if acl {
                    config.acl.enabled = Some(true);
                    config.acl.admin_token = Some(gridnode::config::Secret(ADMIN.into()));
                }
                if tls {
                    config.tls = TlsSettings {
                        cert_file: Some(made.cert),
                        key_file: Some(made.key),
                        client_ca_file: None,
                        ca_file: Some(made.ca),
                    };
                }
                Ok::<_, Box<dyn std::error::Error>>(Node::start(config).await?)
            }
        };
        let open = start("open", false, false).await?;
        let guarded = start("guarded", true, false).await?;
        let secure = start("secure", false, true).await?;
        let scale = if quick { 10 } else { 1 };
        let reads = 20_000 / scale;

        // A token on the guarded node, presented by its client on every request.
        let admin = guarded.services().acl.authenticate(Some(ADMIN))?;
        let new = NewToken { scopes: vec!["read".into()], ..NewToken::default() };
        let secret = guarded.services().acl.create(&admin, new).await?.secret;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {secret}").parse()?);
        let plain = reqwest::Client::builder().http1_only().build()?;
        let with_token = reqwest::Client::builder().http1_only().default_headers(headers).build()?;
        let ca = std::fs::read(&made.ca)?;
        let https = reqwest::Client::builder()
            .http1_only()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .build()?;

        // The bare handler behind the same TLS: the same bytes as a node's answer.
        let sample = plain
            .get(format!("http://{}/tools/{}", open.http_addr(), corpus::tool_id(7)))
            .send()
            .await?
            .bytes()
            .await?;
        let bare = super::bare_router(sample.clone());
        let tls = gridnode::tls::Tls::load(&TlsSettings {
            cert_file: Some(made.cert.clone()),
            key_file: Some(made.key.clone()),
            client_ca_file: None,
            ca_file: None,
        })?
        .ok_or("tls settings")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let bare_addr = listener.local_addr()?;
        tokio::spawn(gridnode::http::serve::serve(
            listener,
            bare,
            Duration::from_secs(10),
            Some(tls.acceptor()),
            std::future::pending(),
        ));

        out!(
            "Three in-process nodes holding {N} corpus tools each: without access control, with it, \
             and with TLS; {} B per `GET /tools/{{id}}` answer over HTTP/1.1; one pooled reqwest client \
             per node in the same process (client and nodes share the 2 cores). Each pair runs twice, \
             alternating, and keeps its better run.\n",
            sample.len()
        );
        out!("| request | concurrent | calls | p50 | p99 | req/s | vs its limit (throughput) |");
        out!("| --- | --- | --- | --- | --- | --- | --- |");
        let print = |name: &str, concurrency: usize, m: &Measured, ratio: String| {
            out!(
                "| {name} | {concurrency} | {} | {:.1?} | {:.1?} | {:.0} | {ratio} |",
                m.latency.count, m.latency.p50, m.latency.p99, m.per_second
            );
        };
        let gets = |client: &reqwest::Client, base: String, concurrency: usize| {
            let client = client.clone();
            async move {
                load::http(&client, concurrency, reads, move |i| {
                    (Method::GET, format!("{base}/tools/{}", corpus::tool_id((i % 500) * 7 % N)), None)
                })
                .await
            }
        };
        let best = |a: Measured, b: Measured| if b.per_second > a.per_second { b } else { a };
        let verdict = |ratio: f64, target: f64| if ratio >= target { "met" } else { "not met" };
        for concurrency in [1usize, 32] {
            let open_base = format!("http://{}", open.http_addr());
            let guarded_base = format!("http://{}", guarded.http_addr());
            let secure_base = format!("https://{}", secure.http_addr());
            let bare_base = format!("https://{bare_addr}");
            // Warm every path once.
            for (client, base) in [(&plain, &open_base), (&with_token, &guarded_base), (&https, &secure_base), (&https, &bare_base)] {
                gets(client, base.clone(), concurrency).await?;
            }
            let mut without = gets(&plain, open_base.clone(), concurrency).await?;
            let mut token = gets(&with_token, guarded_base.clone(), concurrency).await?;
            without = best(without, gets(&plain, open_base.clone(), concurrency).await?);
            token = best(token, gets(&with_token, guarded_base.clone(), concurrency).await?);
            print("`GET /tools/{id}`, access control off (the limit)", concurrency, &without, "1.00 ×".into());
            let ratio = token.per_second / without.per_second;
            print(
                "`GET /tools/{id}` with a read token",
                concurrency,
                &token,
                format!("{ratio:.2} × {} (target {WITH_TOKEN_TARGET})", verdict(ratio, WITH_TOKEN_TARGET)),
            );
            let mut bare = gets(&https, bare_base.clone(), concurrency).await?;
            let mut tls = gets(&https, secure_base.clone(), concurrency).await?;
            bare = best(bare, gets(&https, bare_base.clone(), concurrency).await?);
            tls = best(tls, gets(&https, secure_base.clone(), concurrency).await?);
            print("bare axum, same bytes, same rustls (the HTTPS limit)", concurrency, &bare, "1.00 ×".into());
            let vs_bare = tls.per_second / bare.per_second;
            let vs_http = tls.per_second / without.per_second;
            print(
                "`GET /tools/{id}` over HTTPS",
                concurrency,
                &tls,
                format!(
                    "{vs_bare:.2} × the HTTPS limit {} (target {HTTPS_TARGET}); {vs_http:.2} × plain HTTP",
                    verdict(vs_bare, HTTPS_TARGET)
                ),
            );
        }

        // gRPC: the same call over TLS and in plain text.
        let input = serde_json::json!({ "text": "x".repeat(4096) }).to_string().into_bytes();
        let calls = if quick { 2_000 } else { 20_000 };
        let plain_grpc = ToolExecutorClient::new(
            Channel::from_shared(format!("http://{}", open.grpc_addr()))?.connect().await?,
        )
        .max_decoding_message_size(64 << 20);
        let tls_config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
        let tls_grpc = ToolExecutorClient::new(
            Channel::from_shared(format!("https://{}", secure.grpc_addr()))?
                .tls_config(tls_config)?
                .connect()
                .await?,
        )
        .max_decoding_message_size(64 << 20);
        out!("\n| `CallFunction` reverse_text, 4 KiB | concurrent | calls | p50 | p99 | calls/s | vs plaintext |");
        out!("| --- | --- | --- | --- | --- | --- | --- |");
        for concurrency in [1usize, 32] {
            let n = calls / if concurrency == 1 { 4 } else { 1 };
            super::grpc::load(&plain_grpc, "reverse_text", &input, concurrency, n / 10).await?;
            super::grpc::load(&tls_grpc, "reverse_text", &input, concurrency, n / 10).await?;
            let text = super::grpc::load(&plain_grpc, "reverse_text", &input, concurrency, n).await?;
            let tls = super::grpc::load(&tls_grpc, "reverse_text", &input, concurrency, n).await?;
            for (name, m) in [("plaintext", &text), ("TLS", &tls)] {
                out!(
                    "| {name} | {concurrency} | {} | {:.1?} | {:.1?} | {:.0} | {:.2} × |",
                    m.latency.count,
                    m.latency.p50,
                    m.latency.p99,
                    m.per_second,
                    m.per_second / text.per_second
                );
            }
        }
        for node in [open, guarded, secure] {
            node.shutdown().await?;
        }
        Ok(())
    })
}

/// The token check alone: SHA-256 of the secret, one map lookup, a constant-time compare.
async fn token_check(dir: &std::path::Path, quick: bool) -> BenchResult {
    let store = Store::open(&StoreConfig::new(dir.join("acl-store"), "bench"))?;
    let settings =
        AclSettings { enabled: true, admin_secret: Some(ADMIN.into()), open_metrics: false };
    let acl = Acl::new(store, settings);
    let admin = acl.authenticate(Some(ADMIN))?;
    // Among a thousand tokens, as a site with many clients would hold (a hundred when quick).
    let mut secrets = Vec::new();
    for i in 0..if quick { 100 } else { 1000 } {
        let new = NewToken {
            scopes: vec!["read".into()],
            description: format!("t{i}"),
            ..NewToken::default()
        };
        secrets.push(acl.create(&admin, new).await?.secret);
    }
    let secrets_len = secrets.len();
    let secrets = Arc::new(secrets);
    let checks = if quick { 20_000 } else { 200_000 };
    let acl2 = acl.clone();
    let samples = tokio::task::spawn_blocking(move || {
        let mut samples = Vec::with_capacity(checks);
        for i in 0..checks {
            let secret = &secrets[i % secrets.len()];
            let started = Instant::now();
            let principal: Principal = acl2.authenticate(Some(secret)).expect("a valid token");
            samples.push(started.elapsed());
            std::hint::black_box(principal);
        }
        samples
    })
    .await?;
    let unknown = {
        let started = Instant::now();
        for _ in 0..10_000 {
            std::hint::black_box(
                acl.authenticate(Some("gnt_unknown-secret-of-some-length")).is_err(),
            );
        }
        started.elapsed() / 10_000
    };
    let p = percentiles(samples);
    let verdict = if p.p50 <= TOKEN_TARGET { "met" } else { "not met" };
    out!("| token check (in-process, {} tokens held) | checks | p50 | p99 | target |", secrets_len);
    out!("| --- | --- | --- | --- | --- |");
    out!(
        "| a valid token | {} | {:.2?} | {:.2?} | p50 ≤ {TOKEN_TARGET:?}: {verdict} |",
        p.count,
        p.p50,
        p.p99
    );
    out!("| an unknown secret (mean) | 10000 | {unknown:.2?} | | |\n");
    Ok(())
}
