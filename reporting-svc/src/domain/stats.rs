//! Summary statistics of durations, as the close-time report shows them.
//!
//! Percentiles use the nearest-rank method: the p-th percentile of n sorted values is the
//! value at 1-based rank ⌈p/100 · n⌉. It is always one of the observed values (never an
//! interpolation), so a reader can find the conversation behind it; the median is the 50th
//! percentile by the same rule, i.e. the lower middle value when n is even.

/// Count, mean, median and 90th percentile of a set of durations in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// How many values.
    pub count: usize,
    /// Arithmetic mean, rounded to the nearest microsecond (halves away from zero).
    pub average: i64,
    /// 50th percentile by nearest rank.
    pub median: i64,
    /// 90th percentile by nearest rank.
    pub p90: i64,
}

/// Summarizes `values` (sorting them in place); `None` when there are none.
pub fn summarize(values: &mut [i64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(Summary {
        count: values.len(),
        average: mean(values),
        median: nearest_rank(values, 50),
        p90: nearest_rank(values, 90),
    })
}

/// The `percent`-th percentile (1 to 100) of non-empty sorted `values` by nearest rank.
pub fn nearest_rank(sorted: &[i64], percent: u32) -> i64 {
    assert!(!sorted.is_empty(), "percentile of no values");
    let n = sorted.len() as u64;
    let rank = (u64::from(percent) * n).div_ceil(100).clamp(1, n);
    sorted[(rank - 1) as usize]
}

fn mean(values: &[i64]) -> i64 {
    let n = values.len() as i128;
    let sum: i128 = values.iter().map(|&v| i128::from(v)).sum();
    // Round half away from zero.
    let rounded = if sum >= 0 {
        (2 * sum + n) / (2 * n)
    } else {
        -((-2 * sum + n) / (2 * n))
    };
    rounded as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn one_value_is_every_statistic() {
        assert_eq!(
            summarize(&mut [42]),
            Some(Summary {
                count: 1,
                average: 42,
                median: 42,
                p90: 42
            })
        );
    }

    #[test]
    fn nearest_rank_picks_observed_values() {
        let sorted: Vec<i64> = (1..=10).collect();
        // ⌈0.5·10⌉ = 5, ⌈0.9·10⌉ = 9.
        assert_eq!(nearest_rank(&sorted, 50), 5);
        assert_eq!(nearest_rank(&sorted, 90), 9);
        assert_eq!(nearest_rank(&sorted, 100), 10);
        assert_eq!(nearest_rank(&sorted, 1), 1);
        // ⌈0.9·11⌉ = 10; ⌈0.5·11⌉ = 6, the middle.
        let sorted: Vec<i64> = (1..=11).collect();
        assert_eq!(nearest_rank(&sorted, 90), 10);
        assert_eq!(nearest_rank(&sorted, 50), 6);
        // Even count: the lower middle value, not the mean of the two.
        assert_eq!(nearest_rank(&[10, 20, 30, 40], 50), 20);
        // Two values: p90 is the larger.
        assert_eq!(nearest_rank(&[10, 20], 90), 20);
    }

    #[test]
    fn summarize_sorts_first() {
        let mut values = [5_400, 660, 1_200];
        assert_eq!(
            summarize(&mut values),
            Some(Summary {
                count: 3,
                average: 2_420,
                median: 1_200,
                p90: 5_400
            })
        );
        assert_eq!(values, [660, 1_200, 5_400]);
    }

    #[test]
    fn mean_rounds_half_away_from_zero() {
        assert_eq!(summarize(&mut [1, 2]).unwrap().average, 2);
        assert_eq!(summarize(&mut [1, 1, 2]).unwrap().average, 1);
        assert_eq!(summarize(&mut [-1, -2]).unwrap().average, -2);
        assert_eq!(
            summarize(&mut [i64::MAX, i64::MAX]).unwrap().average,
            i64::MAX
        );
    }
}
