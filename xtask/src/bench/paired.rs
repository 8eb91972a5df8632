//! Paired statistics for benchmarks that interleave targets cycle by cycle
//! (`l4lb-probe latency --per-conn`): within one cycle the targets ran back to
//! back, so machine noise that drifts over milliseconds hits both sides of a
//! per-cycle difference alike. The median of those differences estimates how
//! much one target adds over another with far less spread than the
//! difference of two separate medians; the spread over rounds (each round a
//! different target order) then says whether a verdict holds.
use super::stats::{median, min_max};

/// Per-cycle `a − b` in µs, over the cycles where both connections
/// succeeded (a failed one is recorded as 0 ns).
pub(crate) fn diffs_us(a: &[u64], b: &[u64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| **x > 0 && **y > 0)
        .map(|(x, y)| (*x as f64 - *y as f64) / 1000.0)
        .collect()
}

/// The median per-cycle `a − b`, µs (NaN when no cycle had both).
pub(crate) fn median_diff_us(a: &[u64], b: &[u64]) -> f64 {
    median(&diffs_us(a, b))
}

/// One statistic over rounds: the median of the per-round values and their
/// (min, max).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct OverRounds {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl OverRounds {
    pub(crate) fn of(per_round: &[f64]) -> OverRounds {
        let (min, max) = min_max(per_round);
        OverRounds {
            median: median(per_round),
            min,
            max,
        }
    }

    /// True only when every round is at least `goal` (the whole range).
    pub(crate) fn all_at_least(&self, goal: f64) -> bool {
        self.min >= goal
    }

    /// `median (min to max)` with `prec` decimals and a sign.
    pub(crate) fn signed(&self, prec: usize) -> String {
        format!(
            "{:+.prec$} ({:+.prec$} to {:+.prec$})",
            self.median, self.min, self.max
        )
    }
}

/// The lead of `ours` over `theirs` in one round, in points of p50 / direct:
/// the median per-cycle `theirs − ours` over the round's direct p50, × 100.
pub(crate) fn lead_points(theirs: &[u64], ours: &[u64], direct_p50_us: f64) -> f64 {
    median_diff_us(theirs, ours) / direct_p50_us * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_cycles_are_left_out_of_the_pairs() {
        assert_eq!(
            diffs_us(&[3000, 0, 5000, 9000], &[1000, 2000, 0, 8000]),
            vec![2.0, 1.0]
        );
        assert!(median_diff_us(&[0], &[1000]).is_nan());
    }

    #[test]
    fn a_shared_drift_cancels_in_the_pairs() {
        // Both targets ride the same slow drift (0..100 µs, 50 times the
        // difference); b is always 2 µs slower. The pairs see exactly 2.
        let drift: Vec<u64> = (0..101).map(|i| 100_000 + (i * 1_000) as u64).collect();
        let a = drift.clone();
        let b: Vec<u64> = drift.iter().map(|x| x + 2_000).collect();
        assert_eq!(median_diff_us(&b, &a), 2.0);
        // A shuffled cycle order changes neither.
        let mut idx: Vec<usize> = (0..101).collect();
        idx.reverse();
        let (ra, rb): (Vec<u64>, Vec<u64>) = idx.iter().map(|&i| (a[i], b[i])).unzip();
        assert_eq!(median_diff_us(&rb, &ra), 2.0);
    }

    #[test]
    fn the_lead_is_in_points_of_the_direct_p50() {
        // theirs is 6 µs slower per cycle than ours; direct p50 is 120 µs.
        let ours = [120_000, 121_000, 119_000];
        let theirs = [126_000, 127_000, 125_000];
        assert!((lead_points(&theirs, &ours, 120.0) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn a_verdict_needs_the_whole_range() {
        let r = OverRounds::of(&[6.0, 5.6, 4.9, 7.0]);
        assert!((r.median - 5.8).abs() < 1e-9 && (r.min, r.max) == (4.9, 7.0));
        assert!(!r.all_at_least(5.0));
        assert!(OverRounds::of(&[5.0, 6.0]).all_at_least(5.0));
        assert_eq!(r.signed(1), "+5.8 (+4.9 to +7.0)");
        // No round: NaN, never met.
        assert!(!OverRounds::of(&[]).all_at_least(5.0));
    }
}
