//! A histogram of durations in relaxed atomics: an observation is a few additions (no lock, no
//! allocation), and a reading is a pass over the counters, so the Prometheus endpoint
//! (`crate::metrics`) reads it at any time without holding up whoever observes.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of durations, in buckets with `N` upper bounds (milliseconds) and one above them all.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds_ms: [u64; N],
    buckets: [AtomicU64; N],
    overflow: AtomicU64,
    sum_ms: AtomicU64,
}

/// A reading of a [`Histogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts<const N: usize> {
    /// Each bucket's count (not cumulative), in the order of the bounds.
    pub buckets: [u64; N],
    /// Observations above every bound.
    pub overflow: u64,
    /// The sum of the observations, milliseconds.
    pub sum_ms: u64,
}

impl<const N: usize> Histogram<N> {
    /// An empty histogram with these upper bounds, in increasing order.
    pub const fn new(bounds_ms: [u64; N]) -> Histogram<N> {
        Histogram {
            bounds_ms,
            buckets: [const { AtomicU64::new(0) }; N],
            overflow: AtomicU64::new(0),
            sum_ms: AtomicU64::new(0),
        }
    }

    /// The buckets' upper bounds, milliseconds.
    pub fn bounds_ms(&self) -> &[u64; N] {
        &self.bounds_ms
    }

    /// Counts one duration.
    pub fn observe(&self, ms: u64) {
        let bucket = self.bounds_ms.iter().position(|&bound| ms <= bound);
        match bucket.and_then(|i| self.buckets.get(i)) {
            Some(counter) => counter.fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The counts now (each read on its own: a reading during observations may be a moment
    /// behind in some buckets).
    pub fn read(&self) -> Counts<N> {
        Counts {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            overflow: self.overflow.load(Ordering::Relaxed),
            sum_ms: self.sum_ms.load(Ordering::Relaxed),
        }
    }
}

impl<const N: usize> Counts<N> {
    /// No observations.
    pub fn zero() -> Counts<N> {
        Counts {
            buckets: [0; N],
            overflow: 0,
            sum_ms: 0,
        }
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .fold(self.overflow, |sum, &count| sum.saturating_add(count))
    }

    /// Added bucket by bucket (the databases' histograms into one).
    pub fn add(&mut self, other: &Counts<N>) {
        for (total, count) in self.buckets.iter_mut().zip(other.buckets) {
            *total = total.saturating_add(count);
        }
        self.overflow = self.overflow.saturating_add(other.overflow);
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let histogram = Histogram::new([60_000, 300_000]);
        let week_ms = 7 * 86_400_000;
        for ms in [0, 60_000, 60_001, 300_001, week_ms] {
            histogram.observe(ms);
        }
        let counts = histogram.read();
        assert_eq!(counts.buckets, [2, 1]);
        assert_eq!(counts.overflow, 2);
        assert_eq!(counts.count(), 5);
        assert_eq!(counts.sum_ms, 120_001 + 300_001 + week_ms);
        let mut total = Counts::zero();
        total.add(&counts);
        total.add(&counts);
        assert_eq!(total.buckets, [4, 2]);
        assert_eq!(total.count(), 10);
    }
}
