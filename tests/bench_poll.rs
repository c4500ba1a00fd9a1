//! Benchmark: what the live view pays per poll over a bare dump. A poll is what the
//! live poller does: the dump into a snapshot, the diff against the previous poll, the
//! TcpExt counters, the namespace's sysctls and `/proc/net/sockstat`, and the analysis
//! of `poll::update::Analyst` (counter rates, the SYN watch, the CLOSE_WAIT watch and
//! the findings). The bare dump is the same kernel dump parsed into records and nothing
//! else. At 100k sockets with about 1% churn between polls, a poll must cost at most
//! 1.2× the bare dump; and the findings, timed again on their own over the same poll,
//! must add at most 10% to the rest of it.
//!
//! How it is timed, so that a shared machine moves the figure as little as it can: both
//! run in this one thread, alternately over many rounds (in each, a bare dump, the
//! poll, a bare dump), and each is timed by the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`). The kernel builds a dump's replies in the thread that
//! receives them, so its work is counted, while the time the thread waits for a CPU
//! that another process holds is not. Each round's poll is divided by the mean of the
//! two bare dumps around it, and the target holds the median of those ratios. The
//! medians of each side, their wall times and each stage of the poll are printed too,
//! as figures. It also reports, as a figure only, what a dump that asks for every
//! socket's tcp_info and keeps it by cookie (`poll::info`) costs against the bare dump:
//! what each full poll of the view pays for its tcp_info columns (`-i`).
//!
//! ```sh
//! cargo test --release --test bench_poll   # 100k sockets, target enforced
//! cargo test --test bench_poll             # debug build: 10k sockets, figures only
//! ```
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use tcpscope::diff::Differ;
use tcpscope::filter::Filter;
use tcpscope::kernel::events::EventStatus;
use tcpscope::kernel::procfs;
use tcpscope::kernel::sched::thread_cpu_time;
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::poll::info;
use tcpscope::poll::update::{Analyst, Polled};
use tcpscope::snapshot::SocketRecord;
use tcpscope::watch::Thresholds;
use tcpscope::watch::findings::{self, FindingThresholds, HostLimits, Observation};

use support::lab::Lab;

/// A poll's cost, as a multiple of the bare dump's.
const TARGET: f64 = 1.2;
/// What the findings may add to the rest of a poll, as a share of it.
const FINDINGS_TARGET: f64 = 0.10;

fn main() -> ExitCode {
    support::bench_exit("bench_poll", run())
}

