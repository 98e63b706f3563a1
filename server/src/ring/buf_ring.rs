//! A provided buffer ring: `count` buffers of `size` bytes in one mapping, and the ring of
//! entries through which the kernel takes them.
//!
//! Ownership rule: a buffer is either the kernel's (its id is in the ring) or user space's
//! (a completion handed it out and it has not been given back). User space's buffers are
//! [`Buf`] values: [`BufRing::take`] makes one from a completion's buffer id and
//! [`BufRing::give_back`] consumes it. A `Buf` is neither `Copy` nor `Clone`, so giving the
//! same buffer back twice does not compile. The bitset behind `take` still refuses an id
//! the kernel hands out twice, or a `Buf` of another ring, with a [`BufError`] that callers
//! count and never trust. The mapping lives as long as this value; the io_uring that
//! registered it is dropped first (see [`crate::ring::Ring`]).

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

/// A provided buffer that user space holds: made by [`BufRing::take`] from a completion,
/// consumed by [`BufRing::give_back`]. Neither `Copy` nor `Clone`: whoever holds it is the
/// one place that can give it back.
#[must_use = "a buffer taken from the ring must be given back to it"]
#[derive(Debug, PartialEq, Eq)]
pub struct Buf {
    bid: u16,
}

impl Buf {
    /// The buffer id, as the kernel names it in completions.
    pub fn id(&self) -> u16 {
        self.bid
    }

    /// A handle for a buffer id, for unit tests of code that queues buffers.
    #[cfg(test)]
    pub(crate) fn for_test(bid: u16) -> Buf {
        Buf { bid }
    }

    /// Gives up the handle without giving the buffer back (the ring is going away, or the
    /// kernel may still write it).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // Giving a buffer back forgets its handle, so reaching this loses the buffer from
        // the pool for good: a bug, loud in debug builds (in release builds the end-to-end
        // tests see it as a pool that never refills).
        debug_assert!(std::thread::panicking(), "buffer {} dropped without being given back", self.bid);
    }
}

/// A buffer id the bookkeeping refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufError {
    /// The id is not a buffer of this ring.
    #[error("buffer id {0} is not in this ring")]
    OutOfRange(u16),
    /// A completion named a buffer that user space already holds.
    #[error("buffer {0} handed out twice")]
    AlreadyHeld(u16),
    /// A buffer given back that this ring did not hand out.
    #[error("buffer {0} given back but not held")]
    NotHeld(u16),
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

