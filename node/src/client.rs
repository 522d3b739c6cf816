//! The client subcommands (contract section 2): thin calls to a node's REST API, printed as
//! tables for people or as the node's JSON (`--json`) for scripts. Every failure is one line on
//! stderr and a non-zero exit code; the node's own error message is passed on as it is.

use std::io::{IsTerminal, Read};
use std::path::Path;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::cli::{
    AclCommand, ClientArgs, ClusterCommand, Command, ConfigCommand, ExecArgs, RegistryCommand,
    TlsCommand, TokenCommand,
};

pub mod bundle;
pub mod output;

use output::{Table, cut, time_of};

/// A failure, said in one line.
pub type Outcome = Result<(), String>;

/// Uploads past this size show a progress bar (on a terminal).
const PROGRESS_FROM: usize = 1024 * 1024;

/// Runs one client subcommand, printing its answer.
pub async fn run(command: &Command) -> Outcome {
    match command {
        Command::Serve(_) => Err("serve is not a client subcommand".into()),
        Command::Config(ConfigCommand::PrintDefault) => {
            print!("{}", crate::config::DEFAULT_TOML);
            Ok(())
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let config = args.resolve().map_err(|e| e.to_string())?;
            let text = toml::to_string(&config)
                .map_err(|e| format!("cannot print the configuration: {e}"))?;
            println!(
                "# the effective configuration (flags > environment > file > defaults)\n{text}"
            );
            Ok(())
        }
        Command::Completions { shell } => {
            let mut cli = <crate::cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cli, "gridnode", &mut std::io::stdout());
            Ok(())
        }
        Command::Tools(command) => registry(Kind::Tools, command).await,
        Command::Functions(command) => registry(Kind::Functions, command).await,
        Command::Exec(args) => exec(args).await,
        Command::Resolve { tool, on, client } => {
            let node = Node::new(client)?;
            let body = json!({"tool_name": tool, "node_id": on});
            let answer =
                node.send(node.request(Method::POST, "/cluster-tools/resolve").json(&body)).await?;
            node.print(&answer, || {
                println!("{} at {}", text(&answer["node_id"]), text(&answer["endpoint"]));
            });
            Ok(())
        }
        Command::Peers { client } => {
            let node = Node::new(client)?;
            let answer = node.send(node.request(Method::GET, "/peers")).await?;
            node.print(&answer, || {
                let mut table = Table::new([
                    "NODE",
                    "ALIVE",
                    "SEEN",
                    "CPU",
                    "IN FLIGHT",
                    "HTTP",
                    "GRPC",
                    "VERSION",
                ]);
                for peer in answer.as_array().into_iter().flatten() {
                    table.row([
                        text(&peer["node_id"]),
                        if peer["alive"] == true { "yes".into() } else { "no".into() },
                        format!(
                            "{:.1}s ago",
                            peer["last_seen_ms"].as_f64().unwrap_or(0.0) / 1000.0
                        ),
                        format!("{:.0}%", peer["load"]["cpu_percent"].as_f64().unwrap_or(0.0)),
                        text(&peer["load"]["in_flight_calls"]),
                        text(&peer["http"]),
                        text(&peer["grpc"]),
                        text(&peer["version"]),
                    ]);
                }
                table.print();
            });
            Ok(())
        }
        Command::Node { client } => {
            let node = Node::new(client)?;
            let answer = node.send(node.request(Method::GET, "/node")).await?;
            node.print(&answer, || {
                for key in ["node_id", "peer_id", "cluster", "version"] {
                    println!("{key:<15} {}", text(&answer[key]));
                }
                let listeners = &answer["listeners"];
                for key in ["http", "grpc", "advertise_http", "advertise_grpc"] {
                    println!("{key:<15} {}", text(&listeners[key]));
                }
                for addr in listeners["p2p"].as_array().into_iter().flatten() {
                    println!("{:<15} {}", "p2p", text(addr));
                }
            });
            Ok(())
        }
        Command::Audit { org, tool, limit, client } => {
            let node = Node::new(client)?;
            let mut query = vec![("limit", limit.to_string())];
            query.extend(org.iter().map(|org| ("org", org.clone())));
            query.extend(tool.iter().map(|tool| ("tool", tool.clone())));
            let answer = node.send(node.request(Method::GET, "/audit").query(&query)).await?;
            node.print(&answer, || {
                let mut table = Table::new([
                    "TIME (UTC)",
                    "OP",
                    "TOKEN",
                    "ORG",
                    "KIND",
                    "TOOL",
                    "ACTION",
                    "NODE",
                    "STATUS",
                    "MS",
                    "INPUT B",
                ]);
                for entry in answer.as_array().into_iter().flatten() {
                    table.row([
                        time_of(entry["time_ms"].as_u64().unwrap_or(0)),
                        text(&entry["operation"]),
                        text(&entry["token"]),
                        text(&entry["org"]),
                        text(&entry["kind"]),
                        text(&entry["tool"]),
                        text(&entry["action"]),
                        text(&entry["node"]),
                        text(&entry["status"]),
                        text(&entry["duration_ms"]),
                        text(&entry["input_bytes"]),
                    ]);
                }
                table.print();
            });
            Ok(())
        }
        Command::Bundle(command) => bundle::run(command),
        Command::Cluster(ClusterCommand::Keygen { file }) => {
            gridnode_federation::ClusterKey::create(file).map_err(|e| e.to_string())?;
            println!(
                "wrote a cluster key to {} (mode 0600); start every node with --cluster-key {}",
                file.display(),
                file.display()
            );
            Ok(())
        }
        Command::Cluster(ClusterCommand::Members { client }) => {
            let node = Node::new(client)?;
            let answer = node.send(node.request(Method::GET, "/cluster/members")).await?;
            node.print(&answer, || {
                let mut table = Table::new(["NODE", "PEER ID"]);
                for member in answer.as_array().into_iter().flatten() {
                    table.row([text(&member["node_id"]), text(&member["peer_id"])]);
                }
                table.print();
            });
            Ok(())
        }
        Command::Acl(command) => acl(command).await,
        Command::Tls(TlsCommand::Init { out, hosts }) => {
            let made = crate::tls::init(out, hosts).map_err(|e| e.to_string())?;
            println!(
                "wrote {} and {} (the CA: give it to every node and client)",
                made.ca.display(),
                made.ca_key.display()
            );
            println!(
                "wrote {} and {} (the node certificate, for {})",
                made.cert.display(),
                made.key.display(),
                hosts.join(", ")
            );
            println!(
                "start a node with --tls-cert {} --tls-key {} --ca-file {}",
                made.cert.display(),
                made.key.display(),
                made.ca.display()
            );
            Ok(())
        }
        Command::Cluster(ClusterCommand::Forget { node_id, client }) => {
            let node = Node::new(client)?;
            let path = format!("/cluster/members/{}", segment(node_id));
            let answer = node.send(node.request(Method::DELETE, &path)).await?;
            node.print(&answer, || {
                println!("released node id '{node_id}': a new key may claim it")
            });
            Ok(())
        }
    }
}

