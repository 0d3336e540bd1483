//! TCP over a stream: one TCP connection carried by one bidirectional stream, both ways, in
//! the engine (the copy costs no Python per byte).
//!
//! Each direction ends on its own: the end of the TCP input finishes the stream, and the end
//! of the stream shuts down the TCP output (a half-close is carried as a half-close). A
//! failure on either side resets both: the TCP socket closes with RST (a zero linger, so the
//! far application does not take a cut connection for a whole one), the stream is reset and
//! stopped with code 0. Backpressure holds end to end: a side that stops reading stops the
//! copy into it, and the copy stops reading the other side.

use crate::error::{NetError, Result};
use crate::stream::{RecvStream, SendStream};
use bytes::{Buf, Bytes, BytesMut};
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// Bytes read from TCP at a time, and the most taken off the stream at a time.
const CHUNK: usize = 256 << 10;

/// Most pieces handed to one `writev` (Linux takes up to 1024).
const IOV_BATCH: usize = 128;

/// What a splice carried, once both directions ended cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    /// Bytes from the TCP connection onto the stream.
    pub to_stream: u64,
    /// Bytes from the stream onto the TCP connection.
    pub to_tcp: u64,
}

/// Carries `tcp` over the stream (`send`, `recv`) both ways until both directions ended.
/// On a failure of either side both are reset (see the module), and the first error returns.
pub async fn splice_tcp(
    mut tcp: TcpStream,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<Spliced> {
    // Small writes (a request line, a keystroke) go at once, as they would without us.
    let _ = tcp.set_nodelay(true);
    let (tcp_in, tcp_out) = tcp.split();
    let outcome = tokio::try_join!(tcp_to_stream(tcp_in, send), stream_to_tcp(recv, tcp_out));
    match outcome {
        Ok((to_stream, to_tcp)) => Ok(Spliced { to_stream, to_tcp }),
        Err(e) => {
            let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            send.reset(0);
            recv.stop(0);
            Err(e)
        }
    }
}

async fn tcp_to_stream(mut tcp: ReadHalf<'_>, send: &mut SendStream) -> Result<u64> {
    let mut buf = BytesMut::new();
    let mut total = 0u64;
    loop {
        // Room for a whole chunk: `read_buf` into a full buffer would read 0, taken for EOF.
        buf.reserve(CHUNK);
        let n = tcp.read_buf(&mut buf).await.map_err(os)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        send.write(buf.split().freeze()).await?;
    }
    send.finish().await?;
    Ok(total)
}

async fn stream_to_tcp(recv: &mut RecvStream, mut tcp: WriteHalf<'_>) -> Result<u64> {
    let mut total = 0u64;
    while let Some(mut pieces) = recv.read_pieces(CHUNK).await? {
        total += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
        write_pieces(&mut tcp, &mut pieces).await.map_err(os)?;
    }
    tcp.shutdown().await.map_err(os)?;
    Ok(total)
}

/// Writes `pieces` (as they came off the stream: a packet's worth each) with as few system
/// calls as the socket allows, up to [`IOV_BATCH`] pieces per call, without copying them.
async fn write_pieces(tcp: &mut WriteHalf<'_>, pieces: &mut [Bytes]) -> std::io::Result<()> {
    let mut first = 0;
    while first < pieces.len() {
        let slices: Vec<IoSlice<'_>> = pieces[first..]
            .iter()
            .take(IOV_BATCH)
            .map(|p| IoSlice::new(p))
            .collect();
        let mut written = tcp.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let piece = &mut pieces[first];
            let n = written.min(piece.len());
            piece.advance(n);
            written -= n;
            if piece.is_empty() {
                first += 1;
            }
        }
    }
    Ok(())
}

fn os(e: std::io::Error) -> NetError {
    NetError::Os(Arc::new(e))
}
