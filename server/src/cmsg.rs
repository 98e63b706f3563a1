//! Control messages (`cmsghdr`) as bytes: the `CMSG_*` arithmetic as constants, a reader
//! that walks untrusted control data with every bound checked (no pointer arithmetic),
//! and a writer for the small control buffers sends carry. UDP segmentation
//! (`crate::gso`) and kernel timestamps (`crate::tstamp`) are built on it.

/// The alignment of control messages: `size_t`.
const ALIGN: usize = std::mem::size_of::<usize>();

/// `CMSG_SPACE`: the header and the data, each padded to the alignment.
pub const fn space(data: usize) -> usize {
    std::mem::size_of::<libc::cmsghdr>().div_ceil(ALIGN) * ALIGN + data.div_ceil(ALIGN) * ALIGN
}

/// `CMSG_LEN`: the header (padded) and the data, unpadded.
pub const fn len(data: usize) -> usize {
    std::mem::size_of::<libc::cmsghdr>().div_ceil(ALIGN) * ALIGN + data
}

/// One control message: its level, type and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmsg<'a> {
    /// `cmsg_level`.
    pub level: i32,
    /// `cmsg_type`.
    pub kind: i32,
    /// The data, as long as `cmsg_len` says (within the buffer).
    pub data: &'a [u8],
}

/// The control messages in `control`, in order. A header whose length does not fit the
/// buffer ends the walk: what follows it cannot be located.
pub fn parse(control: &[u8]) -> impl Iterator<Item = Cmsg<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let word = std::mem::size_of::<usize>();
        let rest = control.get(at..)?;
        let len = usize::from_ne_bytes(rest.get(..word)?.try_into().ok()?);
        let level = i32::from_ne_bytes(rest.get(word..word + 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(rest.get(word + 4..word + 8)?.try_into().ok()?);
        if len < self::len(0) || len > rest.len() {
            return None;
        }
        let data = &rest[self::len(0)..len];
        at = at.saturating_add(len.div_ceil(ALIGN) * ALIGN);
        Some(Cmsg { level, kind, data })
    })
}

/// Writes one control message of `data` at `at` in `buf`; returns where the next one
/// goes. The caller sizes `buf` from [`space`] (a buffer too short is a bug: it panics).
pub fn write(buf: &mut [u8], at: usize, level: i32, kind: i32, data: &[u8]) -> usize {
    let word = std::mem::size_of::<usize>();
    buf[at..at + word].copy_from_slice(&len(data.len()).to_ne_bytes());
    buf[at + word..at + word + 4].copy_from_slice(&level.to_ne_bytes());
    buf[at + word + 4..at + word + 8].copy_from_slice(&kind.to_ne_bytes());
    let start = at + len(0);
    buf[start..start + data.len()].copy_from_slice(data);
    at + space(data.len())
}

/// The `i32` at the start of `data`, if it holds one.
pub fn int(data: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arithmetic_is_the_c_library_s() {
        for n in [0usize, 1, 2, 4, 8, 12, 16, 48] {
            // SAFETY: pure arithmetic macros.
            let (s, l) = unsafe { (libc::CMSG_SPACE(n as u32) as usize, libc::CMSG_LEN(n as u32) as usize) };
            assert_eq!((space(n), len(n)), (s, l), "{n}");
        }
    }

    #[test]
    fn written_messages_read_back_in_order() {
        let mut buf = [0u8; 2 * space(4) + space(2)];
        let at = write(&mut buf, 0, 1, 37, &7u32.to_ne_bytes());
        let at = write(&mut buf, at, 1, 81, &9u32.to_ne_bytes());
        let end = write(&mut buf, at, libc::SOL_UDP, libc::UDP_SEGMENT, &1200u16.to_ne_bytes());
        assert_eq!(end, buf.len());
        let got: Vec<_> = parse(&buf).map(|c| (c.level, c.kind, c.data.to_vec())).collect();
        assert_eq!(
            got,
            [
                (1, 37, 7u32.to_ne_bytes().to_vec()),
                (1, 81, 9u32.to_ne_bytes().to_vec()),
                (libc::SOL_UDP, libc::UDP_SEGMENT, 1200u16.to_ne_bytes().to_vec())
            ]
        );
    }

    #[test]
    fn garbage_ends_the_walk_without_panicking() {
        let mut buf = [0u8; space(4)];
        write(&mut buf, 0, 1, 37, &7u32.to_ne_bytes());
        // A length past the buffer, a length below the header, a cut header.
        let mut long = buf;
        long[..8].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(parse(&long).count(), 0);
        let mut short = buf;
        short[..8].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(parse(&short).count(), 0);
        assert_eq!(parse(&buf[..10]).count(), 0);
        assert_eq!(parse(&[]).count(), 0);
        for n in 0..buf.len() {
            let _ = parse(&buf[..n]).count();
        }
    }
}
