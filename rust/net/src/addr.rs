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

/// The address a socket bound to `local` sends to for `addr` (IPv4 as IPv4-mapped on an IPv6
/// socket, and back), or `InvalidAddress` for what that socket cannot reach.
pub(crate) fn dialable_from(local: SocketAddr, addr: SocketAddr) -> Result<SocketAddr> {
    // What the socket cannot send to fails now: the kernel would refuse every datagram
    // and the dial would only end at the handshake timeout.
    let bound = local.ip();
    let only_v6 = matches!(bound, IpAddr::V6(v6) if !v6.is_unspecified()
        && v6.to_ipv4_mapped().is_none());
    if only_v6 && addr.ip().to_canonical().is_ipv4() {
        return Err(NetError::InvalidAddress(format!(
            "{addr} is IPv4 but this node is bound to IPv6 {local} only"
        )));
    }
    if bound.is_loopback() && !addr.ip().to_canonical().is_loopback() {
        return Err(NetError::InvalidAddress(format!(
            "{addr} cannot be reached from a node bound to loopback {local}"
        )));
    }
    Ok(match (local, addr) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        (SocketAddr::V4(_), SocketAddr::V6(v6)) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => {
                return Err(NetError::InvalidAddress(format!(
                    "{addr} is IPv6 but this node is bound to IPv4 {local}"
                )))
            }
        },
        _ => addr,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_dial_the_socket_cannot_send_fails_at_once() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        // Dual-stack: IPv4 goes out IPv4-mapped.
        let mapped = super::dialable_from(at("[::]:1"), at("192.0.2.1:9")).unwrap();
        assert_eq!(mapped, at("[::ffff:192.0.2.1]:9"));
        assert_eq!(
            super::dialable_from(at("[::1]:1"), at("[::1]:9")).unwrap(),
            at("[::1]:9")
        );
        for (local, addr) in [
            ("[::1]:1", "127.0.0.1:9"),          // IPv6 only: no IPv4 at all
            ("[::1]:1", "[::ffff:127.0.0.1]:9"), // not even IPv4-mapped
            ("[2001:db8::1]:1", "192.0.2.1:9"),
            ("[::1]:1", "[2001:db8::2]:9"), // loopback reaches only loopback
            ("127.0.0.1:1", "192.0.2.1:9"),
            ("0.0.0.0:1", "[2001:db8::2]:9"), // an IPv4 socket has no IPv6
        ] {
            let e = super::dialable_from(at(local), at(addr)).unwrap_err();
            assert!(
                matches!(e, NetError::InvalidAddress(_)),
                "{local} -> {addr}: {e}"
            );
        }
    }
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
