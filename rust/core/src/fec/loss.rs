//! The loss estimate and adaptive redundancy of FEC mode: from the receiver's LOSS reports,
//! an estimate of random shard loss that does not count congestion ([`LossEstimate`]), and the
//! parity count that keeps a stripe's loss below a target ([`Redundancy`]).

use super::LossReport;
use crate::erasure::ErasureParams;
use crate::error::{CoreError, Result};

/// A shard loss estimate that tells random loss from congestion.
///
/// Reports are taken in windows of at least [`SPIKE_WINDOW`] shards. Once three windows have
/// been seen, a window whose loss is more than twice the lower median of the last windows
/// (plus half a percent) is taken for congestion (a queue overflowing drops runs of packets, which parity cannot cover and
/// which more parity would only worsen): it counts at that median. The estimate is a moving
/// average of the windows, each weighted by how many shards it covers. Loss that persists
/// raises the median and so counts in full after a few windows; loss that falls counts at
/// once.
#[derive(Debug, Clone)]
pub struct LossEstimate {
    loss: f64,
    /// Shards received and lost in the window being filled.
    window: (u64, u64),
    /// Loss rates of the last windows, oldest first.
    history: std::collections::VecDeque<f64>,
}

/// Shards a report must cover to move the loss estimate by about 63 % of the way.
const LOSS_WINDOW: f64 = 2000.0;
/// Shards in a window of reports that is judged as random loss or congestion.
pub const SPIKE_WINDOW: u64 = 1000;
/// Windows whose loss rates the baseline is the lower median of.
const HISTORY: usize = 9;
/// Entries the history needs (the starting value and windows) before a window can be taken
/// for congestion.
const MIN_HISTORY: usize = 3;

impl Default for LossEstimate {
    fn default() -> Self {
        Self::starting_at(0.0)
    }
}

impl LossEstimate {
    /// An estimate (and baseline) starting at `loss`.
    pub fn starting_at(loss: f64) -> Self {
        let loss = loss.clamp(0.0, 1.0);
        Self {
            loss,
            window: (0, 0),
            history: std::collections::VecDeque::from([loss]),
        }
    }

    /// The estimated random shard loss rate.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Takes a receiver's report in; true when it completed a window of congestion (loss
    /// well above the baseline).
    pub fn report(&mut self, report: &LossReport) -> bool {
        self.window.0 = self.window.0.saturating_add(report.received);
        self.window.1 = self.window.1.saturating_add(report.lost);
        let seen = self.window.0.saturating_add(self.window.1);
        if seen < SPIKE_WINDOW {
            return false;
        }
        let rate = self.window.1 as f64 / seen as f64;
        self.window = (0, 0);
        let baseline = self.baseline();
        // A baseline of the starting value and two windows or fewer says too little yet.
        let congested = self.history.len() > MIN_HISTORY && rate > 2.0 * baseline + 0.005;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(rate);
        let counted = if congested { baseline } else { rate };
        self.loss = next_rate(self.loss, counted, seen);
        congested
    }

    /// The lower median of the last windows' loss rates.
    pub fn baseline(&self) -> f64 {
        let mut rates: Vec<f64> = self.history.iter().copied().collect();
        rates.sort_by(f64::total_cmp);
        rates
            .get(rates.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0.0)
    }
}

/// Adaptive redundancy: the parity count for stripes of k data shards, from the loss the
/// receiver reports (as a [`LossEstimate`], so congestion does not count), within configured
/// bounds. The parity chosen is the smallest m in `min_parity..=max_parity` for which, with
/// shards lost independently at the estimated rate, a stripe loses more than m of its k + m
/// shards with probability at most `target`.
#[derive(Debug, Clone)]
pub struct Redundancy {
    data: usize,
    min_parity: usize,
    max_parity: usize,
    /// The shape with the most parity, checked when the range was set.
    max: ErasureParams,
    target: f64,
    estimate: LossEstimate,
}

impl Redundancy {
    /// Redundancy for stripes of `data` shards, between `min_parity` and `max_parity` parity
    /// shards, aiming at a stripe loss probability of `target` (0 < target < 1).
    pub fn new(data: usize, min_parity: usize, max_parity: usize, target: f64) -> Result<Self> {
        ErasureParams::new(data, min_parity)?;
        let max = ErasureParams::new(data, max_parity)?;
        if min_parity > max_parity || !(target > 0.0 && target < 1.0) {
            return Err(CoreError::Malformed {
                what: "redundancy",
                detail: format!(
                    "parity {min_parity}..={max_parity} and target {target} are not a valid range"
                ),
            });
        }
        Ok(Self {
            data,
            min_parity,
            max_parity,
            max,
            target,
            estimate: LossEstimate::default(),
        })
    }

    /// Starts the estimate (and its baseline) at `loss`.
    pub fn start_at(&mut self, loss: f64) {
        self.estimate = LossEstimate::starting_at(loss);
    }

    /// Takes a receiver's report into the loss estimate; true when it completed a window of
    /// congestion.
    pub fn report(&mut self, report: &LossReport) -> bool {
        self.estimate.report(report)
    }

    /// The estimated random shard loss rate.
    pub fn loss(&self) -> f64 {
        self.estimate.loss()
    }

    /// The stripe shape to use now.
    pub fn params(&self) -> ErasureParams {
        let loss = self.loss();
        (self.min_parity..self.max_parity)
            .find(|&m| stripe_loss(self.data + m, m, loss) <= self.target)
            .and_then(|m| ErasureParams::new(self.data, m).ok())
            .unwrap_or(self.max)
    }
}

