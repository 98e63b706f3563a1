//! Opening the files `report`, `merge`, `compare` and `plot` read: untrusted paths and
//! contents.
//!
//! Invariant: only regular files are read, and never more than a stated size: a device
//! (`/dev/zero`, `/dev/urandom`) would be read for ever, and a FIFO with no writer blocks
//! `open` for ever. The type is checked before opening (so no device is even opened),
//! the file is opened without blocking, and the type is checked again on the open file,
//! so a path swapped in between cannot slip through. What a document holds is read with
//! every list bounded as it is read ([`bounded_list`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest result document read: 8 MiB. A real one is well under 2 MiB (its three
/// histograms take at most 407 KB of text each); with what a document holds bounded as
/// it is read (`crate::document::read`), the bound keeps a hostile file's cost, parsed,
/// far below 64 MB.
pub const MAX_DOCUMENT_BYTES: u64 = 8 << 20;

/// The largest interval log read: 1 GiB (a week of one-second intervals). A log is read
/// a line at a time, so its size costs time, not memory.
pub const MAX_LOG_BYTES: u64 = 1 << 30;

/// Why an input file cannot be read. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Opening or reading failed.
    #[error("{file}: {cause}")]
    Io {
        /// The file.
        file: String,
        /// Why.
        cause: std::io::Error,
    },
    /// Not a regular file.
    #[error(
        "{file}: is a {kind}, not a regular file; ringload reads results and logs from regular files only"
    )]
    NotRegular {
        /// The file.
        file: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// Larger than any file of its kind ringload writes.
    #[error("{file}: larger than {limit_mib} MiB, more than any ringload {what} takes")]
    TooLarge {
        /// The file.
        file: String,
        /// The bound.
        limit_mib: u64,
        /// What the file should be.
        what: &'static str,
    },
}

fn kind(t: std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("directory")
    } else if t.is_fifo() {
        Some("FIFO")
    } else if t.is_socket() {
        Some("socket")
    } else if t.is_char_device() {
        Some("character device")
    } else if t.is_block_device() {
        Some("block device")
    } else {
        Some("special file")
    }
}

/// Opens `path` if it is a regular file no larger than `limit` bytes.
pub fn open_regular(path: &Path, limit: u64, what: &'static str) -> Result<File, InputError> {
    let file = path.display().to_string();
    let io = |cause| InputError::Io { file: file.clone(), cause };
    let checked = |meta: std::fs::Metadata| match kind(meta.file_type()) {
        Some(kind) => Err(InputError::NotRegular { file: file.clone(), kind }),
        None if meta.len() > limit => {
            Err(InputError::TooLarge { file: file.clone(), limit_mib: limit >> 20, what })
        }
        None => Ok(()),
    };
    checked(std::fs::metadata(path).map_err(io)?)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    checked(f.metadata().map_err(io)?)?;
    Ok(f)
}

/// Reads a whole result document, at most [`MAX_DOCUMENT_BYTES`] (a file that grows
/// while it is read is cut off there and refused).
pub fn read_document(path: &Path) -> Result<Vec<u8>, InputError> {
    const WHAT: &str = "result document";
    let f = open_regular(path, MAX_DOCUMENT_BYTES, WHAT)?;
    let mut bytes = Vec::new();
    f.take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|cause| InputError::Io { file: path.display().to_string(), cause })?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(InputError::TooLarge {
            file: path.display().to_string(),
            limit_mib: MAX_DOCUMENT_BYTES >> 20,
            what: WHAT,
        });
    }
    Ok(bytes)
}

/// An interval log opened for reading a line at a time, at most [`MAX_LOG_BYTES`] in
/// all.
pub fn open_log(path: &Path) -> Result<impl BufRead, InputError> {
    let f = open_regular(path, MAX_LOG_BYTES, "interval log")?;
    Ok(BufReader::new(f.take(MAX_LOG_BYTES)))
}

/// Reads a list of at most `max` entries from an untrusted document (a serde
/// `deserialize_with` helper), refused at the first entry past it with the message
/// `too_many` gives: a list is never stored whole before it is found too long, so a
/// file of millions of small entries costs nothing.
pub fn bounded_list<'de, D, T>(
    d: D,
    max: usize,
    too_many: impl FnOnce() -> String,
) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct Bounded<T, F>(usize, F, std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>, F: FnOnce() -> String> serde::de::Visitor<'de> for Bounded<T, F> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {} entries", self.0)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() == self.0 {
                    return Err(serde::de::Error::custom((self.1)()));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded(max, too_many, std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn devices_fifos_and_directories_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t0 = Instant::now();
        for (path, needle) in [
            (Path::new("/dev/zero"), "is a character device"),
            (Path::new("/dev/urandom"), "is a character device"),
            (fifo.as_path(), "is a FIFO"),
            (dir.path(), "is a directory"),
        ] {
            let e = read_document(path).unwrap_err().to_string();
            assert!(e.starts_with(&path.display().to_string()) && e.contains(needle), "{e}");
            assert!(open_log(path).is_err(), "{}", path.display());
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "a FIFO with no writer must not block");
    }

    #[test]
    fn a_document_larger_than_the_bound_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        let f = File::create(&big).unwrap();
        f.set_len(MAX_DOCUMENT_BYTES + 1).unwrap();
        let e = read_document(&big).unwrap_err().to_string();
        assert!(e.contains("larger than 8 MiB"), "{e}");
        f.set_len(10).unwrap();
        assert_eq!(read_document(&big).unwrap(), vec![0u8; 10]);
        let missing = read_document(&dir.path().join("nope.json")).unwrap_err().to_string();
        assert!(missing.contains("nope.json: No such file"), "{missing}");
    }
}
