//! The seed's Python side: grpcio and stubs generated from the same proto. `ensure_grpcio`
//! pip-installs grpcio and grpcio-tools when they are missing.

use std::path::Path;
use std::process::Command;

/// Whether `python3` has grpcio and grpcio-tools.
pub fn python_has_grpc() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs grpcio and grpcio-tools with pip unless they are there.
pub fn ensure_grpcio() {
    if python_has_grpc() {
        return;
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "grpcio", "grpcio-tools"])
        .status()
        .expect("python3 runs");
    assert!(
        status.success() && python_has_grpc(),
        "could not install grpcio and grpcio-tools with pip"
    );
}

/// Generates `rpc_service_pb2.py` and `rpc_service_pb2_grpc.py` into `out` from the
/// workspace's `proto/rpc_service.proto`.
pub fn generate_stubs(out: &Path) {
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let output = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto_dir)
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg("rpc_service.proto")
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "protoc failed: {}", String::from_utf8_lossy(&output.stderr));
}