/// `gridnode acl ...`.
async fn acl(command: &AclCommand) -> Result<(), String> {
    match command {
        AclCommand::Whoami { client } => {
            let node = Node::new(client)?;
            let answer = node.send(node.request(Method::GET, "/acl/whoami")).await?;
            node.print(&answer, || {
                if answer["access_control"] == Value::Bool(false) {
                    println!("access control is off on this node: every request may do anything");
                    return;
                }
                println!("token:  {}", text(&answer["token_id"]));
                println!("scopes: {}", scopes(&answer["scopes"]));
                println!("org:    {}", text(&answer["org"]));
            });
            Ok(())
        }
        AclCommand::Token(TokenCommand::Create {
            description,
            scopes: wanted,
            org,
            expires_in,
            client,
        }) => {
            let node = Node::new(client)?;
            let mut body = serde_json::json!({ "description": description, "scopes": wanted });
            if let Some(org) = org {
                body["org"] = Value::String(org.clone());
            }
            if let Some(expires_in) = expires_in {
                body["expires_in"] = match expires_in.parse::<u64>() {
                    Ok(secs) => Value::from(secs),
                    Err(_) => Value::String(expires_in.clone()),
                };
            }
            let answer = node.send(node.request(Method::POST, "/acl/tokens").json(&body)).await?;
            node.print(&answer, || {
                println!("token {} ({})", text(&answer["token_id"]), scopes(&answer["scopes"]));
                println!("secret: {}", text(&answer["secret"]));
                println!("keep the secret now: it is not shown again");
            });
            Ok(())
        }
        AclCommand::Token(TokenCommand::List { client }) => {
            let node = Node::new(client)?;
            let answer = node.send(node.request(Method::GET, "/acl/tokens")).await?;
            node.print(&answer, || {
                let mut table = Table::new(["TOKEN", "SCOPES", "ORG", "EXPIRES", "DESCRIPTION"]);
                for token in answer.as_array().into_iter().flatten() {
                    table.row([
                        text(&token["token_id"]),
                        scopes(&token["scopes"]),
                        text(&token["org"]),
                        text(&token["expires_at"]),
                        text(&token["description"]),
                    ]);
                }
                table.print();
            });
            Ok(())
        }
        AclCommand::Token(TokenCommand::Delete { token_id, client }) => {
            let node = Node::new(client)?;
            let path = format!("/acl/tokens/{}", segment(token_id));
            let answer = node.send(node.request(Method::DELETE, &path)).await?;
            node.print(&answer, || println!("revoked token '{token_id}' on every node"));
            Ok(())
        }
    }
}

