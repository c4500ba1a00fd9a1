//! Benchmark: the CPU budget of the live modes (`--max-cpu`, 20% of one core by
//! default) and the dumps of the fast lane. Over 100k ESTABLISHED sockets and 1,000
//! SYN_RECV request sockets, `tcpscope --watch --json` runs at the default 1 s interval
//! and at 200 ms (where a full dump every interval would cost more than the budget),
//! and its CPU share (utime + stime of the process, every thread, from
//! `/proc/PID/stat`) must stay within the budget; the LISTEN-only and SYN_RECV-only
//! dumps are timed against a full dump of the same sockets.
//!
//! Memory: `--watch --json`, `--serve` and the interactive view (through a
//! pseudo-terminal) run at their default settings for a few seconds over the same
//! sockets, and again over the lab before its sockets were made (a nearly empty
//! namespace), so that the binary, its libraries and its buffers are not charged per
//! socket. The resident bytes a socket above that baseline, at the peak (`VmHWM`) and
//! steady (the median `VmRSS` sampled each second), must stay within 160 for `--watch`
//! and `--serve` and 250 for the view.
//!
//! ```sh
//! cargo test --release --test bench_budget   # 100k sockets, budget enforced
//! cargo test --test bench_budget             # debug build: 10k sockets, figures only
//! ```
// Test code: it may unwrap, and the lab calls unshare and setns.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use tcpscope::filter::Filter;
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::tcp::{State, StateSet};

use support::lab::{Lab, TcpState};
use support::pty::Terminal;
use support::scrape::Server;
use support::stream::Stream;
use support::tcpscope_command;
use support::usage::{self, cpu_time, sample};

/// The default budget, as a share of one core.
const BUDGET: f64 = 0.20;
const HALF_OPEN: usize = 1000;
/// How long each run of `--watch` is measured, after its first poll.
const MEASURE: Duration = Duration::from_secs(10);
/// How long each mode's memory is sampled, once a second, after its first poll.
const MEMORY_WINDOW: Duration = Duration::from_secs(8);

fn main() -> ExitCode {
    support::bench_exit("bench_budget", run())
}

fn run() -> Result<bool> {
    let release = !cfg!(debug_assertions);
    let (sockets, rounds) = if release { (100_000, 9) } else { (10_000, 3) };
    let lab = Lab::enter()?;
    // Before any socket: what each mode holds whatever the socket count.
    let mut baselines = Vec::new();
    for mode in Mode::ALL {
        baselines.push(resident(mode)?);
    }
    let crowd = lab.crowd(sockets)?;
    ensure!(crowd.sockets() == sockets, "the crowd is short");
    let listener = lab.listener_v4()?;
    lab.syn_flood(listener.addr_v4()?, HALF_OPEN, 5)?;
    lab.wait_for_count(TcpState::SynRecv, HALF_OPEN, Duration::from_secs(20))?;

    println!(
        "bench_budget: {sockets} ESTABLISHED, {HALF_OPEN} SYN_RECV ({} build)",
        if release { "release" } else { "debug" }
    );
    let (full, listen, syn_recv) = dumps(rounds)?;
    println!(
        "  full dump {:.2} ms   LISTEN-only {:.3} ms ({:.1}%)   SYN_RECV-only {:.2} ms ({:.1}%)",
        ms(full),
        ms(listen),
        100.0 * listen.as_secs_f64() / full.as_secs_f64(),
        ms(syn_recv),
        100.0 * syn_recv.as_secs_f64() / full.as_secs_f64(),
    );

    let mut met = true;
    let total = sockets + HALF_OPEN;
    for interval in ["1s", "200ms"] {
        let run = watch(interval)?;
        let within = run.share <= BUDGET;
        met &= within;
        println!(
            "  --watch --json --interval {interval}: {:.1}% of a core over {:.1} s (budget {:.0}%) {}; {} polls, {} full, full every {} ms; {} MiB resident, {} bytes a socket",
            run.share * 100.0,
            run.wall.as_secs_f64(),
            BUDGET * 100.0,
            verdict(release, within),
            run.polls,
            run.full,
            run.full_every_ms,
            run.rss_kib / 1024,
            run.rss_kib * 1024 / total as u64,
        );
    }
    for (mode, baseline) in Mode::ALL.into_iter().zip(baselines) {
        let loaded = resident(mode)?;
        let per_socket =
            |loaded: u64, baseline: u64| loaded.saturating_sub(baseline) * 1024 / total as u64;
        let peak = per_socket(loaded.peak_kib, baseline.peak_kib);
        let steady = per_socket(loaded.steady_kib, baseline.steady_kib);
        let within = peak <= mode.target();
        met &= within;
        println!(
            "  {:<22} peak {} bytes a socket, steady {} (target <= {}) {}; {} / {} MiB peak / steady, {} / {} MiB with no sockets",
            mode.name(),
            peak,
            steady,
            mode.target(),
            verdict(release, within),
            loaded.peak_kib / 1024,
            loaded.steady_kib / 1024,
            baseline.peak_kib / 1024,
            baseline.steady_kib / 1024,
        );
    }
    drop(crowd);
    if !release {
        println!("  debug build: figures only; run with --release to hold the budget");
        return Ok(true);
    }
    Ok(met)
}

