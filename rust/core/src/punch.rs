//! The asker's side of a coordinated connection, as a machine without I/O or clock: told what
//! happened with the time passed in (`handle_*`), it says what to do next ([`PunchAction`]);
//! `rust/net` drives it with a COORD stream, dials and timers.
//!
//! The order of attempts: once the target's candidates arrive (their round trip through the
//! coordinator is the first RTT measurement), a target that believes itself public is just
//! dialed; else an asker that believes itself public asks the target to dial it (connection
//! reversal); else, and when those fail, up to [`MAX_ATTEMPTS`] coordinated simultaneous
//! opens, the RTT re-measured through the coordinator before each retry.
//!
//! The timing of an attempt (as DCUtR does it): the asker sends SYNC and starts its own part
//! RTT/2 later; the target starts on receiving SYNC, which travels asker → coordinator →
//! target, about half of the measured round trip. So both sides send their first packets at
//! about the same moment, and each middlebox sees its own side's outbound packet before the
//! other side's arrives (or close enough that a retransmission gets through).
//!
//! Invariants: every state has a deadline ([`PunchProcedure::poll_timeout`]); the procedure
//! ends (connected or given up) after at most 1 + 1 + [`MAX_ATTEMPTS`] windows plus the wait
//! for the answer, so a peer that cannot be reached fails within seconds.

pub use crate::coord::{SyncMode, MAX_ATTEMPTS};
use std::time::{Duration, Instant};

/// How long each phase may take.
#[derive(Debug, Clone, Copy)]
pub struct PunchTimers {
    /// Time for the coordinator to return the target's candidates (or an RTT echo).
    pub answer: Duration,
    /// The least time one attempt gets to complete a handshake on the direct path: it covers
    /// a lost first Initial and its retransmission (QUIC's first PTO is about 1 s).
    pub min_window: Duration,
    /// The most time one attempt gets, however slow the coordinator path.
    pub max_window: Duration,
}

impl Default for PunchTimers {
    fn default() -> Self {
        Self {
            answer: Duration::from_secs(3),
            min_window: Duration::from_millis(1500),
            max_window: Duration::from_secs(4),
        }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PunchAction {
    /// Send CONNECT to the coordinator.
    SendConnect,
    /// The target is public: dial its candidates now (plain dials, route direct).
    DialDirect,
    /// Send this SYNC through the coordinator.
    SendSync {
        /// 1-based attempt number (0 for a reversal).
        attempt: u8,
        /// Reversal or simultaneous open.
        mode: SyncMode,
    },
    /// Wait for the target's dial (reversal): an incoming session from it completes the step.
    AwaitIncoming,
    /// Start this side's part of the simultaneous open at `at`.
    StartAt {
        /// When to send the first packet.
        at: Instant,
        /// Which attempt it is.
        attempt: u8,
    },
    /// Send an RTT probe with this nonce through the coordinator.
    SendRtt {
        /// Echoed by the target.
        nonce: u64,
    },
    /// Stop: nothing worked.
    GiveUp(GiveUpReason),
}

/// Why the procedure gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The coordinator never returned the target's candidates.
    NoAnswer,
    /// Every attempt ran out of time or failed.
    AttemptsExhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitAnswer { sent: Instant },
    Direct,
    Reverse,
    Punching { attempt: u8 },
    AwaitRtt { attempt: u8, sent: Instant },
    Done,
}

/// The asker's procedure (see the module's doc).
#[derive(Debug, Clone)]
pub struct PunchProcedure {
    state: State,
    /// Ends the current state (see `handle_timeout`).
    deadline: Instant,
    rtt: Option<Duration>,
    asker_public: bool,
    nonce_seed: u64,
    timers: PunchTimers,
    /// What was tried, for the error message of a failure.
    tried: Vec<&'static str>,
}

impl PunchProcedure {
    /// A procedure starting at `now`; `asker_public` is whether this node believes it is
    /// publicly reachable, `nonce_seed` a random value the RTT nonces derive from.
    pub fn start(
        now: Instant,
        asker_public: bool,
        nonce_seed: u64,
        timers: PunchTimers,
    ) -> (Self, Vec<PunchAction>) {
        let p = Self {
            state: State::AwaitAnswer { sent: now },
            deadline: now + timers.answer,
            rtt: None,
            asker_public,
            nonce_seed,
            timers,
            tried: Vec::new(),
        };
        (p, vec![PunchAction::SendConnect])
    }