fn scopes(value: &Value) -> String {
    value.as_array().into_iter().flatten().map(text).collect::<Vec<_>>().join(",")
}

/// Which registry.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Tools,
    Functions,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Tools => "/tools",
            Kind::Functions => "/functions",
        }
    }
    fn singular(self) -> &'static str {
        match self {
            Kind::Tools => "tool",
            Kind::Functions => "function",
        }
    }
    fn field(self, name: &str) -> String {
        match (self, name) {
            (Kind::Functions, "custom_actions") => "func_custom_actions_dsl_map".into(),
            (kind, name) => format!("{}_{name}", kind.singular()),
        }
    }
}

async fn registry(kind: Kind, command: &RegistryCommand) -> Outcome {
    let base = kind.path();
    match command {
        RegistryCommand::Upload { file, client } => {
            let node = Node::new(client)?;
            let bytes =
                std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let name =
                file.file_name().map_or("bundle.zip".into(), |n| n.to_string_lossy().into_owned());
            let part = upload_part(bytes, name);
            let form = reqwest::multipart::Form::new().part("file", part);
            let answer = node
                .send(node.request(Method::POST, &format!("{base}/upload")).multipart(form))
                .await?;
            node.print(&answer, || {
                println!("uploaded {} '{}'", kind.singular(), text(&answer[kind.field("id")]))
            });
            Ok(())
        }
        RegistryCommand::Create { record, client } => {
            let node = Node::new(client)?;
            let record = input(record.as_deref(), "the record")?;
            let answer = node.send(node.request(Method::POST, base).json(&record)).await?;
            node.print(&answer, || {
                println!("created {} '{}'", kind.singular(), text(&answer[kind.field("id")]))
            });
            Ok(())
        }
        RegistryCommand::Get { id, client } => {
            let node = Node::new(client)?;
            let answer =
                node.send(node.request(Method::GET, &format!("{base}/{}", segment(id)))).await?;
            println!("{}", pretty(&answer));
            Ok(())
        }
        RegistryCommand::List { limit, offset, client } => {
            let node = Node::new(client)?;
            let query = [("limit", limit.to_string()), ("offset", offset.to_string())];
            let answer = node.send(node.request(Method::GET, base).query(&query)).await?;
            node.print(&answer, || {
                let mut table = Table::new(["ID", "TYPE", "TAGS", "DESCRIPTION"]);
                for record in answer.as_array().into_iter().flatten() {
                    let tags: Vec<String> = record[kind.field("tags")]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect();
                    table.row([
                        text(&record[kind.field("id")]),
                        text(&record[kind.field("type")]),
                        cut(&tags.join(","), 30),
                        cut(&text(&record[kind.field("search_description")]), 60),
                    ]);
                }
                table.print();
            });
            Ok(())
        }
        RegistryCommand::Search { text: words, limit, client } => {
            let node = Node::new(client)?;
            let query = [
                ("q", words.clone()),
                ("kind", base.trim_start_matches('/').to_owned()),
                ("limit", limit.to_string()),
            ];
            let answer = node.send(node.request(Method::GET, "/search").query(&query)).await?;
            node.print(&answer, || {
                let mut table = Table::new(["ID", "SCORE", "MATCH"]);
                for hit in answer.as_array().into_iter().flatten() {
                    let snippet = text(&hit["snippet"]).replace("<b>", "").replace("</b>", "");
                    table.row([
                        text(&hit["id"]),
                        format!("{:.2}", hit["score"].as_f64().unwrap_or(0.0)),
                        cut(&snippet, 70),
                    ]);
                }
                table.print();
            });
            Ok(())
        }
        RegistryCommand::Update { id, patch, client } => {
            let node = Node::new(client)?;
            let patch = input(patch.as_deref(), "the patch")?;
            let answer = node
                .send(node.request(Method::PUT, &format!("{base}/{}", segment(id))).json(&patch))
                .await?;
            node.print(&answer, || println!("updated {} '{id}'", kind.singular()));
            Ok(())
        }
        RegistryCommand::Delete { id, client } => {
            let node = Node::new(client)?;
            let answer =
                node.send(node.request(Method::DELETE, &format!("{base}/{}", segment(id)))).await?;
            node.print(&answer, || println!("deleted {} '{id}'", kind.singular()));
            Ok(())
        }
    }
}

