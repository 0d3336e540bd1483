//! Address reflection: what peers say our address is (PEER_INFO, DIALBACK_RESULT), and what
//! dial-backs found, for one local socket. Pure and timing-free; the net crate feeds it.
//!
//! Invariants:
//! - one entry per reporter (its latest report replaces the last), at most [`MAX_REPORTERS`]
//!   reporters (the oldest report goes first), and at most [`MAX_HELPERS_PER_ADDR`]
//!   dial-back answers per address, only for addresses some reporter still reports; so a
//!   peer with unlimited identities cannot grow this beyond a fixed size;
//! - an observed address is trusted once [`TRUST_THRESHOLD`] distinct PeerIds report it;
//! - everything is about one local socket: observations for another one (the node moved to
//!   a new socket) first clear what was known about the old.
//!
//! What a liar can and cannot achieve. Addresses are hints; TLS verifies identity. A peer
//! may report any address: with two identities it can get a false address trusted, and by
//! reporting another port for our IP it can make us believe our mapping is
//! endpoint-dependent (so we would fall back to a relay sooner). A helper may answer any
//! dial-back outcome, so one answer is a hint and [`AddrReport::reached`] /
//! [`AddrReport::unreached`] say how many helpers agreed. A flood of identities can push
//! honest reports out (they come back with the next sessions). None of it can make a node
//! accept a connection from, or deliver data to, the wrong PeerId: every connection's
//! identity is checked by TLS, whatever address it came from.

use crate::peer_id::PeerId;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

/// Distinct reporters that make an observed address trusted.
pub const TRUST_THRESHOLD: usize = 2;
/// Reporters tracked at once (one report each).
pub const MAX_REPORTERS: usize = 32;
/// Dial-back answers kept per address (one per helper).
pub const MAX_HELPERS_PER_ADDR: usize = 8;

/// Whether an address takes unsolicited inbound connections, as dial-backs found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReachStatus {
    /// A helper completed a handshake with us there from a port we never sent to.
    Public,
    /// Helpers' dial-backs did not get through (a stateful firewall or NAT filters).
    Filtered,
    /// No dial-back answer yet.
    Unknown,
}

/// How the NAT in front of the socket maps it, as reflections show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mapping {
    /// Every peer sees the same port for the same IP (endpoint-independent mapping, or no
    /// NAT at all): an address learned from one peer works for others.
    Independent,
    /// Peers see different ports for the same IP (endpoint-dependent mapping): an address
    /// learned from one peer is useless to another; hole punching will not work.
    Dependent,
    /// Fewer than two reporters for the IP.
    Unknown,
}

/// What is known about one observed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrReport {
    /// Our address as peers observe it.
    pub addr: SocketAddr,
    /// Distinct PeerIds that report it now.
    pub reporters: usize,
    /// At least [`TRUST_THRESHOLD`] reporters.
    pub trusted: bool,
    /// The mapping of its IP.
    pub mapping: Mapping,
    /// What dial-backs found.
    pub status: ReachStatus,
    /// Helpers that reached us there.
    pub reached: usize,
    /// Helpers that did not.
    pub unreached: usize,
}

/// The reflections and dial-back answers for one local socket.
#[derive(Debug, Default, Clone)]
pub struct Reflector {
    local: Option<SocketAddr>,
    /// One report per reporter, oldest first.
    reports: VecDeque<(PeerId, SocketAddr)>,
    /// Dial-back answers: (address, helper, reached), one per helper and address.
    answers: Vec<(SocketAddr, PeerId, bool)>,
    /// Trusted addresses already announced by [`Self::observe`] (once each).
    announced: Vec<SocketAddr>,
}

impl Reflector {
    /// An empty reflector, for no socket yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything: the node now uses the socket at `local`.
    pub fn reset(&mut self, local: SocketAddr) {
        *self = Self {
            local: Some(local),
            ..Self::default()
        };
    }

