//! Who was the bottleneck: the client's and the server's CPU over the measured window,
//! the kernel's loss and stall counters, and the one-line verdict on what limited the run.
//!
//! A thread is *busy* for the share of the window it wanted a CPU: running on one, or
//! runnable and waiting for one (`schedstat`). A worker sharing its CPU with a busy task
//! runs half the time and waits the other half: it is saturated, and CPU time alone would
//! not say so. A side is saturated when its busiest thread is busy at least
//! [`SATURATED`] of the window (the one saturation threshold: the report's warning and
//! `ab` use it too). An open loop's client is judged by its schedule instead
//! ([`Schedule`]): it limited the run when it fell behind, whatever its CPU share. The
//! verdict ([`judge`]) is a pure function of those figures, so it is tested on numbers;
//! `crate::observe` takes the readings and `crate::report::Report::assess` concludes.

use crate::slo::Schedule;
use crate::units::{ns, share};
use ringecho::procfs::NetCounters;
use serde::{Deserialize, Serialize};

/// The share of the window above which a thread counts as saturated.
pub const SATURATED: f64 = 0.85;
/// Below [`SATURATED`], a side still limits the run when its busiest thread is busy at
/// least this share of the window and [`DOMINANT_RATIO`] times the other side's: a
/// closed loop whose two sides take turns (each waits for the other's batch) never fills
/// either CPU, but the side that wants a CPU far longer sets the pace.
pub const DOMINANT: f64 = 0.6;
/// See [`DOMINANT`].
pub const DOMINANT_RATIO: f64 = 1.5;

/// One side's worker threads over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideCpu {
    /// CPU seconds its worker threads used in the window (user + system).
    #[serde(default)]
    pub cpu_s: f64,
    /// Each worker thread's share of the window it wanted a CPU (running or waiting for
    /// one), 0 to 1, in worker order.
    #[serde(default)]
    pub busy: Vec<f64>,
    /// Each worker thread's share of the window spent waiting for a CPU.
    #[serde(default)]
    pub waiting: Vec<f64>,
}

impl SideCpu {
    /// The busiest worker: its index and busy share.
    pub fn busiest(&self) -> Option<(usize, f64)> {
        self.busy.iter().copied().enumerate().max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The busiest worker's busy share, 0 when there is none.
    pub fn peak(&self) -> f64 {
        self.busiest().map_or(0.0, |(_, b)| b)
    }
}

/// The server's side: where its figures came from, its CPU and its counters' deltas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    /// `built-in`, or the `--server-metrics` URL.
    #[serde(default)]
    pub source: String,
    /// Its worker threads.
    #[serde(default)]
    pub cpu: SideCpu,
    /// CPU seconds the whole server process used in the window, when known.
    #[serde(default)]
    pub process_cpu_s: Option<f64>,
    /// Receive completions it made in the window.
    #[serde(default)]
    pub recv_ops: u64,
    /// Datagrams it received in the window.
    #[serde(default)]
    pub dgrams_in: u64,
}

/// What limited the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The load generator's CPU was saturated (closed loop), or it fell behind its
    /// schedule (open loop, whatever its CPU share).
    ClientCpu,
    /// The server's CPU was saturated.
    ServerCpu,
    /// Both were.
    ClientAndServerCpu,
    /// Neither: the round trip itself (too few messages in flight to fill a CPU).
    Latency,
    /// Neither: the open loop's rate.
    Rate,
    /// Not judged (no CPU figures, or `--spin` keeps the client busy by design).
    Unknown,
}

/// The figures the verdict is made from, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Views {
    /// Seconds between the first and the last reading.
    #[serde(default)]
    pub window_s: f64,
    /// ringload's worker threads.
    #[serde(default)]
    pub client: SideCpu,
    /// The server, when its figures could be read (built-in, or `--server-metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerView>,
    /// The kernel's loss and stall counters: how much each grew in the window (this
    /// machine, all sockets).
    #[serde(default)]
    pub kernel: NetCounters,
    /// What limited the run.
    pub limit: Limit,
    /// The verdict as shown: `limit: server CPU (worker 0 busy 99% ...; client 41%)`.
    #[serde(default)]
    pub limit_text: String,
    /// The client busy-polled (`--spin`).
    #[serde(default)]
    pub spin: bool,
}