    /// The round trip through the coordinator, as last measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// When the current step ends unless something happens first; None once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state != State::Done).then_some(self.deadline)
    }

    /// The steps tried so far, in order ("direct dial", "reversal", "punch 1", ...).
    pub fn tried(&self) -> &[&'static str] {
        &self.tried
    }

    /// The punch attempts started so far.
    pub fn attempts(&self) -> u8 {
        self.tried.iter().filter(|t| t.starts_with("punch")).count() as u8
    }

    fn window(&self) -> Duration {
        let rtt = self.rtt.unwrap_or_default();
        (rtt * 4)
            .max(self.timers.min_window)
            .min(self.timers.max_window)
    }

    /// The target's candidates arrived; `target_public` is what it believes of itself.
    pub fn handle_answer(&mut self, now: Instant, target_public: bool) -> Vec<PunchAction> {
        let State::AwaitAnswer { sent } = self.state else {
            return Vec::new();
        };
        self.rtt = Some(now.saturating_duration_since(sent));
        if target_public {
            self.enter(now, State::Direct, "direct dial");
            vec![PunchAction::DialDirect]
        } else if self.asker_public {
            self.enter(now, State::Reverse, "reversal");
            vec![
                PunchAction::SendSync {
                    attempt: 1,
                    mode: SyncMode::Reverse,
                },
                PunchAction::AwaitIncoming,
            ]
        } else {
            self.punch(now, 1)
        }
    }

    /// The current step failed (its dials ended in errors) before its deadline.
    pub fn handle_failed(&mut self, now: Instant) -> Vec<PunchAction> {
        match self.state {
            State::Direct | State::Reverse => self.punch(now, 1),
            State::Punching { attempt } if attempt < MAX_ATTEMPTS => {
                let nonce = self.nonce_seed ^ u64::from(attempt);
                self.state = State::AwaitRtt { attempt, sent: now };
                self.deadline = now + self.timers.answer;
                vec![PunchAction::SendRtt { nonce }]
            }
            State::Punching { .. } => self.give_up(GiveUpReason::AttemptsExhausted),
            State::AwaitAnswer { .. } => self.give_up(GiveUpReason::NoAnswer),
            State::AwaitRtt { .. } | State::Done => Vec::new(),
        }
    }

    /// An RTT probe came back; a stale or forged nonce is ignored.
    pub fn handle_rtt(&mut self, now: Instant, nonce: u64) -> Vec<PunchAction> {
        match self.state {
            State::AwaitRtt { attempt, sent } if nonce == self.nonce_seed ^ u64::from(attempt) => {
                self.rtt = Some(now.saturating_duration_since(sent));
                self.punch(now, attempt + 1)
            }
            _ => Vec::new(),
        }
    }

