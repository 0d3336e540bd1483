//! Coordination messages (stream kind COORD): a node asks a mutual peer (the coordinator) to
//! introduce it to a target, the two exchange candidate addresses through it, then time a
//! simultaneous open with SYNC frames it forwards (docs/PROTOCOL.md, "Coordination").
//!
//! Every message is small and bounded: at most [`MAX_CANDIDATES`] addresses, a refusal text of
//! at most [`MAX_REFUSAL_TEXT`] bytes, and a frame of at most [`MAX_COORD_FRAME`] bytes, which a
//! reader checks in the header before it allocates (the 1 MiB cap of other streams is far more
//! than any of these needs). Decoders refuse trailing bytes and unknown enum values.

use crate::error::{CoreError, Result};
use crate::kinds::{
    FRAME_COORD_ANSWER, FRAME_COORD_CONNECT, FRAME_COORD_INTRODUCE, FRAME_COORD_REFUSE,
    FRAME_COORD_RTT, FRAME_COORD_SYNC,
};
use crate::peer_id::PeerId;
use crate::wire::{put_socket_addr, put_string, Reader};
use std::net::{IpAddr, SocketAddr};

/// Candidate addresses in one message, at most.
pub const MAX_CANDIDATES: usize = 8;
/// The longest refusal text, in bytes of UTF-8.
pub const MAX_REFUSAL_TEXT: usize = 200;
/// The largest COORD frame payload: the biggest message (CONNECT or INTRODUCE with
/// [`MAX_CANDIDATES`] IPv6 addresses) is 32 + 2 + 8 × 23 = 218 bytes.
pub const MAX_COORD_FRAME: u32 = 512;
/// Punch attempts, at most, that one introduction may time.
pub const MAX_ATTEMPTS: u8 = 3;

/// Flag bit: the sender believes it is publicly reachable (it can be dialed unsolicited).
const FLAG_PUBLIC: u8 = 1;
/// Flag bit, in CONNECT and INTRODUCE: the asker wants a session for blob transfers only.
const FLAG_TRANSFERS: u8 = 2;

/// A peer's candidate addresses and whether it believes itself publicly reachable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Candidates {
    /// Addresses the peer may be reached at, at most [`MAX_CANDIDATES`].
    pub addrs: Vec<SocketAddr>,
    /// The peer believes unsolicited packets reach it (no filter in front of it).
    pub public: bool,
    /// The asker wants the session for blob transfers only (CONNECT and INTRODUCE): the
    /// target serves it and never hands it to its application, as a session dialed with
    /// the HELLO purpose "transfers".
    pub transfers: bool,
}

impl Candidates {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(
            if self.public { FLAG_PUBLIC } else { 0 }
                | if self.transfers { FLAG_TRANSFERS } else { 0 },
        );
        let addrs = &self.addrs[..self.addrs.len().min(MAX_CANDIDATES)];
        out.push(addrs.len() as u8);
        for a in addrs {
            put_socket_addr(out, a);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let flags = r.u8()?;
        if flags & !(FLAG_PUBLIC | FLAG_TRANSFERS) != 0 {
            return Err(r.malformed(format!("unknown flags {flags:#04x}")));
        }
        let n = usize::from(r.u8()?);
        if n > MAX_CANDIDATES {
            return Err(r.malformed(format!("{n} candidates exceed {MAX_CANDIDATES}")));
        }
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            addrs.push(r.socket_addr()?);
        }
        Ok(Self {
            addrs,
            public: flags & FLAG_PUBLIC != 0,
            transfers: flags & FLAG_TRANSFERS != 0,
        })
    }
}

/// Why a coordinator (or the target) refused an introduction: the code of a REFUSE frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RefusalReason {
    /// The node does not coordinate (`coordinate=False`).
    CoordinationOff = 1,
    /// The coordinator has no live session with the target.
    NoSession = 2,
    /// The coordinator (or the target) is at its limit of introductions in flight.
    Limit = 3,
    /// The request was malformed or named the asker itself.
    BadRequest = 4,
    /// The target did not answer the introduction (closed, timed out, refused).
    TargetFailed = 5,
}

