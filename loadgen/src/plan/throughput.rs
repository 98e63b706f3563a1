//! Byte throughput: what the run's `--mode` is (request/response, the default, or one of
//! the three bulk modes that count bytes instead of messages), the bulk options of a
//! plan, and the background flows of a latency-under-load run (`--background`).
//!
//! Invariant: a plan whose `mode` is a bulk mode, or that has background flows, keeps the
//! rules of [`ThroughputPlan::validate`]: a stream target, a time-bound stop, the closed loop, a write size
//! the pattern can give in one slice; `--zerocopy` only where something is sent in bulk.
//! The figures of such a run are in [`crate::figures`].

use super::model::{Model, PlanError, Stop};
use crate::target::Target;

/// What a connection does.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Request/response: messages echoed and timed one by one (latency).
    #[default]
    Rr,
    /// Send only, against a discard server: bytes per second out.
    Send,
    /// Receive only, against a source server: bytes per second in.
    Receive,
    /// Both ways at once against an echo: write and read continuously, counting bytes.
    Bulk,
}

impl Mode {
    /// Whether the mode counts bytes rather than messages.
    pub fn is_bulk(self) -> bool {
        self != Mode::Rr
    }

    /// Whether connections in this mode write.
    pub fn sends(self) -> bool {
        matches!(self, Mode::Send | Mode::Bulk)
    }

    /// Whether connections in this mode expect to read.
    pub fn receives(self) -> bool {
        matches!(self, Mode::Receive | Mode::Bulk)
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Rr => "rr",
            Mode::Send => "send",
            Mode::Receive => "receive",
            Mode::Bulk => "bulk",
        }
    }

    /// The ringecho listener mode this mode measures (the built-in server's).
    pub fn server_mode(self) -> ringecho::Mode {
        match self {
            Mode::Send => ringecho::Mode::Discard,
            Mode::Receive => ringecho::Mode::Source,
            Mode::Rr | Mode::Bulk => ringecho::Mode::Echo,
        }
    }
}

/// The default `--write-size` of the bulk modes.
pub const DEFAULT_WRITE_SIZE: u32 = 64 * 1024;

/// Most background flows.
pub const MAX_BACKGROUND: u32 = 10_000;

/// A plan's byte-throughput options. Documents from before these existed read as the
/// request/response defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ThroughputPlan {
    /// What the measured connections do.
    pub mode: Mode,
    /// Bytes per send in the bulk modes (and of background flows).
    pub write_size: u32,
    /// SO_SNDBUF set before connecting (bulk and background connections), bytes.
    pub sndbuf: Option<u32>,
    /// SO_RCVBUF set before connecting (bulk and background connections), bytes.
    pub rcvbuf: Option<u32>,
    /// Bulk sends as IORING_OP_SEND_ZC.
    pub zerocopy: bool,
    /// Bulk connections beside the measured request/response ones (latency under load).
    pub background: u32,
    /// What the background connections do.
    pub background_mode: Mode,
    /// Where the background connections go (`None`: the run's target).
    #[serde(with = "super::fields::optional_target")]
    pub background_target: Option<Target>,
}

impl Default for ThroughputPlan {
    fn default() -> Self {
        ThroughputPlan {
            mode: Mode::Rr,
            write_size: DEFAULT_WRITE_SIZE,
            sndbuf: None,
            rcvbuf: None,
            zerocopy: false,
            background: 0,
            background_mode: Mode::Bulk,
            background_target: None,
        }
    }
}

impl ThroughputPlan {
    /// Whether the run has bulk connections at all (measured or background).
    pub fn has_bulk(&self) -> bool {
        self.mode.is_bulk() || self.background > 0
    }
}

impl ThroughputPlan {
    /// Checks the throughput options against the rest of the plan: its target, stop,
    /// model and churn.
    pub fn validate(
        &self,
        target: Option<&Target>,
        stop: &Stop,
        model: &Model,
        churn: Option<u32>,
    ) -> Result<(), PlanError> {
        let t = self;
        if !t.has_bulk() {
            if t.zerocopy {
                return Err(PlanError::new(
                    "--zerocopy",
                    "applies to bulk sends: --mode send or bulk, or --background",
                ));
            }
            return Ok(());
        }
        let stream = |target: Option<&Target>| target.is_none_or(|t| !t.is_datagram());
        if !stream(target) || !stream(t.background_target.as_ref()) {
            return Err(PlanError::new(
                "--mode",
                "the bulk modes and --background need a stream target (tcp:// or unix://)",
            ));
        }
        if !(1..=crate::payload::MAX_SEND as u32).contains(&t.write_size) {
            return Err(PlanError::new("--write-size", "between 1 byte and 1 MiB"));
        }
        for (flag, v) in [("--sndbuf", t.sndbuf), ("--rcvbuf", t.rcvbuf)] {
            if v.is_some_and(|v| v == 0 || v > 1 << 30) {
                return Err(PlanError::new(flag, "between 1 byte and 1 GiB"));
            }
        }
        if !matches!(stop, Stop::Duration(_)) {
            return Err(PlanError::new("--requests", "the bulk modes and --background run for a --duration"));
        }
        if t.mode.is_bulk() && !matches!(model, Model::Closed { depth: 1 }) {
            return Err(PlanError::new(
                "--rate/--depth",
                "the bulk modes write continuously: no rate or depth",
            ));
        }
        if churn.is_some() {
            return Err(PlanError::new("--churn", "not with the bulk modes or --background"));
        }
        if t.mode.is_bulk() && t.background > 0 {
            return Err(PlanError::new(
                "--background",
                "measures request/response latency beside bulk flows: use it with --mode rr",
            ));
        }
        if t.background > MAX_BACKGROUND {
            return Err(PlanError::new("--background", format!("at most {MAX_BACKGROUND}")));
        }
        if t.background > 0 && !t.background_mode.is_bulk() {
            return Err(PlanError::new("--background-mode", "send, receive or bulk"));
        }
        let sends = t.mode.sends() || (t.background > 0 && t.background_mode.sends());
        if t.zerocopy && !sends {
            return Err(PlanError::new(
                "--zerocopy",
                "applies to bulk sends: --mode send or bulk, or --background",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_server_modes() {
        assert_eq!(Mode::Send.server_mode(), ringecho::Mode::Discard);
        assert_eq!(Mode::Receive.server_mode(), ringecho::Mode::Source);
        assert!(Mode::Bulk.sends() && Mode::Bulk.receives());
        assert!(!Mode::Rr.is_bulk());
    }

    #[test]
    fn plans_read_back_and_old_ones_default() {
        let t = ThroughputPlan {
            mode: Mode::Receive,
            background_target: Some(Target::Tcp(([127, 0, 0, 1], 9).into())),
            sndbuf: Some(4096),
            ..ThroughputPlan::default()
        };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<ThroughputPlan>(&text).unwrap(), t);
        assert_eq!(serde_json::from_str::<ThroughputPlan>("{}").unwrap(), ThroughputPlan::default());
        assert!(serde_json::from_str::<ThroughputPlan>(r#"{"background_target":"ftp://x"}"#).is_err());
    }
}
