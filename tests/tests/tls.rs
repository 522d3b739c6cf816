//! TLS (contract section 14) on real nodes with a CA from `gridnode tls init`: HTTPS and gRPC
//! over TLS on the same ports, plaintext clients refused, mutual TLS with and without a client
//! certificate, and nodes calling each other over TLS.

use gridnode::config::TlsSettings;
use gridnode::tls::{Made, init};
use gridnode_proto::{CallFunctionRequest, ToolExecutorClient};
use gridnode_tests::{EVENTUALLY, node, unique_cluster, until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn settings(made: &Made, mutual: bool) -> TlsSettings {
    TlsSettings {
        cert_file: Some(made.cert.clone()),
        key_file: Some(made.key.clone()),
        client_ca_file: mutual.then(|| made.ca.clone()),
        ca_file: Some(made.ca.clone()),
    }
}

fn https(made: &Made, with_cert: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&made.ca).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder().add_root_certificate(ca);
    if with_cert {
        let mut pem = std::fs::read(&made.cert).unwrap();
        pem.extend(std::fs::read(&made.key).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

async fn grpc(
    addr: std::net::SocketAddr,
    made: &Made,
) -> Result<ToolExecutorClient<Channel>, String> {
    let ca = Certificate::from_pem(std::fs::read(&made.ca).unwrap());
    let tls = ClientTlsConfig::new().ca_certificate(ca);
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(ToolExecutorClient::new(channel))
}

fn reverse(text: &str) -> CallFunctionRequest {
    CallFunctionRequest {
        tool_name: "reverse_text".into(),
        input: json!({ "text": text }).to_string().into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_grpc_over_tls_on_the_same_ports_and_plaintext_refused() {
    let dir = tempfile::tempdir().unwrap();
    let made = init(&dir.path().join("tls"), &["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (node, _) = node(dir.path(), "tls-one")
        .config(|config| config.tls = settings(&made, false))
        .start()
        .await;
    let base = format!("https://{}", node.http_addr());
    let response = https(&made, false).get(format!("{base}/node")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let about: Value = response.json().await.unwrap();
    assert!(about.to_string().contains("https://"), "the node advertises https: {about}");
    // A plaintext client on the TLS port gets no answer it can read.
    let plain = reqwest::get(format!("http://{}/healthz", node.http_addr())).await;
    assert!(plain.map(|r| r.status() != StatusCode::OK).unwrap_or(true));
    // A client that does not trust the CA is refused by its own verifier.
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());

    let mut client = grpc(node.grpc_addr(), &made).await.unwrap();
    let answer = client.call_function(reverse("abc")).await.unwrap().into_inner();
    assert!(answer.success, "{}", answer.error);
    assert_eq!(serde_json::from_slice::<Value>(&answer.output).unwrap(), json!({"result": "cba"}));
    let plaintext = async {
        let mut client =
            ToolExecutorClient::connect(format!("http://{}", node.grpc_addr())).await.ok()?;
        client.call_function(reverse("abc")).await.ok()
    };
    assert!(plaintext.await.is_none(), "plaintext gRPC is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate_and_nodes_call_each_other_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let made = init(&dir.path().join("tls"), &["127.0.0.1".into()]).unwrap();
    let cluster = unique_cluster("tls");
    let (a, _) = node(dir.path(), "tls-a")
        .in_cluster(&cluster)
        .brisk(200)
        .config(|config| config.tls = settings(&made, true))
        .start()
        .await;
    let (b, _) = node(dir.path(), "tls-b")
        .in_cluster(&cluster)
        .brisk(200)
        .bootstrap(&a)
        .config(|config| config.tls = settings(&made, true))
        .start()
        .await;
    let url = |path: &str| format!("https://{}{path}", b.http_addr());
    assert!(https(&made, false).get(url("/healthz")).send().await.is_err(), "no client cert");
    let with_cert = https(&made, true);
    assert_eq!(with_cert.get(url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    // gRPC without a client certificate is refused too.
    let refused = match grpc(b.grpc_addr(), &made).await {
        Err(_) => true,
        Ok(mut client) => client.call_function(reverse("x")).await.is_err(),
    };
    assert!(refused, "gRPC without a client certificate");
    let ca = Certificate::from_pem(std::fs::read(&made.ca).unwrap());
    let identity =
        Identity::from_pem(std::fs::read(&made.cert).unwrap(), std::fs::read(&made.key).unwrap());
    let channel = Channel::from_shared(format!("https://{}", b.grpc_addr()))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(ca).identity(identity))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let answer = ToolExecutorClient::new(channel).call_function(reverse("ab")).await.unwrap();
    assert!(answer.into_inner().success);

    // b runs a tool pinned to a: the member hop goes over TLS, with b's certificate.
    until("b to run a tool on a over tls", EVENTUALLY, async || {
        let run = json!({"tool_name": "reverse_text", "node_id": "tls-a", "input": {"text": "ab"}});
        let response = with_cert.post(url("/cluster-tools/execute")).json(&run).send().await;
        let response = response.map_err(|e| e.to_string())?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        match (status, answer["metadata"]["node_id"].as_str()) {
            (StatusCode::OK, Some("tls-a")) => Ok(()),
            _ => Err(format!("{status} {answer}")),
        }
    })
    .await;
}
