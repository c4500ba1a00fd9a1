//! Benchmark: what the live view pays per poll over a bare dump. A poll is what the
//! live poller does: the dump, the diff against the previous poll, the TcpExt counters
//! and the namespace's sysctls, and the analysis of `poll::update::Analyst` (counter
//! rates, the SYN watch, the CLOSE_WAIT watch and the findings). At 100k sockets with
//! churn it must cost at most 1.3× the bare dump of the same sockets, timed alternately
//! in one run; and the findings, timed again on their own over the same poll, must add
//! at most 10% to the rest of it. It also reports, as a figure only, what a dump that
//! asks for every socket's tcp_info and keeps it by cookie (`poll::info`) costs against
//! the bare dump: what each full poll of the view pays for its tcp_info columns (`-i`).
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
use tcpscope::kernel::events::EventStatus;
use tcpscope::kernel::procfs;
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::poll::info;
use tcpscope::poll::update::{Analyst, Polled};
use tcpscope::watch::Thresholds;
use tcpscope::watch::findings::{self, FindingThresholds, HostLimits, Observation};

use support::lab::Lab;

/// A poll's cost, as a multiple of the bare dump's.
const TARGET: f64 = 1.3;
/// What the findings may add to the rest of a poll, as a share of it.
const FINDINGS_TARGET: f64 = 0.10;

fn main() -> ExitCode {
    support::bench_exit("bench_poll", run())
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
    let mut analyst = Analyst::new(Thresholds::default(), FindingThresholds::default());
    // The findings again, on their own, over each poll's numbers: their share.
    let mut findings_alone = findings::Analyst::new(FindingThresholds::default());
    let mut bare = Vec::with_capacity(sockets + sockets / 8);
    let request = DumpRequest::everything();
    let filter = Filter::default();
    differ.observe(&diag.snapshot(&filter)?, &[]);

    let mut info_dumps = Vec::new();
    let mut dumps = Vec::new();
    let mut polls = Vec::new();
    let mut findings_times = Vec::new();
    let mut changes = 0;
    for _ in 0..rounds {
        let churn = churn(&listener, sockets / 200)?;

        bare.clear();
        let start = Instant::now();
        diag.dump_into(&request, &mut bare)?;
        dumps.push(start.elapsed());

        // As the view's poller dumps with `-i`: the snapshot and its tcp_info table.
        let start = Instant::now();
        let with_info = info::snapshot_with_info(&mut diag, &filter, sockets + sockets / 8)?;
        info_dumps.push(start.elapsed());
        drop(with_info);

        // As `poll::poller` polls.
        let start = Instant::now();
        let snapshot = diag.snapshot(&filter)?;
        let transitions = differ.observe(&snapshot, &[]).to_vec();
        changes += transitions.len();
        let counters = procfs::read_tcpext()?;
        let sysctls = procfs::read_connection_limits().ok();
        let update = analyst.analyse(Polled {
            snapshot,
            transitions,
            counters,
            took: Duration::ZERO,
            events: EventStatus::Subscribed,
            event_overflows: 0,
            limits: sysctls.clone(),
            full_every: None,
            sockstat: None,
        });
        polls.push(start.elapsed());

        let limits = sysctls
            .as_ref()
            .map_or_else(HostLimits::default, HostLimits::from_sysctls);
        let start = Instant::now();
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
        findings_times.push(start.elapsed());
        drop((churn, update, report));
    }
    let (dump, poll) = (median(dumps), median(polls));
    let findings = median(findings_times);
    let info_dump = median(info_dumps);
    let ratio = poll.as_secs_f64() / dump.as_secs_f64();
    // What the findings add to a poll that would not run them.
    let findings_share = findings.as_secs_f64() / (poll.as_secs_f64() - findings.as_secs_f64());
    println!(
        "bench_poll: {sockets} ESTABLISHED, {changes} transitions over {rounds} polls ({} build)",
        if release { "release" } else { "debug" }
    );
    println!(
        "  bare dump {:.1} ms   poll (diff, counters, sysctls, SYN watch, CLOSE_WAIT, findings) {:.1} ms   ratio {ratio:.3} (target <= {TARGET}) {}",
        dump.as_secs_f64() * 1000.0,
        poll.as_secs_f64() * 1000.0,
        verdict(release, ratio <= TARGET),
    );
    println!(
        "  findings {:.2} ms: {:.1}% on top of the rest of the poll (target <= {:.0}%) {}",
        findings.as_secs_f64() * 1000.0,
        findings_share * 100.0,
        FINDINGS_TARGET * 100.0,
        verdict(release, findings_share <= FINDINGS_TARGET),
    );
    println!(
        "  dump with tcp_info and its table (the view's -i) {:.1} ms: {:.2}x the bare dump (figure only)",
        info_dump.as_secs_f64() * 1000.0,
        info_dump.as_secs_f64() / dump.as_secs_f64(),
    );
    if !release {
        println!("  debug build: figures only; run with --release to hold the targets");
        return Ok(true);
    }
    Ok(ratio <= TARGET && findings_share <= FINDINGS_TARGET)
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
