//! The deployment files (deploy/, Dockerfile), checked as far as this machine allows: the
//! Kubernetes manifests read into the API's own types and their RBAC held to least privilege;
//! every command line they run parsed by the binary's own flag parser; the configuration each
//! ships checked by the real binary (`gridnode config check`, a dry run of start-up); the
//! systemd unit through `systemd-analyze verify` where systemd is installed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};
use gridnode::cli::Cli;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Deserialize;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Every environment variable the binary reads for its flags.
fn known_env() -> BTreeSet<String> {
    fn walk(command: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&Cli::command(), &mut out);
    out
}

/// `gridnode config check` with `env`, as the deployment would start the node.
fn dry_run(env: &[(&str, String)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridnode"));
    command.args(["config", "check"]);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("GRIDNODE_")) {
        command.env_remove(key);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "config check failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kubernetes_manifests_are_valid_least_privilege_and_start_a_node() {
    let text = std::fs::read_to_string(repo("deploy/kubernetes/gridnode.yaml")).unwrap();
    let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .collect();
    let of_kind = |kind: &str| {
        let found: Vec<_> =
            documents.iter().filter(|d| d["kind"].as_str() == Some(kind)).cloned().collect();
        assert_eq!(found.len(), 1, "one {kind}");
        found.into_iter().next().unwrap()
    };
    let account: ServiceAccount = serde_yaml::from_value(of_kind("ServiceAccount")).unwrap();
    let role: ClusterRole = serde_yaml::from_value(of_kind("ClusterRole")).unwrap();
    let binding: ClusterRoleBinding =
        serde_yaml::from_value(of_kind("ClusterRoleBinding")).unwrap();
    let config: ConfigMap = serde_yaml::from_value(of_kind("ConfigMap")).unwrap();
    let daemon: DaemonSet = serde_yaml::from_value(of_kind("DaemonSet")).unwrap();

    // Least privilege: read nodes, nothing else.
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources.as_deref(), Some(&["nodes".to_owned()][..]));
    assert_eq!(rules[0].api_groups.as_deref(), Some(&[String::new()][..]));
    for verb in &rules[0].verbs {
        assert!(["get", "list", "watch"].contains(&verb.as_str()), "verb {verb}");
    }
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(Some(&subject.name), account.metadata.name.as_ref());
    assert_eq!(subject.namespace, account.metadata.namespace);

    // The pod: the account, the volumes it mounts, probes on the node's routes, known env.
    let spec = daemon.spec.template.spec.unwrap();
    assert_eq!(spec.service_account_name, account.metadata.name);
    assert_eq!(spec.host_network, Some(true));
    let spec_volumes = spec.volumes.clone().unwrap();
    let volumes: BTreeSet<String> = spec_volumes.iter().map(|v| v.name.clone()).collect();
    let known = known_env();
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for container in containers {
        for mount in container.volume_mounts.iter().flatten() {
            assert!(
                volumes.contains(&mount.name),
                "{} mounts unknown volume {}",
                container.name,
                mount.name
            );
        }
    }
    let node = &spec.containers[0];
    let env = node.env.clone().unwrap();
    for var in env.iter().filter(|v| v.name.starts_with("GRIDNODE_")) {
        assert!(known.contains(&var.name), "{} is not a variable gridnode reads", var.name);
    }
    let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone()
    };
    assert_eq!(probe(&node.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(probe(&node.liveness_probe).as_deref(), Some("/healthz"));
    let argv = node.command.clone().unwrap();
    Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert_eq!(node.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let node_name = env.iter().find(|v| v.name == "GRIDNODE_K8S_NODE_NAME").unwrap();
    let field = node_name.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
    assert_eq!(field.field_path, "spec.nodeName", "the node name from the downward API");

    // A dry run with the ConfigMap's file and the pod's environment (downward API filled in).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gridnode.toml");
    std::fs::write(&file, &config.data.unwrap()["gridnode.toml"]).unwrap();
    let value =
        |name: &str| env.iter().find(|v| v.name == name).and_then(|v| v.value.clone()).unwrap();
    let effective = dry_run(&[
        ("GRIDNODE_CONFIG", file.display().to_string()),
        ("GRIDNODE_DATA_DIR", dir.path().join("data").display().to_string()),
        ("GRIDNODE_K8S_NODE_NAME", "worker-1".into()),
        (
            "GRIDNODE_ADVERTISE_GRPC",
            value("GRIDNODE_ADVERTISE_GRPC").replace("$(HOST_IP)", "10.0.0.7"),
        ),
        (
            "GRIDNODE_ADVERTISE_HTTP",
            value("GRIDNODE_ADVERTISE_HTTP").replace("$(HOST_IP)", "10.0.0.7"),
        ),
    ]);
    let parsed = gridnode::config::NodeConfig::from_toml(&effective, "effective").unwrap();
    assert_eq!(parsed.node_id, "", "read from the node's label at start");
    assert_eq!(parsed.advertise_grpc, "10.0.0.7:50051");
    let kubernetes = parsed.resolver.kubernetes.clone().unwrap();
    assert_eq!(
        (kubernetes.label.as_str(), kubernetes.node_name.as_deref()),
        ("nodeID", Some("worker-1"))
    );
    assert_eq!(parsed.http.listen.to_string(), "0.0.0.0:8080");
    // The cluster key comes from a Secret mounted read-only, readable by its owner alone.
    let key_file = value("GRIDNODE_CLUSTER_KEY_FILE");
    let mount = node
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| key_file.starts_with(&format!("{}/", m.mount_path)) && m.name == "cluster-key")
        .expect("the key file lies in the cluster-key mount");
    assert_eq!(mount.read_only, Some(true));
    let secret = spec_volumes
        .iter()
        .find(|v| v.name == mount.name)
        .and_then(|v| v.secret.clone())
        .expect("the cluster key is a Secret");
    assert_eq!(secret.secret_name.as_deref(), Some("gridnode-cluster-key"));
    assert_eq!(secret.default_mode, Some(0o400));
    // So does the management token; access control is on (the node listens beyond loopback).
    assert!(parsed.acl_enabled());
    let token_file = value("GRIDNODE_ADMIN_TOKEN_FILE");
    let mount = node
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| token_file.starts_with(&format!("{}/", m.mount_path)))
        .max_by_key(|m| m.mount_path.len())
        .expect("the admin token lies in a mount");
    assert_eq!(mount.read_only, Some(true));
    let secret = spec_volumes
        .iter()
        .find(|v| v.name == mount.name)
        .and_then(|v| v.secret.clone())
        .expect("the admin token is a Secret");
    assert_eq!(secret.default_mode, Some(0o400));
    // The account's token is mounted where the resolver needs it, not by default; the
    // container runs as a user without privilege escalation or capabilities.
    assert_eq!(account.automount_service_account_token, Some(false));
    assert_eq!(spec.automount_service_account_token, Some(true));
    let security = node.security_context.clone().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
}

