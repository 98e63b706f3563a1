//! A provided buffer ring: `count` buffers of `size` bytes in one mapping, and the ring of
//! entries through which the kernel takes them.
//!
//! Ownership rule: a buffer is either the kernel's (its id is in the ring) or user space's
//! (a completion handed it out and it has not been given back). [`BufRing::provide`] is the
//! only way back, and it refuses a buffer that user space does not hold, so no buffer can
//! be in the ring twice. The mapping lives as long as this value; the ring that registered
//! it must be dropped first (see [`crate::ring::Ring`]).

use io_uring::types::BufRingEntry;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// An anonymous, private, page-aligned mapping.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping aliases nothing; we check the result.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we unmap exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A registered provided-buffer ring and the buffers behind it.
pub struct BufRing {
    entries: Mapping,
    bufs: Mapping,
    count: u16,
    buf_size: u32,
    group: u16,
    /// Our copy of the ring tail; published to the kernel by [`BufRing::publish`].
    tail: u16,
    published: u16,
    /// One bit per buffer: set while user space holds it.
    held: Vec<u64>,
    held_count: u32,
    low_water: u32,
}

/// What went wrong giving a buffer back.
#[derive(Debug, PartialEq, Eq)]
pub enum ProvideError {
    /// The id is not a buffer of this ring.
    OutOfRange(u16),
    /// The buffer is already in the kernel's hands.
    NotHeld(u16),
}

