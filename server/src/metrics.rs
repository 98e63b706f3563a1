//! `--metrics ADDR`: the server's counters in the OpenMetrics text format over HTTP, for
//! capacity-test dashboards.
//!
//! Every counter and gauge appears once per worker (label `worker`) and never as a total
//! beside them, so that `sum()` in a query is right; the usual `process_*` metrics and a
//! `ringecho_build_info` come with them. The exposition format is `prometheus-client`'s;
//! the HTTP side ([`http`]: `GET` and `HEAD /metrics`) serves every scrape at once on one
//! thread, each with deadlines and a bounded request, so an idle, slow or hostile client
//! delays no other scrape and costs a bounded amount.

pub mod http;

use crate::parthist::{BOUNDS_NS, Histogram};
use crate::stats::{Counters, FIELDS, Parts, Snapshot};
pub use http::{MAX_SCRAPERS, serve};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Worker {
    worker: String,
}

/// The process's own figures, from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Open descriptors.
    pub open_fds: u64,
    /// The descriptor limit (soft).
    pub max_fds: u64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// When the process started, Unix seconds.
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads this process's figures; a figure that cannot be read is 0.
    pub fn read() -> ProcessStats {
        let tick = crate::sys::clock_ticks_per_second() as f64;
        let page = crate::sys::page_size();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields count from after the command name, which may hold spaces and ')'.
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // After ')': state is field 0; utime 11, stime 12, starttime 19, vsize 20, rss 21.
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok()))
            .unwrap_or(0.0);
        ProcessStats {
            cpu_seconds: (field(11) + field(12)) as f64 / tick,
            open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0),
            max_fds: crate::sys::nofile_limit().unwrap_or(0),
            resident_bytes: field(21) * page,
            virtual_bytes: field(20),
            start_time_seconds: boot + field(19) as f64 / tick,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerMode {
    worker: String,
    mode: String,
}

/// What `/proc` says besides the counters: each worker's CPU time and the kernel's
/// network counters (machine-wide).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The process's and each worker's CPU time.
    pub cpu: crate::cpu::ServerCpu,
    /// The kernel's loss and stall counters, when readable.
    pub net: Option<crate::procfs::NetCounters>,
}

/// Renders a snapshot, the process's figures and the build information.
pub fn render(snapshot: &Snapshot, process: &ProcessStats, backend: &str) -> String {
    encode(&registry(snapshot, process, backend))
}

/// [`render`], with each worker's CPU time (`ringecho_worker_cpu_seconds_total{worker,
/// mode="user"|"system"}`, `ringecho_worker_cpu_wait_seconds_total{worker}`: runnable
/// but waiting for a CPU) and the kernel's network counters (`ringecho_kernel_*_total`).
pub fn render_observed(
    snapshot: &Snapshot,
    process: &ProcessStats,
    backend: &str,
    observed: &Observed,
) -> String {
    let mut registry = registry(snapshot, process, backend);
    let cpu = Family::<WorkerMode, Counter<f64, AtomicU64>>::default();
    let wait = Family::<Worker, Counter<f64, AtomicU64>>::default();
    for (w, c) in observed.cpu.workers.iter().enumerate() {
        let Some(c) = c else { continue };
        let worker = w.to_string();
        for (mode, v) in [("user", c.user_s), ("system", c.system_s)] {
            cpu.get_or_create(&WorkerMode { worker: worker.clone(), mode: mode.into() }).inc_by(v);
        }
        wait.get_or_create(&Worker { worker }).inc_by(c.wait_s);
    }
    registry.register("ringecho_worker_cpu_seconds", "CPU time of each worker thread, by mode", cpu);
    registry.register(
        "ringecho_worker_cpu_wait_seconds",
        "Time each worker thread was runnable but waiting for a CPU",
        wait,
    );
    if let Some(net) = observed.net {
        for ((name, value), (_, section, key, _)) in net.fields().into_iter().zip(crate::procfs::NET_COUNTERS)
        {
            let c = Counter::<u64>::default();
            c.inc_by(value);
            registry.register(
                format!("ringecho_kernel_{name}"),
                format!("The kernel's {section} {key} counter (machine-wide, since boot)"),
                c,
            );
        }
    }
    encode(&registry)
}

/// One worker's timed part as an OpenMetrics histogram: the fixed buckets of
/// [`crate::parthist`] as `le` bounds in seconds (the last `+Inf`), the exact sum.
#[derive(Debug, Default)]
struct PartMetric(std::sync::Mutex<Histogram>);