impl RefusalReason {
    /// Every reason, in wire order.
    pub const ALL: [Self; 5] = [
        Self::CoordinationOff,
        Self::NoSession,
        Self::Limit,
        Self::BadRequest,
        Self::TargetFailed,
    ];

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as u8 == v)
    }
}

/// A COORD message, one per frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordMessage {
    /// Asker → coordinator: introduce me to `target`; here are my candidates.
    Connect {
        /// Whom to introduce the asker to.
        target: PeerId,
        /// The asker's candidates (the coordinator adds the address it observes).
        candidates: Candidates,
    },
    /// Coordinator → target: `from` asks to be introduced; its candidates.
    Introduce {
        /// The asker, as the coordinator's session with it authenticated it.
        from: PeerId,
        /// The asker's candidates, the coordinator's observed address of it included.
        candidates: Candidates,
    },
    /// Target → coordinator → asker: the target's candidates.
    Answer(Candidates),
    /// The introduction is refused.
    Refuse {
        /// Why.
        reason: RefusalReason,
        /// In words, at most [`MAX_REFUSAL_TEXT`] bytes.
        text: String,
    },
    /// Asker → coordinator → target: start attempt `attempt` now.
    Sync {
        /// 1-based attempt number, at most [`MAX_ATTEMPTS`].
        attempt: u8,
        /// Reversal (only the target dials) or a simultaneous open.
        mode: SyncMode,
    },
    /// A round-trip probe through the coordinator; the target echoes it unchanged.
    Rtt {
        /// Chosen by the asker.
        nonce: u64,
    },
}

/// What a SYNC asks of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SyncMode {
    /// Both sides send toward each other now (the coordinated simultaneous open).
    Punch = 0,
    /// Connection reversal: the asker is publicly reachable, the target just dials it.
    Reverse = 1,
}

impl CoordMessage {
    /// The frame type this message travels in.
    pub fn frame_type(&self) -> u8 {
        match self {
            Self::Connect { .. } => FRAME_COORD_CONNECT,
            Self::Introduce { .. } => FRAME_COORD_INTRODUCE,
            Self::Answer(_) => FRAME_COORD_ANSWER,
            Self::Refuse { .. } => FRAME_COORD_REFUSE,
            Self::Sync { .. } => FRAME_COORD_SYNC,
            Self::Rtt { .. } => FRAME_COORD_RTT,
        }
    }