/// `exec TOOL [INPUT]`: a registry tool by id; when there is none of that id, the node-local
/// tool of that name (or, with `--on`, that node's node-local tool straight away).
async fn exec(args: &ExecArgs) -> Outcome {
    let node = Node::new(&args.client)?;
    let input = input(args.input.as_deref(), "the input")?;
    let with_org = |request: RequestBuilder| match &args.org {
        Some(org) => request.header("x-org-id", org),
        None => request,
    };
    let by_name = || {
        let body = json!({"tool_name": args.tool, "input": input, "node_id": args.on});
        with_org(node.request(Method::POST, "/cluster-tools/execute")).json(&body)
    };
    let (status, answer) = if args.on.is_some() {
        node.exchange(by_name()).await?
    } else {
        let path = format!("/tools/{}/execute", segment(&args.tool));
        let (status, answer) = node
            .exchange(with_org(node.request(Method::POST, &path)).json(&json!({"input": input})))
            .await?;
        let not_registered = status == StatusCode::NOT_FOUND
            && text(&answer["error"]) == format!("tool '{}' not found", args.tool);
        if not_registered { node.exchange(by_name()).await? } else { (status, answer) }
    };
    if node.json {
        println!("{}", pretty(&answer));
    }
    if answer["success"] == true {
        if !node.json {
            println!("{}", pretty(&answer["output"]));
        }
        Ok(())
    } else {
        let message = match &answer["error"] {
            Value::String(error) if !error.is_empty() => error.clone(),
            _ => text(&answer),
        };
        Err(format!("{message} ({status})"))
    }
}

/// A node's address, the token to present, and how to print its answers.
struct Node {
    base: String,
    http: reqwest::Client,
    json: bool,
    token: Option<String>,
}

impl Node {
    fn new(args: &ClientArgs) -> Result<Node, String> {
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &args.ca_file {
            let bad = |e: &dyn std::fmt::Display| format!("--ca-file {}: {e}", ca.display());
            let pem = std::fs::read(ca).map_err(|e| bad(&e))?;
            http = http
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(|e| bad(&e))?);
        }
        Ok(Node {
            base: args.node.trim_end_matches('/').to_owned(),
            http: http.build().map_err(|e| format!("cannot build the http client: {e}"))?,
            json: args.json,
            token: args.token.clone().filter(|t| !t.trim().is_empty()),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token.trim()),
            None => request,
        }
    }

    /// The status and JSON answer; a node that cannot be reached is the error.
    async fn exchange(&self, request: RequestBuilder) -> Result<(StatusCode, Value), String> {
        let response = request.send().await.map_err(|e| {
            format!(
                "cannot reach the node at {} ({}); is it running? (--node URL or GRIDNODE_URL)",
                self.base,
                causes(e)
            )
        })?;
        let status = response.status();
        let bytes =
            response.bytes().await.map_err(|e| format!("the node's answer broke off: {e}"))?;
        let answer = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_owned()));
        Ok((status, answer))
    }

    /// The JSON answer of a successful request; any other status is the error, in one line.
    async fn send(&self, request: RequestBuilder) -> Result<Value, String> {
        let (status, answer) = self.exchange(request).await?;
        if status.is_success() {
            return Ok(answer);
        }
        let message = match &answer["error"] {
            Value::String(error) => error.clone(),
            _ => text(&answer),
        };
        Err(format!("{message} ({status})"))
    }

    /// The answer as JSON with `--json`, else as `human` prints it.
    fn print(&self, answer: &Value, human: impl FnOnce()) {
        if self.json { println!("{}", pretty(answer)) } else { human() }
    }
}

/// An upload part; past 1 MiB, on a terminal, it draws a progress bar on stderr as it is sent.
fn upload_part(bytes: Vec<u8>, name: String) -> reqwest::multipart::Part {
    let length = bytes.len();
    if length < PROGRESS_FROM || !std::io::stderr().is_terminal() {
        return reqwest::multipart::Part::bytes(bytes).file_name(name);
    }
    const CHUNK: usize = 64 * 1024;
    let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect();
    let mut sent = 0usize;
    let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
        sent += chunk.len();
        output::progress(sent, length);
        Ok::<_, std::io::Error>(chunk)
    }));
    reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), length as u64)
        .file_name(name)
}

/// An HTTP error and its causes in one line, without the URL (the message names the node).
fn causes(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// JSON from text, `@file`, or `-` (stdin); none is `{}`.
fn input(given: Option<&str>, what: &str) -> Result<Value, String> {
    let text = match given {
        None => return Ok(json!({})),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read {what} from stdin: {e}"))?;
            text
        }
        Some(path) if path.starts_with('@') => {
            let path = Path::new(&path[1..]);
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {what} from {}: {e}", path.display()))?
        }
        Some(text) => text.to_owned(),
    };
    serde_json::from_str(&text)
        .map_err(|e| format!("{what} is not JSON ({e}): give JSON text, @file or - for stdin"))
}

/// An id as one URL path segment.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b':' | b'@' | b'-' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A JSON value as a table cell: strings bare, the rest as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
