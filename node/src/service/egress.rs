//! Where the node itself may connect (contract section 14): the HTTP calls it makes for remote
//! tools, functions and blob fetches. A destination on a loopback, link-local (cloud metadata
//! included), unspecified or multicast address is refused — and, with `deny_private`, one on a
//! private (RFC 1918, unique-local) address — unless `[egress] allow` lists it. Loopback is
//! allowed on a node whose listeners are all on loopback (a developer's tool server on
//! localhost).
//!
//! The check is made on the address actually connected to: the HTTP client resolves names
//! through [`Resolver`], which drops refused addresses (so a name that resolves to 127.0.0.1 —
//! DNS rebinding — gets nowhere), and a URL whose host is a literal address is checked before
//! any connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Cloud metadata addresses that are not link-local: AWS's IPv6 one, Alibaba's.
const METADATA: [IpAddr; 2] = [
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];

/// A destination refused, as the contract words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress to {0} is not allowed")]
pub struct Refused(pub String);

/// What `[egress] allow` lets through: a network, or one `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Net(IpNet),
    HostPort(String, u16),
}

/// The node's egress rules. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    inner: Arc<Rules>,
}

#[derive(Debug, Default)]
struct Rules {
    loopback: bool,
    deny_private: bool,
    allow: Vec<Allowed>,
}

impl Egress {
    /// The rules of a node: `loopback` when its listeners are all on loopback; `allow` entries
    /// are CIDRs (`10.0.0.0/8`), addresses (`10.1.2.3`) or `host:port` (`tools.internal:8443`).
    pub fn new(loopback: bool, deny_private: bool, allow: &[String]) -> Result<Egress, String> {
        let allow = allow.iter().map(|entry| parse(entry)).collect::<Result<_, _>>()?;
        Ok(Egress { inner: Arc::new(Rules { loopback, deny_private, allow }) })
    }

    /// Whether a connection to `ip` may be made (whatever the name it came from).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let rules = &self.inner;
        let ip = canonical(ip);
        if rules.allow.iter().any(|a| matches!(a, Allowed::Net(net) if net.contains(&ip))) {
            return true;
        }
        if ip.is_loopback() {
            return rules.loopback;
        }
        !(is_link_local(ip)
            || is_unspecified(ip)
            || ip.is_multicast()
            || METADATA.contains(&ip)
            || (rules.deny_private && is_private(ip)))
    }

    /// Whether `host:port` is listed as it is (then every address its name resolves to may
    /// be connected to).
    fn lists(&self, host: &str, port: u16) -> bool {
        self.inner.allow.iter().any(
            |a| matches!(a, Allowed::HostPort(h, p) if h.eq_ignore_ascii_case(host) && *p == port),
        )
    }

    /// Whether a name is listed with some port (the resolver does not see the port; the URL's
    /// is checked by [`Egress::check_url`] first).
    fn lists_name(&self, host: &str) -> bool {
        self.inner
            .allow
            .iter()
            .any(|a| matches!(a, Allowed::HostPort(h, _) if h.eq_ignore_ascii_case(host)))
    }

    /// The check made before a call: a literal address must be allowed; a name listed only
    /// with another port is refused. Names are otherwise checked as they resolve.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let port = url.port_or_known_default().unwrap_or(0);
        let host = url.host_str().unwrap_or_default();
        let refused = Refused(format!("{host}:{port}"));
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) if !self.allows_ip(ip) => Err(refused),
            Ok(_) => Ok(()),
            Err(_) if self.lists_name(host) && !self.lists(host, port) => Err(refused),
            Err(_) => Ok(()),
        }
    }

    /// The HTTP client's resolver under these rules.
    pub fn resolver(&self) -> Arc<Resolver> {
        Arc::new(Resolver { egress: self.clone() })
    }
}

