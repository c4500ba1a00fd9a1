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