/// The moving average `loss` after `seen` shards lost at `rate`.
fn next_rate(loss: f64, rate: f64, seen: u64) -> f64 {
    let weight = 1.0 - (-(seen as f64) / LOSS_WINDOW).exp();
    loss + weight * (rate - loss)
}

/// P(more than `m` of `n` shards lost) when each is lost independently with probability `p`.
pub fn stripe_loss(n: usize, m: usize, p: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return if m < n { 1.0 } else { 0.0 };
    }
    // Sum the binomial terms for 0..=m losses in log space, then take the complement.
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_choose = 0.0; // ln C(n, 0)
    let mut kept = 0.0;
    for i in 0..=m.min(n) {
        if i > 0 {
            log_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        kept += (log_choose + i as f64 * lp + (n - i) as f64 * lq).exp();
    }
    (1.0 - kept).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_spikes_do_not_raise_the_parity() {
        let report = |received, lost| LossReport {
            transfer: 1,
            received,
            lost,
            through: 0,
        };
        let mut r = Redundancy::new(32, 1, 8, 1e-3).unwrap();
        r.start_at(0.03);
        for _ in 0..20 {
            assert!(!r.report(&report(970, 30)), "steady 3 % is random loss");
        }
        // The first windows of an estimate starting from nothing are not congestion.
        let mut blank = Redundancy::new(32, 1, 8, 1e-3).unwrap();
        for _ in 0..5 {
            assert!(!blank.report(&report(970, 30)));
        }
        let (loss, m) = (r.loss(), r.params().parity());
        assert!((loss - 0.03).abs() < 0.005, "{loss}");
        // A queue overflowing: a window losing 20 %, then 3 % again.
        assert!(r.report(&report(800, 200)), "a spike is congestion");
        assert!((r.loss() - 0.03).abs() < 0.005, "counted at the baseline");
        assert_eq!(r.params().parity(), m);
        assert!(!r.report(&report(970, 30)));
        // Loss that stays high is real: after a few windows it counts in full.
        let mut congested = 0;
        for _ in 0..10 {
            congested += usize::from(r.report(&report(800, 200)));
        }
        assert!((1..=5).contains(&congested), "{congested}");
        assert!(r.loss() > 0.15 && r.params().parity() > m);
        // A request that starts from a measured loss does not take it for congestion.
        let mut fresh = Redundancy::new(32, 1, 8, 1e-3).unwrap();
        fresh.start_at(0.1);
        assert!(!fresh.report(&report(900, 100)));
    }

    #[test]
    fn binomial_tail_matches_direct_sums() {
        // n = 4, m = 1, p = 0.5: P(X > 1) = 1 - (1 + 4) / 16.
        assert!((stripe_loss(4, 1, 0.5) - 11.0 / 16.0).abs() < 1e-12);
        assert_eq!(stripe_loss(14, 4, 0.0), 0.0);
        assert_eq!(stripe_loss(14, 4, 1.0), 1.0);
        assert_eq!(stripe_loss(4, 4, 1.0), 0.0);
        for (n, m, p) in [(14, 4, 0.03), (40, 8, 0.1), (256, 56, 0.2)] {
            let tail = stripe_loss(n, m, p);
            assert!((0.0..=1.0).contains(&tail));
            assert!(
                stripe_loss(n, m + 1, p) <= tail,
                "more parity never loses more"
            );
            assert!(
                stripe_loss(n, m, p * 1.5) >= tail,
                "more loss never loses less"
            );
        }
    }

    #[test]
    fn redundancy_follows_the_reported_loss_within_bounds() {
        let mut r = Redundancy::new(10, 1, 20, 1e-3).unwrap();
        assert_eq!(r.params().parity(), 1, "no loss seen: the minimum");
        let report = |received, lost| LossReport {
            transfer: 1,
            received,
            lost,
            through: 0,
        };
        let mut last = 1;
        for lost in [10, 30, 100] {
            for _ in 0..20 {
                r.report(&report(1000 - lost, lost));
            }
            let m = r.params().parity();
            assert!(m >= last, "parity grows with loss: {m} < {last}");
            assert!(stripe_loss(10 + m, m, r.loss()) <= 1e-3);
            if m > 1 {
                assert!(
                    stripe_loss(10 + m - 1, m - 1, r.loss()) > 1e-3,
                    "{m} is the least"
                );
            }
            last = m;
        }
        assert!(last > 1);
        for _ in 0..50 {
            r.report(&report(1000, 0));
        }
        assert!(r.params().parity() < last, "parity falls when loss falls");
        // A report of nothing changes nothing; reports count once they fill a window.
        let before = r.loss();
        r.report(&report(0, 0));
        assert_eq!(r.loss(), before);
        r.report(&report(0, 5));
        assert_eq!(r.loss(), before);
        r.report(&report(995, 0));
        assert!(r.loss() > before && r.loss() < before + 0.01);
        // The maximum caps it even when the target cannot be met.
        let mut capped = Redundancy::new(10, 1, 4, 1e-6).unwrap();
        for _ in 0..20 {
            capped.report(&report(500, 500));
        }
        assert_eq!(capped.params().parity(), 4);
        assert!(Redundancy::new(10, 5, 4, 1e-3).is_err());
        assert!(Redundancy::new(10, 1, 4, 0.0).is_err());
        assert!(Redundancy::new(10, 0, 4, 1e-3).is_err());
        assert!(
            Redundancy::new(250, 1, 10, 1e-3).is_err(),
            "250 + 10 > 256 shards"
        );
    }
}