impl BufRing {
    /// Maps `count` buffers of `buf_size` bytes and a ring of `count` entries, every buffer
    /// user space's until registered. `count` must be a power of two no larger than 32768.
    pub(crate) fn new(count: u16, buf_size: u32, group: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32_768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two ≤ 32768",
            ));
        }
        let entries = Mapping::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(usize::from(count) * buf_size as usize)?;
        let words = usize::from(count).div_ceil(64);
        let full_word = |w: usize| (w + 1) * 64 <= usize::from(count);
        Ok(BufRing {
            entries,
            bufs,
            count,
            buf_size,
            group,
            tail: 0,
            published: 0,
            // Until `register` hands them over, every buffer is ours.
            held: (0..words)
                .map(|w| if full_word(w) { u64::MAX } else { (1u64 << (count % 64)) - 1 })
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
    pub(crate) unsafe fn register(&mut self, submitter: &io_uring::Submitter<'_>) -> io::Result<()> {
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
        self.provide_all();
        Ok(())
    }

    /// A ring whose buffers are all in its entries but which no kernel will ever read:
    /// for measuring and testing the bookkeeping alone.
    pub fn unregistered(count: u16, buf_size: u32) -> io::Result<BufRing> {
        let mut ring = BufRing::new(count, buf_size, 0)?;
        ring.provide_all();
        Ok(ring)
    }

    /// Hands every buffer to the ring entries (at registration: user space holds all).
    fn provide_all(&mut self) {
        for bid in 0..self.count {
            // Every id is in range and held until now: this cannot fail.
            let _ = self.provide(bid);
        }
        self.low_water = u32::from(self.count);
        self.publish();
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

    /// Takes buffer `bid`, which a completion handed to user space. Refuses an id that is
    /// not one of ours or that we already hold (a kernel or bookkeeping bug: the caller
    /// counts it and must not touch the buffer).
    pub fn take(&mut self, bid: u16) -> Result<Buf, BufError> {
        if bid >= self.count {
            return Err(BufError::OutOfRange(bid));
        }
        let (word, bit) = (usize::from(bid / 64), 1u64 << (bid % 64));
        if self.held[word] & bit != 0 {
            return Err(BufError::AlreadyHeld(bid));
        }
        self.held[word] |= bit;
        self.held_count += 1;
        self.low_water = self.low_water.min(self.available());
        Ok(Buf { bid })
    }

    /// Gives `buf` back to the kernel; it becomes visible at the next
    /// [`BufRing::publish`]. Refuses only a `Buf` this ring did not hand out.
    pub fn give_back(&mut self, buf: Buf) -> Result<(), BufError> {
        let bid = buf.bid;
        buf.forget();
        self.provide(bid)
    }

    /// Whether user space holds buffer `bid`.
    pub fn is_held(&self, bid: u16) -> bool {
        bid < self.count && self.held[usize::from(bid / 64)] & (1u64 << (bid % 64)) != 0
    }

    /// Where byte `offset` of `buf` is, for a send of `len` bytes from it.
    pub fn data(&self, buf: &Buf, offset: u32, len: u32) -> *const u8 {
        debug_assert!(self.is_held(buf.bid));
        debug_assert!(u64::from(offset) + u64::from(len) <= u64::from(self.buf_size));
        self.start_of(buf.bid).wrapping_add(offset as usize)
    }

    fn start_of(&self, bid: u16) -> *const u8 {
        debug_assert!(bid < self.count);
        // SAFETY: `bid < count`, so the offset stays inside the buffer mapping.
        unsafe { self.bufs.ptr.as_ptr().add(usize::from(bid) * self.buf_size as usize) }
    }

    /// The first `len` bytes of `buf` (at most the buffer's size) as a slice; empty for a
    /// `Buf` this ring does not hold.
    pub fn bytes(&self, buf: &Buf, len: u32) -> &[u8] {
        if !self.is_held(buf.bid) {
            return &[];
        }
        let len = len.min(self.buf_size);
        // SAFETY: user space holds the buffer (checked above), so the kernel does not write
        // it while this shared borrow of `self` lasts (giving it back needs `&mut self`);
        // `len` is within the buffer.
        unsafe { std::slice::from_raw_parts(self.start_of(buf.bid), len as usize) }
    }

    /// Puts buffer `bid` back into the ring entries (visible at the next publish).
    fn provide(&mut self, bid: u16) -> Result<(), BufError> {
        if bid >= self.count {
            return Err(BufError::OutOfRange(bid));
        }
        let (word, bit) = (usize::from(bid / 64), 1u64 << (bid % 64));
        if self.held[word] & bit == 0 {
            return Err(BufError::NotHeld(bid));
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

    /// Makes every buffer given back since the last call visible to the kernel.
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

    /// A ring whose every buffer is the kernel's, as after `register` (no kernel needed).
    fn provided(count: u16) -> BufRing {
        BufRing::unregistered(count, 64).unwrap()
    }

    #[test]
    fn bookkeeping_refuses_what_it_did_not_hand_out() {
        let mut ring = BufRing::new(8, 64, 0).unwrap();
        assert_eq!(ring.available(), 0, "every buffer is ours until registered");
        ring.provide_all();
        assert_eq!(ring.available(), 8);
        let three = ring.take(3).unwrap();
        assert_eq!(ring.take(3), Err(BufError::AlreadyHeld(3)), "handed out twice");
        assert_eq!(ring.available(), 7);
        assert_eq!(ring.low_water(), 7);
        ring.give_back(three).unwrap();
        assert_eq!(ring.take(8), Err(BufError::OutOfRange(8)));
        assert_eq!(ring.available(), 8);
        // A handle of another ring is refused, not trusted.
        let mut other = provided(16);
        assert_eq!(ring.give_back(other.take(12).unwrap()), Err(BufError::OutOfRange(12)));
        assert_eq!(ring.give_back(other.take(2).unwrap()), Err(BufError::NotHeld(2)));
        assert_eq!(ring.available(), 8);
    }

    #[test]
    fn bytes_are_the_buffer() {
        let mut ring = provided(4);
        let b = ring.take(1).unwrap();
        assert_eq!(ring.bytes(&b, 16).len(), 16);
        assert_eq!(ring.bytes(&b, 1000).len(), 64, "clamped to the buffer size");
        let foreign = provided(4).take(2).unwrap();
        assert!(ring.bytes(&foreign, 16).is_empty(), "not ours: nothing to read");
        foreign.forget();
        ring.give_back(b).unwrap();
    }

    proptest::proptest! {
        /// Whatever ids completions name and in whatever order the code gives buffers
        /// back, the count of the kernel's buffers stays exact and each goes back once.
        #[test]
        fn every_buffer_returns_exactly_once(ops in proptest::collection::vec((0u16..20, proptest::bool::ANY), 0..200)) {
            let mut ring = provided(16);
            let mut held = std::collections::BTreeMap::new();
            for (bid, take) in ops {
                if take {
                    let expect_ok = bid < 16 && !held.contains_key(&bid);
                    match ring.take(bid) {
                        Ok(b) => {
                            proptest::prop_assert!(expect_ok);
                            held.insert(bid, b);
                        }
                        Err(_) => proptest::prop_assert!(!expect_ok),
                    }
                } else if let Some(b) = held.remove(&bid) {
                    proptest::prop_assert!(ring.give_back(b).is_ok());
                }
                proptest::prop_assert_eq!(ring.available() as usize, 16 - held.len());
            }
            for (_, b) in held {
                proptest::prop_assert!(ring.give_back(b).is_ok());
            }
            proptest::prop_assert_eq!(ring.available(), 16);
        }
    }
}
