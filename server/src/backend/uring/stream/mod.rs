//! Stream listeners (TCP and Unix) and their connections: accept, receive,
//! echo/discard/source, close. [`Streams`] owns all of it — the accepts, the connection
//! table, the stream buffers — and builds its own entries; the worker lends it a
//! [`Ctx`](super::ctx::Ctx) per call.
//!
//! A slot of the connection table is freed only after its close completes, and a close
//! is submitted only when no other operation of that connection is in flight, so no
//! completion can land on a reused slot (tokens carry the slot's generation as well).
//! Every entry built here points at nothing, at a stream buffer (owned by the ring) or at
//! the static source pattern (see [`super::ctx`]).
//!
//! This file only names the part; its pieces are `impl Streams` blocks, one job each,
//! that import their siblings, never this file: `state.rs` the part's state and the one
//! way its entries are pushed; `drive.rs` moving a connection forward after any event
//! (the next send, the receive armed, paused or cancelled, the close); `accept.rs` the
//! accepts and the admission of what they bring; `complete.rs` what each completion of a
//! connection means; `tick.rs` the periodic and turn-end work (idle close, eviction under
//! pool pressure, the forced close at the drain deadline, starved receives re-armed).
//! Calls run one way: tick, complete → accept → drive → state.

mod accept;
mod complete;
mod drive;
mod sample;
mod state;
mod tick;

pub(super) use state::Streams;
