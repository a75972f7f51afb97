//! The API address checks: where the address ironctl uses (and the daemon's bind
//! address, when known) points — loopback, this host's tailscale interface, carrier-grade
//! NAT space, a private LAN, every interface, or the internet (`api address`) — and
//! whether operator tokens would cross a network in clear text (`tls or tailnet`).
//!
//! Not for: reaching the daemon ([`super::daemon`]) or reading the env file the bind
//! address may come from ([`super::env_file`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::finding::{fail, not_checked, pass, warn, Check};
use super::probe::{find_on_path, run_with_timeout};

/// Where an address points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AddrClass {
    Loopback,
    /// Tailscale's ranges, 100.64.0.0/10 or fd7a:115c:a1e0::/48, on a `tailscale*`
    /// interface of this host. [`classify`] says only "in the range";
    /// [`AddrFacts`] confirms it against the interfaces.
    Tailnet,
    /// In Tailscale's ranges but not on a `tailscale*` interface here: 100.64.0.0/10
    /// is also the shared address space of ISP and cloud carrier-grade NAT, so it may
    /// well be a network anyone on it can read.
    Shared,
    /// RFC 1918, IPv6 unique-local or link-local.
    Private,
    /// 0.0.0.0 / `::`: every interface.
    Unspecified,
    Public,
}

pub fn classify(ip: IpAddr) -> AddrClass {
    let v4 = |a: Ipv4Addr| {
        let o = a.octets();
        if a.is_loopback() {
            AddrClass::Loopback
        } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
            AddrClass::Tailnet
        } else if a.is_private() || a.is_link_local() {
            AddrClass::Private
        } else if a.is_unspecified() {
            AddrClass::Unspecified
        } else {
            AddrClass::Public
        }
    };
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => {
            if let Some(m) = a.to_ipv4_mapped() {
                return v4(m);
            }
            let s = a.segments();
            if a.is_loopback() {
                AddrClass::Loopback
            } else if s[0] == 0xfd7a && s[1] == 0x115c && s[2] == 0xa1e0 {
                AddrClass::Tailnet
            } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80 {
                AddrClass::Private
            } else if a == Ipv6Addr::UNSPECIFIED {
                AddrClass::Unspecified
            } else {
                AddrClass::Public
            }
        }
    }
}

/// The API address as ironctl reaches it, and the daemon's bind address if known.
#[derive(Debug, Clone)]
pub struct AddrFacts {
    pub url: String,
    pub https: bool,
    /// What the URL's host resolves to.
    pub resolved: Result<Vec<IpAddr>, String>,
    /// `IRONCLAW_API_ADDR` from the daemon's env file or this environment.
    pub bind: Option<String>,
    /// The addresses of this host's `tailscale*` interfaces.
    pub tailscale: Vec<IpAddr>,
}

impl AddrFacts {
    /// Where `ip` points, with a tailnet address confirmed against this host's
    /// `tailscale*` interfaces.
    fn class(&self, ip: IpAddr) -> AddrClass {
        match classify(ip) {
            AddrClass::Tailnet if !self.tailscale.contains(&ip) => AddrClass::Shared,
            c => c,
        }
    }

    /// The least private class among the resolved addresses.
    fn worst(&self) -> Option<AddrClass> {
        self.resolved
            .as_ref()
            .ok()
            .and_then(|ips| ips.iter().map(|ip| self.class(*ip)).max())
    }
}

const SHARED_FIX: &str = "use the address of this host's tailscale interface (ip -4 addr show tailscale0), or TLS; run doctor on the daemon's host";

