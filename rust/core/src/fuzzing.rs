//! Fuzz target bodies: one function per family of decoders that read peer or file input.
//!
//! The cargo-fuzz crate in `rust/fuzz` calls these from its targets, and the regression test
//! `tests/fuzz_corpus.rs` runs every committed seed and every past crash through them, so the
//! fuzzer and CI exercise exactly the same code. Each function feeds its input to a decoder
//! and, where the decoder accepts it, checks a property: the value encodes back to the bytes
//! it came from (or at least decodes again to the same value), and the lengths it claims are
//! within their bounds. A rejected input must be a typed error; a panic is a bug.
//!
//! Inputs are the bytes as they arrive, with a small prefix where a decoder needs context
//! the receiver already has (a HELLO's signer key and channel binding, a blob's root and size,
//! a FEC layout). Checksums (tickets, the state file) would stop a fuzzer at the first byte
//! it changes, so those targets also try the input as a body sealed with a correct checksum.
//!
//! Running them: `make fuzz` (see the Makefile and `rust/fuzz/Cargo.toml`).
//!
//! The listener's resumption-ticket file and a live provider are fuzzed by the net crate's
//! targets (`i6p_net::fuzzing`), which this crate cannot reach.

use crate::fec::{
    decode_repair, decode_shape, decode_stripe, encode_repair, encode_shape, encode_stripe_header,
    FecLayout, FecRequest, LossReport, Redundancy, Shard, FRAME_FEC_GET, FRAME_FEC_SHAPE,
    FRAME_LOSS, FRAME_PROOF, FRAME_REPAIR, FRAME_STRIPE, MAX_REPAIR, SHARD_HEADER_LEN,
};
use crate::frame::{self, FrameHeader, FrameType, FRAME_HEADER_LEN, MAX_FRAME_PAYLOAD};
use crate::hello::{Hello, Role, EXPORTER_LEN, PROTOCOL_VERSION};
use crate::identity::{Identity, PublicKey};
use crate::messages::{Close, PeerInfo, Ping};
use crate::partial::TransferState;
use crate::ticket::{self, Ticket, MAX_TICKET_ADDRS, MAX_TICKET_PROVIDERS};
use crate::transfer::{
    decode_blob, decode_group_header, encode_blob, encode_group_header, GetRequest, TransferError,
    FRAME_BLOB, FRAME_ERROR, FRAME_GET, GROUP_HEADER_LEN, MAX_RANGES,
};
use crate::tree::{verify_group, Cv, MAX_PROOF_LEN};
use std::sync::OnceLock;

/// The names of the targets, as the fuzz crate and the corpus directories spell them.
pub const TARGETS: &[&str] = &[
    "frame",
    "hello",
    "control",
    "transfer",
    "group",
    "fec",
    "shard",
    "ticket",
    "state",
    "collection",
    "dialback",
    "relay",
    "coord",
    "dht_record",
];

/// Runs the target called `name` (one of [`TARGETS`]) on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    let target: fn(&[u8]) = match name {
        "frame" => frame,
        "hello" => hello,
        "control" => control,
        "transfer" => transfer,
        "group" => group,
        "fec" => fec,
        "shard" => shard,
        "ticket" => ticket,
        "state" => state,
        "collection" => collection,
        "dialback" => dialback,
        "relay" => relay,
        "coord" => coord,
        "dht_record" => dht_record,
        _ => return false,
    };
    target(data);
    true
}

/// A control or blob stream: frame headers, each frame's payload handed to the decoder its
/// type names, until the bytes run out or a header is refused.
pub fn frame(data: &[u8]) {
    let mut rest = data;
    while let Some((raw, after)) = rest.split_first_chunk::<FRAME_HEADER_LEN>() {
        let Ok(header) = FrameHeader::decode(*raw) else {
            return;
        };
        assert!(header.len <= MAX_FRAME_PAYLOAD);
        let Some(payload) = after.get(..header.len as usize) else {
            return;
        };
        if let Some(kind) = FrameType::from_byte(header.kind) {
            let Ok(encoded) = frame::encode(kind, payload) else {
                panic!("a decoded frame does not encode");
            };
            assert_eq!(&encoded[..FRAME_HEADER_LEN], raw);
        }
        message(header.kind, payload);
        rest = &after[payload.len()..];
    }
}

/// `kind:u8 payload`: a control message after HELLO (PING, PONG, PEER_INFO, CLOSE).
pub fn control(data: &[u8]) {
    if let Some((&kind, payload)) = data.split_first() {
        control_message(kind, payload);
    }
}

