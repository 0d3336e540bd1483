//! Fuzz target bodies of the net crate, shaped like `i6p_core::fuzzing` (one function per
//! target, [`TARGETS`] and [`run`]) and run the same two ways: by the cargo-fuzz crate in
//! `rust/fuzz`, and over the committed seeds and past crashes by `tests/fuzz_corpus.rs`.
//!
//! - `journal`: the listener's resumption-ticket file, as read at start.
//! - `provider`: a live provider node on `[::1]` driven by a raw session whose actions (open,
//!   write, finish, reset, stop, read, drop, datagram, sleep) the input spells out. It checks
//!   what must hold whatever a peer does: no panic anywhere in the process, every request
//!   slot given back once the session is gone, and (now and then) a normal session still
//!   answered.

use crate::resume::{
    self, ServerState, MAGIC, MAX_KEY, MAX_SERVER_ENTRIES, MAX_VALUE, RECORD_HEAD,
};
use crate::{Limits, Node, NodeConfig, RecvStream, SendStream, Session};
use bytes::Bytes;
use i6p_core::fec::FRAME_REPAIR;
use i6p_core::fec::{encode_repair, FecRequest, LossReport, Share, FRAME_FEC_GET, FRAME_LOSS};
use i6p_core::frame::{FrameHeader, FrameType, FRAME_HEADER_LEN};
use i6p_core::transfer::{GetRequest, FRAME_GET, STREAM_KIND_BLOBS};
use i6p_core::{Hello, Identity, PROTOCOL_VERSION};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The names of the targets, as the fuzz crate and the corpus directories spell them.
pub const TARGETS: &[&str] = &["journal", "provider"];

/// Runs the target called `name` (one of [`TARGETS`]) on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    let target: fn(&[u8]) = match name {
        "journal" => journal,
        "provider" => provider,
        _ => return false,
    };
    target(data);
    true
}

/// A resumption-ticket file as the listener reads it at start, and the input as the records
/// of such a file, each sealed with a correct checksum (a wrong one stops every record).
pub fn journal(data: &[u8]) {
    journal_file(data);
    journal_file(&seal_records(data));
}

fn journal_file(file: &[u8]) {
    let Ok(tickets) = resume::decode_tickets(file) else {
        return;
    };
    assert!(tickets.len() <= MAX_SERVER_ENTRIES);
    assert!(tickets
        .iter()
        .all(|(_, key, value)| key.len() <= MAX_KEY && value.len() <= MAX_VALUE));
    assert_eq!(resume::encode_tickets(&tickets), file);
    // Loaded as at start: a repeated key replaces the earlier one, and what the store would
    // save next reads back as the same tickets.
    let mut state = ServerState::default();
    for (subnet, key, value) in tickets.iter().cloned() {
        state.insert(key, value, subnet);
    }
    let keys: HashSet<&[u8]> = tickets.iter().map(|(_, key, _)| key.as_slice()).collect();
    assert_eq!(state.len(), keys.len());
    let saved = state.drain_oldest_first();
    assert_eq!(
        resume::decode_tickets(&resume::encode_tickets(&saved)),
        Ok(saved)
    );
}

/// The magic, then the input cut into records by the lengths their heads announce (as far
/// as the input goes), each followed by its checksum.
fn seal_records(data: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let mut rest = data;
    while let Some(head) = rest.first_chunk::<RECORD_HEAD>() {
        let key_len = usize::from(u16::from_be_bytes([head[9], head[10]]));
        let value_len = u32::from_be_bytes([head[11], head[12], head[13], head[14]]) as usize;
        let len = (RECORD_HEAD + key_len)
            .saturating_add(value_len)
            .min(rest.len());
        let (body, after) = rest.split_at(len);
        out.extend_from_slice(body);
        out.extend_from_slice(&blake3::hash(body).as_bytes()[..8]);
        rest = after;
    }
    out.extend_from_slice(rest);
    out
}

