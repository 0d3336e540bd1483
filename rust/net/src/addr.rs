//! Address parsing and the addresses a node advertises.
//!
//! Accepts `[v6]:port`, `[v6%scope]:port` (numeric scope id, for link-local addresses) and
//! `v4:port`. Names are resolved by the caller.

use crate::error::{NetError, Result};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// Parses a socket address literal, including IPv6 scope ids.
pub fn parse_addr(text: &str) -> Result<SocketAddr> {
    let bad = |why: &str| NetError::InvalidAddress(format!("{text:?}: {why}"));
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("expected [host]:port"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let (ip, scope) = match host.split_once('%') {
            Some((ip, scope)) => (
                ip,
                scope
                    .parse::<u32>()
                    .map_err(|_| bad("scope id must be a number"))?,
            ),
            None => (host, 0),
        };
        let ip: Ipv6Addr = ip.parse().map_err(|_| bad("not an IPv6 address"))?;
        return Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| bad("expected [v6]:port or v4:port"))
}

/// Formats an address as `[host]:port` (IPv6, with `%scope` when set) or `host:port` (IPv4).
pub fn format_addr(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) if a.scope_id() != 0 => {
            format!("[{}%{}]:{}", a.ip(), a.scope_id(), a.port())
        }
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Maps an IPv4-mapped IPv6 address (seen on dual-stack sockets) back to plain IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Addresses at which other nodes can reach a socket bound to `bound`.
///
/// A socket bound to an unspecified address listens on every interface: list the interface
/// addresses (global first, loopback last; link-local ones with their scope id). An IPv6
/// wildcard socket is dual-stack, so IPv4 interface addresses are listed too.
pub fn reachable_addrs(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let port = bound.port();
    let want_v4 = true; // dual-stack IPv6 wildcard, or an IPv4 wildcard
    let want_v6 = bound.is_ipv6();
    let mut out: Vec<(u8, SocketAddr)> = Vec::new();
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        for iface in ifaces {
            let ip = iface.ip();
            let rank = match ip {
                IpAddr::V6(v6) if want_v6 => {
                    if v6.is_loopback() {
                        4
                    } else if v6.is_unicast_link_local() {
                        let scope = iface.index.unwrap_or(0);
                        out.push((3, SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope))));
                        continue;
                    } else {
                        0
                    }
                }
                IpAddr::V4(v4) if want_v4 => {
                    if v4.is_loopback() {
                        5
                    } else if v4.is_link_local() {
                        3
                    } else {
                        1
                    }
                }
                _ => continue,
            };
            out.push((rank, SocketAddr::new(ip, port)));
        }
    }
    out.sort_by_key(|(rank, _)| *rank);
    out.dedup_by_key(|(_, a)| *a);
    out.into_iter().map(|(_, a)| a).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!(parse_addr("[::1]:5").unwrap(), "[::1]:5".parse().unwrap());
        assert_eq!(
            parse_addr("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        let ll = parse_addr("[fe80::1%3]:7").unwrap();
        match ll {
            SocketAddr::V6(a) => assert_eq!(a.scope_id(), 3),
            _ => panic!("not v6"),
        }
        assert_eq!(format_addr(&ll), "[fe80::1%3]:7");
        for bad in [
            "",
            "::1",
            "[::1]",
            "[::1]:x",
            "[::1%eth0]:1",
            "1.2.3.4",
            "[1.2.3.4]:5",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mapped_addresses_become_v4() {
        let a: SocketAddr = "[::ffff:127.0.0.1]:8".parse().unwrap();
        assert_eq!(canonical(a), "127.0.0.1:8".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn wildcard_lists_loopback_last() {
        let addrs = reachable_addrs("[::]:4000".parse().unwrap());
        assert!(addrs.iter().all(|a| a.port() == 4000));
        if let Some(last) = addrs.last() {
            assert!(last.ip().is_loopback());
        }
    }
}
