//! What every thread of the `threads` backend shares ([`State`]: the process-wide state,
//! the tally, the open count, when the drain began) and the timing every thread follows.
//! The engine (`mod.rs`) and the threads (`stream.rs`, `dgram.rs`) import it; it imports
//! none of them.

use crate::backend::contract::Shared;
use crate::stats::Counters;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a blocked thread wakes to look at shutdown, deadlines and idleness.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// Operations between two flushes of a thread's tally.
pub(super) const FLUSH_EVERY: u32 = 64;

/// What every thread of the backend shares.
pub(super) struct State {
    pub shared: Arc<Shared>,
    pub index: usize,
    pub tally: Mutex<Counters>,
    pub open: AtomicU64,
    pub draining_since: Mutex<Option<Instant>>,
}

impl State {
    pub fn flush(&self, local: &mut Counters) {
        self.flush_closing(local, false);
    }

    /// Flushes, and when `closing`, takes this connection out of the open count under
    /// the same lock, so no reader sees it gone before its counts are in.
    pub fn flush_closing(&self, local: &mut Counters, closing: bool) {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        t.merge(local);
        if closing {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        t.open = self.open.load(Ordering::Relaxed);
        self.shared.stats.worker(self.index).publish(&t);
        *local = Counters::default();
    }

    pub fn drain_deadline(&self) -> Option<Instant> {
        let since = *self.draining_since.lock().unwrap_or_else(|e| e.into_inner());
        since.map(|s| crate::policy::deadline(s, self.shared.config.drain_timeout))
    }

    pub fn stopping(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }
}

/// A socket call that only timed out (or was interrupted): look at the clock, try again.
pub(super) fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}