    /// Time passed; acts if the current step's deadline is reached.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<PunchAction> {
        if now < self.deadline {
            return Vec::new();
        }
        match self.state {
            // A lost echo is no reason to stop: retry with the RTT measured before.
            State::AwaitRtt { attempt, .. } => self.punch(now, attempt + 1),
            _ => self.handle_failed(now),
        }
    }

    /// A session with the target was made: the procedure is over.
    pub fn handle_connected(&mut self) {
        self.state = State::Done;
    }

    fn punch(&mut self, now: Instant, attempt: u8) -> Vec<PunchAction> {
        const NAMES: [&str; MAX_ATTEMPTS as usize] = ["punch 1", "punch 2", "punch 3"];
        let Some(name) = NAMES.get(usize::from(attempt) - 1) else {
            return self.give_up(GiveUpReason::AttemptsExhausted);
        };
        let at = now + self.rtt.unwrap_or_default() / 2;
        self.enter(at, State::Punching { attempt }, name);
        vec![
            PunchAction::SendSync {
                attempt,
                mode: SyncMode::Punch,
            },
            PunchAction::StartAt { at, attempt },
        ]
    }

    fn enter(&mut self, from: Instant, state: State, name: &'static str) {
        self.state = state;
        self.deadline = from + self.window();
        self.tried.push(name);
    }

    fn give_up(&mut self, why: GiveUpReason) -> Vec<PunchAction> {
        self.state = State::Done;
        vec![PunchAction::GiveUp(why)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn started(public: bool) -> (PunchProcedure, Instant) {
        let t0 = Instant::now();
        let (p, first) = PunchProcedure::start(t0, public, 0xabc, PunchTimers::default());
        assert_eq!(first, vec![PunchAction::SendConnect]);
        (p, t0)
    }

    #[test]
    fn the_asker_starts_half_a_round_trip_after_its_sync() {
        let (mut p, t0) = started(false);
        let t1 = t0 + 80 * MS;
        let actions = p.handle_answer(t1, false);
        assert_eq!(p.rtt(), Some(80 * MS));
        assert_eq!(
            actions,
            vec![
                PunchAction::SendSync {
                    attempt: 1,
                    mode: SyncMode::Punch
                },
                PunchAction::StartAt {
                    at: t1 + 40 * MS,
                    attempt: 1
                },
            ]
        );
        // The window is the floor on a fast path, counted from the start of the attempt.
        assert_eq!(p.poll_timeout(), Some(t1 + 40 * MS + 1500 * MS));
        p.handle_connected();
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn a_public_target_is_dialed_and_a_public_asker_is_dialed_back() {
        let (mut p, t0) = started(true);
        assert_eq!(
            p.handle_answer(t0 + MS, true),
            vec![PunchAction::DialDirect]
        );
        // The direct dial fails: punching comes next, whatever the asker believes.
        let next = p.handle_failed(t0 + 5 * MS);
        assert!(matches!(next[0], PunchAction::SendSync { attempt: 1, .. }));
        let (mut q, t0) = started(true);
        let r = q.handle_answer(t0 + MS, false);
        assert_eq!(
            r[0],
            PunchAction::SendSync {
                attempt: 1,
                mode: SyncMode::Reverse
            }
        );
        assert_eq!(r[1], PunchAction::AwaitIncoming);
        assert_eq!(q.tried(), ["reversal"]);
    }

    #[test]
    fn retries_remeasure_the_rtt_and_stop_after_three_attempts() {
        let (mut p, t0) = started(false);
        let mut now = t0 + 100 * MS;
        p.handle_answer(now, false);
        for attempt in 1..MAX_ATTEMPTS {
            now = p.poll_timeout().unwrap();
            let probe = p.handle_timeout(now);
            let [PunchAction::SendRtt { nonce }] = probe[..] else {
                panic!("expected an RTT probe, got {probe:?}");
            };
            // A forged echo changes nothing.
            assert!(p.handle_rtt(now + MS, nonce ^ 1).is_empty());
            now += 30 * MS;
            let next = p.handle_rtt(now, nonce);
            assert_eq!(p.rtt(), Some(30 * MS));
            assert_eq!(
                next[1],
                PunchAction::StartAt {
                    at: now + 15 * MS,
                    attempt: attempt + 1
                }
            );
        }
        let end = p.handle_timeout(p.poll_timeout().unwrap());
        assert_eq!(
            end,
            vec![PunchAction::GiveUp(GiveUpReason::AttemptsExhausted)]
        );
        assert_eq!(p.attempts(), MAX_ATTEMPTS);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn silence_gives_up_and_a_lost_echo_does_not() {
        let (mut p, t0) = started(false);
        assert!(p.handle_timeout(t0 + 2 * MS).is_empty());
        assert_eq!(
            p.handle_timeout(t0 + Duration::from_secs(3)),
            vec![PunchAction::GiveUp(GiveUpReason::NoAnswer)]
        );
        let (mut q, t0) = started(false);
        q.handle_answer(t0 + 10 * MS, false);
        q.handle_failed(t0 + 20 * MS);
        let after = q.handle_timeout(t0 + Duration::from_secs(10));
        assert!(matches!(after[1], PunchAction::StartAt { attempt: 2, .. }));
    }

    #[test]
    fn the_whole_procedure_is_bounded_in_time() {
        // Every step times out: the procedure ends within answer + 5 windows (max).
        let (mut p, t0) = started(true);
        let mut now = t0 + 50 * MS;
        p.handle_answer(now, false);
        let mut steps = 0;
        while let Some(deadline) = p.poll_timeout() {
            now = deadline;
            p.handle_timeout(now);
            steps += 1;
            assert!(steps < 20, "the procedure does not end");
        }
        assert_eq!(p.tried(), ["reversal", "punch 1", "punch 2", "punch 3"]);
        let t = PunchTimers::default();
        assert!(now - t0 <= t.answer * 3 + t.max_window * 4);
    }
}