/// The verdict from the busiest client and server threads' busy shares (`None`: not
/// known), the open loop's schedule (`None`: a closed loop), and whether the client
/// spun.
///
/// In an open loop the client's CPU share does not say whether it limited the run: a
/// client that waits for each message's due time spends CPU on the waiting itself (a
/// timer, a sleep and a wake per message), which shrinks as the rate grows and the turns
/// fill up. Whether it kept to its schedule does: an open-loop client limited the run
/// exactly when it fell behind.
pub fn judge(
    client: Option<f64>,
    server: Option<f64>,
    schedule: Option<Schedule>,
    client_spin: bool,
) -> Limit {
    let client = client.filter(|_| !client_spin);
    let dominates = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => a >= SATURATED || (a >= DOMINANT && a >= DOMINANT_RATIO * b),
        (Some(a), None) => a >= SATURATED,
        _ => false,
    };
    let client_sat = match schedule {
        Some(s) => s.behind(),
        None => dominates(client, server),
    };
    // An open loop's client CPU share says little (see above): the server is judged by
    // its own share alone there.
    let server_sat = dominates(server, if schedule.is_some() { None } else { client });
    match (client_sat, server_sat) {
        (true, true) => Limit::ClientAndServerCpu,
        (true, false) => Limit::ClientCpu,
        (false, true) => Limit::ServerCpu,
        // Without the server's figures a client that is not saturated says nothing of
        // what limited the run: the server may have been.
        _ if server.is_none() => Limit::Unknown,
        _ if client_spin => Limit::Latency,
        _ if schedule.is_some() => Limit::Rate,
        _ => Limit::Latency,
    }
}

/// `worker 0 busy 99% of the window (51% running, 48% waiting for a CPU)`.
pub fn worker_figure(side: &SideCpu) -> String {
    match side.busiest() {
        Some((i, busy)) => {
            let waiting = side.waiting.get(i).copied().unwrap_or(0.0);
            if waiting >= 0.05 {
                format!(
                    "worker {i} busy {} of the window: {} running, {} waiting for a CPU",
                    share(busy),
                    share((busy - waiting).max(0.0)),
                    share(waiting)
                )
            } else {
                format!("worker {i} busy {} of the window", share(busy))
            }
        }
        None => "no worker figures".into(),
    }
}

impl Views {
    /// Judges the figures and writes the verdict line; `schedule` is the open loop's
    /// (`None` in a closed loop).
    pub fn conclude(&mut self, schedule: Option<Schedule>) {
        let server = self.server.as_ref().map(|s| s.cpu.peak()).filter(|_| self.server_known());
        let client = (!self.client.busy.is_empty()).then(|| self.client.peak());
        self.limit = judge(client, server, schedule, self.spin);
        let kept = |s: &Schedule| {
            format!(
                "send lag p99 {} {} {}",
                ns(s.lag_p99_ns as f64),
                if s.behind() { ">" } else { "≤" },
                ns(s.limit_ns as f64)
            )
        };
        let client_text = match (client, &schedule) {
            (Some(c), Some(s)) => format!("client {}, {}", share(c), kept(s)),
            (Some(c), None) => format!("client {}", share(c)),
            (None, _) => "client unknown".into(),
        };
        let client_limit = match &schedule {
            Some(s) => format!("behind its schedule: {}; {}", kept(s), worker_figure(&self.client)),
            None => worker_figure(&self.client),
        };
        let server_text = match (&self.server, server) {
            (Some(s), Some(_)) => format!("server {}", worker_figure(&s.cpu)),
            _ => "server CPU unknown".into(),
        };
        self.limit_text = match self.limit {
            Limit::ServerCpu => format!(
                "limit: server CPU ({}; {client_text})",
                self.server.as_ref().map(|s| worker_figure(&s.cpu)).unwrap_or_default()
            ),
            Limit::ClientCpu => format!("limit: client CPU ({client_limit}; {server_text})"),
            Limit::ClientAndServerCpu => {
                format!("limit: client and server CPU (client {client_limit}; {server_text})")
            }
            Limit::Latency => format!(
                "limit: neither CPU saturated: latency-bound (more connections or --depth would add load; {client_text}, {server_text})"
            ),
            Limit::Rate => format!(
                "limit: neither CPU saturated: rate-bound (--rate set the pace; {client_text}, {server_text})"
            ),
            Limit::Unknown if self.spin => {
                format!("limit: not judged: --spin keeps the client's CPU busy by design ({server_text})")
            }
            Limit::Unknown if client.is_some() => format!(
                "limit: not judged: the client is not saturated ({client_text}) and the server's CPU is unknown (--server-metrics URL reads a ringecho's)"
            ),
            Limit::Unknown => "limit: not judged: no CPU figures".into(),
        };
    }

    /// The server's worker figures were read.
    pub fn server_known(&self) -> bool {
        self.server.as_ref().is_some_and(|s| !s.cpu.busy.is_empty())
    }

