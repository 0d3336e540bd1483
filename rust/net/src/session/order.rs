//! The order of application streams: `accept_stream` returns them in the order the peer
//! opened them, as QUIC numbers them.
//!
//! The dispatcher reads each stream's kind byte on a task of its own, so a later stream can
//! be ready before an earlier one (its first packet came first, or its task ran first): a
//! peer that opens a stream, writes to it, then opens another, must not see them swapped
//! (it answered "done" on a stream the application took for the second one). Every stream
//! the dispatcher accepts takes a turn; application streams are queued when every earlier
//! turn has been settled (delivered, or settled empty: another protocol's stream, or one
//! that failed), the others settle their turn as soon as their kind is known.
//!
//! A turn the peer holds open (its kind byte never comes) holds back the streams after it
//! until `STREAM_KIND_TIMEOUT`, on this session only. The turns kept waiting are bounded:
//! past [`MAX_HELD`], the oldest gap is given up and what follows it is delivered; a stream
//! settled after its turn was given up is queued when it comes.

use super::Session;
use std::collections::BTreeMap;

/// Most settled turns kept waiting behind an unsettled one.
const MAX_HELD: usize = 256;

type Streams = (quinn::SendStream, quinn::RecvStream);

/// Turns settled behind the first unsettled one (`T`: a pair of streams; numbers in tests).
pub(super) struct StreamOrder<T = Streams> {
    /// The first turn not yet settled (nor given up).
    next: u64,
    held: BTreeMap<u64, Option<T>>,
}

impl<T> Default for StreamOrder<T> {
    fn default() -> Self {
        Self {
            next: 0,
            held: BTreeMap::new(),
        }
    }
}

impl<T> StreamOrder<T> {
    /// Settles turn `seq` with `streams` (None: not an application stream) and returns the
    /// application streams now due, in order.
    fn settle(&mut self, seq: u64, streams: Option<T>) -> Vec<T> {
        let mut due = Vec::new();
        if seq < self.next {
            // Its turn was given up: it goes after what was delivered meanwhile.
            due.extend(streams);
            return due;
        }
        self.held.insert(seq, streams);
        if self.held.len() > MAX_HELD {
            if let Some((&first, _)) = self.held.first_key_value() {
                self.next = first;
            }
        }
        while let Some(streams) = self.held.remove(&self.next) {
            self.next += 1;
            due.extend(streams);
        }
        due
    }
}

/// A stream's place in the order; settled empty when dropped unsettled.
pub(super) struct Turn {
    session: Session,
    seq: u64,
    settled: bool,
}

impl Turn {
    pub(super) fn new(session: Session, seq: u64) -> Self {
        Self {
            session,
            seq,
            settled: false,
        }
    }

    /// Settles the turn with an application stream (queued once every earlier turn is
    /// settled) or with nothing.
    pub(super) fn settle(mut self, streams: Option<Streams>) {
        self.settled = true;
        self.settle_now(streams);
    }

    fn settle_now(&self, streams: Option<Streams>) {
        let due = match self.session.inner.order.lock() {
            Ok(mut order) => order.settle(self.seq, streams),
            Err(poisoned) => poisoned.into_inner().settle(self.seq, streams),
        };
        for (send, recv) in due {
            self.session.queue_stream(send, recv);
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.settled {
            self.settle_now(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Node, NodeConfig};
    use bytes::Bytes;
    use i6p_core::kinds::STREAM_APP;
    use i6p_core::Identity;
    use std::time::Duration;

    fn node() -> Node {
        let any = "[::]:0".parse().unwrap_or_else(|_| unreachable!());
        Node::bind(Identity::generate(), any, NodeConfig::default()).expect("bind")
    }

    #[tokio::test]
    async fn the_stream_opened_first_is_accepted_first_whatever_arrives_first() {
        let (a, b) = (node(), node());
        let port = b.local_addr().expect("addr").port();
        let to_b = format!("[::1]:{port}").parse().expect("addr");
        let (ab, ba) = tokio::join!(a.connect(b.peer_id(), to_b), b.accept());
        let (ab, ba) = (ab.expect("connect"), ba.expect("accept"));
        // The first stream is opened but says nothing yet; the second says everything (and
        // so opens the first on the peer's side: QUIC opens streams in order).
        let (mut first, _r1) = ab.open_kind(None).await.expect("open");
        let (mut second, _r2) = ab.open_stream().await.expect("open");
        second
            .write(Bytes::from_static(b"second"))
            .await
            .expect("write");
        second.finish().await.expect("finish");
        let early = tokio::time::timeout(Duration::from_millis(300), ba.accept_stream()).await;
        assert!(early.is_err(), "the second stream came before the first");
        first.write_all(&[STREAM_APP]).await.expect("write");
        first.write_all(b"first").await.expect("write");
        first.finish().expect("finish");
        for want in [&b"first"[..], b"second"] {
            let (_send, mut recv) = ba.accept_stream().await.expect("accept");
            assert_eq!(recv.read_to_end(64).await.expect("read"), want);
        }
    }

    /// Turns settled as (seq, is_app); the seqs delivered, in order.
    fn order(settles: &[(u64, bool)]) -> Vec<u64> {
        let mut order = StreamOrder::<u64>::default();
        settles
            .iter()
            .flat_map(|&(seq, app)| order.settle(seq, app.then_some(seq)))
            .collect()
    }

    #[test]
    fn later_streams_wait_for_earlier_turns() {
        assert_eq!(order(&[(1, true), (2, false), (0, true)]), vec![0, 1]);
        assert_eq!(
            order(&[(2, true), (1, true), (0, false), (3, true)]),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn a_gap_held_too_long_is_given_up_and_its_stream_comes_late() {
        let mut settles: Vec<(u64, bool)> = (1..=MAX_HELD as u64 + 1).map(|s| (s, true)).collect();
        settles.push((0, true));
        let got = order(&settles);
        let mut want: Vec<u64> = (1..=MAX_HELD as u64 + 1).collect();
        want.push(0);
        assert_eq!(got, want);
    }
}
