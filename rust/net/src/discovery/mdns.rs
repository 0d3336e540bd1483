//! mDNS on the LAN (RFC 6762/6763, through the `mdns-sd` crate, which runs a thread of its
//! own): a node announces `_i6p._udp.local.` under its public key's text form, with its port
//! and addresses, and browses for the others, so a peer on the same link is found by its key
//! within seconds and without any server.
//!
//! The instance name is the key (52 z-base-32 characters, within DNS's 63 per label) and the
//! TXT record repeats it (`pk`) with the protocol version (`v`). What is heard is a hint like
//! any address: a neighbour can announce any key at any address, and TLS checks the identity
//! wherever the node dials. Bounded: [`MAX_PEERS`] peers heard, [`MAX_ADDRS`] addresses each.

use i6p_core::{PeerId, PublicKey, PROTOCOL_VERSION};
use mdns_sd::{ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The service type every node announces.
pub const SERVICE: &str = "_i6p._udp.local.";
/// Most peers remembered from announcements (the least recently heard go first).
pub const MAX_PEERS: usize = 256;
/// Most addresses remembered per peer.
pub const MAX_ADDRS: usize = 16;

/// A peer heard on the LAN.
#[derive(Debug, Clone)]
struct Heard {
    addrs: Vec<SocketAddr>,
    at: Instant,
}

/// A node's mDNS announcer and listener.
pub struct Mdns {
    daemon: ServiceDaemon,
    me: PeerId,
    heard: Mutex<HashMap<PeerId, Heard>>,
    /// Wakes [`Self::wait_for`] when a peer is heard.
    news: tokio::sync::Notify,
}

impl std::fmt::Debug for Mdns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mdns")
            .field("me", &self.me.short())
            .finish()
    }
}

impl Mdns {
    /// Announces `key` at `port` on every multicast-capable interface (their addresses, kept
    /// current by the daemon) and starts listening. Must run inside tokio.
    pub fn start(key: PublicKey, port: u16) -> crate::error::Result<Arc<Self>> {
        let fail = |e: mdns_sd::Error| crate::error::NetError::Config(format!("mDNS: {e}"));
        let daemon = ServiceDaemon::new().map_err(fail)?;
        let name = key.to_string();
        let host = format!("{name}.local.");
        let version = PROTOCOL_VERSION.to_string();
        let properties = [("pk", name.as_str()), ("v", version.as_str())];
        let info = ServiceInfo::new(SERVICE, &name, &host, (), port, &properties[..])
            .map_err(fail)?
            .enable_addr_auto();
        daemon.register(info).map_err(fail)?;
        let events = daemon.browse(SERVICE).map_err(fail)?;
        let mdns = Arc::new(Self {
            daemon,
            me: key.peer_id(),
            heard: Mutex::default(),
            news: tokio::sync::Notify::new(),
        });
        let listener = Arc::downgrade(&mdns);
        tokio::spawn(async move {
            while let Ok(event) = events.recv_async().await {
                let Some(mdns) = listener.upgrade() else {
                    return;
                };
                if let ServiceEvent::ServiceResolved(service) = event {
                    mdns.heard(&service);
                }
            }
        });
        Ok(mdns)
    }

    /// The addresses `peer` announced, if it was heard.
    pub fn addrs(&self, peer: &PeerId) -> Vec<SocketAddr> {
        self.lock()
            .get(peer)
            .map(|h| h.addrs.clone())
            .unwrap_or_default()
    }

    /// The addresses of `peer` once it is heard, waiting up to `patience` (the browse asks
    /// the LAN again every few seconds); empty if it was not heard in time.
    pub async fn wait_for(&self, peer: &PeerId, patience: Duration) -> Vec<SocketAddr> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let news = self.news.notified();
            let addrs = self.addrs(peer);
            if !addrs.is_empty() {
                return addrs;
            }
            if tokio::time::timeout_at(deadline, news).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Sends the goodbye (the announcement withdrawn) and stops the daemon's thread.
    pub fn shutdown(&self) {
        let _ = self.daemon.shutdown();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Heard>> {
        self.heard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a resolved announcement whose name and `pk` agree on a valid key.
    fn heard(&self, service: &ResolvedService) {
        let Some(key) = announced_key(service) else {
            return;
        };
        let peer = key.peer_id();
        if peer == self.me {
            return;
        }
        let mut addrs: Vec<SocketAddr> = service
            .get_addresses()
            .iter()
            .filter_map(|ip| socket_addr(ip, service.port))
            .collect();
        addrs.sort_by_key(|a| (a.is_ipv4(), a.ip().is_loopback()));
        addrs.truncate(MAX_ADDRS);
        if addrs.is_empty() {
            return;
        }
        let mut heard = self.lock();
        if !heard.contains_key(&peer) && heard.len() >= MAX_PEERS {
            let stalest = heard.iter().min_by_key(|(_, h)| h.at).map(|(p, _)| *p);
            if let Some(stalest) = stalest {
                heard.remove(&stalest);
            }
        }
        heard.insert(
            peer,
            Heard {
                addrs,
                at: Instant::now(),
            },
        );
        drop(heard);
        self.news.notify_waiters();
    }
}

/// The key of an announcement: its `pk` property, which must name the instance too.
fn announced_key(service: &ResolvedService) -> Option<PublicKey> {
    let text = service.get_property_val_str("pk")?;
    let key = text.parse::<PublicKey>().ok()?;
    let instance = service.fullname.strip_suffix(SERVICE)?.strip_suffix('.')?;
    instance.eq_ignore_ascii_case(text).then_some(key)
}

/// A dialable address: IPv6 link-local ones keep the interface they were heard on.
fn socket_addr(ip: &ScopedIp, port: u16) -> Option<SocketAddr> {
    if port == 0 {
        return None;
    }
    let addr = match ip {
        ScopedIp::V6(v6) if v6.addr().is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(*v6.addr(), port, 0, v6.scope_id().index))
        }
        other => SocketAddr::new(other.to_ip_addr(), port),
    };
    let ip: IpAddr = addr.ip();
    (!ip.is_unspecified() && !ip.is_multicast()).then_some(addr)
}