impl EncodeMetric for PartMetric {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let buckets: Vec<(f64, u64)> = h
            .counts()
            .iter()
            .enumerate()
            .map(|(i, c)| (BOUNDS_NS.get(i).map_or(f64::INFINITY, |b| *b as f64 / 1e9), *c))
            .collect();
        encoder.encode_histogram::<NoLabelSet>(h.sum_ns() as f64 / 1e9, h.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl TypedMetric for PartMetric {
    const TYPE: MetricType = MetricType::Histogram;
}

/// `--timestamps`: each worker's `wake` and `send` parts
/// (`ringecho_server_wake_seconds`, `ringecho_server_send_seconds`, label `worker`).
fn register_parts(registry: &mut Registry, parts: &[Parts]) {
    if parts.is_empty() {
        return;
    }
    let wake = Family::<Worker, PartMetric>::default();
    let send = Family::<Worker, PartMetric>::default();
    for (w, p) in parts.iter().enumerate() {
        let worker = Worker { worker: w.to_string() };
        *wake.get_or_create(&worker).0.lock().unwrap_or_else(|e| e.into_inner()) = p.wake.clone();
        *send.get_or_create(&worker).0.lock().unwrap_or_else(|e| e.into_inner()) = p.send.clone();
    }
    registry.register(
        "ringecho_server_wake_seconds",
        "--timestamps: a receive's kernel arrival stamp to the worker taking it",
        wake,
    );
    registry.register(
        "ringecho_server_send_seconds",
        "--timestamps: the worker queuing an echo to the kernel's send stamp (sampled)",
        send,
    );
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

fn registry(snapshot: &Snapshot, process: &ProcessStats, backend: &str) -> Registry {
    let mut registry = Registry::default();
    for (i, (name, help, gauge)) in FIELDS.iter().enumerate() {
        let value = |c: &Counters| c.fields()[i].1;
        let name = format!("ringecho_{name}");
        let help = help.trim_end_matches('.');
        if *gauge {
            let family = Family::<Worker, Gauge>::default();
            for (w, c) in snapshot.per_worker.iter().enumerate() {
                family.get_or_create(&Worker { worker: w.to_string() }).set(value(c) as i64);
            }
            registry.register(name, help, family);
        } else {
            let family = Family::<Worker, Counter>::default();
            for (w, c) in snapshot.per_worker.iter().enumerate() {
                family.get_or_create(&Worker { worker: w.to_string() }).inc_by(value(c));
            }
            registry.register(name, help, family);
        }
    }
    let build = Info::new(vec![
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("backend".to_string(), backend.to_string()),
    ]);
    registry.register("ringecho_build", "The ringecho version and the backend in use", build);
    register_parts(&mut registry, &snapshot.parts);
    let cpu = Counter::<f64, AtomicU64>::default();
    cpu.inc_by(process.cpu_seconds);
    registry.register("process_cpu_seconds", "Total user and system CPU time spent in seconds", cpu);
    let gauges = [
        ("process_open_fds", "Number of open file descriptors", process.open_fds as i64),
        ("process_max_fds", "Maximum number of open file descriptors", process.max_fds as i64),
        ("process_resident_memory_bytes", "Resident memory size in bytes", process.resident_bytes as i64),
        ("process_virtual_memory_bytes", "Virtual memory size in bytes", process.virtual_bytes as i64),
    ];
    for (name, help, v) in gauges {
        let g = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        g.set(v);
        registry.register(name, help, g);
    }
    let start = Gauge::<f64, AtomicU64>::default();
    start.set(process.start_time_seconds);
    registry.register(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds",
        start,
    );
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_worker_series_only() {
        let w = Counters { bytes_in: 7, open: 2, ..Counters::default() };
        let s = Snapshot { total: w, per_worker: vec![w, w], timing: None, parts: Vec::new() };
        let text = render(&s, &ProcessStats::read(), "uring");
        assert!(text.contains("# TYPE ringecho_bytes_in counter"), "{text}");
        assert!(text.contains("ringecho_bytes_in_total{worker=\"1\"} 7"), "{text}");
        assert!(!text.contains("worker=\"all\""), "a total beside the workers double-counts: {text}");
        assert!(text.contains("# TYPE ringecho_open gauge"), "{text}");
        assert!(!text.contains(".."), "help texts end with one period: {text}");
        assert!(text.contains("ringecho_build_info{version="), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn renders_worker_cpu_and_kernel_counters() {
        let w = Counters::default();
        let s = Snapshot { total: w, per_worker: vec![w, w], timing: None, parts: Vec::new() };
        let cpu = crate::procfs::CpuTime { user_s: 1.5, system_s: 0.25, wait_s: 0.125, run_s: 1.75 };
        let observed = Observed {
            cpu: crate::cpu::ServerCpu { process: Some(cpu), workers: vec![Some(cpu), None] },
            net: Some(crate::procfs::NetCounters { udp_rcvbuf_errors: 3, ..Default::default() }),
        };
        let text = render_observed(&s, &ProcessStats::read(), "uring", &observed);
        assert!(text.contains("ringecho_worker_cpu_seconds_total{worker=\"0\",mode=\"user\"} 1.5"), "{text}");
        assert!(
            text.contains("ringecho_worker_cpu_seconds_total{worker=\"0\",mode=\"system\"} 0.25"),
            "{text}"
        );
        assert!(text.contains("ringecho_worker_cpu_wait_seconds_total{worker=\"0\"} 0.125"), "{text}");
        assert!(!text.contains("worker=\"1\",mode"), "an unreadable worker is left out: {text}");
        assert!(text.contains("ringecho_kernel_udp_rcvbuf_errors_total 3"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn process_stats_are_read() {
        let p = ProcessStats::read();
        assert!(p.open_fds > 0 && p.resident_bytes > 0 && p.max_fds > 0, "{p:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds > 1e9 && p.start_time_seconds <= now + 1.0, "{p:?}");
    }
}