pub fn check_address(f: &AddrFacts) -> Check {
    const N: &str = "api address";
    let fix_bind = "bind the daemon to its tailnet IP (--api-addr 100.x.y.z:8787) or 127.0.0.1, and firewall the port";
    // A bind address that is fine for the URL's check but not confirmed on its own.
    let mut bind_note = None;
    if let Some(bind) = &f.bind {
        match bind.parse::<SocketAddr>() {
            Ok(sa) => match f.class(sa.ip()) {
                AddrClass::Public => {
                    return fail(
                        N,
                        format!("the daemon binds {bind}, a public address"),
                        fix_bind,
                    )
                }
                AddrClass::Unspecified => {
                    return fail(
                        N,
                        format!("the daemon binds {bind}: every interface, public ones included"),
                        fix_bind,
                    )
                }
                AddrClass::Shared => {
                    bind_note = Some(warn(
                        N,
                        format!(
                            "the daemon binds {bind}, in 100.64.0.0/10 but not on a tailscale interface of this host: that range is also carrier-grade NAT space"
                        ),
                        SHARED_FIX,
                    ))
                }
                _ => {}
            },
            Err(e) => {
                return fail(
                    N,
                    format!("IRONCLAW_API_ADDR={bind} is not an address: {e}"),
                    "set it to IP:PORT",
                )
            }
        }
    }
    let ips = match &f.resolved {
        Ok(ips) if !ips.is_empty() => ips,
        Ok(_) => return fail(N, format!("{} resolves to nothing", f.url), "check --addr"),
        Err(e) => return fail(N, format!("{}: {e}", f.url), "check --addr / IRONCLAW_ADDR"),
    };
    let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    let shown = shown.join(", ");
    match f.worst() {
        Some(AddrClass::Public) => fail(
            N,
            format!(
                "{} is a public address ({shown}): the API must not face the internet",
                f.url
            ),
            fix_bind,
        ),
        Some(AddrClass::Unspecified) => fail(
            N,
            format!("{} points at every interface ({shown})", f.url),
            fix_bind,
        ),
        Some(AddrClass::Private) => warn(
            N,
            format!(
                "{} is a private LAN address ({shown}): anyone on that network can reach the API",
                f.url
            ),
            "prefer the tailnet IP (100.64.0.0/10) or loopback",
        ),
        Some(AddrClass::Shared) => warn(
            N,
            format!(
                "{} is in Tailscale's range ({shown}) but not on a tailscale interface of this host: 100.64.0.0/10 is also ISP and cloud carrier-grade NAT space",
                f.url
            ),
            SHARED_FIX,
        ),
        _ if bind_note.is_some() => bind_note.unwrap_or_else(|| not_checked(N)),
        Some(AddrClass::Loopback) | None if f.bind.is_none() => warn(
            N,
            format!(
                "{} is loopback ({shown}), but the daemon's bind address is unknown: it may listen on other interfaces too",
                f.url
            ),
            "pass --env-file with the daemon's env file (or set IRONCLAW_API_ADDR to its --api-addr) so doctor can check it",
        ),
        Some(AddrClass::Tailnet) => pass(
            N,
            format!("{} is on this host's tailscale interface ({shown})", f.url),
        ),
        Some(AddrClass::Loopback) | None => pass(N, format!("{} is loopback ({shown})", f.url)),
    }
}

pub fn check_transport(f: &AddrFacts) -> Check {
    const N: &str = "tls or tailnet";
    if f.https {
        return pass(N, "HTTPS");
    }
    match f.worst() {
        Some(AddrClass::Loopback) => pass(N, "plain HTTP on loopback: it never leaves this host"),
        Some(AddrClass::Tailnet) => pass(
            N,
            "plain HTTP to this host's tailscale interface (WireGuard-encrypted)",
        ),
        Some(AddrClass::Shared) => warn(
            N,
            "plain HTTP to an address in 100.64.0.0/10 that is not on a tailscale interface of this host: it may cross carrier-grade NAT in clear text",
            SHARED_FIX,
        ),
        None => fail(
            N,
            "not checked: the address did not resolve",
            "fix the `api address` check first",
        ),
        Some(_) => fail(
            N,
            "plain HTTP across a network: operator tokens travel in clear text",
            "serve TLS (--tls-cert/--tls-key, then https://) or reach the daemon over the tailnet",
        ),
    }
}

/// The addresses of interfaces named `tailscale*`, from `ip -o addr show` (both
/// families), or for IPv6 alone from `/proc/net/if_inet6` when `ip` is missing.
fn probe_tailscale() -> Vec<IpAddr> {
    let ip = find_on_path("ip").or_else(|| {
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    });
    if let Some(ip) = ip {
        if let Ok(out) = run_with_timeout(
            Command::new(ip).args(["-o", "addr", "show"]),
            Duration::from_secs(5),
        ) {
            return parse_ip_addr(&out);
        }
    }
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|t| parse_if_inet6(&t))
        .unwrap_or_default()
}

fn tailscale_name(name: &str) -> bool {
    name.split('@')
        .next()
        .unwrap_or("")
        .starts_with("tailscale")
}

