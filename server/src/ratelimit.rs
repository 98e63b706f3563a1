//! Per-source token buckets for datagram replies, in a table of bounded size.
//!
//! Each source address gets `rate` tokens per second and holds at most `burst`. When the
//! table is full, buckets idle long enough to have refilled are swept (they are the same
//! as new ones); if it is still full, every further new source shares one overflow
//! bucket. Memory therefore stays bounded whatever addresses a flood claims to come from,
//! and a flood of spoofed sources can at most take the overflow bucket's rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A table of token buckets keyed by source.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<K, Bucket>,
    overflow: Bucket,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    /// `rate` tokens per second per source, at most `burst` saved up, at most
    /// `max_sources` sources tracked one by one.
    pub fn new(rate: u32, burst: u32, max_sources: usize, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate: f64::from(rate),
            burst,
            max_sources: max_sources.max(1),
            buckets: HashMap::new(),
            overflow: Bucket { tokens: burst, last: now },
        }
    }

    /// Takes a token for `source` at `now`; false means the datagram is over the limit.
    pub fn allow(&mut self, source: K, now: Instant) -> bool {
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.max_sources {
            self.sweep(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = if self.buckets.len() < self.max_sources || self.buckets.contains_key(&source) {
            self.buckets.entry(source).or_insert(Bucket { tokens: burst, last: now })
        } else {
            &mut self.overflow
        };
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sources tracked one by one now.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }

    fn sweep(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .retain(|_, b| b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(100, 10, 16, t0);
        let first: usize = (0..50).filter(|_| rl.allow(1u32, t0)).count();
        assert_eq!(first, 10, "the burst");
        let later = t0 + Duration::from_millis(100);
        let more: usize = (0..50).filter(|_| rl.allow(1u32, later)).count();
        assert_eq!(more, 10, "100/s for 100 ms");
        assert!(rl.allow(2u32, later), "other sources have their own bucket");
    }

    proptest! {
        /// Whatever the sources and timing, the table never passes its bound and no
        /// source gets more than burst + rate × elapsed.
        #[test]
        fn bounded_and_fair(ops in proptest::collection::vec((0u32..1000, 0u64..5_000), 1..2000)) {
            let t0 = Instant::now();
            let mut rl = RateLimiter::new(50, 5, 32, t0);
            let mut now = t0;
            let mut allowed: HashMap<u32, u64> = HashMap::new();
            for (src, step_us) in ops {
                now += Duration::from_micros(step_us);
                if rl.allow(src, now) {
                    *allowed.entry(src).or_default() += 1;
                }
                prop_assert!(rl.sources() <= 32);
            }
            let elapsed = now.duration_since(t0).as_secs_f64();
            // A source may have lived in the table and in the overflow bucket: 2 × bound.
            let cap = 2.0 * (5.0 + 50.0 * elapsed) + 1.0;
            for (src, n) in allowed {
                prop_assert!((n as f64) <= cap, "source {} got {} > {}", src, n, cap);
            }
        }
    }
}
