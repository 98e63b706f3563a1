//! The `uring` backend: one worker per CPU, each with its own io_uring, listeners,
//! provided buffer ring and table of direct descriptors. Multishot accept into the table,
//! multishot receive into the ring, and the received buffer is sent back as it is.
//! Workers share nothing on the hot path; the only shared state is the process-wide
//! open-connection count, touched on accept and close.
//!
//! Files: `worker.rs` the loop and its set-up; `ctx.rs` what the loop lends its parts;
//! the parts, each a type owning its state and building its own entries: `stream/`
//! (stream listeners and connections), `dgram.rs` (datagram listeners); `conn.rs` one
//! connection's state, `buffers.rs` the buffer's life, `token.rs` what each completion
//! answers. Imports run one way: worker → parts → ctx, buffers, conn, token.

mod buffers;
mod conn;
mod ctx;
mod dgram;
mod stamps;
mod stream;
mod token;
mod worker;

use crate::backend::contract::{Engine, Ready, Started, WorkerSetup};
use crate::config::Config;
use crate::error::ServerWarning;
use crate::ring::{Features, UringError};

/// The hand-rolled io_uring engine, with the kernel features found at start.
pub(crate) struct UringEngine {
    features: Features,
}

impl UringEngine {
    /// Probes the kernel once: io_uring must work, and the optional features in use are
    /// recorded.
    pub fn prepare() -> Result<UringEngine, UringError> {
        Ok(UringEngine { features: crate::ring::probe()? })
    }
}

impl Engine for UringEngine {
    fn run(&self, setup: WorkerSetup, ready: Ready) -> Vec<ServerWarning> {
        worker::run(setup, self.features, ready)
    }

    fn features(&self) -> Features {
        self.features
    }

    fn describe(&self, config: &Config, started: &[Started]) -> String {
        let ring = started.first().and_then(|s| s.detail.clone()).unwrap_or_default();
        format!(
            "{ring}, {} × {} B buffers each, per-connection bound {} B ({}), SEND_ZC {}",
            config.buffers,
            config.buffer_size,
            config.max_conn_buffer,
            if self.features.recv_total_limit {
                "exact: receive limits"
            } else {
                "approximate: cancel on full"
            },
            match config.zc_threshold {
                Some(t) if self.features.send_zc => format!("at ≥ {t} B"),
                Some(_) => "unsupported by this kernel".into(),
                None => "off".into(),
            }
        )
    }
}