/// Size of the one blob the provider serves.
pub const PROVIDER_BLOB_LEN: usize = 1 << 20;
/// Streams one input can use at once.
const STREAMS: usize = 4;
/// Actions one input may take.
const MAX_ACTIONS: usize = 64;
/// Wall time the actions of one input may take.
const INPUT_BUDGET: Duration = Duration::from_millis(200);
/// Wall time one open, write or finish may take (a stalled one is a flow-control wait).
const STEP: Duration = Duration::from_millis(50);
/// Wall time one read may take.
const READ_WAIT: Duration = Duration::from_millis(20);
/// Dial, HELLO exchange, and a PING on a normal session.
const HANDSHAKE: Duration = Duration::from_secs(5);
/// A fresh normal session must get a PONG every so many inputs.
const PING_EVERY: u64 = 64;

/// One provider node and one dialer, alive across inputs, on their own runtime.
struct Harness {
    runtime: tokio::runtime::Runtime,
    provider: Node,
    dialer: Node,
    dialer_identity: Identity,
    addr: SocketAddr,
    hash: [u8; 32],
    inputs: AtomicU64,
}

/// Panics anywhere in the process since the harness started (tokio catches a task's panic;
/// this does not let it pass unseen).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// The provider's limits: short timeouts so that a stalled request ends within an input's
/// time, and room for the many short sessions a fuzzer makes.
pub fn provider_limits() -> Limits {
    Limits {
        max_connections: 4096,
        max_connections_per_peer: 4096,
        max_connections_per_prefix: 4096,
        send_timeout: Duration::from_millis(200),
        request_idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("no runtime: {e}"));
        let dir = std::env::temp_dir().join(format!("i6p-fuzz-provider-{}", std::process::id()));
        let path = dir.join("blob");
        let blob: Vec<u8> = (0..PROVIDER_BLOB_LEN).map(|i| (i % 251) as u8).collect();
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, &blob))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        let dialer_identity = Identity::generate();
        let (provider, dialer, hash) = runtime.block_on(async {
            let config = NodeConfig {
                limits: provider_limits(),
                accept_sessions: false,
                ..NodeConfig::default()
            };
            let any: SocketAddr = "[::1]:0".parse().unwrap_or_else(|e| panic!("{e}"));
            let provider = Node::bind(Identity::generate(), any, config)
                .unwrap_or_else(|e| panic!("no provider: {e}"));
            let dialer = Node::bind(dialer_identity.clone(), any, NodeConfig::default())
                .unwrap_or_else(|e| panic!("no dialer: {e}"));
            let blob = provider
                .store()
                .add_path(&path)
                .unwrap_or_else(|e| panic!("cannot serve the blob: {e}"));
            (provider, dialer, blob.hash())
        });
        let addr = provider
            .local_addr()
            .unwrap_or_else(|e| panic!("no provider address: {e}"));
        Harness {
            runtime,
            provider,
            dialer,
            dialer_identity,
            addr,
            hash,
            inputs: AtomicU64::new(0),
        }
    })
}

/// What one input does, read from its bytes: up to [`MAX_ACTIONS`] actions, each an
/// opcode byte (low nibble: the action; bits 4-5: the stream, 0..4) and its arguments.
/// A write or a read on a stream not open opens it first. See [`Action`] for the arguments;
/// numbers are big-endian, and the input ending mid-action ends the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// 0: open a blob stream (its kind byte written), dropping the stream in that slot.
    Open,
    /// 1 `len:u8 bytes`: write bytes as they are.
    Write(Vec<u8>),
    /// 2 `get`: write a GET frame. `get` is `flags:u8 [hash:32 if flags&1] group_log:u8
    /// n:u8 (first:u16 count:u16) x (n%4+1)`; without a hash, the served blob's.
    Get(GetRequest),
    /// 3 `transfer:u32 shard_len:u16 data:u8 min_parity:u8 max_parity:u8 target_ppm:u32
    /// loss_ppm:u32 share:4 get`: write a FEC GET frame (fields as they are, checked by the
    /// provider, not here).
    FecGet(Vec<u8>),
    /// 4 `transfer:u32 received:u64 lost:u64 through:u64`: write a LOSS frame.
    Loss(LossReport),
    /// 5 `n:u8 stripe:u16 x (n%8+1)`: write a REPAIR frame.
    Repair(Vec<u64>),
    /// 6: finish the stream.
    Finish,
    /// 7 `code:u8`: reset the stream.
    Reset(u32),
    /// 8 `code:u8`: stop reading the stream.
    Stop(u32),
    /// 9 `max:u16`: read up to `max` bytes (waiting a little at most).
    Read(usize),
    /// 10: drop the stream.
    Drop,
    /// 11 `len:u8 bytes`: send a datagram.
    Datagram(Vec<u8>),
    /// 12 `ms:u8`: sleep `ms % 8` milliseconds.
    Sleep(u64),
}