/// `kind:u8 payload`: a dial-back stream message (DIALBACK_REQUEST, DIALBACK_RESULT).
pub fn dialback(data: &[u8]) {
    if let Some((&kind, payload)) = data.split_first() {
        dialback_message(kind, payload);
    }
}

fn dialback_message(kind: u8, payload: &[u8]) {
    use crate::dialback::{DialBackRequest, DialBackResult, MAX_DIALBACK_REASON};
    use crate::kinds::{FRAME_DIALBACK_REQUEST, FRAME_DIALBACK_RESULT};
    match kind {
        FRAME_DIALBACK_REQUEST => {
            if let Ok(req) = DialBackRequest::decode(payload) {
                assert_eq!(req.encode(), payload);
            }
        }
        FRAME_DIALBACK_RESULT => {
            if let Ok(res) = DialBackResult::decode(payload) {
                assert!(res.reason.len() <= MAX_DIALBACK_REASON);
                assert_eq!(res.encode(), payload);
            }
        }
        _ => {}
    }
}

/// `kind:u8 payload`: a blob transfer message (GET, BLOB, ERROR).
pub fn transfer(data: &[u8]) {
    if let Some((&kind, payload)) = data.split_first() {
        transfer_message(kind, payload);
    }
}

/// `kind:u8 payload`: a FEC stream message (FEC GET, FEC SHAPE, PROOF, STRIPE, LOSS, REPAIR).
pub fn fec(data: &[u8]) {
    if let Some((&kind, payload)) = data.split_first() {
        fec_message(kind, payload);
    }
}

/// `kind:u8 payload`: a relay stream message (CIRCUIT, INCOMING, CIRCUIT_OK,
/// CIRCUIT_REFUSED); a payload of two bytes is also read as a circuit packet header.
pub fn relay(data: &[u8]) {
    if let Some((&kind, payload)) = data.split_first() {
        relay_message(kind, payload);
    }
}

fn relay_message(kind: u8, payload: &[u8]) {
    use crate::relay::{self as r, CircuitPeer, CircuitRefused};
    match kind {
        r::FRAME_CIRCUIT | r::FRAME_INCOMING => {
            if let Ok(m) = CircuitPeer::decode(payload) {
                assert_eq!(m.encode(), payload);
            }
        }
        r::FRAME_CIRCUIT_REFUSED => {
            if let Ok(m) = CircuitRefused::decode(payload) {
                assert!(m.message.len() <= r::MAX_REFUSAL_MESSAGE);
                assert_eq!(CircuitRefused::decode(&m.encode()).ok(), Some(m));
            }
        }
        _ => {}
    }
    if let Ok(raw) = <[u8; r::PACKET_HEADER_LEN]>::try_from(payload) {
        if let Ok(len) = r::decode_packet_header(raw) {
            assert!((1..=r::MAX_CIRCUIT_PACKET).contains(&len));
        }
    }
}

/// A DHT record's value, as a BEP 44 get returns it (the DHT checked only its signature).
pub fn dht_record(data: &[u8]) {
    use crate::dht_record::{DhtRecord, MAX_RECORD_LEN};
    if let Ok(rec) = DhtRecord::decode(data) {
        assert!(data.len() <= MAX_RECORD_LEN);
        assert_eq!(rec.encode(), data);
        let _ = rec.check_time(u64::from(u32::MAX));
    }
}

/// `kind:u8 payload`: a COORD stream message (CONNECT, INTRODUCE, ANSWER, REFUSE, SYNC, RTT).
pub fn coord(data: &[u8]) {
    if let Some((&kind, payload)) = data.split_first() {
        coord_message(kind, payload);
    }
}

fn coord_message(kind: u8, payload: &[u8]) {
    if let Ok(Some(m)) = crate::coord::CoordMessage::decode(kind, payload) {
        assert_eq!(m.frame_type(), kind);
        assert!(payload.len() <= crate::coord::MAX_COORD_FRAME as usize);
        // Every decoded value is canonical: it encodes back to the bytes it came from.
        assert_eq!(m.encode(), payload);
    }
}

fn message(kind: u8, payload: &[u8]) {
    relay_message(kind, payload);
    coord_message(kind, payload);
    control_message(kind, payload);
    transfer_message(kind, payload);
    fec_message(kind, payload);
    dialback_message(kind, payload);
}