    /// The counters that grew, each with the setting to raise.
    pub fn kernel_hints(&self) -> Vec<(&'static str, u64, &'static str)> {
        self.kernel
            .fields()
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(name, v)| (name, v, crate::warning::kernel_hint(name)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(client: &[f64], server: Option<&[f64]>, waiting: f64) -> Views {
        let side = |b: &[f64]| SideCpu { cpu_s: 1.0, busy: b.to_vec(), waiting: vec![waiting; b.len()] };
        Views {
            window_s: 1.0,
            client: side(client),
            server: server.map(|s| ServerView {
                source: "built-in".into(),
                cpu: side(s),
                ..Default::default()
            }),
            kernel: NetCounters::default(),
            limit: Limit::Unknown,
            limit_text: String::new(),
            spin: false,
        }
    }

    /// An open loop whose client kept to its schedule.
    const KEPT: Option<Schedule> = Some(Schedule { lag_p99_ns: 10_000, limit_ns: 100_000 });
    /// An open loop whose client fell behind.
    const BEHIND: Option<Schedule> = Some(Schedule { lag_p99_ns: 300_000, limit_ns: 100_000 });

    #[test]
    fn an_open_loop_client_limits_the_run_when_it_falls_behind_not_when_it_is_busy() {
        assert_eq!(judge(Some(0.97), Some(0.6), KEPT, false), Limit::Rate, "busy, but on time");
        assert_eq!(judge(Some(0.5), Some(0.6), BEHIND, false), Limit::ClientCpu, "behind, whatever its CPU");
        assert_eq!(judge(Some(0.99), Some(0.95), BEHIND, false), Limit::ClientAndServerCpu);
        assert_eq!(judge(Some(0.99), Some(0.95), KEPT, false), Limit::ServerCpu);
        assert_eq!(judge(Some(0.99), None, KEPT, false), Limit::Unknown, "the server may have set the pace");
        let limit = Schedule { lag_p99_ns: 100_000, limit_ns: 100_000 };
        assert!(!limit.behind(), "at the limit is still on time");
        let mut v = views(&[0.97], Some(&[0.5]), 0.0);
        v.conclude(BEHIND);
        assert_eq!(
            v.limit_text,
            "limit: client CPU (behind its schedule: send lag p99 300.0µs > 100.0µs; worker 0 busy 97% of the window; server worker 0 busy 50% of the window)"
        );
        v.conclude(KEPT);
        assert!(v.limit_text.contains("client 97%, send lag p99 10.0µs ≤ 100.0µs"), "{}", v.limit_text);
    }

    #[test]
    fn verdicts_on_figures() {
        assert_eq!(judge(Some(0.99), Some(0.4), None, false), Limit::ClientCpu);
        assert_eq!(judge(Some(0.41), Some(0.99), None, false), Limit::ServerCpu);
        assert_eq!(judge(Some(0.9), Some(0.95), None, false), Limit::ClientAndServerCpu);
        assert_eq!(judge(Some(0.3), Some(0.3), None, false), Limit::Latency);
        assert_eq!(judge(Some(0.3), Some(0.3), KEPT, false), Limit::Rate);
        assert_eq!(judge(Some(0.3), None, KEPT, false), Limit::Unknown, "the server may have set the pace");
        assert_eq!(
            judge(Some(1.0), Some(0.3), None, true),
            Limit::Latency,
            "spin busies the client by design: its figure is left out"
        );
        assert_eq!(judge(Some(1.0), None, None, true), Limit::Unknown);
        assert_eq!(judge(Some(1.0), Some(0.9), None, true), Limit::ServerCpu);
        assert_eq!(judge(None, None, None, false), Limit::Unknown);
        assert_eq!(judge(Some(SATURATED), None, None, false), Limit::ClientCpu, "the threshold counts");
        // Sides that take turns: the one that wants a CPU far longer sets the pace.
        assert_eq!(judge(Some(0.73), Some(0.40), None, false), Limit::ClientCpu);
        assert_eq!(judge(Some(0.43), Some(0.72), None, false), Limit::ServerCpu);
        assert_eq!(judge(Some(0.62), Some(0.57), None, false), Limit::Latency, "alike: neither");
        assert_eq!(judge(Some(0.5), Some(0.2), None, false), Limit::Latency, "below DOMINANT: neither");
        assert_eq!(
            judge(Some(0.7), None, None, false),
            Limit::Unknown,
            "no server figures: only the client's saturation can be judged"
        );
    }

    #[test]
    fn the_line_names_the_figures_behind_it() {
        let mut v = views(&[0.41, 0.2], Some(&[0.99]), 0.48);
        v.conclude(None);
        assert_eq!(v.limit, Limit::ServerCpu);
        assert_eq!(
            v.limit_text,
            "limit: server CPU (worker 0 busy 99% of the window: 51% running, 48% waiting for a CPU; client 41%)"
        );
        let mut v = views(&[0.3], None, 0.0);
        v.conclude(None);
        assert_eq!(v.limit, Limit::Unknown);
        assert!(v.limit_text.contains("the server's CPU is unknown"), "{}", v.limit_text);
        let mut v = views(&[0.97], Some(&[0.5]), 0.0);
        v.conclude(None);
        assert!(
            v.limit_text.starts_with("limit: client CPU (worker 0 busy 97% of the window;"),
            "{}",
            v.limit_text
        );
    }

    #[test]
    fn grown_kernel_counters_have_their_hints() {
        let mut v = views(&[0.5], Some(&[0.5]), 0.0);
        v.kernel.udp_rcvbuf_errors = 12;
        assert_eq!(v.kernel_hints()[0].0, "udp_rcvbuf_errors");
        assert!(v.kernel_hints()[0].2.contains("net.core.rmem_max"));
        assert!(crate::warning::kernel_hint("listen_overflows").contains("somaxconn"));
    }
}