    /// The socket this is about.
    pub fn local(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Records that `reporter` observes our socket `local` at `observed`. Returns `observed`
    /// when this report made it trusted for the first time (the moment to dial back).
    pub fn observe(
        &mut self,
        local: SocketAddr,
        reporter: PeerId,
        observed: SocketAddr,
    ) -> Option<SocketAddr> {
        if self.local != Some(local) {
            self.reset(local);
        }
        self.reports.retain(|(p, _)| *p != reporter);
        if self.reports.len() >= MAX_REPORTERS {
            self.reports.pop_front();
        }
        self.reports.push_back((reporter, observed));
        self.prune();
        let trusted = self.reporters(observed) >= TRUST_THRESHOLD;
        if trusted && !self.announced.contains(&observed) {
            self.announced.push(observed);
            return Some(observed);
        }
        None
    }

    /// Records a dial-back answer of `helper` for `addr` (its latest answer replaces any
    /// earlier one). Ignored unless some reporter reports `addr` for this socket (feed the
    /// helper's own observation to [`Self::observe`] first).
    pub fn record_dial_back(
        &mut self,
        local: SocketAddr,
        helper: PeerId,
        addr: SocketAddr,
        reached: bool,
    ) {
        if self.local != Some(local) || self.reporters(addr) == 0 {
            return;
        }
        self.answers
            .retain(|(a, h, _)| !(*a == addr && *h == helper));
        let for_addr = self.answers.iter().filter(|(a, _, _)| *a == addr).count();
        if for_addr >= MAX_HELPERS_PER_ADDR {
            if let Some(i) = self.answers.iter().position(|(a, _, _)| *a == addr) {
                self.answers.remove(i);
            }
        }
        self.answers.push((addr, helper, reached));
    }

    /// The PeerIds that report `addr` now, oldest report first.
    pub fn reporters_of(&self, addr: SocketAddr) -> Vec<PeerId> {
        self.reports
            .iter()
            .filter(|(_, a)| *a == addr)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The mapping of the IP `ip`: dependent once two reporters see it with different
    /// ports, independent once two see it with the same port and none with another.
    pub fn mapping(&self, ip: IpAddr) -> Mapping {
        let mut ports = self
            .reports
            .iter()
            .filter(|(_, a)| a.ip() == ip)
            .map(|(_, a)| a.port());
        let Some(first) = ports.next() else {
            return Mapping::Unknown;
        };
        let mut same = 1;
        for port in ports {
            if port != first {
                return Mapping::Dependent;
            }
            same += 1;
        }
        if same >= TRUST_THRESHOLD {
            Mapping::Independent
        } else {
            Mapping::Unknown
        }
    }

    /// One report per observed address, the most reported first.
    pub fn report(&self) -> Vec<AddrReport> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for (_, a) in &self.reports {
            if !addrs.contains(a) {
                addrs.push(*a);
            }
        }
        let mut out: Vec<AddrReport> = addrs.into_iter().map(|a| self.report_of(a)).collect();
        out.sort_by(|x, y| y.reporters.cmp(&x.reporters).then(x.addr.cmp(&y.addr)));
        out
    }

    /// True when some address is public by the dial-backs' answers (one helper that reached
    /// it is enough: the node then lets peers dial it directly before trying to punch).
    pub fn is_public(&self) -> bool {
        self.report()
            .iter()
            .any(|r| r.status == ReachStatus::Public)
    }

    fn report_of(&self, addr: SocketAddr) -> AddrReport {
        let reporters = self.reporters(addr);
        let answers = self.answers.iter().filter(|(a, _, _)| *a == addr);
        let reached = answers.clone().filter(|(_, _, r)| *r).count();
        let unreached = answers.filter(|(_, _, r)| !*r).count();
        let status = if reached > 0 && reached >= unreached {
            ReachStatus::Public
        } else if unreached > reached {
            ReachStatus::Filtered
        } else {
            ReachStatus::Unknown
        };
        AddrReport {
            addr,
            reporters,
            trusted: reporters >= TRUST_THRESHOLD,
            mapping: self.mapping(addr.ip()),
            status,
            reached,
            unreached,
        }
    }

    fn reporters(&self, addr: SocketAddr) -> usize {
        self.reports.iter().filter(|(_, a)| *a == addr).count()
    }

    /// Drops answers and announcements for addresses nobody reports any more.
    fn prune(&mut self) {
        let reports = &self.reports;
        let reported = |a: &SocketAddr| reports.iter().any(|(_, r)| r == a);
        self.answers.retain(|(a, _, _)| reported(a));
        self.announced.retain(reported);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn peer(n: u8) -> PeerId {
        PeerId::from_bytes([n; 32])
    }

    const LOCAL: &str = "[::]:4433";

    #[test]
    fn an_address_is_trusted_once_two_distinct_peers_report_it() {
        let mut r = Reflector::new();
        let ours = a("[2001:db8::1]:4433");
        assert_eq!(r.observe(a(LOCAL), peer(1), ours), None);
        assert!(!r.report()[0].trusted);
        // The same peer again is still one reporter, and nothing new.
        assert_eq!(r.observe(a(LOCAL), peer(1), ours), None);
        assert_eq!(r.report()[0].reporters, 1);
        assert_eq!(r.observe(a(LOCAL), peer(2), ours), Some(ours));
        let report = &r.report()[0];
        assert!(report.trusted);
        assert_eq!(report.reporters, 2);
        assert_eq!(report.mapping, Mapping::Independent);
        assert_eq!(report.status, ReachStatus::Unknown);
        // Announced once only.
        assert_eq!(r.observe(a(LOCAL), peer(3), ours), None);
    }

    #[test]
    fn different_ports_for_one_ip_are_endpoint_dependent_mapping() {
        let mut r = Reflector::new();
        r.observe(a(LOCAL), peer(1), a("203.0.113.5:40001"));
        assert_eq!(r.mapping(a("203.0.113.5:1").ip()), Mapping::Unknown);
        r.observe(a(LOCAL), peer(2), a("203.0.113.5:40002"));
        assert_eq!(r.mapping(a("203.0.113.5:1").ip()), Mapping::Dependent);
        assert!(r.report().iter().all(|x| !x.trusted));
        // Another IP (another path) says nothing about this one.
        r.observe(a(LOCAL), peer(3), a("[2001:db8::9]:4433"));
        assert_eq!(r.mapping(a("[2001:db8::9]:1").ip()), Mapping::Unknown);
    }

    #[test]
    fn a_reporter_holds_one_entry_and_its_new_report_replaces_the_old() {
        let mut r = Reflector::new();
        r.observe(a(LOCAL), peer(1), a("203.0.113.5:1"));
        r.observe(a(LOCAL), peer(1), a("203.0.113.5:2"));
        let report = r.report();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].addr, a("203.0.113.5:2"));
        assert_eq!(r.mapping(a("203.0.113.5:2").ip()), Mapping::Unknown);
    }

