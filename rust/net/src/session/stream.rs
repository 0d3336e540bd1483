//! Application streams: the two halves of a bidirectional QUIC stream.
//!
//! Errors name the session's end (CLOSE reason, node closed, idle timeout) rather than a
//! bare "connection lost".

use crate::error::{NetError, Result};
use crate::session::Session;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// The sending half of a stream.
pub struct SendStream {
    inner: quinn::SendStream,
    session: Session,
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
}

impl SendStream {
    pub(crate) fn new(inner: quinn::SendStream, session: Session) -> Self {
        Self { inner, session }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        u64::from(self.inner.id())
    }

    /// Queues all of `data` for sending, waiting for flow-control credit as needed.
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        self.inner
            .write_chunk(data)
            .await
            .map_err(|e| write_error(&self.session, e))
    }

    /// Ends the stream and waits until the peer has acknowledged every byte.
    pub async fn finish(&mut self) -> Result<()> {
        self.inner
            .finish()
            .map_err(|_| NetError::Stream("stream already finished".into()))?;
        match self.inner.stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(NetError::StreamReset(code.into_inner())),
            Err(quinn::StoppedError::ConnectionLost(e)) => Err(self.session.lost(&e)),
            Err(e) => Err(NetError::Stream(e.to_string())),
        }
    }

    pub(crate) fn into_inner(self) -> quinn::SendStream {
        self.inner
    }

    /// Abandons the stream: unsent data is dropped and the peer's reads fail with `code`.
    pub fn reset(&mut self, code: u32) {
        let _ = self.inner.reset(quinn::VarInt::from_u32(code));
    }
}

impl RecvStream {
    pub(crate) fn new(inner: quinn::RecvStream, session: Session) -> Self {
        Self {
            inner,
            session,
            pending: VecDeque::new(),
            pending_len: 0,
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
        while self.pending_len < max {
            match poll_once(self.inner.read_chunk(max - self.pending_len, true)).await {
                Some(Ok(Some(chunk))) => self.push(chunk.bytes),
                // The end of the stream or an error: the next read reports them.
                Some(Ok(None)) | Some(Err(_)) | None => break,
            }
        }
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
        Ok(Some(pieces))
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

    /// Tells the peer to stop sending; its writes fail with `code`.
    pub fn stop(&mut self, code: u32) {
        let _ = self.inner.stop(quinn::VarInt::from_u32(code));
    }

    /// Moves one chunk from QUIC into the buffer; false at the end of the stream.
    async fn pull(&mut self, max: usize) -> Result<bool> {
        match self.inner.read_chunk(max, true).await {
            Ok(Some(chunk)) => {
                self.push(chunk.bytes);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(read_error(&self.session, e)),
        }
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

/// How much `read_to_end` asks QUIC for at a time.
const READ_BATCH_CAPACITY: usize = 1 << 20;

/// Polls a future once: its output if it is ready now, `None` (dropping it) otherwise.
async fn poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match fut.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
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
        other => session.explain(NetError::Stream(other.to_string())),
    }
}
