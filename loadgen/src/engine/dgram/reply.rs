//! One datagram reply: matched to its datagram by the header's sequence, checked (its
//! size, and with `--verify` its bytes), timed (by its arrival stamp when the kernel
//! gave one) and recorded.

use super::flow::{Flow, payload_offset};
use crate::engine::clock::Clock;
use crate::engine::ledger::Reply;
use crate::engine::recorder::Recorder;
use crate::engine::stamps::Stamps;
use crate::header::{self, Header};
use crate::payload::Pattern;

/// When a receive's replies arrived: seen `now`, stamped by the kernel at `stamp`.
#[derive(Clone, Copy)]
pub(super) struct Arrival {
    pub(super) now: u64,
    pub(super) stamp: Option<u64>,
}

/// What a reply is recorded with: the worker's recorder, clock and stamps.
pub(super) struct Rx<'a> {
    pub(super) rec: &'a mut Recorder,
    pub(super) clock: &'a Clock,
    pub(super) stamps: &'a mut Stamps,
}

/// Matches one reply to its datagram by the header's sequence and records it; true when
/// it was the first answer to a datagram still waiting.
pub(super) fn on_reply(
    f: &mut Flow,
    pattern: &Pattern,
    verify: bool,
    cx: &mut Rx<'_>,
    at: Arrival,
    data: &[u8],
) -> bool {
    let (rec, clock) = (&mut *cx.rec, cx.clock);
    let n = data.len() as u32;
    let Some(h) = Header::decode(data).filter(|h| h.flow == f.id) else {
        rec.counters.garbage += 1;
        return false;
    };
    match f.ledger.reply(h.seq) {
        Reply::Garbage => rec.counters.garbage += 1,
        Reply::Late => rec.counters.late += 1,
        Reply::Duplicate => rec.counters.duplicates += 1,
        Reply::First { intended, sent, size, reordered } => {
            if reordered {
                rec.counters.reordered += 1;
            }
            let intact = n == size
                && (!verify || pattern.mismatches(payload_offset(f.id, h.seq), &data[header::LEN..]) == 0);
            let (when, stamped) = match f.stamps.rx {
                true => cx.stamps.reply_at(at.stamp, sent, at.now),
                false => (at.now, false),
            };
            if let Some(p) = f.probe.as_mut().filter(|p| p.seq == h.seq) {
                p.times.rx = stamped.then_some(when);
                p.times.seen = Some(at.now);
            }
            if intact {
                rec.answered_size(size);
                rec.complete(clock, at.now, stamped.then_some(when), intended, sent, u64::from(size));
            } else if intended >= clock.warm_end {
                rec.counters.mismatched_messages += 1;
                rec.counters.mismatched_bytes += u64::from(n.abs_diff(size)).max(1);
            }
            return true;
        }
    }
    false
}