impl BufRing {
    /// Maps `count` buffers of `buf_size` bytes and a ring of `count` entries.
    /// `count` must be a power of two no larger than 32768.
    pub fn new(count: u16, buf_size: u32, group: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32_768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two ≤ 32768",
            ));
        }
        let entries = Mapping::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(usize::from(count) * buf_size as usize)?;
        Ok(BufRing {
            entries,
            bufs,
            count,
            buf_size,
            group,
            tail: 0,
            published: 0,
            // Until `register` hands them over, every buffer is ours.
            held: (0..usize::from(count).div_ceil(64))
                .map(
                    |w| {
                        if (w + 1) * 64 <= usize::from(count) { u64::MAX } else { (1u64 << (count % 64)) - 1 }
                    },
                )
                .collect(),
            held_count: u32::from(count),
            low_water: u32::from(count),
        })
    }

    /// Registers the ring with `submitter` and hands the kernel every buffer.
    ///
    /// # Safety
    /// The ring that `submitter` belongs to must be dropped (or the group unregistered)
    /// before this `BufRing`, because the kernel reads the entries and writes the buffers
    /// until then.
    pub unsafe fn register(&mut self, submitter: &io_uring::Submitter<'_>) -> io::Result<()> {
        // SAFETY: the entry mapping is page-aligned, holds `count` entries and, by this
        // function's contract, outlives the registration.
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.entries.ptr.as_ptr() as u64,
                self.count,
                self.group,
                0,
            )?;
        }
        for bid in 0..self.count {
            self.provide(bid).map_err(|e| io::Error::other(format!("{e:?}")))?;
        }
        self.low_water = u32::from(self.count);
        self.publish();
        Ok(())
    }

    /// The buffer group id to name in receive SQEs.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Bytes per buffer.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Buffers in all.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Buffers the kernel can pick from now (as of the last completion seen).
    pub fn available(&self) -> u32 {
        u32::from(self.count) - self.held_count
    }

    /// The fewest buffers the kernel has had at once.
    pub fn low_water(&self) -> u32 {
        self.low_water
    }

    /// Records that a completion handed buffer `bid` to user space. Returns false if the
    /// id is not one of ours or we already hold it (a kernel or bookkeeping bug, counted
    /// by the caller, never trusted).
    pub fn mark_taken(&mut self, bid: u16) -> bool {
        if bid >= self.count {
            return false;
        }
        let (word, bit) = (usize::from(bid / 64), 1u64 << (bid % 64));
        if self.held[word] & bit != 0 {
            return false;
        }
        self.held[word] |= bit;
        self.held_count += 1;
        self.low_water = self.low_water.min(self.available());
        true
    }

    /// Whether user space holds buffer `bid`.
    pub fn is_held(&self, bid: u16) -> bool {
        bid < self.count && self.held[usize::from(bid / 64)] & (1u64 << (bid % 64)) != 0
    }

    /// The first `len` bytes of buffer `bid`, which user space must hold.
    pub fn data(&self, bid: u16, offset: u32, len: u32) -> *const u8 {
        debug_assert!(self.is_held(bid));
        debug_assert!(u64::from(offset) + u64::from(len) <= u64::from(self.buf_size));
        self.start_of(bid).wrapping_add(offset as usize)
    }

    fn start_of(&self, bid: u16) -> *const u8 {
        debug_assert!(bid < self.count);
        // SAFETY: `bid < count`, so the offset stays inside the buffer mapping.
        unsafe { self.bufs.ptr.as_ptr().add(usize::from(bid) * self.buf_size as usize) }
    }

    /// The bytes of buffer `bid` as a slice (for tests and checks; the echo never copies).
    pub fn bytes(&self, bid: u16, len: u32) -> &[u8] {
        assert!(self.is_held(bid) && len <= self.buf_size);
        // SAFETY: user space holds the buffer, so the kernel does not write it while this
        // shared borrow of `self` lasts (giving it back needs `&mut self`).
        unsafe { std::slice::from_raw_parts(self.data(bid, 0, len), len as usize) }
    }

    /// Gives buffer `bid` back to the kernel. It becomes visible at the next
    /// [`BufRing::publish`].
    pub fn provide(&mut self, bid: u16) -> Result<(), ProvideError> {
        if bid >= self.count {
            return Err(ProvideError::OutOfRange(bid));
        }
        let (word, bit) = (usize::from(bid / 64), 1u64 << (bid % 64));
        if self.held[word] & bit == 0 {
            return Err(ProvideError::NotHeld(bid));
        }
        self.held[word] &= !bit;
        self.held_count -= 1;
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.start_of(bid) as u64;
        // SAFETY: `index < count`, inside the entry mapping. The kernel only reads entries
        // between its head and the published tail; this one is past the published tail.
        let entry = unsafe { &mut *self.entries.ptr.as_ptr().cast::<BufRingEntry>().add(index) };
        entry.set_addr(addr);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Makes every buffer provided since the last call visible to the kernel.
    pub fn publish(&mut self) {
        if self.tail == self.published {
            return;
        }
        // SAFETY: the tail lives in the first entry's reserved field, which the kernel
        // reads as an atomic u16; the mapping is live and suitably aligned.
        let tail = unsafe { &*BufRingEntry::tail(self.entries.ptr.as_ptr().cast()).cast::<AtomicU16>() };
        // Release: the entries written above are visible before the new tail.
        tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_refuses_double_return() {
        let mut ring = BufRing::new(8, 64, 0).unwrap();
        assert_eq!(ring.available(), 0);
        for bid in 0..8 {
            ring.provide(bid).unwrap();
        }
        assert_eq!(ring.available(), 8);
        assert!(ring.mark_taken(3));
        assert!(!ring.mark_taken(3), "taken twice");
        assert_eq!(ring.available(), 7);
        assert_eq!(ring.low_water(), 7);
        ring.provide(3).unwrap();
        assert_eq!(ring.provide(3), Err(ProvideError::NotHeld(3)));
        assert_eq!(ring.provide(9), Err(ProvideError::OutOfRange(9)));
        assert!(!ring.mark_taken(8));
        assert_eq!(ring.available(), 8);
    }

    proptest::proptest! {
        #[test]
        fn every_buffer_returns_exactly_once(ops in proptest::collection::vec((0u16..16, proptest::bool::ANY), 0..200)) {
            let mut ring = BufRing::new(16, 64, 0).unwrap();
            for bid in 0..16 {
                ring.provide(bid).unwrap();
            }
            let mut held = std::collections::BTreeSet::new();
            for (bid, take) in ops {
                if take {
                    proptest::prop_assert_eq!(ring.mark_taken(bid), held.insert(bid));
                } else {
                    proptest::prop_assert_eq!(ring.provide(bid).is_ok(), held.remove(&bid));
                }
                proptest::prop_assert_eq!(ring.available() as usize, 16 - held.len());
            }
        }
    }
}
