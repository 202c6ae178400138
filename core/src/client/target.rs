//! Target parsing: `host:port`, `dns:[//authority/]host[:port]`,
//! `ipv4:a:p,b:p`, `ipv6:[a]:p,...`, `unix:path`, `unix:///abs/path` and
//! `manual:///name` (addresses from a `ManualResolver`).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::Error;
use crate::transport::Address;

const DEFAULT_PORT: u16 = 443;

/// A parsed target: what to resolve and the default `:authority`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A host name (or literal IP) resolved through DNS on every connection attempt.
    Dns { host: String, port: u16 },
    /// A fixed list of addresses.
    Static(Vec<Address>),
    /// `manual:///name`: addresses come from a `ManualResolver`.
    Manual(String),
}

impl Target {
    pub(crate) fn parse(target: &str) -> Result<(Target, String), Error> {
        let bad = |why: &str| Error::invalid(format!("invalid target {target:?}: {why}"));
        if let Some(rest) = target.strip_prefix("manual:") {
            // manual:///name or manual:name; the name is the default authority.
            let name = rest.strip_prefix("//").map(|r| r.split_once('/').map_or(r, |(_, n)| n)).unwrap_or(rest);
            if name.is_empty() {
                return Err(bad("manual: targets need a name (manual:///name)"));
            }
            return Ok((Target::Manual(name.to_string()), name.to_string()));
        }
        if let Some(rest) = target.strip_prefix("unix:") {
            // unix:relative, unix:/abs, unix:///abs (unix://authority/ is not allowed).
            let path = if let Some(p) = rest.strip_prefix("//") {
                if !p.starts_with('/') {
                    return Err(bad("unix:// targets need an absolute path (unix:///path)"));
                }
                p
            } else {
                rest
            };
            if path.is_empty() {
                return Err(bad("empty unix socket path"));
            }
            return Ok((Target::Static(vec![Address::Unix(PathBuf::from(path))]), "localhost".into()));
        }
        for scheme in ["ipv4:", "ipv6:"] {
            if let Some(rest) = target.strip_prefix(scheme) {
                let mut addrs = Vec::new();
                for part in rest.split(',') {
                    let part = part.trim();
                    let addr: SocketAddr = match part.parse() {
                        Ok(a) => a,
                        Err(_) => {
                            // A bare IP takes the default port.
                            let ip: std::net::IpAddr = part
                                .trim_start_matches('[')
                                .trim_end_matches(']')
                                .parse()
                                .map_err(|_| bad(&format!("{part:?} is not an IP address")))?;
                            SocketAddr::new(ip, DEFAULT_PORT)
                        }
                    };
                    if (scheme == "ipv4:") != addr.is_ipv4() {
                        return Err(bad(&format!("{part:?} is not an {} address", &scheme[..4])));
                    }
                    addrs.push(Address::Tcp(addr));
                }
                if addrs.is_empty() {
                    return Err(bad("no addresses"));
                }
                let authority = rest.split(',').next().unwrap_or_default().trim().to_string();
                return Ok((Target::Static(addrs), authority));
            }
        }
        let hostport = if let Some(rest) = target.strip_prefix("dns:") {
            match rest.strip_prefix("//") {
                // dns://authority/host:port — the DNS server authority is ignored.
                Some(r) => r
                    .split_once('/')
                    .map(|(_, hp)| hp)
                    .ok_or_else(|| bad("dns:// needs dns://[authority]/host[:port]"))?,
                None => rest,
            }
        } else if target.contains("://") {
            return Err(bad("unsupported scheme"));
        } else {
            target
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("expected host[:port]"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let authority = if hostport.contains(']') || host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok((Target::Dns { host, port }, authority))
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => Some((s.to_string(), DEFAULT_PORT)).filter(|_| s.parse::<std::net::Ipv6Addr>().is_ok()),
        None => Some((s.to_string(), DEFAULT_PORT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let (t, a) = Target::parse("localhost:50051").unwrap();
        assert_eq!(t, Target::Dns { host: "localhost".into(), port: 50051 });
        assert_eq!(a, "localhost:50051");
        let (t, _) = Target::parse("dns:///example.com:8080").unwrap();
        assert_eq!(t, Target::Dns { host: "example.com".into(), port: 8080 });
        let (t, a) = Target::parse("dns:example.com").unwrap();
        assert_eq!(t, Target::Dns { host: "example.com".into(), port: 443 });
        assert_eq!(a, "example.com:443");
        let (t, a) = Target::parse("[::1]:9").unwrap();
        assert_eq!(t, Target::Dns { host: "::1".into(), port: 9 });
        assert_eq!(a, "[::1]:9");
        let (t, _) = Target::parse("ipv4:127.0.0.1:1,10.0.0.1:2").unwrap();
        assert_eq!(
            t,
            Target::Static(vec![
                Address::Tcp("127.0.0.1:1".parse().unwrap()),
                Address::Tcp("10.0.0.1:2".parse().unwrap())
            ])
        );
        let (t, _) = Target::parse("ipv6:[::1]:5").unwrap();
        assert_eq!(t, Target::Static(vec![Address::Tcp("[::1]:5".parse().unwrap())]));
        let (t, a) = Target::parse("unix:///tmp/x.sock").unwrap();
        assert_eq!(t, Target::Static(vec![Address::Unix("/tmp/x.sock".into())]));
        assert_eq!(a, "localhost");
        let (t, a) = Target::parse("manual:///svc").unwrap();
        assert_eq!((t, a.as_str()), (Target::Manual("svc".into()), "svc"));
        let (t, _) = Target::parse("unix:rel.sock").unwrap();
        assert_eq!(t, Target::Static(vec![Address::Unix("rel.sock".into())]));
    }

    #[test]
    fn rejects_bad_targets() {
        for bad in [
            "",
            "ipv4:",
            "ipv4:::1",
            "ipv6:127.0.0.1:1",
            "unix:",
            "unix://host/x",
            "http://x:1",
            "host:notaport",
            "dns://x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }
}
