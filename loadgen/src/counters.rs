//! What a run counts: messages, bytes, errors by kind, datagram fates, connections.
//! One definition of "failed" ([`Counters::failed`]) for the report, the error rate, the
//! result document and `merge`.
//!
//! Invariant: every operation on counts saturates at `u64::MAX` (merged or untrusted
//! counts may be huge); none wraps.

use serde::{Deserialize, Serialize};

/// Counts of one run (or one worker's part of it). Read back from a saved result, a
/// counter the document lacks is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    /// Measured messages sent (after the warm-up).
    pub sent: u64,
    /// Measured messages answered in full.
    pub completed: u64,
    /// Messages sent and answered during the warm-up (not in the histograms).
    pub warmup_completed: u64,
    /// Bytes sent, warm-up included.
    pub bytes_sent: u64,
    /// Bytes received, warm-up included.
    pub bytes_received: u64,
    /// Connections refused.
    pub connect_refused: u64,
    /// Connections that timed out.
    pub connect_timeout: u64,
    /// Other connect failures.
    pub connect_other: u64,
    /// Connections reset by the peer.
    pub reset: u64,
    /// Connections the peer closed while replies were due.
    pub unexpected_eof: u64,
    /// Other socket errors.
    pub socket_errors: u64,
    /// Messages lost with a failed connection (sent, never answered).
    pub failed_messages: u64,
    /// Echoed bytes that differed from what was sent (`--verify`).
    pub mismatched_bytes: u64,
    /// Messages with at least one mismatched byte (`--verify`).
    pub mismatched_messages: u64,
    /// Bytes received beyond what was sent (a server talking out of turn).
    pub unsolicited_bytes: u64,
    /// Datagrams unanswered within `--udp-timeout`.
    pub lost: u64,
    /// Datagram replies that arrived after a later one.
    pub reordered: u64,
    /// Datagram replies answered twice.
    pub duplicates: u64,
    /// Datagram replies that came after their timeout (already counted lost).
    pub late: u64,
    /// Replies that are not ours (wrong header or flow).
    pub garbage: u64,
    /// Messages still unanswered when the drain after the stop ended.
    pub unanswered_at_end: u64,
    /// Bytes of the measured messages answered in full (each way).
    pub bytes_echoed: u64,
    /// Open-loop messages not sent because the per-worker backlog was full.
    pub backlog_overflow: u64,
    /// Connections opened after the warm-up (churn mode).
    pub connects: u64,
    /// Connections (or datagram flows) lost mid-run: closed, reset or failed while the run
    /// still needed them; churn's own closes are not losses.
    pub conns_lost: u64,
    /// Send operations handed to the kernel (a stream send may carry several messages
    /// when they are coalesced; a UDP send carries a train of datagrams when batching; a
    /// Unix datagram send refused by the server's full queue is not counted: it goes again).
    pub sends: u64,
    /// Receive completions whose buffer the worker's buffer ring refused (an id it did not
    /// hand out, or one already taken): their bytes could not be read. Written only when
    /// not 0, so a document's counters are what they were before it existed.
    #[serde(skip_serializing_if = "is_zero")]
    pub buf_errors: u64,
    /// UDP sends that carried a train of datagrams (UDP_SEGMENT). Written only when not 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub gso_trains: u64,
    /// UDP receives that brought a train of replies (UDP_GRO). Written only when not 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub gro_trains: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Counters {
    /// Adds `o` into `self`, counter by counter, saturating at `u64::MAX` instead of
    /// wrapping (merged or untrusted counts may be huge). The destructuring is exhaustive:
    /// a new counter that is not merged does not compile.
    pub fn merge(&mut self, o: &Counters) {
        let Counters {
            sent,
            completed,
            warmup_completed,
            bytes_sent,
            bytes_received,
            connect_refused,
            connect_timeout,
            connect_other,
            reset,
            unexpected_eof,
            socket_errors,
            failed_messages,
            mismatched_bytes,
            mismatched_messages,
            unsolicited_bytes,
            lost,
            reordered,
            duplicates,
            late,
            garbage,
            unanswered_at_end,
            bytes_echoed,
            backlog_overflow,
            connects,
            conns_lost,
            sends,
            buf_errors,
            gso_trains,
            gro_trains,
        } = *o;
        self.sent = self.sent.saturating_add(sent);
        self.completed = self.completed.saturating_add(completed);
        self.warmup_completed = self.warmup_completed.saturating_add(warmup_completed);
        self.bytes_sent = self.bytes_sent.saturating_add(bytes_sent);
        self.bytes_received = self.bytes_received.saturating_add(bytes_received);
        self.connect_refused = self.connect_refused.saturating_add(connect_refused);
        self.connect_timeout = self.connect_timeout.saturating_add(connect_timeout);
        self.connect_other = self.connect_other.saturating_add(connect_other);
        self.reset = self.reset.saturating_add(reset);
        self.unexpected_eof = self.unexpected_eof.saturating_add(unexpected_eof);
        self.socket_errors = self.socket_errors.saturating_add(socket_errors);
        self.failed_messages = self.failed_messages.saturating_add(failed_messages);
        self.mismatched_bytes = self.mismatched_bytes.saturating_add(mismatched_bytes);
        self.mismatched_messages = self.mismatched_messages.saturating_add(mismatched_messages);
        self.unsolicited_bytes = self.unsolicited_bytes.saturating_add(unsolicited_bytes);
        self.lost = self.lost.saturating_add(lost);
        self.reordered = self.reordered.saturating_add(reordered);
        self.duplicates = self.duplicates.saturating_add(duplicates);
        self.late = self.late.saturating_add(late);
        self.garbage = self.garbage.saturating_add(garbage);
        self.unanswered_at_end = self.unanswered_at_end.saturating_add(unanswered_at_end);
        self.bytes_echoed = self.bytes_echoed.saturating_add(bytes_echoed);
        self.backlog_overflow = self.backlog_overflow.saturating_add(backlog_overflow);
        self.connects = self.connects.saturating_add(connects);
        self.conns_lost = self.conns_lost.saturating_add(conns_lost);
        self.sends = self.sends.saturating_add(sends);
        self.buf_errors = self.buf_errors.saturating_add(buf_errors);
        self.gso_trains = self.gso_trains.saturating_add(gso_trains);
        self.gro_trains = self.gro_trains.saturating_add(gro_trains);
    }

    /// Messages that failed one way or another, each counted once: lost with a failed
    /// connection (`failed_messages`), echoed wrong (`mismatched_messages`), datagrams
    /// lost (`lost`: lost datagrams count as failed), still unanswered when the drain
    /// ended (`unanswered_at_end`), and open-loop messages never sent because the backlog
    /// was full (`backlog_overflow`). This is ringload's one definition of "failed": the
    /// report, the error rate, the result document's `failed` and `merge` all use it.
    /// The sum saturates at `u64::MAX`.
    pub fn failed(&self) -> u64 {
        [
            self.failed_messages,
            self.mismatched_messages,
            self.lost,
            self.unanswered_at_end,
            self.backlog_overflow,
        ]
        .into_iter()
        .fold(0u64, u64::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_failed_saturate() {
        let huge = Counters { sent: u64::MAX, lost: u64::MAX, failed_messages: 3, ..Counters::default() };
        let mut sum = huge;
        sum.merge(&huge);
        assert_eq!(sum.sent, u64::MAX);
        assert_eq!(sum.failed(), u64::MAX);
        let small = Counters {
            failed_messages: 1,
            mismatched_messages: 2,
            lost: 3,
            unanswered_at_end: 4,
            backlog_overflow: 5,
            ..Counters::default()
        };
        assert_eq!(small.failed(), 15);
    }
}
