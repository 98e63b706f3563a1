//! The server's CPU time: the whole process's and each worker thread's, read from
//! `/proc` on demand (for `--metrics`, the `--stats` lines, the totals and ringload).
//!
//! Each worker records its thread id when it starts and its own final CPU time when it
//! ends, so a reading after the workers have stopped (the totals printed at exit) still
//! has every worker's figures. Not on the hot path: a mutex is fine.

use crate::procfs::{self, CpuTime};
use serde::Serialize;
use std::sync::Mutex;

/// Where each worker's CPU time is read: its thread while it runs, its last reading after.
#[derive(Debug, Default)]
pub(crate) struct WorkerThreads {
    slots: Mutex<Vec<Slot>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    tid: Option<i32>,
    last: Option<CpuTime>,
}

impl WorkerThreads {
    pub(crate) fn new(workers: usize) -> Self {
        WorkerThreads { slots: Mutex::new(vec![Slot::default(); workers]) }
    }

    fn with(&self, f: impl FnOnce(&mut Vec<Slot>)) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut slots);
    }

    /// Called by worker `index` on its own thread, before it serves.
    pub(crate) fn started(&self, index: usize) {
        let tid = crate::sys::gettid();
        self.with(|s| {
            if let Some(slot) = s.get_mut(index) {
                slot.tid = Some(tid);
            }
        });
    }

    /// Called by worker `index` on its own thread, after it served.
    pub(crate) fn ended(&self, index: usize) {
        let last = procfs::current_thread_cpu();
        self.with(|s| {
            if let Some(slot) = s.get_mut(index) {
                slot.tid = None;
                slot.last = last.or(slot.last);
            }
        });
    }

    /// Each worker's CPU time now (its last reading once it has ended).
    pub(crate) fn read(&self) -> Vec<Option<CpuTime>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner()).clone();
        slots.iter().map(|s| s.tid.and_then(procfs::thread_cpu).or(s.last)).collect()
    }
}

/// The server's CPU time at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerCpu {
    /// The whole process (every thread, living or ended).
    pub process: Option<CpuTime>,
    /// Each worker's thread, in worker order (`None`: not readable).
    pub workers: Vec<Option<CpuTime>>,
}

impl ServerCpu {
    /// `cpu process=1.23s w0=0.61s(u 0.20 s 0.41 wait 0.01)`: seconds since start.
    pub fn text(&self) -> String {
        let mut out = match self.process {
            Some(p) => format!("cpu process={:.2}s", p.user_s + p.system_s),
            None => "cpu process=?".to_string(),
        };
        for (i, w) in self.workers.iter().enumerate() {
            match w {
                Some(w) => {
                    out += &format!(
                        " w{i}={:.2}s(user {:.2} sys {:.2} wait {:.2})",
                        w.on_cpu_s(),
                        w.user_s,
                        w.system_s,
                        w.wait_s
                    )
                }
                None => out += &format!(" w{i}=?"),
            }
        }
        out
    }
}
