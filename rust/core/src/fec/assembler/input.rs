//! The assembler's inputs: SHARD datagrams and stream frames, and what they lead to
//! (stripes rebuilt, their bytes placed into groups, groups ready).

use super::{Action, Assembler, GroupAsm, ReadyGroup, Source, StripeState};
use crate::erasure::Coder;
use crate::error::{CoreError, Result};
use crate::fec::{decode_stripe, Shard, FRAME_FEC_END, FRAME_PROOF, FRAME_STRIPE};
use crate::transfer::{decode_group_header, GROUP_HEADER_LEN};
use crate::tree::group_range;
use std::time::Instant;

fn malformed(what: &'static str, detail: String) -> CoreError {
    CoreError::Malformed { what, detail }
}

impl Assembler {
    /// A SHARD datagram from member `member`, at `now`. A malformed shard, or one outside
    /// its sender's share, is dropped (and so counted as lost); an error is the batch's.
    pub fn handle_datagram(&mut self, now: Instant, member: usize, datagram: &[u8]) -> Result<()> {
        self.now = now;
        let Some(shard) = self.accept(member, datagram) else {
            return Ok(());
        };
        let (k, m) = (self.shape.data, &self.members[member]);
        let parity = shard.params.parity() as u16;
        let expected = m.expected(parity);
        let (stripe_no, index) = (shard.stripe, usize::from(shard.index));
        let (wide, shard_len) = (self.wide, self.layout.shard_len());
        // A shard seen before (a duplicate, or a replay of an old one) counts for nothing:
        // not as received, not as the member's activity, not as the batch's progress.
        let fresh = stripe_no
            .checked_sub(self.first_stripe)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.seen.get_mut(i))
            .is_some_and(|seen| seen.insert(index));
        if !fresh {
            return Ok(());
        }
        let mut spare = self.spare.pop();
        let (mut complete, mut counted) = (false, false);
        let mut progressed = false;
        if let Some(state) = self.stripe_slot(stripe_no) {
            match state {
                StripeState::Pending(buf, arrived) => {
                    let stripe = buf.get_or_insert_with(|| {
                        let mut s = spare.take().unwrap_or_default();
                        let _ = s.reset(wide, shard_len);
                        s
                    });
                    if !stripe.is_present(index) {
                        stripe.insert(index, shard.payload)?;
                        *arrived = arrived.saturating_add(1);
                        counted = true;
                        complete = usize::from(*arrived) >= k;
                        progressed = true;
                    }
                }
                StripeState::Rebuilt => counted = true,
                StripeState::Repairing(_) | StripeState::Settled => {}
            }
        }
        if progressed {
            self.progressed = now;
        }
        if let Some(s) = spare {
            self.spare.push(s);
        }
        if counted {
            if let Some(t) = self.tally(stripe_no, member) {
                t.arrived = t.arrived.saturating_add(1);
                t.expected = t.expected.max(expected);
            }
        }
        let m = &mut self.members[member];
        m.shards += 1;
        m.parity = parity;
        m.last_shard = now;
        let advanced = m.newest.is_none_or(|n| stripe_no > n);
        if advanced {
            m.newest = Some(stripe_no);
        }
        if complete {
            self.rebuild(stripe_no)?;
        }
        if advanced {
            let horizon = self.horizon();
            self.judge(horizon);
        }
        Ok(())
    }

    /// The shard `datagram` carries if it is well formed and member `member` (alive) may
    /// send it: its transfer, the batch's k, parity within bounds, an index of its share.
    fn accept<'d>(&self, member: usize, datagram: &'d [u8]) -> Option<Shard<'d>> {
        let m = self.members.get(member).filter(|m| !m.dead)?;
        let k = self.shape.data;
        Shard::decode(datagram, &self.layout).ok().filter(|s| {
            s.transfer == m.transfer
                && s.params.data() == k
                && s.params.parity() <= self.shape.max_parity
                && m.share.holds(k, usize::from(s.index))
        })
    }

    /// A frame from member `member`'s stream (PROOF, STRIPE or END), at `now`. An error is
    /// the member's: it broke the protocol.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        member: usize,
        kind: u8,
        payload: &[u8],
    ) -> Result<()> {
        self.now = now;
        let Some(m) = self.members.get_mut(member).filter(|m| !m.dead) else {
            return Ok(());
        };
        match kind {
            FRAME_FEC_END => {
                m.ended = true;
                Ok(())
            }
            FRAME_PROOF => self.on_proof(payload),
            FRAME_STRIPE => self.on_stripe(member, payload),
            other => Err(malformed(
                "fec answer",
                format!("unexpected frame {other:#04x} in a FEC request"),
            )),
        }
    }

    fn on_proof(&mut self, payload: &[u8]) -> Result<()> {
        let mut header = [0u8; GROUP_HEADER_LEN];
        let head = payload
            .get(..GROUP_HEADER_LEN)
            .ok_or(CoreError::Truncated("proof"))?;
        header.copy_from_slice(head);
        let (index, proof_len) = decode_group_header(header)?;
        let proof = &payload[GROUP_HEADER_LEN..];
        let (first, count) = (self.shape.first, self.shape.count);
        if proof.len() != proof_len * 32 || index < first || index >= first + count {
            return Err(malformed(
                "proof",
                format!("group {index} outside the request, or of the wrong length"),
            ));
        }
        let group = &mut self.groups[(index - first) as usize];
        // Every member sends the proofs: the first one in is used (the disk stage verifies
        // it with the data).
        if group.done || group.proof.is_some() {
            return Ok(());
        }
        group.proof = Some(
            proof
                .chunks_exact(32)
                .map(|c| {
                    let mut cv = [0u8; 32];
                    cv.copy_from_slice(c);
                    cv
                })
                .collect(),
        );
        self.progressed = self.now;
        self.try_ready(index);
        Ok(())
    }

    fn on_stripe(&mut self, member: usize, payload: &[u8]) -> Result<()> {
        let (stripe_no, data) = decode_stripe(payload)?;
        let (start, end) = self.layout.stripe_range(self.wide, stripe_no)?;
        if data.len() as u64 != end - start {
            return Err(malformed(
                "stripe",
                format!(
                    "stripe {stripe_no} has {} bytes, not {}",
                    data.len(),
                    end - start
                ),
            ));
        }
        match self.stripe_slot(stripe_no) {
            // Asked for, or sent whole because its shards no longer fit a datagram.
            Some(state @ (StripeState::Repairing(_) | StripeState::Pending(..))) => {
                if let StripeState::Pending(Some(b), _) =
                    std::mem::replace(state, StripeState::Settled)
                {
                    self.spare.push(b);
                }
            }
            // Rebuilt from late shards meanwhile, or never asked for: nothing to do.
            _ => return Ok(()),
        }
        self.progressed = self.now;
        let placed = self.place(start, data);
        if placed > 0 {
            self.actions.push_back(Action::Credit {
                member,
                bytes: placed,
            });
        }
        Ok(())
    }

    /// Rebuilds a stripe that has k shards, places its bytes into its groups and credits
    /// each member with its part of them.
    fn rebuild(&mut self, stripe_no: u64) -> Result<()> {
        let Some(StripeState::Pending(Some(mut stripe), arrived)) = self
            .stripe_slot(stripe_no)
            .map(|s| std::mem::replace(s, StripeState::Rebuilt))
        else {
            return Ok(());
        };
        let (start, end) = self.layout.stripe_range(self.wide, stripe_no)?;
        let coder = match self.coder.take() {
            Some(c) => c,
            None => Coder::new(self.wide)?,
        };
        let placed = coder
            .reconstruct(&mut stripe, end - start)
            .map(|data| self.place(start, data));
        self.coder = Some(coder);
        self.spare.push(stripe);
        let placed = placed?;
        // The stripe's tallies: how many of its shards each member sent.
        let n = self.members.len();
        let row = (stripe_no - self.first_stripe) as usize * n;
        let tallies = self.tallies.get(row..row + n).unwrap_or(&[]);
        if tallies.iter().filter(|t| t.arrived > 0).count() > 1 {
            self.actions.push_back(Action::Combined);
        }
        for (member, t) in tallies.iter().enumerate() {
            let bytes = placed * u64::from(t.arrived) / u64::from(arrived.max(1));
            if bytes > 0 {
                self.actions.push_back(Action::Credit { member, bytes });
            }
        }
        Ok(())
    }

    /// Copies a stripe's bytes (blob offset `start`) into the batch's groups and hands out
    /// every group that is complete; the bytes copied.
    fn place(&mut self, start: u64, data: &[u8]) -> u64 {
        let mut placed = 0;
        let end = start + data.len() as u64;
        let (size, log) = (self.shape.size, self.shape.group_log);
        let (first, count) = (self.shape.first, self.shape.count);
        if data.is_empty() || count == 0 {
            return 0;
        }
        let first_group = (start >> log).max(first);
        let last_group = ((end - 1) >> log).min(first + count - 1);
        for index in first_group..=last_group {
            let (gstart, glen) = group_range(size, log, index);
            let (from, to) = (start.max(gstart), end.min(gstart + glen));
            if from >= to {
                continue;
            }
            let buffers = &mut self.buffers;
            let Some(group) = self.groups.get_mut((index - first) as usize) else {
                continue;
            };
            if group.done {
                continue;
            }
            let buf = group.data.get_or_insert_with(|| {
                let mut b = buffers.pop().unwrap_or_default();
                b.resize(glen as usize, 0);
                b
            });
            buf[(from - gstart) as usize..(to - gstart) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
            placed += to - from;
            group.stripes_left = group.stripes_left.saturating_sub(1);
            self.try_ready(index);
        }
        placed
    }

    /// Hands out group `index` if its data and proof are all in.
    fn try_ready(&mut self, index: u64) {
        let source = if self.members.len() > 1 {
            Source::Mixed
        } else {
            Source::Member(0)
        };
        let Some(group) = self.groups.get_mut((index - self.shape.first) as usize) else {
            return;
        };
        let GroupAsm {
            data,
            stripes_left,
            proof,
            done,
        } = group;
        if *done || *stripes_left > 0 || data.is_none() || proof.is_none() {
            return;
        }
        let (Some(data), Some(proof)) = (data.take(), proof.take()) else {
            return;
        };
        *done = true;
        self.left -= 1;
        self.actions.push_back(Action::Group(ReadyGroup {
            index,
            data,
            proof,
            source,
        }));
    }
}
