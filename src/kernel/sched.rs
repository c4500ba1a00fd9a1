//! Scheduling priority of the calling thread: `--serve`'s HTTP thread asks to run
//! ahead of ordinary work, so that a scrape is answered at once even while a poll (or
//! the rest of the host) keeps every CPU busy.
//!
//! Linux keeps the nice value per thread: `setpriority(PRIO_PROCESS, tid, …)` changes
//! only the thread `tid` (see setpriority(2), "BUGS" on threads). Nothing else here.

use std::io;

/// Sets the calling thread's nice value (−20 to 19; lower runs first). Lowering it
/// below 0 needs CAP_SYS_NICE: without it this fails and the thread keeps its value.
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid has no arguments and cannot fail.
    let thread = unsafe { libc::gettid() };
    // The thread id is a positive pid_t, which fits id_t.
    let who = thread as libc::id_t;
    // SAFETY: setpriority only reads its integer arguments.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