const OPS: u8 = 13;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from(self.u32()?) << 32 | u64::from(self.u32()?))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = usize::from(self.u8()?);
        Some(self.take(len.min(self.0.len()))?.to_vec())
    }

    fn get(&mut self, served: [u8; 32]) -> Option<GetRequest> {
        let flags = self.u8()?;
        let hash = if flags & 1 == 1 {
            self.take(32)?.try_into().ok()?
        } else {
            served
        };
        let group_log = self.u8()?;
        let n = usize::from(self.u8()? % 4) + 1;
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            ranges.push((u64::from(self.u16()?), u64::from(self.u16()?)));
        }
        Some(GetRequest {
            hash,
            group_log,
            ranges,
        })
    }

    fn action(&mut self, served: [u8; 32]) -> Option<(usize, Action)> {
        let op = self.u8()?;
        let stream = usize::from(op >> 4) % STREAMS;
        let action = match (op & 0x0f) % OPS {
            0 => Action::Open,
            1 => Action::Write(self.bytes()?),
            2 => Action::Get(self.get(served)?),
            3 => {
                let head = self.take(4 + 2 + 3 + 4 + 4 + 4)?.to_vec();
                let get = self.get(served)?;
                Action::FecGet([head, get.encode()].concat())
            }
            4 => Action::Loss(LossReport {
                transfer: self.u32()?,
                received: self.u64()?,
                lost: self.u64()?,
                through: self.u64()?,
            }),
            5 => {
                let n = usize::from(self.u8()? % 8) + 1;
                let mut stripes = Vec::with_capacity(n);
                for _ in 0..n {
                    stripes.push(u64::from(self.u16()?));
                }
                Action::Repair(stripes)
            }
            6 => Action::Finish,
            7 => Action::Reset(u32::from(self.u8()?)),
            8 => Action::Stop(u32::from(self.u8()?)),
            9 => Action::Read(usize::from(self.u16()?)),
            10 => Action::Drop,
            11 => Action::Datagram(self.bytes()?),
            _ => Action::Sleep(u64::from(self.u8()? % 8)),
        };
        Some((stream, action))
    }
}

/// The actions `data` spells out (see [`Action`]), each with its stream; `served` stands
/// for the hash of a GET that names none.
pub fn decode_actions(data: &[u8], served: [u8; 32]) -> Vec<(usize, Action)> {
    let mut reader = Reader(data);
    std::iter::from_fn(|| reader.action(served))
        .take(MAX_ACTIONS)
        .collect()
}

/// A frame of any type: `kind:u8 len:u32 payload`.
fn raw_frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

/// A blob request driven by the fuzzer through a raw session on a live provider.
pub fn provider(data: &[u8]) {
    let h = harness();
    let panics = PANICS.load(Ordering::SeqCst);
    let input = h.inputs.fetch_add(1, Ordering::Relaxed);
    let actions = decode_actions(data, h.hash);
    h.runtime.block_on(async {
        let (session, control) = match raw_session(h).await {
            Ok(ok) => ok,
            Err(why) => panic!("the provider no longer takes sessions: {why}"),
        };
        let _ = tokio::time::timeout(INPUT_BUDGET, drive(&session, &actions)).await;
        session.close(0, "done").await;
        drop(control);
        drop(session);
        settle(h).await;
        if input.is_multiple_of(PING_EVERY) {
            ping(h).await;
        }
    });
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        panics,
        "something panicked while the provider served this input"
    );
}

