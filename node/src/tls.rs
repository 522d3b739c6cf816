//! TLS (contract section 14): the node's certificate on both doors (HTTPS and gRPC over TLS, on
//! the same ports), optional client certificates, the CA its calls to peers are verified
//! against, and `gridnode tls init` for sites without a PKI.
//!
//! One cluster speaks one way: a node with a certificate calls its peers over TLS (their gRPC
//! doors and blob links), presenting its own certificate when they ask for one; a node without
//! calls them in plain text.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::TlsSettings;
use crate::error::{Error, Result};

/// A node's TLS material, read once at start.
#[derive(Clone)]
pub struct Tls {
    server: Arc<rustls::ServerConfig>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("client_certs", &self.client_ca_pem.is_some()).finish()
    }
}

impl Tls {
    /// The settings' files, read and checked; none when TLS is off.
    pub fn load(settings: &TlsSettings) -> Result<Option<Tls>> {
        let (Some(cert_file), Some(key_file)) = (&settings.cert_file, &settings.key_file) else {
            return Ok(None);
        };
        let read = |path: &PathBuf, key: &str| {
            std::fs::read(path).map_err(|e| {
                Error::Config(format!("tls.{key}: cannot read {}: {e}", path.display()))
            })
        };
        let cert_pem = read(cert_file, "cert_file")?;
        let key_pem = read(key_file, "key_file")?;
        let client_ca_pem =
            settings.client_ca_file.as_ref().map(|p| read(p, "client_ca_file")).transpose()?;
        let ca_pem = settings.ca_file.as_ref().map(|p| read(p, "ca_file")).transpose()?;
        let server = server_config(&cert_pem, &key_pem, client_ca_pem.as_deref())?;
        if let Some(ca) = &ca_pem {
            certificates(ca, "ca_file")?;
        }
        Ok(Some(Tls { server: Arc::new(server), cert_pem, key_pem, client_ca_pem, ca_pem }))
    }

    /// The REST door's acceptor (HTTP/2 and HTTP/1.1 by ALPN).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    /// The gRPC door's TLS.
    pub fn grpc_server(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        let config = tonic::transport::ServerTlsConfig::new().identity(identity);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(tonic::transport::Certificate::from_pem(ca)),
            None => config,
        }
    }

    /// How this node's calls reach peers' gRPC doors: verified against the CA (else the system
    /// roots), with this node's certificate for peers that ask for one.
    pub fn grpc_client(&self) -> tonic::transport::ClientTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        let config = tonic::transport::ClientTlsConfig::new().identity(identity);
        match &self.ca_pem {
            Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        }
    }

    /// An HTTP client that trusts the CA too and presents this node's certificate.
    pub fn http_client(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder> {
        let mut identity = self.cert_pem.clone();
        identity.push(b'\n');
        identity.extend_from_slice(&self.key_pem);
        let identity = reqwest::Identity::from_pem(&identity)
            .map_err(|e| Error::Config(format!("tls: the certificate and key do not load: {e}")))?;
        let mut builder = builder.identity(identity);
        if let Some(ca) = &self.ca_pem {
            let ca = reqwest::Certificate::from_pem(ca)
                .map_err(|e| Error::Config(format!("tls.ca_file: {e}")))?;
            builder = builder.add_root_certificate(ca);
        }
        Ok(builder)
    }
}

fn certificates(pem: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("tls.{key}: not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("tls.{key}: holds no certificate")));
    }
    Ok(certs)
}

fn server_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> Result<rustls::ServerConfig> {
    let certs = certificates(cert, "cert_file")?;
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| Error::Config(format!("tls.key_file: not a PEM private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca, "client_ca_file")? {
                roots.add(cert).map_err(|e| Error::Config(format!("tls.client_ca_file: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::Config(format!("tls.client_ca_file: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        Error::Config(format!("tls: the certificate and key do not belong together: {e}"))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The files `gridnode tls init` writes.
#[derive(Debug, Clone)]
pub struct Made {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `gridnode tls init`: a CA, and a node certificate signed by it for `hosts` (names and
/// addresses), valid ten years, for both server and client use. Keys are written 0600; no file
/// is overwritten.
pub fn init(out: &Path, hosts: &[String]) -> Result<Made> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let hosts: Vec<String> =
        hosts.iter().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() {
        return Err(Error::BadRequest(
            "give the node's names and addresses: --hosts h1,h2,IP".into(),
        ));
    }
    let made = Made {
        ca: out.join("ca.pem"),
        ca_key: out.join("ca-key.pem"),
        cert: out.join("node.pem"),
        key: out.join("node-key.pem"),
    };
    for path in [&made.ca, &made.ca_key, &made.cert, &made.key] {
        if path.exists() {
            return Err(Error::BadRequest(format!(
                "{} exists already: tls init does not overwrite; pick another --out",
                path.display()
            )));
        }
    }
    let failed = |e: rcgen::Error| Error::Internal(format!("cannot make the certificates: {e}"));
    let year = 1970 + (gridnode_store::now_ms() / 1000 / 31_557_600) as i32;
    let (from, until) =
        (rcgen::date_time_ymd(year - 1, 1, 1), rcgen::date_time_ymd(year + 10, 1, 1));

    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "gridnode CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca.not_before, ca.not_after) = (from, until);
    let ca_key = KeyPair::generate().map_err(failed)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;

    let mut node = CertificateParams::new(hosts.clone()).map_err(|e| {
        Error::BadRequest(format!("--hosts: {e} (names and IP addresses, comma-separated)"))
    })?;
    node.distinguished_name.push(DnType::CommonName, hosts[0].clone());
    node.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    node.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    (node.not_before, node.not_after) = (from, until);
    let node_key = KeyPair::generate().map_err(failed)?;
    let node_cert = node.signed_by(&node_key, &ca_cert, &ca_key).map_err(failed)?;

    std::fs::create_dir_all(out)
        .map_err(|e| Error::io(format!("cannot create {}", out.display()), e))?;
    write(&made.ca, &ca_cert.pem(), 0o644)?;
    write(&made.ca_key, &ca_key.serialize_pem(), 0o600)?;
    write(&made.cert, &node_cert.pem(), 0o644)?;
    write(&made.key, &node_key.serialize_pem(), 0o600)?;
    Ok(made)
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_a_ca_and_a_node_certificate_that_load() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tls");
        let made = init(&out, &["node1.example".into(), "127.0.0.1".into()]).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for key in [&made.ca_key, &made.key] {
            assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let settings = TlsSettings {
            cert_file: Some(made.cert.clone()),
            key_file: Some(made.key.clone()),
            client_ca_file: Some(made.ca.clone()),
            ca_file: Some(made.ca.clone()),
        };
        assert!(Tls::load(&settings).unwrap().is_some());
        assert!(init(&out, &["x".into()]).is_err(), "never overwrites");
        assert!(init(&dir.path().join("none"), &[]).is_err());
        let swapped = TlsSettings { key_file: Some(made.ca_key), ..settings };
        assert!(Tls::load(&swapped).unwrap_err().to_string().contains("do not belong"));
    }
}
