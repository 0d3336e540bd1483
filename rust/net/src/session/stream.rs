//! Application streams: the two halves of a bidirectional QUIC stream.
//!
//! Errors name the session's end (CLOSE reason, node closed, idle timeout) rather than a
//! bare "connection lost", and never a quinn detail such as "0-RTT rejected" once the
//! session is gone. A reset (or a STOP_SENDING) is sticky: quinn reports it once, and every
//! later read (or write) reports the same code again, so a reader cannot mistake it for an
//! end of stream. Bytes buffered but not yet delivered when the reset is seen are dropped.

use crate::error::{NetError, Result};
use crate::session::Session;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// The sending half of a stream.
pub struct SendStream {
    inner: quinn::SendStream,
    session: Session,
    /// The peer's STOP_SENDING code, once a write saw it.
    stopped: Option<u64>,
    /// True once `finish` or `reset` was called: nothing more will be sent.
    ended: bool,
}

/// The receiving half of a stream.
///
/// Every read is cancel-safe: data taken from QUIC moves into an internal buffer before the
/// next await, so a read that is dropped half-way (a cancelled Python task, a timeout) loses
/// nothing; the next read returns it. Callers that drop a result they did not deliver hand it
/// back with [`RecvStream::unread`].
pub struct RecvStream {
    inner: quinn::RecvStream,
    session: Session,
    pending: VecDeque<Bytes>,
    pending_len: usize,
    /// The peer's reset code, once a read saw it.
    reset: Option<u64>,
}

/// What [`RecvStream::read_until`] found.
#[derive(Debug)]
pub enum Until {
    /// The bytes up to and including the separator.
    Found(Bytes),
    /// No separator within the limit; everything stays buffered for the next read.
    Overrun {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The stream ended before a separator; the bytes that did arrive (taken off the stream).
    Ended(Bytes),
}

impl SendStream {
    pub(crate) fn new(inner: quinn::SendStream, session: Session) -> Self {
        Self {
            inner,
            session,
            stopped: None,
            ended: false,
        }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        u64::from(self.inner.id())
    }

    /// Queues all of `data` for sending, waiting for flow-control credit as needed.
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        if let Some(code) = self.stopped {
            return Err(NetError::StreamReset(code));
        }
        match self.inner.write_chunk(data).await {
            Ok(()) => Ok(()),
            Err(quinn::WriteError::Stopped(code)) => {
                self.stopped = Some(code.into_inner());
                Err(NetError::StreamReset(code.into_inner()))
            }
            Err(e) => Err(write_error(&self.session, e)),
        }
    }

    /// Queues as much of `data` as the stream takes now, without waiting, and advances
    /// `data` past it; true when all of it went. What is left needs [`Self::write`], which
    /// waits for flow-control credit: a caller cannot buffer more than the send window.
    pub fn try_write(&mut self, data: &mut Bytes) -> Result<bool> {
        if let Some(code) = self.stopped {
            return Err(NetError::StreamReset(code));
        }
        while !data.is_empty() {
            // `write_chunks` is cancel-safe: when it is not ready, nothing was taken.
            match poll_now(self.inner.write_chunks(std::slice::from_mut(data))) {
                None => return Ok(false),
                Some(Ok(_)) => {}
                Some(Err(quinn::WriteError::Stopped(code))) => {
                    self.stopped = Some(code.into_inner());
                    return Err(NetError::StreamReset(code.into_inner()));
                }
                Some(Err(e)) => return Err(write_error(&self.session, e)),
            }
        }
        Ok(true)
    }

