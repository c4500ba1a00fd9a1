//! Scheduling priority and CPU time of the calling thread: `--serve`'s HTTP thread asks
//! to run ahead of ordinary work, so that a scrape is answered at once even while a poll
//! (or the rest of the host) keeps every CPU busy; the poller measures what each of its
//! dumps cost in CPU, to keep within `--max-cpu`.
//!
//! Linux keeps the nice value per thread: `setpriority(PRIO_PROCESS, tid, …)` changes
//! only the thread `tid` (see setpriority(2), "BUGS" on threads). Nothing else here.

use std::io;
use std::time::Duration;

/// The CPU time the calling thread has used so far (user and system), from
/// `CLOCK_THREAD_CPUTIME_ID`: what a dump cost, unlike the wall time, which also counts
/// the time the thread waited for a CPU on a busy host. Zero if the clock cannot be read.
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live local.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut now) } != 0 {
        return Duration::ZERO;
    }
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(seconds, nanos)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_works_sees_its_cpu_time_grow_and_a_sleeping_one_does_not() {
        // On a busy machine the thread gets only part of the wall time: spin until the
        // CPU clock moves (or give up after seconds), and never see it run ahead of
        // the wall clock.
        let before = thread_cpu_time();
        let started = std::time::Instant::now();
        let mut sum = 0u64;
        while thread_cpu_time() - before < Duration::from_millis(20)
            && started.elapsed() < Duration::from_secs(5)
        {
            sum = std::hint::black_box(sum.wrapping_add(1));
        }
        let worked = thread_cpu_time() - before;
        assert!(worked >= Duration::from_millis(20), "{worked:?}");
        assert!(
            worked <= started.elapsed() + Duration::from_millis(5),
            "{worked:?}"
        );
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(50));
        assert!(thread_cpu_time() - before < Duration::from_millis(20));
    }
}
