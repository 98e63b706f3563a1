//! SQEs the `io-uring` crate cannot build yet: a multishot receive with a total byte
//! limit (`optlen`, Linux 6.17).

use io_uring::{opcode, squeue, types};

/// A multishot receive into the buffer group. With `total_limit`, the receive ends by
/// itself (a completion without `MORE`) once at least that many bytes arrived; the last
/// read is not shortened, so up to `limit - 1 + buffer size` bytes may arrive in all.
/// Only pass a limit when [`super::Features::recv_total_limit`] is true.
pub fn recv_multishot(fd: impl Into<Target>, group: u16, total_limit: Option<u32>) -> squeue::Entry {
    let entry = match fd.into() {
        Target::Fd(fd) => opcode::RecvMulti::new(fd, group).build(),
        Target::Fixed(fd) => opcode::RecvMulti::new(fd, group).build(),
    };
    match total_limit {
        Some(limit) => set_optlen(entry, limit),
        None => entry,
    }
}

/// A file to operate on: a plain descriptor or a slot of the registered file table.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A plain descriptor.
    Fd(types::Fd),
    /// A direct descriptor.
    Fixed(types::Fixed),
}

impl From<types::Fd> for Target {
    fn from(fd: types::Fd) -> Self {
        Target::Fd(fd)
    }
}

impl From<types::Fixed> for Target {
    fn from(fd: types::Fixed) -> Self {
        Target::Fixed(fd)
    }
}

/// Byte offset of `optlen` in `struct io_uring_sqe` (it shares the union with
/// `file_index` and `splice_fd_in`).
const SQE_OPTLEN_OFFSET: usize = 44;

/// Sets the SQE's `optlen` field, which multishot receive reads as its total byte limit.
fn set_optlen(entry: squeue::Entry, value: u32) -> squeue::Entry {
    const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the 64-byte `io_uring_sqe`, plain
    // data with no invalid bit patterns, so it round-trips through a byte array.
    let mut bytes: [u8; 64] = unsafe { std::mem::transmute(entry) };
    bytes[SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: as above; any bytes form a valid SQE value (the kernel validates it).
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(entry: squeue::Entry) -> [u8; 64] {
        // SAFETY: as in `set_optlen`: a repr(C) wrapper of the 64-byte plain-data SQE.
        unsafe { std::mem::transmute(entry) }
    }

    #[test]
    fn optlen_lands_in_file_index() {
        // file_index (stored + 1 for a fixed slot) shares optlen's place: set it through
        // the crate and compare the raw SQEs.
        let via_crate = opcode::Close::new(types::Fixed(41)).build();
        let via_patch = set_optlen(opcode::Close::new(types::Fixed(0)).build(), 42);
        assert_eq!(bytes(via_crate), bytes(via_patch));
        let plain = bytes(recv_multishot(types::Fd(3), 0, None));
        let limited = bytes(recv_multishot(types::Fd(3), 0, Some(1234)));
        assert_ne!(plain, limited);
        assert_eq!(limited[SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4], 1234u32.to_ne_bytes());
    }
}
