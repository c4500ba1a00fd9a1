//! Waiting for a program a test started, without waiting for ever: a tcpscope that does
//! not exit when it should is a failure to report, not a test that hangs.

use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Waits for `child` to exit. If it has not within `timeout`, kills and reaps it and
/// fails; the caller says what it was waiting for.
pub fn exit_within(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the main thread of process `pid` is inside a write(2) system call: blocked
/// on an output nobody reads, when it stays there.
pub fn in_write(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|call| {
        call.split_whitespace().next() == Some(libc::SYS_write.to_string().as_str())
    })
}