/// Resolves names with the system resolver and keeps only the addresses the rules allow; a
/// name left with none is refused with the first address it resolved to.
#[derive(Debug)]
pub struct Resolver {
    egress: Egress,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.egress.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let listed = egress.lists_name(&host);
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|addr| listed || egress.allows_ip(addr.ip()))
                .collect();
            if allowed.is_empty() {
                let first =
                    found.first().map_or_else(|| host.clone(), |addr| addr.ip().to_string());
                return Err(Box::new(Refused(first)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal in an HTTP client error's chain of causes, if that is why it failed.
pub fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        cause = error.source();
    }
    None
}

fn parse(entry: &str) -> Result<Allowed, String> {
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(Allowed::Net(net));
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(Allowed::Net(IpNet::from(ip)));
    }
    let bad = || {
        format!("egress.allow entry '{entry}' is not a CIDR (10.0.0.0/8), an address or host:port")
    };
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    match host.parse::<IpAddr>() {
        // An address with a port: that address (any port: connections are checked by address).
        Ok(ip) => Ok(Allowed::Net(IpNet::from(ip))),
        Err(_) => Ok(Allowed::HostPort(host.to_ascii_lowercase(), port)),
    }
}

/// An IPv6 address that carries an IPv4 one — mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) — as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let compatible = s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified();
    if nat64 || compatible { IpAddr::V4(embedded) } else { ip }
}

/// Unspecified, and all of `0.0.0.0/8` ("this network").
fn is_unspecified(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_unspecified(),
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn dangerous_destinations_are_refused_unless_listed() {
        let open = Egress::new(false, false, &[]).unwrap();
        for refused in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "0.1.2.3",
            "100.100.100.200",
        ] {
            assert!(!open.allows_ip(ip(refused)), "{refused}");
        }
        for allowed in ["93.184.216.34", "10.1.2.3", "2001:db8::1", "fd12::1"] {
            assert!(open.allows_ip(ip(allowed)), "{allowed}");
        }
        let strict = Egress::new(false, true, &[]).unwrap();
        for private in ["10.1.2.3", "192.168.1.1", "172.16.0.1", "fd12::1"] {
            assert!(!strict.allows_ip(ip(private)), "{private}");
        }
        let laptop = Egress::new(true, false, &[]).unwrap();
        assert!(laptop.allows_ip(ip("127.0.0.1")) && laptop.allows_ip(ip("::1")));
        assert!(!laptop.allows_ip(ip("169.254.169.254")), "metadata stays refused");

        let listed =
            ["127.0.0.0/8".to_owned(), "169.254.169.254".to_owned(), "tools.lan:8443".to_owned()];
        let listed = Egress::new(false, true, &listed).unwrap();
        assert!(listed.allows_ip(ip("127.0.0.2")) && listed.allows_ip(ip("169.254.169.254")));
        assert!(listed.lists("Tools.LAN", 8443) && !listed.lists("tools.lan", 80));
        assert!(listed.allows_ip(ip("::ffff:127.0.0.3")), "listed networks match mapped forms");
    }

    #[test]
    fn urls_are_checked_by_literal_address_and_listed_port() {
        let egress = Egress::new(false, false, &["tools.lan:8443".to_owned()]).unwrap();
        let check = |url: &str| egress.check_url(&reqwest::Url::parse(url).unwrap());
        assert_eq!(
            check("http://169.254.169.254/latest"),
            Err(Refused("169.254.169.254:80".into()))
        );
        assert_eq!(check("https://[::1]:9/x"), Err(Refused("[::1]:9".into())));
        assert_eq!(check("http://tools.lan:8080/"), Err(Refused("tools.lan:8080".into())));
        assert_eq!(check("https://tools.lan:8443/run"), Ok(()));
        assert_eq!(check("https://example.com/run"), Ok(()), "names are checked as they resolve");
    }

    #[test]
    fn allow_entries_are_parsed_or_refused_with_the_entry() {
        for bad in ["", "nonsense", "host:", "host:0", "host:99999", "10.0.0.0/99"] {
            let error = Egress::new(false, false, &[bad.to_owned()]).unwrap_err();
            assert!(error.contains("egress.allow"), "{bad}: {error}");
        }
        assert!(
            Egress::new(false, false, &["[::1]:8080".to_owned(), "10.0.0.0/8".to_owned()]).is_ok()
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_refused_addresses_is_refused() {
        use reqwest::dns::Resolve;
        let resolver = Egress::new(false, false, &[]).unwrap().resolver();
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let error = resolver.resolve(name).await.err().expect("localhost is loopback");
        assert!(refusal(error.as_ref()).is_some(), "{error}");
        let laptop = Egress::new(true, false, &[]).unwrap().resolver();
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(laptop.resolve(name).await.is_ok());
    }
}
