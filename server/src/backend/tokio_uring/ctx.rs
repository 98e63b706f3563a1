//! What every task of a `tokio-uring` worker shares ([`Ctx`]): the process-wide state,
//! the worker's tally and open count, and the drain deadline once shutdown begins. The
//! worker (`mod.rs`) and its tasks (`stream.rs`, `dgram.rs`) import it; it imports none
//! of them.

use crate::backend::contract::Shared;
use crate::stats::Counters;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the worker publishes its tally and looks at the shutdown flag.
pub(super) const POLL: Duration = Duration::from_millis(50);

/// What every task of a worker shares.
#[derive(Clone)]
pub(super) struct Ctx {
    pub shared: Arc<Shared>,
    pub index: usize,
    pub tally: Rc<RefCell<Counters>>,
    pub open: Rc<RefCell<u64>>,
    /// Becomes the drain deadline when shutdown begins (one instant for every task).
    pub stop: watch::Receiver<Option<tokio::time::Instant>>,
}

impl Ctx {
    /// Takes a connection in, or refuses it past `--max-conns`.
    pub fn admit(&self) -> bool {
        let admitted = self.shared.admission().admit(false, &mut self.tally.borrow_mut());
        if admitted {
            *self.open.borrow_mut() += 1;
        }
        admitted
    }

    /// Counts a connection out, with its reason, and publishes at once (before the peer
    /// can see the close).
    pub fn release(&self, reason: crate::policy::CloseReason) {
        self.shared.admission().release(reason, &mut self.tally.borrow_mut());
        *self.open.borrow_mut() -= 1;
        self.publish();
    }

    pub fn publish(&self) {
        let mut c = *self.tally.borrow();
        c.open = *self.open.borrow();
        self.shared.stats.worker(self.index).publish(&c);
    }
}
