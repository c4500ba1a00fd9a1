//! What the recorder asks of the kernel about the file it writes: who tcpscope is
//! (to refuse a file someone else owns) and an exclusive lock, so that two recorders
//! never interleave their records in one file. Nothing else.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The user tcpscope acts as when it opens files.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Takes an exclusive `flock` on `file` without waiting. Returns false when another
/// open file description holds a lock on it. The lock goes with the descriptor: it is
/// released when the file is closed, or the process ends however it ends.
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor `file` keeps open for the call; it touches no
        // memory.
        let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if result == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_a_locked_file_cannot_lock_it_until_the_first_closes() {
        let path = std::env::temp_dir().join(format!("tcpscope-lock-{}", std::process::id()));
        let first = File::create(&path).unwrap();
        let second = File::open(&path).unwrap();
        assert!(try_lock_exclusive(&first).unwrap());
        assert!(!try_lock_exclusive(&second).unwrap());
        drop(first);
        assert!(try_lock_exclusive(&second).unwrap());
        let _ = std::fs::remove_file(&path);
    }
}
