//! Bounded doors (contract section 14) on a real node over raw TCP: a client that sends its
//! headers a byte at a time is cut off while others are served; a crowd of connections past the
//! concurrency bound gets 503s with `Retry-After`, and the node stays up and answers after.

use std::time::Duration;

use gridnode_tests::node;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_headers_slowly_is_cut_off_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = node(dir.path(), "slow")
        .config(|config| config.limits.header_timeout_ms = 500)
        .start()
        .await;
    let mut slow = TcpStream::connect(node.http_addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    // One byte every 100 ms: 100 bytes would take 10 s; the node closes long before.
    let mut sent = 0;
    let mut closed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Others are served meanwhile.
        if sent % 5 == 0 {
            assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
        }
        if slow.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        sent += 1;
        let mut byte = [0u8; 512];
        if let Ok(Ok(read)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut byte)).await
        {
            // hyper answers 408 or just closes: either way the connection is over.
            closed = true;
            assert!(read == 0 || byte.starts_with(b"HTTP/1.1 408"), "{:?}", &byte[..read]);
            break;
        }
    }
    assert!(closed, "the slow client was never cut off ({sent} bytes sent)");
    assert!(sent < 60, "cut off only after {sent} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_connections_past_the_bound_get_503s_and_the_node_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let (node, api) = node(dir.path(), "crowd")
        .config(|config| {
            config.limits.max_concurrent_requests = 20;
            config.limits.max_requests_per_client = 10_000;
        })
        .start()
        .await;
    let addr = node.http_addr();
    // Each connection sends a request whose body never comes: it holds its place.
    let mut held = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = "POST /tools HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Content-Length: 100\r\n\r\n{";
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    let mut busy = 0;
    let mut retry_after = 0;
    for stream in &mut held {
        let mut answer = vec![0u8; 2048];
        if let Ok(Ok(read)) =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut answer)).await
        {
            let text = String::from_utf8_lossy(&answer[..read]).to_ascii_lowercase();
            if text.starts_with("http/1.1 503") {
                busy += 1;
                retry_after += usize::from(text.contains("retry-after: 1"));
            }
        }
    }
    assert!(busy >= 480, "only {busy} of 500 were turned away");
    assert_eq!(retry_after, busy, "every 503 says when to retry");
    drop(held);
    // The node is up and serves normally once the crowd is gone.
    gridnode_tests::until(
        "the node to serve again",
        gridnode_tests::EVENTUALLY,
        async || match api.get("/tools").await.0 {
            StatusCode::OK => Ok(()),
            other => Err(other),
        },
    )
    .await;
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
}
