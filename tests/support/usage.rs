//! What a running process costs, read from `/proc/<pid>`: resident memory (now and at
//! its peak), open file descriptors and threads. Used by the soak and load tests.

use anyhow::{Context, Result};

/// What `/proc/<pid>` says about a process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rss_kib: u64,
    /// The peak resident size so far (`VmHWM`).
    pub peak_kib: u64,
    pub fds: usize,
    pub threads: u64,
}

pub fn sample(pid: u32) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let value = line
            .split_whitespace()
            .nth(1)
            .with_context(|| format!("empty {name}"))?;
        Ok(value.parse()?)
    };
    Ok(Sample {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))?.count(),
        threads: field("Threads:")?,
    })
}

/// The median of some samples (0 for none).
pub fn median(samples: &[u64]) -> u64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

/// The CPU time a process has used so far, user and system, all its threads: fields 14
/// and 15 of `/proc/<pid>/stat`, in clock ticks.
pub fn cpu_time(pid: u32) -> Result<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("no command name in /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is the first after the name: utime is field 14, stime field 15.
    let ticks = |field: usize| -> Result<u64> {
        let value = fields
            .get(field - 3)
            .with_context(|| format!("no field {field} in /proc/{pid}/stat"))?;
        Ok(value.parse()?)
    };
    let total = ticks(14)? + ticks(15)?;
    // SAFETY: sysconf only reads its argument.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap_or(100).max(1);
    Ok(std::time::Duration::from_nanos(
        total.saturating_mul(1_000_000_000) / per_second,
    ))
}
