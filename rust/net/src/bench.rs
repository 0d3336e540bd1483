//! Reference transfers done entirely inside the engine, for benchmarks. Both ends run in this
//! process on ::1, so the Python benchmarks can put every figure next to a baseline measured
//! in the same run:
//! - [`raw_quinn_stream`]: bare quinn, one connection, one stream, with the same quinn and
//!   rustls versions, TLS identities, transport settings and sockets the engine uses, but none
//!   of its session layer: the ceiling for everything else;
//! - [`stream_transfer`]: the same over an I6P session;
//! - [`fetch_transfer`]: a verified fetch of a file between two nodes.

use crate::error::{NetError, Result};
use crate::fetch::{fetch_to_file, FetchOptions, Progress};
use crate::node::{bind_socket, transport_config, Node, NodeConfig};
use crate::resume::{dial_name, PeerSessions, ServerSessions};
use crate::tls::{self, TlsIdentity};
use bytes::Bytes;
use i6p_core::Identity;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn loopback(port: u16) -> SocketAddr {
    ([0, 0, 0, 0, 0, 0, 0, 1u16], port).into()
}

fn endpoint(
    server: Option<quinn::ServerConfig>,
    config: &NodeConfig,
) -> Result<(quinn::Endpoint, Arc<quinn::TransportConfig>)> {
    let closing = crate::closing::NodeClosing::default();
    let transport = Arc::new(transport_config(config, &closing)?);
    let server = server.map(|mut s| {
        s.transport_config(transport.clone());
        s
    });
    // The same socket and initial buffers as a node's (on ::1 its tuner never grows them).
    let socket = bind_socket(loopback(0))?;
    crate::socket::SocketBuffers::new(&socket)?;
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        config.endpoint_config()?,
        server,
        crate::mtu::BatchSizedSocket::wrap(socket, config.udp_payload())?,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok((endpoint, transport))
}

/// Moves `total` bytes over one stream of a bare quinn connection in `block`-sized writes;
/// returns the time from the first write to the last byte read.
pub async fn raw_quinn_stream(total: u64, block: usize, config: &NodeConfig) -> Result<Duration> {
    let block = block.max(1);
    let (client, ours, theirs) = raw_quinn_pair(config).await?;
    let data = Bytes::from(vec![0x5a; block]);
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let (mut send, _recv) = ours
            .open_bi()
            .await
            .map_err(|e| NetError::Stream(e.to_string()))?;
        let mut left = total;
        while left > 0 {
            let n = left.min(block as u64) as usize;
            send.write_chunk(data.slice(..n))
                .await
                .map_err(|e| NetError::Stream(e.to_string()))?;
            left -= n as u64;
        }
        send.finish().map_err(|e| NetError::Stream(e.to_string()))?;
        let _ = send.stopped().await;
        Ok::<_, NetError>(ours)
    });
    let (_send, mut recv) = theirs
        .accept_bi()
        .await
        .map_err(|e| NetError::Stream(e.to_string()))?;
    let mut received = 0u64;
    while let Some(chunk) = recv
        .read_chunk(usize::MAX, true)
        .await
        .map_err(|e| NetError::Stream(e.to_string()))?
    {
        received += chunk.bytes.len() as u64;
    }
    let elapsed = start.elapsed();
    let ours = sender
        .await
        .map_err(|e| NetError::Stream(format!("sender task failed: {e}")))??;
    if received != total {
        return Err(NetError::Stream(format!(
            "received {received} of {total} bytes"
        )));
    }
    ours.close(0u32.into(), b"done");
    theirs.close(0u32.into(), b"done");
    client.wait_idle().await;
    Ok(elapsed)
}

/// A bare quinn connection over loopback with the node's TLS and transport settings: the
/// client endpoint and both ends of the connection.
async fn raw_quinn_pair(
    config: &NodeConfig,
) -> Result<(quinn::Endpoint, quinn::Connection, quinn::Connection)> {
    let (server_id, client_id) = (Identity::generate(), Identity::generate());
    let server_tls = TlsIdentity::new(&server_id)?;
    let client_tls = TlsIdentity::new(&client_id)?;
    let crypto = QuicServerConfig::try_from(tls::server_crypto(
        &server_tls,
        Arc::new(ServerSessions::in_memory()),
    )?)
    .map_err(|e| NetError::Tls(e.to_string()))?;
    let (server, _) = endpoint(
        Some(quinn::ServerConfig::with_crypto(Arc::new(crypto))),
        config,
    )?;
    let (client, transport) = endpoint(None, config)?;
    let (crypto, _) = tls::client_crypto(&client_tls, Arc::new(PeerSessions::default()))?;
    let crypto = QuicClientConfig::try_from(crypto).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    client_config.transport_config(transport);
    let server_addr = loopback(server.local_addr()?.port());
    let connecting = client
        .connect_with(
            client_config,
            server_addr,
            &dial_name(&server_id.peer_id(), 0),
        )
        .map_err(|e| NetError::Handshake(e.to_string()))?;
    let incoming = server
        .accept()
        .await
        .ok_or_else(|| NetError::Handshake("no incoming connection".into()))?;
    let (ours, theirs) = tokio::join!(connecting, incoming);
    let (ours, theirs) = (
        ours.map_err(|e| NetError::Handshake(e.to_string()))?,
        theirs.map_err(|e| NetError::Handshake(e.to_string()))?,
    );
    Ok((client, ours, theirs))
}

