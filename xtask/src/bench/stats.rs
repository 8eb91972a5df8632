//! Statistics shared by every benchmark: median, nearest-rank percentile,
//! min/max and the `median (min-max)` cells of the reports.
//!
//! NaN policy, one for all: a value that is not finite (NaN for a measurement
//! that did not happen, ±inf from a division by zero) is left out of every
//! statistic here. A statistic of no finite value is NaN (prints as `NaN`),
//! never a panic and never a number made up from the missing ones.

/// The finite values, sorted.
fn finite_sorted(v: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// The median of the finite values (the mean of the middle two for an even
/// count); NaN when there is none.
pub(crate) fn median(v: &[f64]) -> f64 {
    let s = finite_sorted(v);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The nearest-rank `p`th percentile (0 < p <= 100) of the finite values:
/// the smallest value with at least p % of them at or below it. NaN when
/// there is none.
pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    let s = finite_sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// (min, max) of the finite values; (NaN, NaN) when there is none.
pub(crate) fn min_max(v: &[f64]) -> (f64, f64) {
    let s = finite_sorted(v);
    match (s.first(), s.last()) {
        (Some(lo), Some(hi)) => (*lo, *hi),
        _ => (f64::NAN, f64::NAN),
    }
}

/// `median (min-max)` with `prec` decimals.
pub(crate) fn med_range(v: &[f64], prec: usize) -> String {
    let (lo, hi) = min_max(v);
    format!("{:.prec$} ({lo:.prec$}-{hi:.prec$})", median(v))
}

/// Like [`med_range`], but a single value (or none) prints as just the median.
pub(crate) fn med_range_if_many(v: &[f64], prec: usize) -> String {
    if v.len() < 2 {
        return format!("{:.prec$}", median(v));
    }
    med_range(v, prec)
}

/// Ratios of paired runs (`num[i] / den[i]`, the runs next to each other in
/// time): their median and range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ratios {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Ratios {
    pub(crate) fn paired(num: &[f64], den: &[f64]) -> Ratios {
        let r: Vec<f64> = num.iter().zip(den).map(|(n, d)| n / d).collect();
        let (lo, hi) = min_max(&r);
        Ratios {
            median: median(&r),
            lo,
            hi,
        }
    }

    /// `1.000x (0.990-1.010)`.
    pub(crate) fn cell(&self) -> String {
        format!("{:.3}x ({:.3}-{:.3})", self.median, self.lo, self.hi)
    }

    /// `0.990-1.010`.
    pub(crate) fn range(&self) -> String {
        format!("{:.3}-{:.3}", self.lo, self.hi)
    }
}

/// A goal's verdict word, the same in every report.
pub(crate) fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The verdict for a value whose goal is a ceiling: `met`, or `NOT met, 1.3x
/// the goal`.
pub(crate) fn at_most(v: f64, goal: f64) -> String {
    if v <= goal {
        met(true).to_string()
    } else {
        format!("{}, {:.1}x the goal", met(false), v / goal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratios_skip_what_is_not_finite() {
        let r = Ratios::paired(&[2.0, 3.0, 1.0, 5.0], &[2.0, 2.0, 0.0, 4.0]);
        assert_eq!((r.median, r.lo, r.hi), (1.25, 1.0, 1.5));
        assert_eq!(r.cell(), "1.250x (1.000-1.500)");
        assert_eq!((met(true), met(false)), ("met", "NOT met"));
        assert_eq!(at_most(0.5, 0.5), "met");
        assert_eq!(at_most(0.67, 0.5), "NOT met, 1.3x the goal");
    }

    #[test]
    fn median_odd_even_and_unsorted() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
    }

    #[test]
    fn non_finite_values_are_left_out() {
        assert_eq!(median(&[f64::NAN, 1.0, 3.0]), 2.0);
        assert_eq!(
            median(&[1.0, f64::INFINITY, 2.0, f64::NEG_INFINITY, 3.0]),
            2.0
        );
        assert_eq!(percentile(&[f64::NAN, 1.0, 2.0], 100.0), 2.0);
        assert_eq!(min_max(&[f64::NAN, 2.0, -1.0]), (-1.0, 2.0));
    }

    #[test]
    fn nothing_finite_is_nan() {
        assert!(median(&[]).is_nan());
        assert!(median(&[f64::NAN, f64::NAN]).is_nan());
        assert!(percentile(&[], 50.0).is_nan());
        let (lo, hi) = min_max(&[f64::NAN]);
        assert!(lo.is_nan() && hi.is_nan());
        assert_eq!(med_range(&[], 1), "NaN (NaN-NaN)");
        assert_eq!(med_range_if_many(&[], 1), "NaN");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&s, 50.0), 2.0);
        assert_eq!(percentile(&s, 75.0), 3.0);
        assert_eq!(percentile(&s, 99.0), 4.0);
        assert_eq!(percentile(&s, 0.0), 1.0);
    }

    #[test]
    fn ranges() {
        assert_eq!(med_range(&[1.0, 3.0, 2.0], 1), "2.0 (1.0-3.0)");
        assert_eq!(med_range_if_many(&[1.0, 3.0, 2.0], 0), "2 (1-3)");
        assert_eq!(med_range_if_many(&[1.5], 1), "1.5");
    }
}