    #[test]
    fn unlimited_identities_cannot_grow_it() {
        let mut r = Reflector::new();
        for i in 0..10_000u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let addr = SocketAddr::new(a("198.51.100.1:0").ip(), (i % 60_000 + 1) as u16);
            r.observe(a(LOCAL), PeerId::from_bytes(id), addr);
            r.record_dial_back(a(LOCAL), PeerId::from_bytes(id), addr, true);
        }
        assert!(r.reports.len() <= MAX_REPORTERS);
        assert!(r.answers.len() <= MAX_REPORTERS * MAX_HELPERS_PER_ADDR);
        assert!(r.announced.len() <= MAX_REPORTERS);
        assert_eq!(r.report().len(), MAX_REPORTERS);
    }

    #[test]
    fn dial_back_answers_decide_the_status_and_are_counted() {
        let mut r = Reflector::new();
        let ours = a("[2001:db8::1]:4433");
        r.observe(a(LOCAL), peer(1), ours);
        r.observe(a(LOCAL), peer(2), ours);
        r.record_dial_back(a(LOCAL), peer(1), ours, false);
        assert_eq!(r.report()[0].status, ReachStatus::Filtered);
        assert!(!r.is_public());
        r.record_dial_back(a(LOCAL), peer(2), ours, true);
        // One yes and one no: a yes is a completed handshake, so it wins a tie.
        let report = &r.report()[0];
        assert_eq!((report.reached, report.unreached), (1, 1));
        assert_eq!(report.status, ReachStatus::Public);
        assert!(r.is_public());
        // A helper's new answer replaces its old one.
        r.record_dial_back(a(LOCAL), peer(2), ours, false);
        assert_eq!(r.report()[0].status, ReachStatus::Filtered);
        // Answers for an address nobody reports are ignored.
        r.record_dial_back(a(LOCAL), peer(9), a("[2001:db8::2]:1"), true);
        assert_eq!(r.report().len(), 1);
    }

    #[test]
    fn liars_answers_are_bounded_per_address() {
        let mut r = Reflector::new();
        let ours = a("[2001:db8::1]:4433");
        r.observe(a(LOCAL), peer(1), ours);
        for n in 10..100 {
            r.record_dial_back(a(LOCAL), peer(n), ours, n % 2 == 0);
        }
        let report = &r.report()[0];
        assert_eq!(report.reached + report.unreached, MAX_HELPERS_PER_ADDR);
    }

    #[test]
    fn a_new_socket_forgets_the_old_one() {
        let mut r = Reflector::new();
        let ours = a("[2001:db8::1]:4433");
        r.observe(a(LOCAL), peer(1), ours);
        r.observe(a(LOCAL), peer(2), ours);
        r.record_dial_back(a(LOCAL), peer(1), ours, true);
        assert!(r.is_public());
        let moved = a("[::]:5000");
        // An answer about the old socket after the move is ignored.
        let new = a("[2001:db8::1]:5000");
        assert_eq!(r.observe(moved, peer(1), new), None);
        r.record_dial_back(a(LOCAL), peer(1), a("[2001:db8::1]:5000"), true);
        assert!(!r.is_public());
        assert_eq!(r.report().len(), 1);
        assert_eq!(r.local(), Some(moved));
        // The same address trusted again on the new socket is announced again.
        assert_eq!(
            r.observe(moved, peer(2), a("[2001:db8::1]:5000")),
            Some(a("[2001:db8::1]:5000"))
        );
    }

    #[test]
    fn an_address_pushed_out_and_back_is_announced_again() {
        let mut r = Reflector::new();
        let ours = a("[2001:db8::1]:4433");
        r.observe(a(LOCAL), peer(1), ours);
        assert_eq!(r.observe(a(LOCAL), peer(2), ours), Some(ours));
        for n in 3..(3 + MAX_REPORTERS as u8) {
            r.observe(a(LOCAL), peer(n), a("[2001:db8::66]:1"));
        }
        assert!(r.reporters_of(ours).is_empty());
        r.observe(a(LOCAL), peer(1), ours);
        assert_eq!(r.observe(a(LOCAL), peer(2), ours), Some(ours));
    }
}