fn control_message(kind: u8, payload: &[u8]) {
    match FrameType::from_byte(kind) {
        Some(FrameType::Ping | FrameType::Pong) => {
            if let Ok(ping) = Ping::decode(payload) {
                assert_eq!(&ping.encode()[..], payload);
            }
        }
        Some(FrameType::PeerInfo) => {
            if let Ok(info) = PeerInfo::decode(payload) {
                assert_eq!(info.encode(), payload);
            }
        }
        Some(FrameType::Close) => {
            if let Ok(close) = Close::decode(payload) {
                assert_eq!(close.encode(), payload);
            }
        }
        Some(FrameType::Hello) | None => {}
    }
}

fn transfer_message(kind: u8, payload: &[u8]) {
    match kind {
        FRAME_GET => {
            if let Ok(get) = GetRequest::decode(payload) {
                check_get(&get, payload);
            }
        }
        FRAME_BLOB => {
            if let Ok(size) = decode_blob(payload) {
                assert_eq!(&encode_blob(size)[..], payload);
            }
        }
        FRAME_ERROR => {
            if let Ok(error) = TransferError::decode(payload) {
                // Unknown codes read as one known code, so only the value round-trips.
                assert_eq!(TransferError::decode(&error.encode()).ok(), Some(error));
            }
        }
        _ => {}
    }
}

fn check_get(get: &GetRequest, payload: &[u8]) {
    assert!(!get.ranges.is_empty() && get.ranges.len() <= MAX_RANGES);
    assert_eq!(get.encode(), payload);
    // Bounds checks against the smallest and the largest blob must not overflow.
    let _ = get.check_bounds(0);
    let _ = get.check_bounds(u64::MAX);
}

fn fec_message(kind: u8, payload: &[u8]) {
    match kind {
        FRAME_FEC_GET => {
            if let Ok(request) = FecRequest::decode(payload) {
                check_fec_request(&request, payload);
            }
        }
        FRAME_FEC_SHAPE => {
            if let Ok(len) = decode_shape(payload) {
                assert_eq!(&encode_shape(len)[..], payload);
            }
        }
        FRAME_PROOF => proof_frame(payload),
        FRAME_STRIPE => {
            if let Ok((stripe, data)) = decode_stripe(payload) {
                assert_eq!(encode_stripe_header(stripe)[..], payload[..8]);
                assert_eq!(data.len(), payload.len() - 8);
            }
        }
        FRAME_LOSS => {
            if let Ok(report) = LossReport::decode(payload) {
                assert_eq!(&report.encode()[..], payload);
                check_loss_report(&report);
            }
        }
        FRAME_REPAIR => {
            if let Ok(stripes) = decode_repair(payload) {
                assert!(!stripes.is_empty() && stripes.len() <= MAX_REPAIR);
                assert_eq!(encode_repair(&stripes), payload);
            }
        }
        _ => {}
    }
}

fn check_fec_request(request: &FecRequest, payload: &[u8]) {
    assert_eq!(request.encode(), payload);
    check_get(
        &request.get,
        &payload[payload.len() - request.get.encode().len()..],
    );
    let Ok(mut redundancy) = request.redundancy() else {
        panic!("a checked FEC GET has no redundancy");
    };
    let params = redundancy.params();
    assert_eq!(params.data(), request.data);
    assert!((request.min_parity..=request.max_parity).contains(&params.parity()));
    // The share's shard indices stay inside the stripe for every parity count it allows.
    for m in [request.min_parity, request.max_parity] {
        for index in request.share.indices(request.data, m) {
            assert!(index < request.data + m);
            assert!(request.share.holds(request.data, index));
        }
    }
    redundancy.report(&LossReport {
        transfer: request.transfer,
        received: 0,
        lost: u64::MAX,
        through: 0,
    });
    assert!(redundancy.params().parity() <= request.max_parity);
}

fn check_loss_report(report: &LossReport) {
    let Ok(mut redundancy) = Redundancy::new(16, 1, 32, 1e-6) else {
        panic!("fixed redundancy bounds are valid");
    };
    for _ in 0..3 {
        redundancy.report(report);
    }
    assert!((0.0..=1.0).contains(&redundancy.loss()));
    assert!((1..=32).contains(&redundancy.params().parity()));
}

/// A PROOF frame's payload: a group header and exactly its proof.
fn proof_frame(payload: &[u8]) {
    let Some((header, proof)) = payload.split_first_chunk::<GROUP_HEADER_LEN>() else {
        return;
    };
    let Ok((index, proof_len)) = decode_group_header(*header) else {
        return;
    };
    assert!(proof_len <= MAX_PROOF_LEN);
    if proof.len() == proof_len * 32 {
        let proof = cvs(proof);
        assert_eq!(encode_group_header(index, &proof), payload);
    }
}