    /// True once [`Self::finish`] or [`Self::reset`] was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Ends the stream and waits until the peer has acknowledged every byte.
    pub async fn finish(&mut self) -> Result<()> {
        if let Some(code) = self.stopped {
            return Err(NetError::StreamReset(code));
        }
        self.ended = true;
        self.inner
            .finish()
            .map_err(|_| NetError::Stream("stream already finished".into()))?;
        match self.inner.stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(NetError::StreamReset(code.into_inner())),
            Err(quinn::StoppedError::ConnectionLost(e)) => Err(self.session.lost(&e)),
            Err(e) => Err(self.session.explain(NetError::Stream(e.to_string()))),
        }
    }

    pub(crate) fn into_inner(self) -> quinn::SendStream {
        self.inner
    }

    /// Abandons the stream: unsent data is dropped and the peer's reads fail with `code`
    /// (a code past QUIC's 2^62 - 1 is sent as the largest one).
    pub fn reset(&mut self, code: u64) {
        self.ended = true;
        let _ = self.inner.reset(varint(code));
    }
}

impl RecvStream {
    pub(crate) fn new(inner: quinn::RecvStream, session: Session) -> Self {
        Self {
            inner,
            session,
            pending: VecDeque::new(),
            pending_len: 0,
            reset: None,
        }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        u64::from(self.inner.id())
    }

    /// Waits for data, then returns what has arrived, up to `max` bytes, as one buffer;
    /// `None` at the end of the stream. Data arrives in packet-sized pieces: gathering them
    /// saves a caller round trip per piece.
    pub async fn read(&mut self, max: usize) -> Result<Option<Bytes>> {
        let Some(mut pieces) = self.read_pieces(max).await? else {
            return Ok(None);
        };
        if pieces.len() <= 1 {
            return Ok(Some(pieces.pop().unwrap_or_default()));
        }
        let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
        pieces.iter().for_each(|p| out.extend_from_slice(p));
        Ok(Some(out.freeze()))
    }

    /// Like [`Self::read`], but the pieces as they arrived, without joining them: a caller
    /// that copies them anyway (into a Python object) saves a copy. Empty only for `max == 0`.
    pub async fn read_pieces(&mut self, max: usize) -> Result<Option<Vec<Bytes>>> {
        if max == 0 {
            return Ok(Some(Vec::new()));
        }
        if self.pending_len == 0 && !self.pull(max).await? {
            return Ok(None);
        }
        self.gather(max)?;
        Ok(Some(self.split_pieces(max)))
    }

    /// [`Self::read_pieces`] without waiting: `None` when nothing has arrived yet (the
    /// caller then waits with `read_pieces`), else what that would return now. Lets a caller
    /// on another thread skip a hand-off to the runtime when data is there.
    pub fn try_read_pieces(&mut self, max: usize) -> Option<Result<Option<Vec<Bytes>>>> {
        if max == 0 {
            return Some(Ok(Some(Vec::new())));
        }
        if let Some(code) = self.reset {
            return Some(Err(NetError::StreamReset(code)));
        }
        if self.pending_len == 0 {
            match poll_now(self.inner.read_chunk(max, true))? {
                Ok(Some(chunk)) => self.push(chunk.bytes),
                Ok(None) => return Some(Ok(None)),
                Err(e) => return Some(Err(self.read_failed(e))),
            }
        }
        Some(self.gather(max).map(|()| Some(self.split_pieces(max))))
    }

    /// Waits until a read would not wait: bytes are buffered, the stream ended, or it failed
    /// (the error is returned). Takes nothing away, so a caller cancelled after this returned
    /// loses nothing: it takes the bytes with [`Self::try_read_pieces`] once it runs again.
    /// What QUIC holds by then moves into this stream's buffer here, on the runtime, so the
    /// caller's thread does not take the connection's lock once per packet to gather it (and
    /// the peer gets flow-control credit sooner).
    pub async fn readable(&mut self) -> Result<()> {
        if self.pending_len == 0 && !self.pull(READ_BATCH_CAPACITY).await? {
            return Ok(());
        }
        self.gather(READ_BATCH_CAPACITY)
    }

    /// Moves what QUIC holds now into the buffer, up to `max` buffered bytes, without waiting.
    fn gather(&mut self, max: usize) -> Result<()> {
        while self.pending_len < max {
            match poll_now(self.inner.read_chunk(max - self.pending_len, true)) {
                Some(Ok(Some(chunk))) => self.push(chunk.bytes),
                Some(Err(quinn::ReadError::Reset(code))) => {
                    return Err(self.note_reset(code.into_inner()));
                }
                // The end of the stream or an error: the next read reports them.
                Some(Ok(None)) | Some(Err(_)) | None => break,
            }
        }
        Ok(())
    }

