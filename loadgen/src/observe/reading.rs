//! One reading of a server: each worker's CPU, the process's, and the counters ringload
//! needs, from `/proc` (`--server-pid`, the built-in server) or a scrape
//! (`--server-metrics`); two readings are matched thread by thread.

use ringecho::parthist::Histogram;
use ringecho::procfs::CpuTime;

/// One server reading: each worker's CPU, the process's, and the counters ringload needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerReading {
    /// Per worker, in worker order.
    pub workers: Vec<Option<CpuTime>>,
    /// The process's CPU seconds.
    pub process_cpu_s: Option<f64>,
    /// Receive completions, all workers.
    pub recv_ops: u64,
    /// Datagrams received, all workers.
    pub dgrams_in: u64,
    /// Datagrams echoed, dropped, and multishot receives ended by ENOBUFS, when known.
    pub dgrams: Option<[u64; 3]>,
    /// The thread ids of `workers`, when they are a process's threads (`--server-pid`):
    /// threads come and go, so two readings are matched by id, not by place.
    pub tids: Vec<i32>,
    /// The server's timed parts (`ringecho --timestamps`), all workers together.
    pub timing: Option<TimingReading>,
}

/// The server's timed parts at one reading: `wake` and `send`, all workers together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimingReading {
    /// Kernel arrival stamp → the worker takes the receive.
    pub wake: Histogram,
    /// The worker queues the echo → the kernel's send stamp.
    pub send: Histogram,
}

impl ServerReading {
    /// `later`'s workers in the order of this reading's threads (by id), when both are a
    /// process's threads; `later` as it is otherwise.
    pub(super) fn matched(&self, later: &ServerReading) -> ServerReading {
        if self.tids.is_empty() || later.tids.is_empty() {
            return later.clone();
        }
        let workers = self
            .tids
            .iter()
            .map(|tid| later.tids.iter().position(|t| t == tid).and_then(|i| later.workers[i]))
            .collect();
        ServerReading { workers, tids: self.tids.clone(), ..later.clone() }
    }
}
