//! Which web origins may send requests (contract section 14): the node's own — its advertised
//! URL, the address it is bound to and, on loopback, `localhost` — and those listed in
//! `[http] allowed_origins`. A page from anywhere else cannot make a browser write to the node
//! (CSRF), even through a host name that rebinds to the node's address: the `Host` header is
//! never trusted for this.

use std::collections::HashSet;
use std::net::SocketAddr;

/// The origins a node accepts.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    allowed: HashSet<String>,
}

impl Origins {
    /// The node's own origins (from `advertise_http` and the bound address) and `configured`
    /// (already checked by the config's validation).
    pub fn new(advertise_http: &str, bound: SocketAddr, configured: &[String]) -> Origins {
        let mut allowed: HashSet<String> =
            configured.iter().filter_map(|o| parse(o).ok()).collect();
        allowed.extend(parse(advertise_http).ok());
        let port = bound.port();
        let mut hosts = vec![bound.ip().to_string()];
        if bound.ip().is_loopback() {
            hosts.extend(["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned()]);
        }
        for host in hosts {
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host
            };
            for scheme in ["http", "https"] {
                allowed.insert(format!("{scheme}://{host}:{port}"));
            }
        }
        Origins { allowed }
    }

    /// Whether a request's `Origin` header value is accepted.
    pub fn allows(&self, origin: &[u8]) -> bool {
        std::str::from_utf8(origin)
            .ok()
            .and_then(|text| parse(text).ok())
            .is_some_and(|origin| self.allowed.contains(&origin))
    }
}

/// An origin in its canonical form: `scheme://host:port`, lowercase, with the scheme's default
/// port written out. Anything else (a path, a user, `null`) is an error.
pub fn parse(origin: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "'{}' is not an origin: write scheme://host[:port], e.g. https://console.example.com",
            origin.chars().take(128).collect::<String>()
        )
    };
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad()),
    };
    if rest.is_empty() || rest.contains(['/', '@', '?', '#', ' ']) {
        return Err(bad());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (rest, default_port),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(format!("{scheme}://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_configured_and_loopback_origins_are_accepted_and_others_refused() {
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let origins =
            Origins::new("http://127.0.0.1:8080", bound, &["https://ui.example.com".into()]);
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "https://ui.example.com:443",
            "HTTPS://UI.example.com",
            "http://[::1]:8080",
        ] {
            assert!(origins.allows(ok.as_bytes()), "{ok}");
        }
        for refused in [
            "http://evil.example",
            "http://localhost:8081",
            "null",
            "",
            "http://127.0.0.1:8080/x",
            "file://",
            "http://user@127.0.0.1:8080",
        ] {
            assert!(!origins.allows(refused.as_bytes()), "{refused}");
        }
        let wide: SocketAddr = "0.0.0.0:9000".parse().unwrap();
        let origins = Origins::new("https://node1.example:9000", wide, &[]);
        assert!(origins.allows(b"https://node1.example:9000"));
        assert!(!origins.allows(b"http://localhost:9000"), "not bound on loopback");
        assert!(parse("ftp://x").is_err() && parse("http://x:99999").is_err());
    }
}