    /// Takes up to `max` buffered bytes off the front, as the pieces they arrived in.
    fn split_pieces(&mut self, max: usize) -> Vec<Bytes> {
        let mut pieces = Vec::new();
        let mut left = max.min(self.pending_len);
        self.pending_len -= left;
        while left > 0 {
            let Some(mut front) = self.pending.pop_front() else {
                break;
            };
            if front.len() > left {
                pieces.push(front.split_to(left));
                self.pending.push_front(front);
                break;
            }
            left -= front.len();
            pieces.push(front);
        }
        pieces
    }

    /// Exactly `n` bytes. If the stream ends first this fails and keeps the bytes that did
    /// arrive for the next read.
    pub async fn read_exact(&mut self, n: usize) -> Result<Bytes> {
        while self.pending_len < n {
            if !self.pull(n - self.pending_len).await? {
                return Err(NetError::Stream(format!(
                    "stream ended after {} of {n} bytes",
                    self.pending_len
                )));
            }
        }
        Ok(self.take(n))
    }

    /// Everything until the end of the stream; fails (keeping what arrived) past `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Bytes> {
        loop {
            if self.pending_len > limit {
                return Err(NetError::ReadLimit(limit));
            }
            if !self.pull(READ_BATCH_CAPACITY).await? {
                return Ok(self.take(self.pending_len));
            }
        }
    }

    /// The QUIC stream; only for a stream with nothing buffered (a fresh, undelivered one).
    pub(crate) fn into_inner(self) -> quinn::RecvStream {
        self.inner
    }

    /// Puts bytes back at the front, to be returned by the next read.
    pub fn unread(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.pending_len += data.len();
            self.pending.push_front(data);
        }
    }

    /// Tells the peer to stop sending; its writes fail with `code` (a code past QUIC's
    /// 2^62 - 1 is sent as the largest one).
    pub fn stop(&mut self, code: u64) {
        let _ = self.inner.stop(varint(code));
    }

    /// The bytes up to and including the first `sep` (not empty), if they are at most
    /// `limit` bytes. Bytes after the separator stay buffered for the next read; past
    /// `limit` without a separator everything stays buffered ([`Until::Overrun`]), so the
    /// buffer never holds much more than `limit` plus one chunk.
    pub async fn read_until(&mut self, sep: &[u8], limit: usize) -> Result<Until> {
        let mut scanned = 0;
        loop {
            if let Some(end) = find(&self.pending, scanned, sep) {
                if end > limit {
                    return Ok(Until::Overrun { limit });
                }
                return Ok(Until::Found(self.take(end)));
            }
            if self.pending_len >= limit {
                return Ok(Until::Overrun { limit });
            }
            scanned = self.pending_len;
            let want = (limit + sep.len()).saturating_sub(self.pending_len).max(1);
            if !self.pull(want).await? {
                return Ok(Until::Ended(self.take(self.pending_len)));
            }
        }
    }

    /// Moves one chunk from QUIC into the buffer; false at the end of the stream.
    async fn pull(&mut self, max: usize) -> Result<bool> {
        if let Some(code) = self.reset {
            return Err(NetError::StreamReset(code));
        }
        match self.inner.read_chunk(max, true).await {
            Ok(Some(chunk)) => {
                self.push(chunk.bytes);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(self.read_failed(e)),
        }
    }

    fn read_failed(&mut self, e: quinn::ReadError) -> NetError {
        match e {
            quinn::ReadError::Reset(code) => self.note_reset(code.into_inner()),
            e => read_error(&self.session, e),
        }
    }

    /// Records the peer's reset: quinn reports it once, and from now on every read raises
    /// it. Bytes not yet delivered are dropped (QUIC lets a reset discard them), so no read
    /// of any kind returns data after a reset was raised.
    fn note_reset(&mut self, code: u64) -> NetError {
        self.reset = Some(code);
        self.pending.clear();
        self.pending_len = 0;
        NetError::StreamReset(code)
    }

    fn push(&mut self, data: Bytes) {
        self.pending_len += data.len();
        self.pending.push_back(data);
    }

    /// Up to `max` buffered bytes, without copying when one chunk suffices.
    fn take(&mut self, max: usize) -> Bytes {
        let n = max.min(self.pending_len);
        self.pending_len -= n;
        if let Some(front) = self.pending.front_mut() {
            if front.len() >= n {
                let out = front.split_to(n);
                if front.is_empty() {
                    self.pending.pop_front();
                }
                return out;
            }
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let Some(mut front) = self.pending.pop_front() else {
                break;
            };
            let want = n - out.len();
            if front.len() > want {
                out.extend_from_slice(&front.split_to(want));
                self.pending.push_front(front);
            } else {
                out.extend_from_slice(&front);
            }
        }
        out.freeze()
    }
}

