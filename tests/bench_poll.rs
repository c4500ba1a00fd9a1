//! Benchmark: what the live view pays per poll over a bare dump. A poll is the dump,
//! the diff against the previous poll, and the SYN watch; at 100k sockets with churn it
//! must cost at most 1.3× the bare dump of the same sockets, timed alternately in one
//! run.
//!
//! ```sh
//! cargo test --release --test bench_poll   # 100k sockets, target enforced
//! cargo test --test bench_poll             # debug build: 10k sockets, figures only
//! ```
// Test code: it may unwrap, and the lab calls unshare and setns.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use tcpscope::diff::Differ;
use tcpscope::filter::Filter;
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::watch::{CounterRates, SynWatcher, Thresholds};

use support::lab::Lab;

const TARGET: f64 = 1.3;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench_poll: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool> {
    let release = !cfg!(debug_assertions);
    let (sockets, rounds) = if release { (100_000, 9) } else { (10_000, 3) };
    let lab = Lab::enter()?;
    let crowd = lab.crowd(sockets)?;
    ensure!(crowd.sockets() == sockets, "the crowd is short");
    // Churn between polls: about 1% of the sockets open and close each round.
    let listener = TcpListener::bind("127.0.0.1:7100")?;

    let mut diag = SockDiag::open()?;
    let mut differ = Differ::with_capacity(sockets);
    let mut watcher = SynWatcher::new(Thresholds::default());
    let mut bare = Vec::with_capacity(sockets + sockets / 8);
    let request = DumpRequest::everything();
    let filter = Filter::default();
    differ.observe(&diag.snapshot(&filter)?, &[]);

    let mut dumps = Vec::new();
    let mut polls = Vec::new();
    let mut changes = 0;
    for _ in 0..rounds {
        let churn = churn(&listener, sockets / 200)?;

        bare.clear();
        let start = Instant::now();
        diag.dump_into(&request, &mut bare)?;
        dumps.push(start.elapsed());

        let start = Instant::now();
        let snapshot = diag.snapshot(&filter)?;
        changes += differ.observe(&snapshot, &[]).len();
        let watch = watcher.poll(&snapshot, &CounterRates::default(), Duration::from_secs(1));
        polls.push(start.elapsed());
        drop((churn, watch));
    }
    let (dump, poll) = (median(dumps), median(polls));
    let ratio = poll.as_secs_f64() / dump.as_secs_f64();
    println!(
        "bench_poll: {sockets} ESTABLISHED, {changes} transitions over {rounds} polls ({} build)",
        if release { "release" } else { "debug" }
    );
    println!(
        "  bare dump {:.1} ms   poll + diff + SYN watch {:.1} ms   ratio {ratio:.3} (target <= {TARGET}) {}",
        dump.as_secs_f64() * 1000.0,
        poll.as_secs_f64() * 1000.0,
        match (release, ratio <= TARGET) {
            (false, _) => "(not held in debug builds)",
            (true, true) => "met",
            (true, false) => "MISSED",
        }
    );
    if !release {
        println!("  debug build: figures only; run with --release to hold the target");
        return Ok(true);
    }
    Ok(ratio <= TARGET)
}

/// Opens `count` connections and closes half of them, so that each poll sees sockets
/// appear, change and go.
fn churn(listener: &TcpListener, count: usize) -> Result<Vec<(TcpStream, TcpStream)>> {
    let mut kept = Vec::new();
    for i in 0..count {
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        if i % 2 == 0 {
            client.shutdown(Shutdown::Both)?;
        } else {
            kept.push((client, server));
        }
    }
    Ok(kept)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
