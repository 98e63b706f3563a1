//! A datagram flow's ledger: which sequences were sent and what became of each, so a
//! reply is judged by its sequence alone, whatever order it comes in. A sequence is
//! waiting until answered or until `--udp-timeout` passes (then it is lost); a reply to a
//! lost one is late, a second reply a duplicate, one to a sequence never sent garbage,
//! one older than the newest answered reordered.
//!
//! Invariant: `entries` covers exactly the sequences `base..next_seq`, the oldest first,
//! and its front is always one still waiting (answered and lost ones are trimmed). Below
//! `base`, a window of at most [`Ledger::window`] sequences remembers which were lost (a
//! bit each), so a late reply is told from a duplicate; older ones are forgotten, and a
//! reply to one counts late, never duplicate (a stalled server flushing its queue is no
//! amplifier). So the ledger's memory is the datagrams in flight plus a fixed window,
//! whatever the run's length or loss.

use std::collections::VecDeque;

/// The fate of one sequence still in `entries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry {
    /// Sent (or waiting for a send slot: `sent` is `None`), not yet answered.
    Waiting {
        /// When it was due, ns.
        intended: u64,
        /// When it went to the kernel, ns.
        sent: Option<u64>,
        /// Its size, bytes.
        size: u32,
    },
    /// Answered.
    Answered,
    /// Unanswered within the timeout.
    Lost,
}

/// What a reply with a given sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// The first answer to a datagram still waiting; `reordered` when a later one was
    /// answered before it.
    First {
        /// When it was due, ns.
        intended: u64,
        /// When it went to the kernel, ns (its due time if it never went).
        sent: u64,
        /// Its size, bytes.
        size: u32,
        /// A later sequence was answered first.
        reordered: bool,
    },
    /// An answer to a datagram already counted lost.
    Late,
    /// A second answer.
    Duplicate,
    /// A sequence this flow never sent.
    Garbage,
}

/// The most lost sequences remembered by all of a worker's flows together (bits): the
/// window each flow gets is this shared out, within [`MIN_WINDOW`]..=[`MAX_WINDOW`].
const WINDOW_BUDGET_BITS: usize = 64 << 20;
/// The least window a flow gets, however many flows share the budget.
const MIN_WINDOW: usize = 64;
/// The most a flow remembers (the 65,536 sequences ringload always remembered).
const MAX_WINDOW: usize = 65_536;

/// One flow's ledger.
#[derive(Debug)]
pub(super) struct Ledger {
    next_seq: u64,
    /// The first sequence in `entries`.
    base: u64,
    entries: VecDeque<Entry>,
    highest_answered: Option<u64>,
    /// Bit `s % window` says whether sequence `s` (in `forgotten_below..base`) was lost.
    lost: Vec<u64>,
    window: usize,
    /// Sequences below this are forgotten.
    forgotten_below: u64,
}

impl Ledger {
    /// A ledger for one of `flows` flows sharing the memory budget.
    pub fn new(flows: usize) -> Ledger {
        let share = WINDOW_BUDGET_BITS / flows.max(1) / 64 * 64;
        Ledger::with_window(share.clamp(MIN_WINDOW, MAX_WINDOW))
    }

    /// A ledger remembering `window` lost sequences (a multiple of 64).
    pub fn with_window(window: usize) -> Ledger {
        let window = window.max(64).div_ceil(64) * 64;
        Ledger {
            next_seq: 0,
            base: 0,
            entries: VecDeque::new(),
            highest_answered: None,
            lost: vec![0; window / 64],
            window,
            forgotten_below: 0,
        }
    }

    /// How many lost sequences below the oldest waiting one it remembers.
    #[cfg(test)]
    pub fn window(&self) -> usize {
        self.window
    }

