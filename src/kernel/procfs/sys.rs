//! The few `*at()` system calls the process scan needs, wrapped so that the scan itself
//! is safe code: listing a directory of numbered entries (`/proc`, `/proc/<pid>/fd`),
//! opening relative to a directory, and `readlinkat` into a caller's buffer.
//!
//! These exist because the scan runs one `readlink` per open file descriptor on the
//! machine, and std's `read_dir` and `read_link` allocate for every entry and walk the
//! whole path each time. This module must not know what the entries mean.

use std::ffi::{CStr, c_int};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::ptr::NonNull;

/// An open directory being listed.
pub struct Directory {
    stream: NonNull<libc::DIR>,
}

impl Directory {
    /// Opens the directory at `path` (absolute, or relative to the working directory).
    pub fn open(path: &CStr) -> io::Result<Directory> {
        Self::open_relative(libc::AT_FDCWD, path)
    }

    /// Opens the directory `name` inside `parent`.
    pub fn open_at(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<Directory> {
        Self::open_relative(parent.as_raw_fd(), name)
    }

    fn open_relative(parent: c_int, name: &CStr) -> io::Result<Directory> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // SAFETY: `name` is NUL-terminated and outlives the call.
        let fd = unsafe { libc::openat(parent, name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: on success the stream owns the descriptor and closedir closes it.
        let stream = unsafe { libc::fdopendir(fd.as_raw_fd()) };
        let stream = NonNull::new(stream).ok_or_else(io::Error::last_os_error)?;
        // The stream owns the descriptor now; closedir closes it.
        let _ = fd.into_raw_fd();
        Ok(Directory { stream })
    }

    /// The next entry whose name is a decimal number, skipping `.`, `..` and the named
    /// entries of `/proc`. Names too large for a u32 are skipped too: pids and file
    /// descriptors never are.
    pub fn next_number(&mut self) -> Option<io::Result<u32>> {
        loop {
            // readdir returns NULL both at the end and on error; only errno tells apart.
            // SAFETY: __errno_location returns this thread's errno, always valid.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `stream` is an open directory stream owned by `self`.
            let entry = unsafe { libc::readdir(self.stream.as_ptr()) };
            let Some(entry) = NonNull::new(entry) else {
                let error = io::Error::last_os_error();
                return match error.raw_os_error() {
                    Some(0) | None => None,
                    Some(_) => Some(Err(error)),
                };
            };
            // SAFETY: readdir's entry is valid until the next readdir on this stream,
            // and `d_name` is NUL-terminated; the name is parsed before that.
            let name = unsafe { CStr::from_ptr((*entry.as_ptr()).d_name.as_ptr()) };
            if let Some(number) = parse_decimal(name.to_bytes()) {
                return Some(Ok(number));
            }
        }
    }
}

impl AsFd for Directory {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `stream` is open, so its descriptor is valid for as long as `self`.
        unsafe { BorrowedFd::borrow_raw(libc::dirfd(self.stream.as_ptr())) }
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        // SAFETY: `stream` is open and is closed only here. Nothing useful can be done
        // about a failed close of a directory opened read-only.
        unsafe { libc::closedir(self.stream.as_ptr()) };
    }
}

/// Opens the directory `name` inside `parent` as a handle for further `*at()` calls
/// only (`O_PATH`): cheaper than a real open, and it keeps naming the same directory.
pub fn open_handle_at(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::openat(parent.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the file `name` inside `parent` for reading.
pub fn open_file_at(parent: BorrowedFd<'_>, name: &CStr) -> io::Result<File> {
    let flags = libc::O_RDONLY | libc::O_CLOEXEC;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::openat(parent.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The target of the symbolic link `name` inside `parent`, read into `buffer`. A target
/// longer than `buffer` comes back cut to its length, as readlink does.
pub fn read_link_at<'b>(
    parent: BorrowedFd<'_>,
    name: &CStr,
    buffer: &'b mut [u8],
) -> io::Result<&'b [u8]> {
    // SAFETY: `name` is NUL-terminated; the kernel writes at most `buffer.len()` bytes
    // into `buffer`, which is borrowed mutably for the call.
    let length = unsafe {
        libc::readlinkat(
            parent.as_raw_fd(),
            name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    // A negative length is an error; any other fits `buffer`, so `get` cannot fail.
    let length = usize::try_from(length).map_err(|_| io::Error::last_os_error())?;
    buffer
        .get(..length)
        .ok_or_else(|| io::Error::other("readlinkat overran its buffer"))
}

/// A number written as a NUL-terminated directory entry name, without allocating.
pub struct NumberName {
    bytes: [u8; 12],
}

impl NumberName {
    pub fn new(number: u32) -> NumberName {
        // u32::MAX has ten digits, so digits and NUL always fit in twelve bytes and
        // the rest of the buffer stays NUL.
        let mut bytes = [0; 12];
        let _ = write!(&mut bytes[..], "{number}");
        NumberName { bytes }
    }

    pub fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bytes).unwrap_or(c"")
    }
}

/// Text made only of ASCII digits (no sign, no spaces), as a number.
pub fn parse_decimal<T: std::str::FromStr>(digits: &[u8]) -> Option<T> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_through_entry_names() {
        for number in [0, 7, 42, 4_194_304, u32::MAX] {
            let name = NumberName::new(number);

            assert_eq!(parse_decimal(name.as_c_str().to_bytes()), Some(number));
        }
    }

    #[test]
    fn names_that_are_not_plain_decimals_are_not_numbers() {
        for name in [
            &b""[..],
            b".",
            b"..",
            b"self",
            b"+1",
            b"-1",
            b"1a",
            b"4294967296",
        ] {
            assert_eq!(parse_decimal::<u32>(name), None, "{name:?}");
        }
    }

    #[test]
    fn listing_proc_finds_this_process() {
        let mut proc = Directory::open(c"/proc").map_err(|e| e.to_string());
        let me = std::process::id();

        let found = proc
            .as_mut()
            .map(|proc| std::iter::from_fn(|| proc.next_number()).any(|pid| pid.ok() == Some(me)));

        assert_eq!(found, Ok(true));
    }
}
