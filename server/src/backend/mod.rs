//! The four engines behind one command line, side by side: `uring` (hand-rolled io_uring
//! per CPU), `epoll` (mio per CPU), `tokio_uring` (a runtime per CPU) and `threads` (a
//! thread per connection). [`contract`] says what each is given and supplies; [`engine`]
//! picks one.

pub(crate) mod contract;
mod epoll;
mod threads;
mod tokio_uring;
mod uring;

use crate::config::Backend;
use crate::error::StartError;
use contract::Engine;
use std::sync::Arc;

/// The engine for `backend`, after checking once that this machine can run it (the
/// io_uring backends probe the kernel here, so that a missing feature fails the start).
pub(crate) fn engine(backend: Backend) -> Result<Arc<dyn Engine>, StartError> {
    Ok(match backend {
        Backend::Uring => Arc::new(uring::UringEngine::prepare()?),
        Backend::Epoll => Arc::new(epoll::EpollEngine),
        Backend::TokioUring => Arc::new(tokio_uring::TokioUringEngine::prepare()?),
        Backend::Threads => Arc::new(threads::ThreadsEngine),
    })
}