    /// A new datagram due at `intended`, of `size` bytes; its sequence.
    pub fn push(&mut self, intended: u64, size: u32) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(Entry::Waiting { intended, sent: None, size });
        seq
    }

    /// The entry of `seq`, if it is still in the ledger.
    pub fn entry(&mut self, seq: u64) -> Option<&mut Entry> {
        let idx = seq.checked_sub(self.base)?;
        self.entries.get_mut(usize::try_from(idx).ok()?)
    }

    /// Sequences in the ledger, answered or not (a bound on what one flow queues).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Datagrams still waiting for an answer.
    pub fn waiting(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e, Entry::Waiting { .. })).count()
    }

    /// Datagrams due after `warm_end` still waiting for an answer.
    pub fn waiting_measured(&self, warm_end: u64) -> u64 {
        self.entries
            .iter()
            .filter(|e| matches!(e, Entry::Waiting { intended, .. } if *intended >= warm_end))
            .count() as u64
    }

    /// Marks every datagram sent at least `timeout` ns before `now` lost (oldest first:
    /// sequences are sent in order), telling `on_lost` of each (its due time and size).
    pub fn expire(&mut self, now: u64, timeout: u64, mut on_lost: impl FnMut(u64, u32)) {
        for e in self.entries.iter_mut() {
            match *e {
                Entry::Waiting { sent: Some(sent), intended, size }
                    if sent.saturating_add(timeout) <= now =>
                {
                    *e = Entry::Lost;
                    on_lost(intended, size);
                }
                Entry::Waiting { .. } => break,
                Entry::Answered | Entry::Lost => {}
            }
        }
        self.trim();
    }

    /// Judges a reply carrying `seq` and records it.
    pub fn reply(&mut self, seq: u64) -> Reply {
        if seq >= self.next_seq {
            return Reply::Garbage;
        }
        if seq < self.base {
            return if seq < self.forgotten_below || self.take_lost(seq) {
                Reply::Late
            } else {
                Reply::Duplicate
            };
        }
        let highest = self.highest_answered;
        let Some(entry) = self.entry(seq) else { return Reply::Garbage };
        let reply = match *entry {
            Entry::Answered => Reply::Duplicate,
            Entry::Lost => {
                *entry = Entry::Answered;
                Reply::Late
            }
            Entry::Waiting { intended, sent, size } => {
                *entry = Entry::Answered;
                self.highest_answered = Some(highest.map_or(seq, |hi| hi.max(seq)));
                let reordered = highest.is_some_and(|hi| hi > seq);
                Reply::First { intended, sent: sent.unwrap_or(intended), size, reordered }
            }
        };
        self.trim();
        reply
    }

    /// Drops answered and lost entries from the front, remembering the lost ones in the
    /// window (and forgetting what falls out of it).
    fn trim(&mut self) {
        while let Some(front) = self.entries.front() {
            let lost = match front {
                Entry::Waiting { .. } => break,
                Entry::Answered => false,
                Entry::Lost => true,
            };
            self.entries.pop_front();
            self.remember(self.base, lost);
            self.base += 1;
        }
    }

    /// Puts `seq` (the new `base − 1`) in the window, lost or not; the sequence it
    /// replaces is forgotten.
    fn remember(&mut self, seq: u64, lost: bool) {
        let (word, bit) = self.slot(seq);
        if lost {
            self.lost[word] |= bit;
        } else {
            self.lost[word] &= !bit;
        }
        self.forgotten_below = self.forgotten_below.max((seq + 1).saturating_sub(self.window as u64));
    }

    /// Whether `seq` (in the window) was lost; a lost one answered now is no longer.
    fn take_lost(&mut self, seq: u64) -> bool {
        let (word, bit) = self.slot(seq);
        let was = self.lost[word] & bit != 0;
        self.lost[word] &= !bit;
        was
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let i = (seq % self.window as u64) as usize;
        (i / 64, 1 << (i % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(l: &mut Ledger, n: u64, at: u64) {
        for _ in 0..n {
            let seq = l.push(at, 64);
            if let Some(Entry::Waiting { sent, .. }) = l.entry(seq) {
                *sent = Some(at);
            }
        }
    }

    #[test]
    fn replies_are_judged_by_sequence() {
        let mut l = Ledger::with_window(64);
        sent(&mut l, 4, 100);
        assert!(matches!(l.reply(1), Reply::First { intended: 100, sent: 100, size: 64, reordered: false }));
        assert!(matches!(l.reply(0), Reply::First { reordered: true, .. }), "0 after 1");
        assert_eq!(l.reply(1), Reply::Duplicate);
        assert_eq!(l.reply(0), Reply::Duplicate, "trimmed, and not lost: a duplicate");
        assert_eq!(l.reply(4), Reply::Garbage, "never sent");
        assert_eq!(l.waiting(), 2);
        let mut lost = Vec::new();
        l.expire(1_100, 1_000, |intended, size| lost.push((intended, size)));
        assert_eq!(lost, [(100, 64), (100, 64)]);
        assert_eq!(l.reply(2), Reply::Late);
        assert_eq!(l.reply(2), Reply::Duplicate, "a second answer to a lost one");
        assert_eq!(l.reply(3), Reply::Late);
        assert_eq!((l.waiting(), l.len()), (0, 0));
    }

    #[test]
    fn what_falls_out_of_the_window_is_late_never_duplicate() {
        let mut l = Ledger::with_window(64);
        sent(&mut l, 200, 0);
        l.expire(10, 5, |_, _| {});
        assert_eq!(l.reply(10), Reply::Late, "forgotten: late");
        assert_eq!(l.reply(10), Reply::Late, "forgotten: still late, never a duplicate");
        assert_eq!(l.reply(150), Reply::Late, "in the window and lost");
        assert_eq!(l.reply(150), Reply::Duplicate, "in the window, answered late already");
    }

    /// The memory a flow keeps does not grow with the run: ten million datagrams lost
    /// leave the same window and an empty queue.
    #[test]
    fn memory_is_bounded_whatever_the_loss() {
        let mut l = Ledger::new(200);
        let window = l.window();
        assert!((MIN_WINDOW..=MAX_WINDOW).contains(&window));
        for round in 0..1_000u64 {
            sent(&mut l, 10_000, round);
            l.expire(round + 10, 5, |_, _| {});
        }
        assert_eq!(l.len(), 0);
        assert_eq!(l.lost.len() * 64, window, "the window never grows");
        assert!(l.entries.capacity() <= 16_384, "{}", l.entries.capacity());
        assert_eq!(Ledger::new(1_000_000).window(), MIN_WINDOW, "a million flows share the budget");
    }
}
