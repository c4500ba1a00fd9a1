//! Benchmark: `-p`'s walk over `/proc` as tcpscope writes it (one `readlinkat` per
//! descriptor) against the same walk on the `procfs` crate (`Process::fd()`, which
//! opens, reads the link of, stats and closes every descriptor), timed alternately in
//! one run over the same processes.
//!
//! ```sh
//! cargo test --release --test bench_proc_scan   # 100k socket descriptors
//! cargo test --test bench_proc_scan             # debug build: 10k
//! ```
//!
//! Target (from the project's issue tracker): the crate's walk at most 1.2× the
//! hand-written one, or the crate goes.

mod lab;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab::Lab;
use tcpscope::kernel::procfs::{ProcessMap, scan_with_procfs_crate};

const TARGET: f64 = 1.2;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench_proc_scan: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool> {
    let (sockets, rounds) = if cfg!(debug_assertions) {
        (10_000, 5)
    } else {
        (100_000, 15)
    };
    let lab = Lab::enter()?;
    let crowd = lab.crowd(sockets)?;
    ensure!(crowd.sockets() == sockets, "the crowd is short");

    let mut hand = Vec::new();
    let mut with_crate = Vec::new();
    let mut found = (0, 0);
    for _ in 0..rounds {
        let (took, map) = timed(ProcessMap::scan)?;
        hand.push(took);
        found.0 = map.len();
        let (took, map) = timed(scan_with_procfs_crate)?;
        with_crate.push(took);
        found.1 = map.len();
    }
    // Other programs on the machine open and close sockets between the walks, so the
    // two counts agree only about the crowd's.
    ensure!(
        found.0 >= sockets && found.1 >= sockets,
        "a walk missed the crowd: {} and {} socket inodes",
        found.0,
        found.1
    );
    let (hand, with_crate) = (median(hand), median(with_crate));
    let ratio = with_crate.as_secs_f64() / hand.as_secs_f64();
    println!(
        "bench_proc_scan: {} socket inodes held by {} crowd processes, medians of {rounds} \
         ({} build)\n  hand-written {:>8.1} ms   procfs crate {:>8.1} ms   ratio {ratio:.2} \
         (target <= {TARGET})",
        found.0,
        crowd.holders().len(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        millis(hand),
        millis(with_crate),
    );
    Ok(ratio <= TARGET)
}

fn timed(scan: fn() -> Result<ProcessMap>) -> Result<(Duration, ProcessMap)> {
    let start = Instant::now();
    let map = scan().context("scanning /proc")?;
    Ok((start.elapsed(), map))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