/// The median times of a full dump, a LISTEN-only dump and a SYN_RECV-only dump,
/// each parsed into records as the poller does, timed alternately.
fn dumps(rounds: usize) -> Result<(Duration, Duration, Duration)> {
    let mut diag = SockDiag::open()?;
    let filter = Filter::default();
    let only = |state: State| -> StateSet { std::iter::once(state).collect() };
    let mut records = Vec::new();
    let (mut full, mut listen, mut syn_recv) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        records.clear();
        let start = Instant::now();
        diag.dump_into(&DumpRequest::everything(), &mut records)?;
        full.push(start.elapsed());

        records.clear();
        let start = Instant::now();
        diag.sockets_in(&filter, only(State::Listen), &mut records)?;
        listen.push(start.elapsed());
        ensure!(
            records.iter().all(|record| record.state == State::Listen),
            "a LISTEN-only dump returned another state"
        );

        records.clear();
        let start = Instant::now();
        diag.sockets_in(&filter, only(State::SynRecv), &mut records)?;
        syn_recv.push(start.elapsed());
        ensure!(
            records.len() >= HALF_OPEN,
            "the SYN_RECV-only dump found {} of {HALF_OPEN}",
            records.len()
        );
    }
    Ok((median(full), median(listen), median(syn_recv)))
}

/// What one run of `--watch` cost.
struct Run {
    /// CPU time over wall time, of one core.
    share: f64,
    wall: Duration,
    polls: usize,
    full: usize,
    full_every_ms: u64,
    /// Resident memory at the end of the run.
    rss_kib: u64,
}

/// Runs `tcpscope --watch --json --interval INTERVAL` at the default budget for
/// [`MEASURE`] after its first poll.
fn watch(interval: &str) -> Result<Run> {
    let mut watch = Stream::watch(&["--interval", interval])?;
    watch.wait_for("the first poll", Duration::from_secs(60), |line| {
        line["type"] == "counts"
    })?;
    let pid = u32::try_from(watch.pid())?;
    let (cpu_before, wall_before) = (cpu_time(pid)?, Instant::now());
    let lines = watch.collect(MEASURE)?;
    let (cpu_after, wall) = (cpu_time(pid)?, wall_before.elapsed());
    let rss_kib = sample(pid)?.rss_kib;
    let counts: Vec<_> = lines
        .iter()
        .map(|line| &line.value)
        .filter(|value| value["type"] == "counts")
        .collect();
    let run = Run {
        share: (cpu_after - cpu_before).as_secs_f64() / wall.as_secs_f64(),
        wall,
        polls: counts.len(),
        full: counts
            .iter()
            .filter(|line| line.get("lane").is_none())
            .count(),
        full_every_ms: counts
            .last()
            .and_then(|line| line["interval_ms"].as_u64())
            .unwrap_or(0),
        rss_kib,
    };
    let status = watch.stop(libc::SIGTERM)?;
    ensure!(status.success(), "tcpscope --watch ended with {status}");
    Ok(run)
}

/// A live mode whose memory is measured.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Watch,
    Serve,
    View,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Watch, Mode::Serve, Mode::View];

    fn name(self) -> &'static str {
        match self {
            Mode::Watch => "--watch --json memory",
            Mode::Serve => "--serve memory",
            Mode::View => "view memory",
        }
    }

    /// Resident bytes a socket above the baseline, at the peak (issue #13).
    fn target(self) -> u64 {
        match self {
            Mode::Watch | Mode::Serve => 160,
            Mode::View => 250,
        }
    }
}

/// A mode's resident memory over one run.
struct Resident {
    /// `VmHWM` at the end of the run: the most it ever held.
    peak_kib: u64,
    /// The median of `VmRSS` sampled once a second.
    steady_kib: u64,
}

/// Runs `mode` at its default settings until its first poll, then samples its memory
/// for [`MEMORY_WINDOW`]. `--serve` is scraped at each sample, as Prometheus would.
fn resident(mode: Mode) -> Result<Resident> {
    let second = Duration::from_secs(1);
    match mode {
        Mode::Watch => {
            let mut watch = Stream::watch(&[])?;
            watch.wait_for("the first poll", Duration::from_secs(60), |line| {
                line["type"] == "counts"
            })?;
            let pid = u32::try_from(watch.pid())?;
            let measured = samples(pid, || {
                watch.collect(second)?;
                Ok(())
            })?;
            let status = watch.stop(libc::SIGTERM)?;
            ensure!(status.success(), "tcpscope --watch ended with {status}");
            Ok(measured)
        }
        Mode::Serve => {
            let server = Server::start("127.0.0.1:0", &[])?;
            let measured = samples(server.pid(), || {
                std::thread::sleep(second);
                server.scrape().map(drop)
            })?;
            let (status, _) = server.terminate()?;
            ensure!(status.success(), "tcpscope --serve ended with {status}");
            Ok(measured)
        }
        Mode::View => {
            let mut terminal = Terminal::spawn(tcpscope_command(&[]), 120, 40)?;
            terminal.wait_for(Duration::from_secs(60), "the first poll", |screen| {
                screen.contains("ESTABLISHED") && screen.contains("q quit")
            })?;
            let pid = u32::try_from(terminal.pid())?;
            let measured = samples(pid, || {
                std::thread::sleep(second);
                Ok(())
            })?;
            terminal.send(b"q")?;
            let status = terminal.wait(Duration::from_secs(10))?;
            ensure!(status.success(), "the view ended with {status}");
            Ok(measured)
        }
    }
}

/// Calls `each` (which waits about a second) until [`MEMORY_WINDOW`] has passed,
/// sampling process `pid`'s resident memory after each call.
fn samples(pid: u32, mut each: impl FnMut() -> Result<()>) -> Result<Resident> {
    let mut rss = Vec::new();
    let started = Instant::now();
    while started.elapsed() < MEMORY_WINDOW {
        each()?;
        rss.push(sample(pid)?.rss_kib);
    }
    Ok(Resident {
        peak_kib: sample(pid)?.peak_kib,
        steady_kib: usage::median(&rss),
    })
}

fn verdict(release: bool, met: bool) -> &'static str {
    match (release, met) {
        (false, _) => "(not held in debug builds)",
        (true, true) => "met",
        (true, false) => "MISSED",
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