fn run() -> Result<bool> {
    let release = !cfg!(debug_assertions);
    let (sockets, rounds) = if release { (100_000, 41) } else { (10_000, 3) };
    let lab = Lab::enter()?;
    let crowd = lab.crowd(sockets)?;
    ensure!(crowd.sockets() == sockets, "the crowd is short");
    // Churn between polls: about 1% of the sockets open and close each round.
    let listener = TcpListener::bind("127.0.0.1:7100")?;

    let mut diag = SockDiag::open()?;
    let mut differ = Differ::with_capacity(sockets);
    let mut analyst = Analyst::new(Thresholds::default(), FindingThresholds::default());
    // The findings again, on their own, over each poll's numbers: their share.
    let mut findings_alone = findings::Analyst::new(FindingThresholds::default());
    let mut bare = Vec::with_capacity(sockets + sockets / 8);
    let request = DumpRequest::everything();
    let filter = Filter::default();
    differ.observe(&diag.snapshot(&filter)?, &[]);

    let mut info_dumps = Vec::new();
    // The bare dumps just before and just after each poll.
    let (mut before, mut after) = (Timings::default(), Timings::default());
    let mut polls = Timings::default();
    let mut stages = Stages::default();
    let mut findings_times = Vec::new();
    let mut changes = 0;
    for _ in 0..rounds {
        let churn = churn(&listener, sockets / 200)?;

        bare_dump(&mut diag, &request, &mut bare, &mut before)?;
        // As `poll::poller` polls.
        let timer = Timer::start();
        let snapshot = diag.snapshot(&filter)?;
        let dumped = thread_cpu_time();
        let transitions = differ.observe(&snapshot, &[]).to_vec();
        let diffed = thread_cpu_time();
        changes += transitions.len();
        let counters = procfs::read_tcpext()?;
        let sysctls = procfs::read_connection_limits().ok();
        let sockstat = procfs::read_sockstat().ok();
        let read = thread_cpu_time();
        let update = analyst.analyse(Polled {
            snapshot,
            transitions,
            counters,
            took: Duration::ZERO,
            events: EventStatus::Subscribed,
            event_overflows: 0,
            limits: sysctls.clone(),
            full_every: None,
            sockstat,
        });
        let analysed = thread_cpu_time();
        polls.push(timer);
        stages.dump.push(dumped - timer.cpu);
        stages.diff.push(diffed - dumped);
        stages.files.push(read - diffed);
        stages.analyst.push(analysed - read);
        bare_dump(&mut diag, &request, &mut bare, &mut after)?;

        // As the view's poller dumps with `-i`: the snapshot and its tcp_info table.
        let start = thread_cpu_time();
        let with_info = info::snapshot_with_info(&mut diag, &filter, sockets + sockets / 8)?;
        info_dumps.push(thread_cpu_time() - start);
        drop(with_info);

        let limits = sysctls
            .as_ref()
            .map_or_else(HostLimits::default, HostLimits::from_sysctls);
        let start = thread_cpu_time();
        let report = findings_alone.observe(&Observation {
            snapshot: &update.snapshot,
            limits: &limits,
            time_wait_overflows: Some(update.counters.tcp_time_wait_overflow),
            syn_watch: Some(&update.syn_watch),
            syn_cookies_rising: false,
            leaks: None,
            transitions: &update.transitions,
            processes: None,
        });
        findings_times.push(thread_cpu_time() - start);
        drop((churn, update, report));
    }
    let dumps = before.around(&after);
    let (dump, poll) = (median(dumps.cpu.clone()), median(polls.cpu.clone()));
    let findings = median(findings_times);
    let info_dump = median(info_dumps);
    // Each round's poll against the bare dumps on either side of it, so that a machine
    // that runs slower for a while slows both sides of a ratio alike.
    let mut ratios: Vec<f64> = polls
        .cpu
        .iter()
        .zip(&dumps.cpu)
        .map(|(poll, dump)| poll.as_secs_f64() / dump.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    let quartiles = (ratios[ratios.len() / 4], ratios[ratios.len() * 3 / 4]);
    let (dump_wall, poll_wall) = (median(dumps.wall), median(polls.wall));
    // What the findings add to a poll that would not run them.
    let findings_share = findings.as_secs_f64() / (poll.as_secs_f64() - findings.as_secs_f64());
    println!(
        "bench_poll: {sockets} ESTABLISHED, {changes} transitions over {rounds} polls ({} build), thread CPU time",
        if release { "release" } else { "debug" }
    );
    println!(
        "  bare dump {:.1} ms   poll (diff, counters, sysctls, sockstat, SYN watch, CLOSE_WAIT, findings) {:.1} ms",
        ms(dump),
        ms(poll),
    );
    println!(
        "  ratio, median of the rounds' {ratio:.3} (target <= {TARGET}) {}; quartiles {:.3} and {:.3}",
        verdict(release, ratio <= TARGET),
        quartiles.0,
        quartiles.1,
    );
    println!(
        "  the poll's stages: dump into a snapshot {:.2} ms, diff {:.2} ms, TcpExt + sysctls + sockstat {:.2} ms, analyst {:.2} ms",
        ms(median(stages.dump)),
        ms(median(stages.diff)),
        ms(median(stages.files)),
        ms(median(stages.analyst)),
    );
    println!(
        "  wall time, figure only: bare dump {:.1} ms, poll {:.1} ms, ratio {:.3}",
        ms(dump_wall),
        ms(poll_wall),
        poll_wall.as_secs_f64() / dump_wall.as_secs_f64(),
    );
    println!(
        "  findings {:.2} ms: {:.1}% on top of the rest of the poll (target <= {:.0}%) {}",
        ms(findings),
        findings_share * 100.0,
        FINDINGS_TARGET * 100.0,
        verdict(release, findings_share <= FINDINGS_TARGET),
    );
    println!(
        "  dump with tcp_info and its table (the view's -i) {:.1} ms: {:.2}x the bare dump (figure only)",
        ms(info_dump),
        info_dump.as_secs_f64() / dump.as_secs_f64(),
    );
    if !release {
        println!("  debug build: figures only; run with --release to hold the targets");
        return Ok(true);
    }
    Ok(ratio <= TARGET && findings_share <= FINDINGS_TARGET)
}

/// The reference: the same dump as a poll's, parsed into records and nothing else.
fn bare_dump(
    diag: &mut SockDiag,
    request: &DumpRequest,
    records: &mut Vec<SocketRecord>,
    times: &mut Timings,
) -> Result<()> {
    records.clear();
    let timer = Timer::start();
    diag.dump_into(request, records)?;
    times.push(timer);
    Ok(())
}

/// When a timed piece of work started, by both clocks.
#[derive(Clone, Copy)]
struct Timer {
    cpu: Duration,
    wall: Instant,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            cpu: thread_cpu_time(),
            wall: Instant::now(),
        }
    }
}

/// One kind of work's times, by both clocks.
#[derive(Default)]
struct Timings {
    cpu: Vec<Duration>,
    wall: Vec<Duration>,
}

impl Timings {
    fn push(&mut self, started: Timer) {
        self.cpu.push(thread_cpu_time() - started.cpu);
        self.wall.push(started.wall.elapsed());
    }

    /// The mean of each of these times and the one `after` it.
    fn around(&self, after: &Timings) -> Timings {
        let mean = |a: &[Duration], b: &[Duration]| -> Vec<Duration> {
            a.iter().zip(b).map(|(a, b)| (*a + *b) / 2).collect()
        };
        Timings {
            cpu: mean(&self.cpu, &after.cpu),
            wall: mean(&self.wall, &after.wall),
        }
    }
}

/// The CPU time of each stage of a poll.
#[derive(Default)]
struct Stages {
    dump: Vec<Duration>,
    diff: Vec<Duration>,
    files: Vec<Duration>,
    analyst: Vec<Duration>,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn verdict(release: bool, met: bool) -> &'static str {
    match (release, met) {
        (false, _) => "(not held in debug builds)",
        (true, true) => "met",
        (true, false) => "MISSED",
    }
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
