//! The command-line flags of byte throughput and latency under load, flattened into
//! ringload's run arguments.

use crate::plan::throughput::{DEFAULT_WRITE_SIZE, Mode};
use crate::target::Target;
use crate::units::parse_u32_size;

/// `--mode`, `--write-size`, `--sndbuf`, `--rcvbuf`, `--zerocopy`, `--background`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Throughput (bytes per second) and latency under load")]
pub struct ThroughputArgs {
    /// What the connections do: `rr` request/response (latency); `send` write only,
    /// against a discard server; `receive` read only, against a source server; `bulk`
    /// write and read at once, against an echo. The bulk modes report bytes per second
    /// (MB/s, Gbit/s) per second and in all, and load CPU per byte. Without a target the
    /// built-in ringecho listens in the matching mode.
    #[arg(long, value_enum, default_value_t = Mode::Rr)]
    pub mode: Mode,

    /// Bytes per send in the bulk modes and of background flows (at most 1 MiB).
    #[arg(long, value_name = "SIZE", default_value_t = DEFAULT_WRITE_SIZE, value_parser = parse_u32_size)]
    pub write_size: u32,

    /// SO_SNDBUF of bulk and background connections, set before connecting (the kernel
    /// doubles it; the report shows what it set).
    #[arg(long, value_name = "SIZE", value_parser = parse_u32_size)]
    pub sndbuf: Option<u32>,

    /// SO_RCVBUF of bulk and background connections, set before connecting.
    #[arg(long, value_name = "SIZE", value_parser = parse_u32_size)]
    pub rcvbuf: Option<u32>,

    /// Bulk sends as io_uring SEND_ZC (zero copy; refused where the kernel lacks it).
    /// Over loopback the kernel copies anyway.
    #[arg(long)]
    pub zerocopy: bool,

    /// Latency under load: N bulk connections beside the measured request/response ones,
    /// to the same target (or --background-target); the report gives both their
    /// throughput and the measured latency. A background flow that fails fails the run.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub background: u32,

    /// What the background connections do: `bulk` (both ways, an echo), `send` (a
    /// discard server) or `receive` (a source server).
    #[arg(long, value_enum, default_value_t = Mode::Bulk, value_name = "MODE")]
    pub background_mode: Mode,

    /// Where the background connections go (default: the run's target).
    #[arg(long, value_name = "TARGET")]
    pub background_target: Option<Target>,
}