/// The end (exclusive) of the first `sep` in the buffered pieces, looking at matches that
/// end after byte `from` (bytes before it were searched already).
fn find(pieces: &VecDeque<Bytes>, from: usize, sep: &[u8]) -> Option<usize> {
    let start = from.saturating_sub(sep.len().saturating_sub(1));
    let mut window: VecDeque<u8> = VecDeque::with_capacity(sep.len());
    let bytes = pieces.iter().flat_map(|p| p.iter().copied());
    for (at, b) in bytes.enumerate().skip(start) {
        if window.len() == sep.len() {
            window.pop_front();
        }
        window.push_back(b);
        if window.len() == sep.len() && window.iter().eq(sep.iter()) {
            return Some(at + 1);
        }
    }
    None
}

/// A code as a QUIC varint; the boundary checks the range, so clamping never changes a
/// code an application passed.
fn varint(code: u64) -> quinn::VarInt {
    quinn::VarInt::from_u64(code).unwrap_or(quinn::VarInt::MAX)
}

/// How much `read_to_end` asks QUIC for at a time.
const READ_BATCH_CAPACITY: usize = 1 << 20;

/// Polls a future once, here and now: its output if it is ready, `None` (dropping it)
/// otherwise. The waker is a no-op: a caller that needs to wait polls again with its own.
/// Safe on any thread: quinn's stream calls take the connection's lock and wake its driver,
/// they need no runtime context.
fn poll_now<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

pub(crate) fn read_error(session: &Session, e: quinn::ReadError) -> NetError {
    match e {
        quinn::ReadError::Reset(code) => NetError::StreamReset(code.into_inner()),
        quinn::ReadError::ConnectionLost(c) => session.lost(&c),
        // "0-RTT rejected" on a session whose handshake then failed: say why it failed.
        other => session.explain(NetError::Stream(other.to_string())),
    }
}

pub(crate) fn write_error(session: &Session, e: quinn::WriteError) -> NetError {
    match e {
        quinn::WriteError::Stopped(code) => NetError::StreamReset(code.into_inner()),
        quinn::WriteError::ConnectionLost(c) => session.lost(&c),
        // "0-RTT rejected" or "closed stream" on a session that is gone: say why it went.
        other => session.explain(NetError::Stream(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(parts: &[&'static [u8]]) -> VecDeque<Bytes> {
        parts.iter().map(|p| Bytes::from_static(p)).collect()
    }

    #[test]
    fn a_separator_is_found_across_pieces_and_only_past_what_was_searched() {
        let p = pieces(&[b"ab\r", b"\ncd\r\n"]);
        assert_eq!(find(&p, 0, b"\r\n"), Some(4));
        // Resuming after the first 3 bytes still sees a separator that starts before them.
        assert_eq!(find(&p, 3, b"\r\n"), Some(4));
        assert_eq!(find(&p, 0, b"\n"), Some(4));
        assert_eq!(find(&p, 0, b"xyz"), None);
        assert_eq!(find(&pieces(&[]), 0, b"\n"), None);
    }
}
