//! Why io_uring cannot be used: the one error type of the ring layer, with a hint at the
//! cause (a sysctl, seccomp) where the kernel's answer alone would not say.

use std::io;

/// Why io_uring cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    /// The kernel refused to create a ring at all.
    #[error("io_uring is unavailable: {error}{}", sysctl_hint(*io_uring_disabled))]
    Unavailable {
        /// What io_uring_setup returned.
        error: io::Error,
        /// The value of kernel.io_uring_disabled, when the kernel has it.
        io_uring_disabled: Option<u8>,
    },
    /// A ring was created but a feature the engine needs is missing.
    #[error("io_uring lacks {feature} (needs Linux {kernel} or later): {error}")]
    Missing {
        /// The feature.
        feature: &'static str,
        /// The first kernel version that has it.
        kernel: &'static str,
        /// The error the kernel gave.
        error: io::Error,
    },
    /// Setting up a ring failed for a reason of this process (memory, descriptors).
    #[error("{step}: {error}")]
    Setup {
        /// What was being set up.
        step: String,
        /// Why it failed.
        error: io::Error,
    },
}

fn sysctl_hint(disabled: Option<u8>) -> String {
    match disabled {
        Some(1) => " (kernel.io_uring_disabled = 1: only processes in kernel.io_uring_group may use it)".into(),
        Some(2) => " (kernel.io_uring_disabled = 2: io_uring is switched off on this machine)".into(),
        _ => " (a kernel built without io_uring, or a seccomp profile such as a container runtime's default, blocks it)".into(),
    }
}
