//! tcpscope's own process as the kernel and libc see it: its allocator's tuning, its
//! descriptor limit, whether anyone still reads its standard output, and leaving at
//! once. Nothing else.

/// The live modes run for hours while each poll allocates and frees buffers of a few
/// hundred KiB. glibc's malloc raises its mmap threshold each time such a buffer is
/// freed, after which they come from the heap, whose high-water mark never shrinks:
/// resident memory ratchets up with the largest burst seen. A fixed threshold keeps
/// large buffers in their own mappings, returned to the kernel when freed. Call it
/// before any other thread runs.
pub fn keep_large_allocations_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Raises the soft limit on open descriptors to the hard one, as Go's runtime does at
/// start: `--all-netns` holds a namespace handle and netlink sockets per namespace,
/// and the usual soft limit of 1024 runs out near 300 namespaces while the hard limit
/// is far higher. When it cannot be raised it stays as it was, and `--all-netns`
/// follows as many namespaces as [`free_descriptors`] leaves room for.
pub fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the one rlimit it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the one rlimit it is given. An unlimited hard limit
    // is refused (EPERM, above fs.nr_open), which leaves the soft limit as it was.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
    }
}

/// How many more descriptors the process may open now: its soft limit on open files
/// less those open (`/proc/self/fd`). None when either cannot be read.
pub fn free_descriptors() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the one rlimit it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    // Listing the directory holds one descriptor of its own while it counts.
    let open = std::fs::read_dir("/proc/self/fd")
        .ok()?
        .count()
        .saturating_sub(1);
    let limit = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    Some(limit.saturating_sub(open))
}

/// Whether standard output is a pipe or socket whose reading end is closed: the kernel
/// flags such a writing end with POLLERR or POLLHUP (`pipe_poll` in fs/pipe.c). A
/// terminal or a file never is.
pub fn stdout_reader_gone() -> bool {
    let mut poll = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and a zero timeout: it never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Stops the process, as the shell's Ctrl-Z would, until it is continued (`fg`, SIGCONT):
/// returns then. SIGSTOP rather than SIGTSTP, which the view catches to get here.
pub fn stop_self() {
    // SAFETY: getpid has no preconditions; kill takes no pointers.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGSTOP);
    }
}

/// Ends the process at once with `status`, without flushing stdout or running
/// destructors: for a process stuck writing to a terminal or pipe that stopped
/// reading, where flushing on the way out would block too.
pub fn exit_now(status: i32) -> ! {
    // SAFETY: _exit ends the process at once and has no preconditions.
    unsafe { libc::_exit(status) }
}