async fn node_pair(config: &NodeConfig) -> Result<(Node, Node, crate::Session, crate::Session)> {
    let a = Node::bind(Identity::generate(), loopback(0), config.clone())?;
    let b = Node::bind(Identity::generate(), loopback(0), config.clone())?;
    let addr = loopback(b.local_addr()?.port());
    let (sa, sb) = tokio::join!(a.connect(b.peer_id(), addr), b.accept());
    Ok((a, b, sa?, sb?))
}

/// Moves `total` bytes over one stream between two fresh nodes; returns the time from the
/// first write to the last byte read (the handshake is not included).
pub async fn stream_transfer(total: u64, block: usize, config: &NodeConfig) -> Result<Duration> {
    let block = block.max(1);
    let (a, b, sa, sb) = node_pair(config).await?;
    let data = Bytes::from(vec![0x5a; block]);
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let (mut send, _recv) = sa.open_stream().await?;
        let mut left = total;
        while left > 0 {
            let n = left.min(block as u64) as usize;
            send.write(data.slice(..n)).await?;
            left -= n as u64;
        }
        send.finish().await?;
        Ok::<_, NetError>(sa)
    });
    let (_send, mut recv) = sb.accept_stream().await?;
    let mut received = 0u64;
    while let Some(chunk) = recv.read(1 << 20).await? {
        received += chunk.len() as u64;
    }
    let elapsed = start.elapsed();
    let sa = sender
        .await
        .map_err(|e| NetError::Stream(format!("sender task failed: {e}")))??;
    if received != total {
        return Err(NetError::Stream(format!(
            "received {received} of {total} bytes"
        )));
    }
    sa.close(0, "done").await;
    a.close().await;
    b.close().await;
    Ok(elapsed)
}

/// Serves the file at `src` from one node and fetches it with another into `dest` (replaced
/// if present); returns the fetch's duration (hashing the source is not included).
pub async fn fetch_transfer(
    src: &Path,
    dest: &Path,
    options: FetchOptions,
    config: &NodeConfig,
) -> Result<Duration> {
    let (a, b, sa, _sb) = node_pair(config).await?;
    let store = b.store().clone();
    let src = src.to_path_buf();
    let blob = tokio::task::spawn_blocking(move || store.add_path(&src))
        .await
        .map_err(|e| NetError::Io(e.to_string()))?
        .map_err(|e| NetError::Io(e.to_string()))?;
    let options = FetchOptions {
        overwrite: true,
        ..options
    };
    let progress = Arc::new(Progress::default());
    let outcome = fetch_to_file(
        &sa,
        blob.hash(),
        blob.size(),
        dest.to_path_buf(),
        options,
        progress,
    )
    .await?;
    a.close().await;
    b.close().await;
    Ok(outcome.duration)
}

/// Moves `total` bytes over `streams` new streams at once (an equal share each) from
/// `sender`'s side of a session to `receiver`'s (the two ends of one session, in this process);
/// returns (seconds, bytes received) samples taken every `sample` from the first write,
/// ending with the last byte.
pub async fn timed_stream(
    sender: &crate::Session,
    receiver: &crate::Session,
    total: u64,
    streams: usize,
    sample: Duration,
) -> Result<Vec<(f64, u64)>> {
    let streams = streams.max(1) as u64;
    let block = 1usize << 20;
    let data = Bytes::from(vec![0x5a; block]);
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..streams {
        let share = total / streams + u64::from(k < total % streams);
        let (sa, data) = (sender.clone(), data.clone());
        tasks.spawn(async move {
            let (mut send, _recv) = sa.open_stream().await?;
            let mut left = share;
            while left > 0 {
                let n = left.min(block as u64) as usize;
                send.write(data.slice(..n)).await?;
                left -= n as u64;
            }
            send.finish().await
        });
        let (_send, mut recv) = receiver.accept_stream().await?;
        let count = received.clone();
        tasks.spawn(async move {
            while let Some(chunk) = recv.read(1 << 20).await? {
                count.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        });
    }
    let mut samples = Vec::new();
    let mut ticker = tokio::time::interval(sample);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(r) => r.map_err(|e| NetError::Stream(format!("stream task failed: {e}")))??,
                None => break,
            },
            _ = ticker.tick() => samples.push((
                start.elapsed().as_secs_f64(),
                received.load(std::sync::atomic::Ordering::Relaxed),
            )),
        }
    }
    let got = received.load(std::sync::atomic::Ordering::Relaxed);
    samples.push((start.elapsed().as_secs_f64(), got));
    if got != total {
        return Err(NetError::Stream(format!("received {got} of {total} bytes")));
    }
    Ok(samples)
}