fn cvs(raw: &[u8]) -> Vec<Cv> {
    raw.chunks_exact(32)
        .map(|c| {
            let mut cv = [0u8; 32];
            cv.copy_from_slice(c);
            cv
        })
        .collect()
}

/// `root:32 size:u64 group_log:u8 record`: a group record of a blob stream, checked against
/// the blob the requester asked for. The record is `index:u64 proof_len:u8 proof data`;
/// whatever the bytes, verifying them must be an answer, never a panic.
pub fn group(data: &[u8]) {
    let Some((root, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((size, rest)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let Some((&group_log, record)) = rest.split_first() else {
        return;
    };
    let size = u64::from_be_bytes(*size);
    let Some((header, rest)) = record.split_first_chunk::<GROUP_HEADER_LEN>() else {
        return;
    };
    let Ok((index, proof_len)) = decode_group_header(*header) else {
        return;
    };
    assert!(proof_len <= MAX_PROOF_LEN);
    let Some(proof) = rest.get(..proof_len * 32) else {
        return;
    };
    let body = &rest[proof.len()..];
    let proof = cvs(proof);
    assert_eq!(
        &encode_group_header(index, &proof)[..],
        &record[..record.len() - body.len()]
    );
    if verify_group(root, size, group_log, index, body, &proof).is_ok() {
        // A verified group is not verified under another root.
        let mut other = *root;
        other[0] ^= 1;
        assert!(verify_group(&other, size, group_log, index, body, &proof).is_err());
    }
}

/// `size:u64 shard_len:u16 datagram`: a SHARD datagram of a FEC fetch of a `size`-byte blob
/// in shards of `shard_len` bytes.
pub fn shard(data: &[u8]) {
    let Some((size, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((shard_len, datagram)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let size = u64::from_be_bytes(*size);
    let shard_len = usize::from(u16::from_be_bytes(*shard_len));
    let Ok(layout) = FecLayout::new(size, shard_len, shard_len + SHARD_HEADER_LEN) else {
        return;
    };
    let Ok(shard) = Shard::decode(datagram, &layout) else {
        return;
    };
    assert!(usize::from(shard.index) < shard.params.total());
    assert_eq!(shard.payload.len(), layout.shard_len());
    let Ok((start, end)) = layout.stripe_range(shard.params, shard.stripe) else {
        panic!("a decoded shard's stripe is outside the blob");
    };
    assert!(start < end && end <= size);
    assert!(shard.stripe < layout.stripes(shard.params));
    let mut encoded = Vec::new();
    shard.encode(&mut encoded);
    assert_eq!(encoded, datagram);
}

/// `key:32 binding:32 role:u8 payload`: a HELLO payload verified against a signer key and a
/// channel binding. Signatures over fuzzed bytes never verify, so the body behind the
/// signature is also decoded on its own, as if it had.
pub fn hello(data: &[u8]) {
    let Some((key, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((binding, rest)) = rest.split_first_chunk::<EXPORTER_LEN>() else {
        return;
    };
    let Some((&role, payload)) = rest.split_first() else {
        return;
    };
    let role = if role & 1 == 0 {
        Role::Dialer
    } else {
        Role::Listener
    };
    if let Ok(key) = PublicKey::from_bytes(key) {
        if let Ok(hello) = Hello::verify(payload, &key, role, binding) {
            check_hello(&hello, role, binding);
        }
    }
    let body = &payload[..payload.len().saturating_sub(64)];
    if let Ok(hello) = Hello::decode_body(body) {
        assert_eq!(hello.encode_body(), body);
        // Only the version this side speaks verifies; others are refused before the body.
        if hello.version == PROTOCOL_VERSION {
            check_hello(&hello, role, binding);
        }
    }
}

fn check_hello(hello: &Hello, role: Role, binding: &[u8; EXPORTER_LEN]) {
    static SIGNER: OnceLock<Identity> = OnceLock::new();
    let signer = SIGNER.get_or_init(Identity::generate);
    let Ok(payload) = hello.sign(signer, role, binding) else {
        panic!("a decoded HELLO does not sign");
    };
    let back = Hello::verify(&payload, &signer.public_key(), role, binding);
    assert_eq!(back.as_ref(), Ok(hello));
}

/// A ticket: its text form (if the bytes are UTF-8), its binary form, and the bytes as a
/// binary body sealed with a correct checksum.
pub fn ticket(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let one = Ticket::parse(text);
        if let Ok(all) = ticket::parse_all(text) {
            check_tickets(&all);
            assert_eq!(one.ok().as_ref(), all.first().filter(|_| all.len() == 1));
        }
    }
    if let Ok(t) = Ticket::from_bytes(data) {
        assert_eq!(t.to_bytes(), data);
    }
    if let Ok(c) = crate::contact::Contact::from_bytes(data) {
        assert_eq!(c.to_bytes(), data);
    }
    let sealed = ticket::encode_text(&ticket::seal(data.to_vec()));
    if let Ok(all) = ticket::parse_all(&sealed) {
        check_tickets(&all);
    }
}

fn check_tickets(all: &[Ticket]) {
    assert!((1..=MAX_TICKET_PROVIDERS).contains(&all.len()));
    assert!(all.iter().all(|t| t.addrs.len() <= MAX_TICKET_ADDRS));
    let Ok(text) = ticket::join(all) else {
        panic!("tickets that parsed together do not join");
    };
    assert_eq!(ticket::parse_all(&text).as_deref(), Ok(all));
    if let [one] = all {
        assert_eq!(Ticket::from_bytes(&one.to_bytes()).as_ref(), Ok(one));
    }
}

/// A resumable download's state file, as read back from disk and sealed with a correct
/// checksum.
pub fn state(data: &[u8]) {
    if let Ok(state) = TransferState::decode(data) {
        check_state(&state, data);
    }
    let sealed = TransferState::seal(data.to_vec());
    if let Ok(state) = TransferState::decode(&sealed) {
        check_state(&state, &sealed);
    }
}

fn check_state(state: &TransferState, raw: &[u8]) {
    assert_eq!(state.encode(), raw);
    assert!(state.done_groups() <= state.groups());
    assert!(state.done_bytes() <= state.size);
    let missing: u64 = state.missing_ranges().iter().map(|(_, count)| count).sum();
    assert_eq!(missing + state.done_groups(), state.groups());
    assert_eq!(state.complete(), missing == 0);
}

/// A collection listing from a peer: what decodes must encode back to the same bytes (the
/// encoding is deterministic and the decoder accepts only what the encoder writes).
pub fn collection(data: &[u8]) {
    if let Ok(entries) = crate::collection::decode(data) {
        assert!(entries.len() <= crate::collection::MAX_ENTRIES);
        assert_eq!(crate::collection::encode(entries).as_deref(), Ok(data));
    }
}

/// Runs every committed seed (`corpus-seed/<target>/`) and past crash (`regressions/<target>/`)
/// under `fuzz_dir` through `run`, for each of `targets`; returns the inputs that panicked or
/// that `run` rejected, and the targets that have no seeds. The regression tests of this crate
/// and of `i6p-net` share it.
pub fn replay_corpus(
    fuzz_dir: &std::path::Path,
    targets: &[&str],
    run: impl Fn(&str, &[u8]) -> bool + std::panic::RefUnwindSafe,
) -> Vec<String> {
    let files = |dir: std::path::PathBuf| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p: &std::path::PathBuf| p.is_file());
        files.sort();
        files
    };
    let mut failed = Vec::new();
    for target in targets {
        let seeds = files(fuzz_dir.join("corpus-seed").join(target));
        if seeds.is_empty() {
            failed.push(format!("no seeds for fuzz target {target}"));
        }
        for path in seeds
            .iter()
            .chain(&files(fuzz_dir.join("regressions").join(target)))
        {
            let ok = std::fs::read(path)
                .is_ok_and(|data| std::panic::catch_unwind(|| run(target, &data)).unwrap_or(false));
            if !ok {
                failed.push(path.display().to_string());
            }
        }
    }
    failed
}

/// The seeds of one fuzz target, written afresh under `<fuzz_dir>/corpus-seed/<target>/` by
/// the seed-writing tests of this crate and of `i6p-net`. A test helper: it panics when the
/// directory cannot be written.
pub struct SeedDir {
    dir: std::path::PathBuf,
}

impl SeedDir {
    /// Empties (or creates) the seed directory of `target`.
    pub fn new(fuzz_dir: &std::path::Path, target: &str) -> Self {
        let dir = fuzz_dir.join("corpus-seed").join(target);
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        Self { dir }
    }

    /// Writes one seed.
    pub fn write(&self, name: &str, data: &[u8]) {
        let path = self.dir.join(name);
        if let Err(e) = std::fs::write(&path, data) {
            panic!("cannot write {}: {e}", path.display());
        }
    }
}
