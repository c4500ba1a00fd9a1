//! Benchmark: what the findings add to a poll at 100k sockets. Two costs, each against
//! a bare dump of the same sockets, timed alternately in one run:
//!
//! - the dump's share: listeners' drop counters need the `INET_DIAG_SKMEMINFO`
//!   extension, which the kernel then adds to every full socket (40 bytes each), so a
//!   dump with LISTEN in its states is compared with one without it;
//! - the analysis: [`Analyst::observe`] on the poll's snapshot (one pass over the
//!   sockets, every rule, the hysteresis), and on a worst case built by hand, where
//!   every socket is an outgoing connection in the ephemeral range to one of four
//!   destinations, so that the port-exhaustion rule must sort them all.
//!
//! The target is both together at most 10% of the dump.
//!
//! ```sh
//! cargo test --release --test bench_findings   # 100k sockets, target enforced
//! cargo test --test bench_findings             # debug build: 10k sockets, figures only
//! ```

// Test code: it may unwrap, and the lab calls unshare and setns.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, ensure};
use support::lab::Lab;
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::snapshot::{Family, Snapshot, SocketRecord, Timer};
use tcpscope::tcp::{State, StateSet};
use tcpscope::watch::findings::{Analyst, FindingThresholds, HostLimits, Observation};

const TARGET: f64 = 0.10;

fn main() -> ExitCode {
    support::bench_exit("bench_findings", run())
}

fn run() -> Result<bool> {
    let release = !cfg!(debug_assertions);
    let (sockets, rounds) = if release { (100_000, 9) } else { (10_000, 3) };
    let lab = Lab::enter()?;
    let crowd = lab.crowd(sockets)?;
    ensure!(crowd.sockets() == sockets, "the crowd is short");

    let mut diag = SockDiag::open()?;
    let with_listeners = DumpRequest::everything();
    let mut all_but_listen = StateSet::all();
    all_but_listen.remove(State::Listen);
    let without_listeners = DumpRequest {
        states: all_but_listen,
        ..DumpRequest::everything()
    };
    let limits = HostLimits::default();
    let mut analyst = Analyst::new(FindingThresholds::default());
    let mut buffer = Vec::with_capacity(sockets + sockets / 8);

    let (mut bare, mut extended, mut analysed) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        buffer.clear();
        let start = Instant::now();
        diag.dump_into(&without_listeners, &mut buffer)?;
        bare.push(start.elapsed());

        buffer.clear();
        let start = Instant::now();
        diag.dump_into(&with_listeners, &mut buffer)?;
        extended.push(start.elapsed());

        let snapshot = Snapshot::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(round as u64),
            std::mem::take(&mut buffer),
        );
        let start = Instant::now();
        let report = analyst.observe(&observation(&snapshot, &limits));
        analysed.push(start.elapsed());
        ensure!(
            report.findings.is_empty(),
            "a calm crowd raised {:?}",
            report.findings
        );
        buffer = snapshot.sockets;
    }

    let worst = worst_case(sockets);
    // A range nine tenths full at every destination, whatever the scale.
    let per_destination = u16::try_from(sockets / 4)?;
    let worst_limits = HostLimits::new(
        (32768, 32768 + per_destination / 9 * 10),
        &[],
        tcpscope::kernel::procfs::TwReuse::LoopbackOnly,
        262_144,
    );
    let mut worst_analyst = Analyst::new(FindingThresholds::default());
    let mut worst_times = Vec::new();
    for round in 0..rounds {
        let snapshot = Snapshot::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(round as u64),
            worst.clone(),
        );
        let start = Instant::now();
        let report = worst_analyst.observe(&observation(&snapshot, &worst_limits));
        worst_times.push(start.elapsed());
        if round > 0 {
            ensure!(!report.findings.is_empty(), "the worst case raised nothing");
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (bare, extended, analysed, worst) = (
        median(bare),
        median(extended),
        median(analysed),
        median(worst_times),
    );
    let dump_share = (extended.as_secs_f64() - bare.as_secs_f64()) / bare.as_secs_f64();
    let analysis_share = worst.max(analysed).as_secs_f64() / bare.as_secs_f64();
    let total = dump_share.max(0.0) + analysis_share;
    println!(
        "bench_findings: {sockets} ESTABLISHED ({} build, median of {rounds})",
        if release { "release" } else { "debug" }
    );
    println!(
        "  dump without LISTEN {:.1} ms, with LISTEN and SKMEMINFO {:.1} ms ({:+.1}%)",
        ms(bare),
        ms(extended),
        dump_share * 100.0
    );
    println!(
        "  Analyst::observe {:.2} ms on the crowd, {:.2} ms on the worst case ({:.1}% of the dump)",
        ms(analysed),
        ms(worst),
        analysis_share * 100.0
    );
    println!(
        "  findings add {:.1}% to a poll (target <= {:.0}%) {}",
        total * 100.0,
        TARGET * 100.0,
        match (release, total <= TARGET) {
            (false, _) => "(not held in debug builds)",
            (true, true) => "met",
            (true, false) => "MISSED",
        }
    );
    drop(crowd);
    Ok(!release || total <= TARGET)
}

fn observation<'a>(snapshot: &'a Snapshot, limits: &'a HostLimits) -> Observation<'a> {
    Observation {
        snapshot,
        limits,
        time_wait_overflows: Some(0),
        syn_watch: None,
        syn_cookies_rising: false,
        leaks: None,
        transitions: &[],
        processes: None,
    }
}

/// `count` outgoing connections from 10.0.0.1 to four destinations, each on its own
/// ephemeral port from 32768 up, a third in TIME_WAIT.
fn worst_case(count: usize) -> Vec<SocketRecord> {
    let per_destination = count / 4;
    (0..count)
        .map(|i| SocketRecord {
            family: Family::Ipv4,
            state: if i % 3 == 0 {
                State::TimeWait
            } else {
                State::Established
            },
            local_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            local_port: 32768 + (i % per_destination) as u16,
            remote_addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i / per_destination) as u8)),
            remote_port: 443,
            recv_q: 0,
            send_q: 0,
            timer: Timer::Off,
            expires_ms: 0,
            retransmits: 0,
            uid: 0,
            inode: 0,
            cookie: i as u64,
            interface: 0,
            drops: 0,
            cgroup_id: 0,
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