#[test]
fn the_systemd_unit_runs_a_valid_command_and_config() {
    let unit = std::fs::read_to_string(repo("deploy/systemd/gridnode.service")).unwrap();
    let value = |key: &str| -> Vec<String> {
        unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_owned).collect()
    };
    let exec = value("ExecStart");
    assert_eq!(exec.len(), 1);
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(argv[0], "/usr/local/bin/gridnode");
    let cli = Cli::try_parse_from(&argv).unwrap();
    assert_eq!(cli.serve_args().config.as_deref(), Some(Path::new("/etc/gridnode/gridnode.toml")));
    for line in value("Environment") {
        let (key, _) = line.split_once('=').unwrap();
        assert!(key == "RUST_LOG" || known_env().contains(key), "{key}");
    }
    assert_eq!(value("KillSignal"), ["SIGTERM"], "graceful shutdown");
    // The cluster key is a systemd credential, and the node reads it from there.
    assert_eq!(
        value("LoadCredential"),
        ["cluster.key:/etc/gridnode/cluster.key", "admin.token:/etc/gridnode/admin.token"]
    );
    assert!(value("Environment").contains(&"GRIDNODE_ADMIN_TOKEN_FILE=%d/admin.token".to_owned()));
    assert!(value("Environment").contains(&"GRIDNODE_CLUSTER_KEY_FILE=%d/cluster.key".to_owned()));
    let dir = tempfile::tempdir().unwrap();
    let effective = dry_run(&[
        ("GRIDNODE_CONFIG", repo("deploy/systemd/gridnode.toml").display().to_string()),
        ("GRIDNODE_DATA_DIR", dir.path().display().to_string()),
        ("GRIDNODE_NODE_ID", "edge-1".into()),
    ]);
    assert!(effective.contains("listen = \"0.0.0.0:8080\""), "{effective}");
    // systemd's own checker, where systemd is installed (it is not in every container).
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(version) if version.status.success() => {
            let out = Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(repo("deploy/systemd/gridnode.service"))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            // The binary path does not exist on a build machine; anything else is a defect.
            let problems: Vec<&str> =
                stderr.lines().filter(|l| !l.contains("/usr/local/bin/gridnode")).collect();
            assert!(problems.is_empty(), "systemd-analyze: {stderr}");
        }
        _ => {
            eprintln!("systemd-analyze is not installed here: the unit was checked by parsing only")
        }
    }
}

#[test]
fn the_dockerfile_builds_the_binary_and_runs_valid_flags() {
    let text = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    assert!(text.contains("cargo build --release -p gridnode"));
    let json_list = |instruction: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.starts_with(instruction)).unwrap();
        serde_json::from_str(line[instruction.len()..].trim()).unwrap()
    };
    let mut argv = json_list("ENTRYPOINT");
    argv.extend(json_list("CMD"));
    assert_eq!(argv, ["gridnode", "serve"]);
    Cli::try_parse_from(&argv).unwrap();
    let healthcheck = text.lines().find(|l| l.starts_with("HEALTHCHECK")).unwrap();
    let check: Vec<String> =
        serde_json::from_str(healthcheck.split("CMD").nth(1).unwrap().trim()).unwrap();
    Cli::try_parse_from(&check).unwrap();
    // The ENV block: known variables, and the ports it binds are the ones it exposes.
    let env: Vec<(String, String)> = text
        .split("ENV ")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("VOLUME"))
        .filter_map(|l| l.trim().trim_end_matches('\\').trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let known = known_env();
    for (key, _) in &env {
        assert!(key == "RUST_LOG" || known.contains(key), "{key}");
    }
    let expose = text.lines().find(|l| l.starts_with("EXPOSE")).unwrap();
    for (key, port) in [("GRIDNODE_HTTP", "8080"), ("GRIDNODE_GRPC", "50051")] {
        let bound = &env.iter().find(|(k, _)| k == key).unwrap().1;
        assert!(bound.ends_with(port) && expose.contains(port), "{key}={bound}, {expose}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut run: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    run.retain(|(k, _)| *k != "GRIDNODE_DATA_DIR");
    run.push(("GRIDNODE_DATA_DIR", dir.path().display().to_string()));
    run.push(("GRIDNODE_NODE_ID", "container-1".into()));
    dry_run(&run);
}