/// `ip -o addr show`: `3: tailscale0    inet 100.101.1.2/32 scope global …`.
fn parse_ip_addr(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _index = f.next()?;
            let name = f.next()?;
            let family = f.next()?;
            let addr = f.next()?;
            (tailscale_name(name) && (family == "inet" || family == "inet6"))
                .then(|| addr.split('/').next()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// `/proc/net/if_inet6`: `fd7a115ca1e0…0001 03 80 00 80 tailscale0`.
fn parse_if_inet6(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (hex, name) = (f.first()?, f.get(5)?);
            if !tailscale_name(name) || hex.len() != 32 {
                return None;
            }
            let n = u128::from_str_radix(hex, 16).ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(n)))
        })
        .collect()
}

pub(super) fn probe_addr(addr: &str, bind: Option<String>) -> AddrFacts {
    let uri: Result<ureq::http::Uri, _> = addr.parse();
    let (https, resolved) = match uri {
        Ok(u) => {
            let https = u.scheme_str() == Some("https");
            let port = u.port_u16().unwrap_or(if https { 443 } else { 80 });
            let resolved = match u.host() {
                Some(h) => {
                    let h = h.trim_start_matches('[').trim_end_matches(']');
                    (h, port)
                        .to_socket_addrs()
                        .map(|it| it.map(|sa| sa.ip()).collect())
                        .map_err(|e| format!("cannot resolve {h}: {e}"))
                }
                None => Err("no host in the address".to_owned()),
            };
            (https, resolved)
        }
        Err(e) => (false, Err(format!("not a URL: {e}"))),
    };
    AddrFacts {
        url: addr.to_owned(),
        https,
        resolved,
        bind: bind.or_else(|| {
            std::env::var("IRONCLAW_API_ADDR")
                .ok()
                .filter(|v| !v.is_empty())
        }),
        tailscale: probe_tailscale(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::level;
    use crate::doctor::finding::Level;

    #[test]
    fn addresses_are_classified() {
        let c = |s: &str| classify(s.parse().unwrap());
        assert_eq!(c("127.0.0.1"), AddrClass::Loopback);
        assert_eq!(c("::1"), AddrClass::Loopback);
        assert_eq!(c("100.64.0.1"), AddrClass::Tailnet);
        assert_eq!(c("100.127.255.254"), AddrClass::Tailnet);
        assert_eq!(c("100.128.0.1"), AddrClass::Public);
        assert_eq!(c("100.63.255.255"), AddrClass::Public);
        assert_eq!(c("fd7a:115c:a1e0::1"), AddrClass::Tailnet);
        assert_eq!(c("10.1.2.3"), AddrClass::Private);
        assert_eq!(c("172.16.0.1"), AddrClass::Private);
        assert_eq!(c("172.32.0.1"), AddrClass::Public);
        assert_eq!(c("192.168.1.1"), AddrClass::Private);
        assert_eq!(c("fd00::1"), AddrClass::Private);
        assert_eq!(c("fe80::1"), AddrClass::Private);
        assert_eq!(c("0.0.0.0"), AddrClass::Unspecified);
        assert_eq!(c("::"), AddrClass::Unspecified);
        assert_eq!(c("8.8.8.8"), AddrClass::Public);
        assert_eq!(c("2001:db8::1"), AddrClass::Public);
        assert_eq!(c("::ffff:127.0.0.1"), AddrClass::Loopback);
    }

    fn addr(url: &str, ips: &[&str], bind: Option<&str>) -> AddrFacts {
        AddrFacts {
            url: url.into(),
            https: url.starts_with("https:"),
            resolved: Ok(ips.iter().map(|s| s.parse().unwrap()).collect()),
            bind: bind.map(str::to_owned),
            tailscale: Vec::new(),
        }
    }

    /// `f` on a host whose tailscale interface has `ips`.
    fn on_tailscale(mut f: AddrFacts, ips: &[&str]) -> AddrFacts {
        f.tailscale = ips.iter().map(|s| s.parse().unwrap()).collect();
        f
    }

    #[test]
    fn address_branches() {
        let l = |f: AddrFacts| level(check_address(&f));
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("127.0.0.1:8787")
            )),
            Level::Pass
        );
        // A loopback URL says nothing about where else the daemon listens.
        assert_eq!(
            l(addr("http://127.0.0.1:8787", &["127.0.0.1"], None)),
            Level::Warn
        );
        // 100.64.0.0/10 is a tailnet only on a tailscale interface; it is also CGNAT.
        assert_eq!(
            l(on_tailscale(
                addr("http://h:8787", &["100.100.1.2"], None),
                &["100.100.1.2"]
            )),
            Level::Pass
        );
        assert_eq!(
            l(addr("http://h:8787", &["100.100.1.2"], None)),
            Level::Warn
        );
        assert_eq!(
            l(on_tailscale(
                addr("http://h:8787", &["100.100.1.2"], None),
                &["100.100.9.9"]
            )),
            Level::Warn
        );
        assert_eq!(
            l(addr("http://h:8787", &["192.168.1.5"], None)),
            Level::Warn
        );
        assert_eq!(
            l(addr("http://h:8787", &["203.0.113.9"], None)),
            Level::Fail
        );
        // One public address among private ones is enough to fail.
        assert_eq!(
            l(addr("http://h:8787", &["10.0.0.1", "203.0.113.9"], None)),
            Level::Fail
        );
        assert_eq!(
            l(addr("http://0.0.0.0:8787", &["0.0.0.0"], None)),
            Level::Fail
        );
        // The daemon's own bind address, when known, counts too.
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("0.0.0.0:8787")
            )),
            Level::Fail
        );
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("8.8.8.8:8787")
            )),
            Level::Fail
        );
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("nonsense")
            )),
            Level::Fail
        );
        assert_eq!(
            l(on_tailscale(
                addr(
                    "http://127.0.0.1:8787",
                    &["127.0.0.1"],
                    Some("100.70.0.1:8787")
                ),
                &["100.70.0.1"]
            )),
            Level::Pass
        );
        assert_eq!(
            l(addr(
                "http://127.0.0.1:8787",
                &["127.0.0.1"],
                Some("100.70.0.1:8787")
            )),
            Level::Warn
        );
        let mut unresolved = addr("http://nowhere:8787", &[], None);
        assert_eq!(l(unresolved.clone()), Level::Fail);
        unresolved.resolved = Err("cannot resolve".into());
        assert_eq!(l(unresolved), Level::Fail);
    }

    #[test]
    fn transport_branches() {
        let l = |f: AddrFacts| level(check_transport(&f));
        assert_eq!(
            l(addr("https://h:8787", &["203.0.113.9"], None)),
            Level::Pass
        );
        assert_eq!(
            l(addr("http://127.0.0.1:8787", &["127.0.0.1"], None)),
            Level::Pass
        );
        assert_eq!(
            l(on_tailscale(
                addr("http://h:8787", &["100.100.1.2"], None),
                &["100.100.1.2"]
            )),
            Level::Pass
        );
        // Plain HTTP to CGNAT space is not WireGuard-encrypted just by its range.
        assert_eq!(
            l(addr("http://h:8787", &["100.100.1.2"], None)),
            Level::Warn
        );
        assert_eq!(
            l(addr("http://h:8787", &["192.168.1.5"], None)),
            Level::Fail
        );
        assert_eq!(
            l(addr("http://h:8787", &["203.0.113.9"], None)),
            Level::Fail
        );
        let mut unresolved = addr("http://nowhere", &[], None);
        unresolved.resolved = Err("x".into());
        assert_eq!(l(unresolved), Level::Fail);
    }

    #[test]
    fn tailscale_interfaces_are_read() {
        let ip = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
3: tailscale0    inet 100.101.1.2/32 scope global tailscale0\\       valid_lft forever
3: tailscale0    inet6 fd7a:115c:a1e0::1/128 scope global \\       valid_lft forever
4: eth0@if9    inet 100.64.0.7/10 brd 100.127.255.255 scope global eth0
";
        let want: Vec<IpAddr> = vec![
            "100.101.1.2".parse().unwrap(),
            "fd7a:115c:a1e0::1".parse().unwrap(),
        ];
        assert_eq!(parse_ip_addr(ip), want);
        let proc = "00000000000000000000000000000001 01 80 10 80       lo
fd7a115ca1e000000000000000000001 03 80 00 80 tailscale0
fd7a115ca1e000000000000000000002 04 80 00 80     eth0
";
        assert_eq!(
            parse_if_inet6(proc),
            vec!["fd7a:115c:a1e0::1".parse::<IpAddr>().unwrap()]
        );
    }
}