    /// The payload (without the frame header).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Self::Connect {
                target: p,
                candidates,
            }
            | Self::Introduce {
                from: p,
                candidates,
            } => {
                out.extend_from_slice(p.as_bytes());
                candidates.put(&mut out);
            }
            Self::Answer(candidates) => candidates.put(&mut out),
            Self::Refuse { reason, text } => {
                out.push(*reason as u8);
                put_string(&mut out, truncate(text), 1);
            }
            Self::Sync { attempt, mode } => out.extend_from_slice(&[*attempt, *mode as u8]),
            Self::Rtt { nonce } => out.extend_from_slice(&nonce.to_be_bytes()),
        }
        out
    }

    /// The whole frame: `type | length (4 bytes) | payload`.
    pub fn encode_frame(&self) -> Vec<u8> {
        let payload = self.encode();
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(self.frame_type());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes a frame of type `kind`; `Ok(None)` for a type outside COORD's range that this
    /// version does not know (skipped, like unknown control frames).
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Option<Self>> {
        if payload.len() > MAX_COORD_FRAME as usize {
            return Err(too_large(payload.len()));
        }
        let mut r = Reader::new(payload, "coord");
        let message = match kind {
            FRAME_COORD_CONNECT | FRAME_COORD_INTRODUCE => {
                let peer = PeerId::from_bytes(r.array()?);
                let candidates = Candidates::read(&mut r)?;
                if kind == FRAME_COORD_CONNECT {
                    Self::Connect {
                        target: peer,
                        candidates,
                    }
                } else {
                    Self::Introduce {
                        from: peer,
                        candidates,
                    }
                }
            }
            FRAME_COORD_ANSWER => Self::Answer(Candidates::read(&mut r)?),
            FRAME_COORD_REFUSE => {
                let code = r.u8()?;
                let reason = RefusalReason::from_u8(code)
                    .ok_or_else(|| r.malformed(format!("unknown refusal reason {code}")))?;
                let text = r.string(1, MAX_REFUSAL_TEXT)?;
                Self::Refuse { reason, text }
            }
            FRAME_COORD_SYNC => {
                let attempt = r.u8()?;
                if attempt == 0 || attempt > MAX_ATTEMPTS {
                    return Err(r.malformed(format!("attempt {attempt} out of 1..={MAX_ATTEMPTS}")));
                }
                let mode = match r.u8()? {
                    0 => SyncMode::Punch,
                    1 => SyncMode::Reverse,
                    other => return Err(r.malformed(format!("unknown sync mode {other}"))),
                };
                Self::Sync { attempt, mode }
            }
            FRAME_COORD_RTT => Self::Rtt { nonce: r.u64()? },
            _ => return Ok(None),
        };
        r.finish()?;
        Ok(Some(message))
    }
}

/// Checks a COORD frame header's length before its payload is read.
pub fn check_frame_len(len: u32) -> Result<()> {
    if len > MAX_COORD_FRAME {
        return Err(too_large(len as usize));
    }
    Ok(())
}

fn too_large(len: usize) -> CoreError {
    CoreError::FrameTooLarge {
        len: len as u64,
        limit: u64::from(MAX_COORD_FRAME),
    }
}

fn truncate(text: &str) -> &str {
    crate::messages::truncate_utf8(text, MAX_REFUSAL_TEXT)
}

/// The candidates worth passing on, in order, deduplicated, at most [`MAX_CANDIDATES`]: no
/// unspecified, multicast or broadcast address, no port 0, and loopback or IPv6 link-local
/// (whose scope id means nothing on another host) only when `loopback_ok` (the coordinator's
/// session with the peer is itself on loopback, as in tests on `::1`). A
/// peer that lies here only wastes the other side's bounded attempts: the handshake verifies
/// the PeerId whatever address answers.
pub fn filter_candidates(addrs: &[SocketAddr], loopback_ok: bool) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(MAX_CANDIDATES);
    for a in addrs {
        if out.len() == MAX_CANDIDATES {
            break;
        }
        if is_candidate(a, loopback_ok) && !out.contains(a) {
            out.push(*a);
        }
    }
    out
}

