//! The command line: clap derive, help from doc comments, human units. [`Args::to_config`]
//! turns it into a validated [`Config`]; any error names the flag at fault.

use crate::config::{Config, ConfigError, Cpus, Listen};
use crate::units;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A thread-per-core io_uring echo server (RFC 862) for TCP and Unix stream sockets.
#[derive(Debug, Parser)]
#[command(
    name = "ringecho",
    version,
    after_help = "Examples:\n  \
        ringecho                                   # echo on 127.0.0.1:7007, one worker per CPU\n  \
        ringecho --tcp [::1]:0 --unix /tmp/echo.sock --stats 1s\n  \
        taskset -c 0 ringecho --tcp 127.0.0.1:7007 --max-conn-buffer 64KiB\n\n\
        Bound addresses are printed on stdout, one per line: `listening tcp 127.0.0.1:40123`.\n\
        SIGINT/SIGTERM stop accepting, drain open connections for --drain-timeout, print totals."
)]
pub struct Args {
    /// TCP address to listen on (IPv4 or IPv6, port 0 for any); repeatable.
    /// Default, when neither --tcp nor --unix is given: 127.0.0.1:7007.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Vec<SocketAddr>,

    /// Unix stream socket path to listen on; repeatable. A stale socket file is replaced
    /// only if nothing listens on it.
    #[arg(long, value_name = "PATH")]
    pub unix: Vec<PathBuf>,

    /// Number of workers (default: one per CPU in --cpus, or per CPU this process may use).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// CPUs to pin workers to, e.g. `0,1` or `0-3` (default: the process's affinity mask).
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,

    /// Provided buffers per worker (a power of two, at most 32768).
    #[arg(long, value_name = "N", default_value_t = Config::default().buffers)]
    pub buffers: u32,

    /// Size of each provided buffer, e.g. 16KiB.
    #[arg(long, value_name = "SIZE", default_value = "16KiB", value_parser = parse_u32_size)]
    pub buffer_size: u32,

    /// Most bytes one connection may hold received but not yet echoed; past it, the server
    /// stops reading from that connection until its queue drains.
    #[arg(long, value_name = "SIZE", default_value = "256KiB", value_parser = parse_u32_size)]
    pub max_conn_buffer: u32,

    /// Most open connections in the process; further ones are closed at once and counted.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_conns)]
    pub max_conns: usize,

    /// Close connections idle (nothing sent or received) for this long, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Use a kernel submission-polling thread per worker (burns a CPU; rarely a win with
    /// fewer CPUs than workers + pollers).
    #[arg(long)]
    pub sqpoll: bool,

    /// Send replies of at least this size with SEND_ZC (kernel zero-copy send). On loopback
    /// the kernel copies anyway. Default: off.
    #[arg(long, value_name = "SIZE", value_parser = parse_u32_size)]
    pub zc_threshold: Option<u32>,

    /// Print a stats line on stderr at this interval, e.g. 1s.
    #[arg(long, value_name = "INTERVAL", value_parser = units::parse_duration)]
    pub stats: Option<Duration>,

    /// Format of the stats lines and of the totals printed on exit.
    #[arg(long, value_enum, default_value_t = StatsFormat::Text)]
    pub stats_format: StatsFormat,

    /// After SIGINT/SIGTERM, how long open connections may keep echoing before they are
    /// closed.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = units::parse_duration)]
    pub drain_timeout: Duration,

    /// Submission queue entries per worker ring.
    #[arg(long, value_name = "N", default_value_t = Config::default().ring_entries)]
    pub ring_entries: u32,
}

/// How figures are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    /// `name=value` pairs on one line.
    Text,
    /// One JSON object per line.
    Json,
}

/// A parsed `--cpus` value (a newtype, so clap takes it as one value, not many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpus(text: &str) -> Result<CpuList, units::UnitError> {
    units::parse_cpu_list(text).map(CpuList)
}

fn parse_u32_size(text: &str) -> Result<u32, String> {
    let n = units::parse_size(text).map_err(|e| e.to_string())?;
    u32::try_from(n).map_err(|_| format!("{n} is larger than 4 GiB"))
}

impl Args {
    /// The validated configuration these arguments describe.
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let mut listen: Vec<Listen> = self.tcp.iter().copied().map(Listen::Tcp).collect();
        listen.extend(self.unix.iter().cloned().map(Listen::Unix));
        let defaults = Config::default();
        let config = Config {
            listen: if listen.is_empty() { defaults.listen } else { listen },
            cpus: self.cpus.clone().map_or(Cpus::Allowed, |c| Cpus::List(c.0)),
            workers: self.workers,
            buffers: self.buffers,
            buffer_size: self.buffer_size,
            max_conn_buffer: self.max_conn_buffer,
            max_conns: self.max_conns,
            idle_timeout: self.idle_timeout,
            sqpoll: self.sqpoll,
            zc_threshold: self.zc_threshold,
            drain_timeout: self.drain_timeout,
            ring_entries: self.ring_entries,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("ringecho").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let config = parse(&[]).unwrap().to_config().unwrap();
        assert_eq!(config.listen, vec![Listen::Tcp("127.0.0.1:7007".parse().unwrap())]);
        assert_eq!(config.max_conn_buffer, 256 * 1024);
    }

    #[test]
    fn units_and_lists() {
        let a = parse(&[
            "--tcp",
            "[::1]:0",
            "--unix",
            "/tmp/x.sock",
            "--buffer-size",
            "4KiB",
            "--cpus",
            "0",
            "--idle-timeout",
            "500ms",
        ])
        .unwrap();
        let c = a.to_config().unwrap();
        assert_eq!(c.buffer_size, 4096);
        assert_eq!(c.cpus, Cpus::List(vec![0]));
        assert_eq!(c.idle_timeout, Some(Duration::from_millis(500)));
        assert_eq!(c.listen.len(), 2);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = parse(&["--buffer-size", "lots"]).unwrap_err().to_string();
        assert!(e.contains("--buffer-size"), "{e}");
        let e = parse(&["--tcp", "nowhere"]).unwrap_err().to_string();
        assert!(e.contains("--tcp"), "{e}");
        let e = parse(&["--buffers", "1000"]).unwrap().to_config().unwrap_err().to_string();
        assert!(e.contains("--buffers"), "{e}");
    }
}
