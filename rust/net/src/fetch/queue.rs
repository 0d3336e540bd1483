//! The queue from the workers (async tasks) to the disk stage (a blocking thread), woken in
//! batches: the disk stage is faster than the network, so with a plain channel it empties
//! the queue and sleeps after nearly every group, and each group then costs a thread wake-up
//! (two context switches, as much CPU as hashing a sixth of the group). Here a sender wakes
//! it only once [`WAKE_AT`] groups are waiting, or when the last sender is gone; a sleeping
//! disk stage also looks by itself every [`LINGER`], so a slow trickle is never held long.
//!
//! Bounded: senders wait (asynchronously) for room, at most `depth` groups wait in all.

use super::shared::Slot;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Groups waiting before a sender wakes the disk stage (fewer if the queue holds fewer).
const WAKE_AT: usize = 4;

/// Longest a sleeping disk stage leaves waiting groups alone.
const LINGER: Duration = Duration::from_millis(10);

struct Queue {
    waiting: Mutex<Waiting>,
    ready: Condvar,
    /// One permit per free place; closed when the disk stage stops.
    room: Semaphore,
    wake_at: usize,
}

struct Waiting {
    slots: VecDeque<Slot>,
    senders: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Every holder only pushes, pops or counts: a poisoned lock holds nothing half-made.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A worker's end of the queue.
pub(crate) struct DiskSender(Arc<Queue>);

/// The disk stage's end. Dropping it stops the senders (their `send` fails).
pub(crate) struct DiskReceiver(Arc<Queue>);

/// A queue of at most `depth` (at least 1) groups.
pub(crate) fn disk_queue(depth: usize) -> (DiskSender, DiskReceiver) {
    let depth = depth.max(1);
    let queue = Arc::new(Queue {
        waiting: Mutex::new(Waiting {
            slots: VecDeque::with_capacity(depth),
            senders: 1,
        }),
        ready: Condvar::new(),
        room: Semaphore::new(depth),
        // A wake-up per half queue at most, so senders never wait on a full queue for it.
        wake_at: WAKE_AT.min(depth.div_ceil(2)),
    });
    (DiskSender(queue.clone()), DiskReceiver(queue))
}

impl DiskSender {
    /// Queues `slot`, waiting for room; gives it back if the disk stage has stopped.
    pub(crate) async fn send(&self, slot: Slot) -> Result<(), Slot> {
        match self.0.room.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(slot),
        }
        let waiting = {
            let mut w = self.0.lock();
            w.slots.push_back(slot);
            w.slots.len()
        };
        if waiting >= self.0.wake_at {
            self.0.ready.notify_one();
        }
        Ok(())
    }
}

impl Clone for DiskSender {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl Drop for DiskSender {
    fn drop(&mut self) {
        let last = {
            let mut w = self.0.lock();
            w.senders -= 1;
            w.senders == 0
        };
        if last {
            self.0.ready.notify_one();
        }
    }
}

impl DiskReceiver {
    /// Moves the waiting groups into `batch` (empty on entry), sleeping until there are
    /// enough, or some have waited [`LINGER`]. False once every sender is gone and nothing
    /// is left.
    pub(crate) fn recv_batch(&self, batch: &mut Vec<Slot>) -> bool {
        let mut w = self.0.lock();
        let mut lingered = false;
        loop {
            let n = w.slots.len();
            if n >= self.0.wake_at || (n > 0 && (lingered || w.senders == 0)) {
                batch.extend(w.slots.drain(..));
                return true;
            }
            if w.senders == 0 {
                return false;
            }
            let (guard, timeout) = self
                .0
                .ready
                .wait_timeout(w, LINGER)
                .unwrap_or_else(|e| e.into_inner());
            w = guard;
            lingered = timeout.timed_out();
        }
    }

    /// Gives back the places of `n` groups taken off the queue.
    pub(crate) fn done(&self, n: usize) {
        self.0.room.add_permits(n);
    }
}

impl Drop for DiskReceiver {
    fn drop(&mut self) {
        self.0.room.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(index: u64) -> Slot {
        Slot {
            provider: 0,
            index,
            proof: Vec::new(),
            data: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_group_arrives_in_order_and_the_queue_stays_bounded() {
        let (tx, rx) = disk_queue(3);
        let disk = tokio::task::spawn_blocking(move || {
            let (mut got, mut batch) = (Vec::new(), Vec::new());
            while rx.recv_batch(&mut batch) {
                assert!(batch.len() <= 3, "{} groups queued", batch.len());
                rx.done(batch.len());
                got.extend(batch.drain(..).map(|s| s.index));
            }
            got
        });
        let second = tx.clone();
        for i in 0..100 {
            let sender = if i % 2 == 0 { &tx } else { &second };
            assert!(sender.send(slot(i)).await.is_ok());
        }
        drop((tx, second));
        assert_eq!(disk.await.unwrap(), (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_trickle_is_delivered_without_a_full_batch_and_a_stopped_stage_refuses() {
        let (tx, rx) = disk_queue(64);
        assert!(tx.send(slot(7)).await.is_ok());
        let mut batch = Vec::new();
        // One group, its sender still there: delivered once it has lingered.
        assert!(rx.recv_batch(&mut batch));
        assert_eq!(batch.iter().map(|s| s.index).collect::<Vec<_>>(), [7]);
        drop(rx);
        assert_eq!(tx.send(slot(8)).await.map_err(|s| s.index), Err(8));
    }
}