/// A raw session to the provider after a HELLO exchange, and its control stream.
async fn raw_session(h: &Harness) -> Result<(Session, (SendStream, RecvStream)), String> {
    let exchange = async {
        let session = h
            .dialer
            .connect_raw(h.provider.peer_id(), h.addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = session.open_stream().await.map_err(|e| e.to_string())?;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            timestamp_ms: crate::session::now_ms(),
            capabilities: Vec::new(),
            listen_addrs: Vec::new(),
            transfer_only: false,
        };
        let frame = session
            .hello_frame(&h.dialer_identity, &hello)
            .map_err(|e| e.to_string())?;
        send.write(frame.into()).await.map_err(|e| e.to_string())?;
        for expected in [FrameType::Hello, FrameType::PeerInfo] {
            let head = recv
                .read_exact(FRAME_HEADER_LEN)
                .await
                .map_err(|e| e.to_string())?;
            let mut raw = [0u8; FRAME_HEADER_LEN];
            raw.copy_from_slice(&head);
            let header = FrameHeader::decode(raw).map_err(|e| e.to_string())?;
            if header.kind != expected as u8 {
                return Err(format!("frame {} instead of {expected:?}", header.kind));
            }
            recv.read_exact(header.len as usize)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok((session, (send, recv)))
    };
    tokio::time::timeout(HANDSHAKE, exchange)
        .await
        .map_err(|_| format!("no HELLO exchange within {HANDSHAKE:?}"))?
}

type Slot = Option<(SendStream, RecvStream)>;

async fn open(session: &Session) -> Slot {
    let (mut send, recv) = session.open_stream().await.ok()?;
    send.write(Bytes::from_static(&[STREAM_KIND_BLOBS]))
        .await
        .ok()?;
    Some((send, recv))
}

/// Performs the actions; every await is bounded, failures are the provider's answer and
/// are ignored.
async fn drive(session: &Session, actions: &[(usize, Action)]) {
    let mut slots: [Slot; STREAMS] = Default::default();
    for (stream, action) in actions {
        let slot = &mut slots[*stream];
        let needs_stream = !matches!(
            action,
            Action::Open | Action::Drop | Action::Datagram(_) | Action::Sleep(_)
        );
        if matches!(action, Action::Open) || (needs_stream && slot.is_none()) {
            *slot = tokio::time::timeout(STEP, open(session))
                .await
                .ok()
                .flatten();
        }
        let frame = match action {
            Action::Write(bytes) => Some(Bytes::copy_from_slice(bytes)),
            Action::Get(get) => Some(raw_frame(FRAME_GET, &get.encode())),
            Action::FecGet(payload) => Some(raw_frame(FRAME_FEC_GET, payload)),
            Action::Loss(report) => Some(raw_frame(FRAME_LOSS, &report.encode())),
            Action::Repair(stripes) => Some(raw_frame(FRAME_REPAIR, &encode_repair(stripes))),
            _ => None,
        };
        match (action, slot.as_mut()) {
            (Action::Datagram(bytes), _) => {
                let _ = session.send_raw_datagram(Bytes::copy_from_slice(bytes));
            }
            (Action::Sleep(ms), _) => tokio::time::sleep(Duration::from_millis(*ms)).await,
            (Action::Drop, _) => *slot = None,
            (_, None) => {}
            (Action::Finish, Some((send, _))) => {
                let _ = tokio::time::timeout(STEP, send.finish()).await;
            }
            (Action::Reset(code), Some((send, _))) => send.reset(u64::from(*code)),
            (Action::Stop(code), Some((_, recv))) => recv.stop(u64::from(*code)),
            (Action::Read(max), Some((_, recv))) => {
                let _ = tokio::time::timeout(READ_WAIT, recv.read((*max).max(1))).await;
            }
            (_, Some((send, _))) => {
                if let Some(frame) = frame {
                    let _ = tokio::time::timeout(STEP, send.write(frame)).await;
                }
            }
        }
    }
}

/// Waits until every request slot is given back, as the provider's limits promise once the
/// session is gone.
async fn settle(h: &Harness) {
    let limits = h.provider.limits();
    let bound = limits.send_timeout + limits.request_idle_timeout + Duration::from_secs(2);
    let start = tokio::time::Instant::now();
    while h.provider.requests_in_flight() > 0 {
        assert!(
            start.elapsed() < bound,
            "{} requests still in flight {bound:?} after their session closed",
            h.provider.requests_in_flight()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A fresh normal session to the provider gets a PONG.
async fn ping(h: &Harness) {
    let check = async {
        let session = h.dialer.connect(h.provider.peer_id(), h.addr).await?;
        let rtt = session.ping().await;
        session.close(0, "done").await;
        rtt
    };
    match tokio::time::timeout(HANDSHAKE, check).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("the provider does not answer a PING: {e}"),
        Err(_) => panic!("the provider does not answer a PING within {HANDSHAKE:?}"),
    }
}

/// Bytes that [`decode_actions`] reads back as `actions` (seeds are written with it).
pub fn encode_actions(actions: &[(usize, Action)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (stream, action) in actions {
        let op = |code: u8| code | ((*stream as u8 & 3) << 4);
        match action {
            Action::Open => out.push(op(0)),
            Action::Write(bytes) => {
                out.push(op(1));
                out.push(bytes.len() as u8);
                out.extend_from_slice(&bytes[..bytes.len().min(255)]);
            }
            Action::Get(get) => {
                out.push(op(2));
                encode_get(&mut out, get);
            }
            Action::FecGet(payload) => {
                out.push(op(3));
                // Only a well-formed FEC GET has the layout the decoder reads back.
                if let Ok(request) = FecRequest::decode(payload) {
                    out.extend_from_slice(&payload[..payload.len() - request.get.encode().len()]);
                    encode_get(&mut out, &request.get);
                }
            }
            Action::Loss(report) => {
                out.push(op(4));
                out.extend_from_slice(&report.encode());
            }
            Action::Repair(stripes) => {
                out.push(op(5));
                out.push(stripes.len().saturating_sub(1) as u8);
                for s in stripes {
                    out.extend_from_slice(&(*s as u16).to_be_bytes());
                }
            }
            Action::Finish => out.push(op(6)),
            Action::Reset(code) => out.extend([op(7), *code as u8]),
            Action::Stop(code) => out.extend([op(8), *code as u8]),
            Action::Read(max) => {
                out.push(op(9));
                out.extend_from_slice(&(*max as u16).to_be_bytes());
            }
            Action::Drop => out.push(op(10)),
            Action::Datagram(bytes) => {
                out.push(op(11));
                out.push(bytes.len() as u8);
                out.extend_from_slice(&bytes[..bytes.len().min(255)]);
            }
            Action::Sleep(ms) => out.extend([op(12), *ms as u8]),
        }
    }
    out
}

fn encode_get(out: &mut Vec<u8>, get: &GetRequest) {
    out.push(1);
    out.extend_from_slice(&get.hash);
    out.push(get.group_log);
    out.push(get.ranges.len().saturating_sub(1) as u8);
    for (first, count) in &get.ranges {
        out.extend_from_slice(&(*first as u16).to_be_bytes());
        out.extend_from_slice(&(*count as u16).to_be_bytes());
    }
}

/// A FEC GET for `get` in the shape a fetcher sends it (the provider checks it).
pub fn fec_get(get: GetRequest, transfer: u32) -> Vec<u8> {
    FecRequest {
        transfer,
        shard_len: 1200,
        data: 16,
        min_parity: 1,
        max_parity: 16,
        target_ppm: 1,
        loss_ppm: 0,
        share: Share::whole(16),
        get,
    }
    .encode()
}
