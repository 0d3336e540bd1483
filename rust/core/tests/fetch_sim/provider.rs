//! A simulated provider: answers each GET with a BLOB frame and the groups asked for, each
//! with its proof, paced to its link's bottleneck like a congestion-controlled sender.

use super::{Blob, Msg, Reliable};
use i6p_core::transfer::{
    encode_blob, encode_group_header, ErrorCode, GetRequest, TransferError, FRAME_BLOB,
    FRAME_ERROR, FRAME_GET,
};
use i6p_core::tree::group_range;
use i6p_core::{FrameHeader, FRAME_HEADER_LEN};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How a provider behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves what it is asked for.
    Honest,
    /// Serves until this long after the start, then sends nothing more, ever (a frozen
    /// process: not even retransmissions).
    StallsAfter(Duration),
    /// Flips a bit in every group's data.
    Corrupts,
}

/// One provider of the simulated fetch.
pub struct Provider {
    blob: Rc<Blob>,
    behaviour: Behaviour,
    /// The bottleneck's rate towards the requester, if limited.
    rate: Option<u64>,
    /// Records not yet sent, in order: (stream, seq, bytes).
    outbound: VecDeque<(u64, u64, Vec<u8>)>,
    /// When the bottleneck will have room again, while records wait for it.
    wake: Option<Instant>,
    /// Group records sent (the first time).
    pub groups_sent: u64,
}

/// A frame in the control frame format (kind, length, payload).
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a frame into its header and payload.
pub fn unframe(bytes: &[u8]) -> Option<(FrameHeader, &[u8])> {
    let raw: [u8; FRAME_HEADER_LEN] = bytes.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
    let header = FrameHeader::decode(raw).ok()?;
    let payload = bytes.get(FRAME_HEADER_LEN..)?;
    (payload.len() == header.len as usize).then_some((header, payload))
}

/// Bytes the bottleneck may hold before a paced sender waits.
const WINDOW: usize = 64 << 10;

impl Provider {
    pub fn new(blob: Rc<Blob>, behaviour: Behaviour, rate: Option<u64>) -> Self {
        Self {
            blob,
            behaviour,
            rate,
            outbound: VecDeque::new(),
            wake: None,
            groups_sent: 0,
        }
    }

    /// Whether it has stopped sending by `now`.
    pub fn frozen(&self, now: Instant, start: Instant) -> bool {
        matches!(self.behaviour, Behaviour::StallsAfter(d) if now >= start + d)
    }

    /// Takes what arrived by `now` and sends what the bottleneck has room for.
    pub fn step(&mut self, now: Instant, start: Instant, up: &mut Reliable, down: &mut Reliable) {
        let frozen = self.frozen(now, start);
        while let Some(msg) = up.recv(now) {
            match msg {
                _ if frozen => {}
                Msg::Open { stream, get } => self.serve(stream, &get),
                Msg::Stop { stream } => {
                    self.outbound.retain(|(s, _, _)| *s != stream);
                    down.forget(stream);
                }
                Msg::Record { .. } => panic!("a provider got a record"),
            }
        }
        self.wake = None;
        if frozen {
            return;
        }
        while let Some((_, _, bytes)) = self.outbound.front() {
            let len = 32 + bytes.len();
            if let Some(rate) = self.rate {
                let queued = down.queued_bytes(now);
                if queued > 0 && queued + len > WINDOW {
                    self.wake = Some(now + Duration::from_secs_f64(len as f64 / rate as f64));
                    break;
                }
            }
            let Some((stream, seq, bytes)) = self.outbound.pop_front() else {
                break;
            };
            if seq > 0 {
                self.groups_sent += 1;
            }
            down.send(now, Msg::Record { stream, seq, bytes });
        }
    }

    /// When it next has something to do by itself.
    pub fn next_event(&self) -> Option<Instant> {
        self.wake
    }

    /// Queues the answer to a GET: a BLOB frame, then every group asked for (or an ERROR).
    fn serve(&mut self, stream: u64, get: &[u8]) {
        let blob = self.blob.clone();
        let request = unframe(get)
            .filter(|(h, _)| h.kind == FRAME_GET)
            .and_then(|(_, payload)| GetRequest::decode(payload).ok())
            .filter(|g| g.hash == blob.outboard.root() && g.group_log == blob.group_log)
            .filter(|g| g.check_bounds(blob.size()).is_ok());
        let Some(request) = request else {
            let refusal = TransferError {
                code: ErrorCode::BadRequest,
                message: "bad request".into(),
            };
            self.outbound
                .push_back((stream, 0, frame(FRAME_ERROR, &refusal.encode())));
            return;
        };
        self.outbound
            .push_back((stream, 0, frame(FRAME_BLOB, &encode_blob(blob.size()))));
        let mut seq = 1;
        for &(first, count) in &request.ranges {
            for index in first..first + count {
                // The request was checked against the blob's bounds: every group has a proof.
                let Ok(proof) = blob.outboard.proof(blob.group_log, index) else {
                    return;
                };
                let (start, len) = group_range(blob.size(), blob.group_log, index);
                let mut record = encode_group_header(index, &proof);
                let data_at = record.len();
                record.extend_from_slice(&blob.data[start as usize..(start + len) as usize]);
                if self.behaviour == Behaviour::Corrupts {
                    record[data_at] ^= 1;
                }
                self.outbound.push_back((stream, seq, record));
                seq += 1;
            }
        }
    }
}