fn is_candidate(a: &SocketAddr, loopback_ok: bool) -> bool {
    let ip = match a.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let (bad, local) = match ip {
        IpAddr::V4(v4) => (v4.is_broadcast() || v4.octets()[0] == 0, v4.is_loopback()),
        IpAddr::V6(v6) => (false, v6.is_loopback() || v6.is_unicast_link_local()),
    };
    a.port() != 0 && !bad && !ip.is_unspecified() && !ip.is_multicast() && (loopback_ok || !local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(n: usize) -> Candidates {
        Candidates {
            addrs: (0..n)
                .map(|i| {
                    format!("[2001:db8::{}]:{}", i + 1, 4000 + i)
                        .parse()
                        .unwrap()
                })
                .collect(),
            public: true,
            transfers: false,
        }
    }

    fn round_trip(m: CoordMessage) {
        let frame = m.encode_frame();
        let len = u32::from_be_bytes(frame[1..5].try_into().unwrap());
        assert!(len <= MAX_COORD_FRAME);
        assert_eq!(
            CoordMessage::decode(frame[0], &frame[5..]).unwrap(),
            Some(m)
        );
    }

    #[test]
    fn every_message_round_trips_within_the_frame_cap() {
        let peer = PeerId::from_bytes([7; 32]);
        round_trip(CoordMessage::Connect {
            target: peer,
            candidates: cands(MAX_CANDIDATES),
        });
        round_trip(CoordMessage::Introduce {
            from: peer,
            candidates: cands(0),
        });
        round_trip(CoordMessage::Connect {
            target: peer,
            candidates: Candidates {
                transfers: true,
                ..cands(2)
            },
        });
        round_trip(CoordMessage::Answer(cands(3)));
        for reason in RefusalReason::ALL {
            round_trip(CoordMessage::Refuse {
                reason,
                text: "no".into(),
            });
        }
        round_trip(CoordMessage::Sync {
            attempt: 3,
            mode: SyncMode::Reverse,
        });
        round_trip(CoordMessage::Rtt { nonce: u64::MAX });
    }

    #[test]
    fn bounds_and_unknown_values_are_refused() {
        let mut answer = CoordMessage::Answer(cands(1)).encode();
        answer[1] = (MAX_CANDIDATES + 1) as u8;
        assert!(CoordMessage::decode(FRAME_COORD_ANSWER, &answer).is_err());
        assert!(CoordMessage::decode(FRAME_COORD_ANSWER, &[4, 0]).is_err());
        assert!(CoordMessage::decode(FRAME_COORD_SYNC, &[0, 0]).is_err());
        assert!(CoordMessage::decode(FRAME_COORD_SYNC, &[4, 0]).is_err());
        assert!(CoordMessage::decode(FRAME_COORD_SYNC, &[1, 2]).is_err());
        assert!(CoordMessage::decode(FRAME_COORD_SYNC, &[1, 0, 0]).is_err());
        assert!(CoordMessage::decode(FRAME_COORD_REFUSE, &[9, 0]).is_err());
        assert!(CoordMessage::decode(FRAME_COORD_RTT, &[0; 7]).is_err());
        assert!(CoordMessage::decode(FRAME_COORD_RTT, &[0; 600]).is_err());
        assert!(check_frame_len(MAX_COORD_FRAME + 1).is_err());
        assert_eq!(CoordMessage::decode(0x2f, &[1, 2]).unwrap(), None);
    }

    #[test]
    fn long_refusal_texts_are_cut_to_the_bound() {
        let m = CoordMessage::Refuse {
            reason: RefusalReason::Limit,
            text: "é".repeat(150),
        };
        let back = CoordMessage::decode(FRAME_COORD_REFUSE, &m.encode()).unwrap();
        let Some(CoordMessage::Refuse { text, .. }) = back else {
            panic!("not a refusal");
        };
        assert_eq!(text.len(), MAX_REFUSAL_TEXT);
    }

    #[test]
    fn candidates_are_filtered_and_bounded() {
        let raw: Vec<SocketAddr> = [
            "[::]:1",
            "[ff02::1]:1",
            "[2001:db8::1]:0",
            "0.0.0.0:5",
            "255.255.255.255:5",
            "[::1]:7",
            "127.0.0.1:7",
            "[::ffff:127.0.0.1]:7",
            "[fe80::1%2]:7",
            "[2001:db8::1]:9",
            "[2001:db8::1]:9",
            "203.0.113.5:9",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let public = filter_candidates(&raw, false);
        assert_eq!(
            public,
            vec![
                "[2001:db8::1]:9".parse().unwrap(),
                "203.0.113.5:9".parse().unwrap()
            ]
        );
        let local = filter_candidates(&raw, true);
        assert_eq!(local.len(), 6);
        let many = cands(20).addrs;
        assert_eq!(filter_candidates(&many, false).len(), MAX_CANDIDATES);
    }
}
