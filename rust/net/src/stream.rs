//! Application streams: the two halves of a bidirectional QUIC stream.
//!
//! Errors name the session's end (CLOSE reason, node closed, idle timeout) rather than a
//! bare "connection lost".

use crate::error::{NetError, Result};
use crate::session::Session;
use bytes::Bytes;

/// The sending half of a stream.
pub struct SendStream {
    inner: quinn::SendStream,
    session: Session,
}

/// The receiving half of a stream.
pub struct RecvStream {
    inner: quinn::RecvStream,
    session: Session,
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

    /// Abandons the stream: unsent data is dropped and the peer's reads fail with `code`.
    pub fn reset(&mut self, code: u32) {
        let _ = self.inner.reset(quinn::VarInt::from_u32(code));
    }
}

impl RecvStream {
    pub(crate) fn new(inner: quinn::RecvStream, session: Session) -> Self {
        Self { inner, session }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        u64::from(self.inner.id())
    }

    /// Up to `max` bytes as they arrive, without copying; `None` at the end of the stream.
    pub async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>> {
        match self.inner.read_chunk(max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(e) => Err(read_error(&self.session, e)),
        }
    }

    /// Waits for data, then gathers everything already received, up to `max` bytes, into one
    /// buffer; `None` at the end of the stream. Batching matters: data arrives in
    /// packet-sized pieces, and one call per piece would cost a Python round trip each.
    pub async fn read_available(&mut self, max: usize) -> Result<Option<Bytes>> {
        let Some(first) = self.read_chunk(max).await? else {
            return Ok(None);
        };
        if first.len() >= max {
            return Ok(Some(first));
        }
        let mut out = bytes::BytesMut::with_capacity(max.min(READ_BATCH_CAPACITY).max(first.len()));
        out.extend_from_slice(&first);
        while out.len() < max {
            match poll_once(self.inner.read_chunk(max - out.len(), true)).await {
                Some(Ok(Some(chunk))) => out.extend_from_slice(&chunk.bytes),
                // The end of the stream or an error: report them on the next call.
                Some(Ok(None)) | Some(Err(_)) | None => break,
            }
        }
        Ok(Some(out.freeze()))
    }

    /// Exactly `n` bytes; an error if the stream ends first.
    pub async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.try_reserve_exact(n)
            .map_err(|_| NetError::Stream(format!("cannot allocate {n} bytes")))?;
        while out.len() < n {
            match self.read_chunk(n - out.len()).await? {
                Some(chunk) => out.extend_from_slice(&chunk),
                None => {
                    return Err(NetError::Stream(format!(
                        "stream ended after {} of {n} bytes",
                        out.len()
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Everything until the end of the stream, failing if that exceeds `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.read_chunk(1 << 20).await? {
            if out.len() + chunk.len() > limit {
                return Err(NetError::Stream(format!(
                    "stream exceeds the read limit of {limit} bytes"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Tells the peer to stop sending; its writes fail with `code`.
    pub fn stop(&mut self, code: u32) {
        let _ = self.inner.stop(quinn::VarInt::from_u32(code));
    }
}

/// The initial capacity of a gathered read; it grows as needed up to the caller's maximum.
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

fn read_error(session: &Session, e: quinn::ReadError) -> NetError {
    match e {
        quinn::ReadError::Reset(code) => NetError::StreamReset(code.into_inner()),
        quinn::ReadError::ConnectionLost(c) => session.lost(&c),
        other => NetError::Stream(other.to_string()),
    }
}

fn write_error(session: &Session, e: quinn::WriteError) -> NetError {
    match e {
        quinn::WriteError::Stopped(code) => NetError::StreamReset(code.into_inner()),
        quinn::WriteError::ConnectionLost(c) => session.lost(&c),
        other => NetError::Stream(other.to_string()),
    }
}
