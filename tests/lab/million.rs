//! A million sockets: 1,000,000 ESTABLISHED sockets held by child processes (fewer
//! than 20,000 descriptors each) plus 10,000 SYN_RECV request sockets, in a lab
//! namespace. It measures side by side, in one run: a dump into records with no
//! analysis (the reference), the LISTEN-only and SYN_RECV-only dumps, `--json` (time
//! and peak resident memory), `--grep SYN_RECV`, and `--watch --json` at the default
//! settings: its CPU share against the default budget (20% of a core), its resident
//! bytes per socket, and how often its counts (and with them the SYN watch) and its
//! full dumps came.
//!
//! Minutes and gigabytes of kernel memory, so it is ignored by `cargo test`. Run it in
//! a release build, alone:
//!
//! ```sh
//! cargo test --release --test lab -- --ignored --nocapture --test-threads 1 million::
//! ```
//!
//! `TCPSCOPE_LAB_SOCKETS` (default 1000000) and `TCPSCOPE_LAB_SECONDS` (default 60) make
//! the crowd and the `--watch` run smaller, to try the test itself.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tcpscope::filter::Filter;
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::tcp::{State, StateSet};

use crate::support::lab::{Lab, TcpState};
use crate::support::stream::Stream;
use crate::support::tcpscope_command;
use crate::support::usage::{cpu_time, sample};

const HALF_OPEN: usize = 10_000;
const BUDGET: f64 = 0.20;

fn setting(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(value) => value.parse().with_context(|| format!("{name}={value}")),
        Err(_) => Ok(default),
    }
}

#[test]
#[ignore = "minutes and gigabytes: run alone, in a release build"]
fn at_a_million_sockets_watch_keeps_within_its_cpu_budget() -> Result<()> {
    let sockets = usize::try_from(setting("TCPSCOPE_LAB_SOCKETS", 1_000_000)?)? & !1;
    let seconds = setting("TCPSCOPE_LAB_SECONDS", 60)?;
    let lab = Lab::enter()?;
    let built = Instant::now();
    let crowd = lab.crowd(sockets)?;
    ensure!(crowd.sockets() == sockets, "the crowd is short");
    let listener = lab.listener_v4()?;
    lab.syn_flood(listener.addr_v4()?, HALF_OPEN, 7)?;
    lab.wait_for_count(TcpState::SynRecv, HALF_OPEN, Duration::from_secs(60))?;
    println!(
        "million: {sockets} ESTABLISHED in {} holders + {HALF_OPEN} SYN_RECV, built in {:.1} s",
        crowd.holders().len(),
        built.elapsed().as_secs_f64()
    );

    let (dump, listen, syn_recv) = dumps()?;
    println!(
        "  dump into records {:.0} ms   LISTEN-only {:.2} ms   SYN_RECV-only {:.0} ms",
        ms(dump),
        ms(listen),
        ms(syn_recv)
    );
    let (json, peak_kib) = one_shot(&["--json"])?;
    let (grep, _) = one_shot(&["--grep", "SYN_RECV"])?;
    let total = sockets + HALF_OPEN;
    println!(
        "  --json {:.0} ms ({:.2}x the dump), peak {} MiB ({} bytes a socket)   --grep SYN_RECV {:.0} ms",
        ms(json),
        json.as_secs_f64() / dump.as_secs_f64(),
        peak_kib / 1024,
        peak_kib * 1024 / total as u64,
        ms(grep),
    );

    let mut watch = Stream::watch(&[])?;
    watch.wait_for("the first poll", Duration::from_secs(120), |line| {
        line["type"] == "counts"
    })?;
    let pid = u32::try_from(watch.pid())?;
    let (cpu_before, started) = (cpu_time(pid)?, Instant::now());
    let lines = watch.collect(Duration::from_secs(seconds))?;
    let (cpu, wall) = (cpu_time(pid)? - cpu_before, started.elapsed());
    let resident = sample(pid)?.rss_kib;
    let counts: Vec<_> = lines
        .iter()
        .map(|line| line.value.clone())
        .filter(|value| value["type"] == "counts")
        .collect();
    let full = counts
        .iter()
        .filter(|line| line.get("lane").is_none())
        .count();
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "  --watch --json (1 s, --max-cpu 20): {:.1}% of a core over {:.0} s; {} counts lines ({} full, full every {} ms); {} MiB resident, {} bytes a socket",
        share * 100.0,
        wall.as_secs_f64(),
        counts.len(),
        full,
        counts
            .last()
            .and_then(|line| line["interval_ms"].as_u64())
            .unwrap_or(0),
        resident / 1024,
        resident * 1024 / total as u64,
    );
    let status = watch.stop(libc::SIGTERM)?;
    ensure!(status.success(), "tcpscope --watch ended with {status}");
    ensure!(
        counts.len() as u64 >= seconds * 8 / 10,
        "the counts (and the SYN watch) were refreshed {} times in {seconds} s",
        counts.len()
    );
    if !cfg!(debug_assertions) {
        ensure!(share <= BUDGET, "over the budget: {:.1}%", share * 100.0);
    }
    drop(crowd);
    Ok(())
}

/// Medians of three: every socket into records, LISTEN only, SYN_RECV only.
fn dumps() -> Result<(Duration, Duration, Duration)> {
    let mut diag = SockDiag::open()?;
    let filter = Filter::default();
    let only = |state: State| -> StateSet { std::iter::once(state).collect() };
    let mut records = Vec::new();
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..3 {
        records.clear();
        let start = Instant::now();
        diag.dump_into(&DumpRequest::everything(), &mut records)?;
        times[0].push(start.elapsed());
        for (index, state) in [(1, State::Listen), (2, State::SynRecv)] {
            records.clear();
            let start = Instant::now();
            diag.sockets_in(&filter, only(state), &mut records)?;
            times[index].push(start.elapsed());
        }
    }
    let [dump, listen, syn_recv] = times.map(|mut samples| {
        samples.sort();
        samples[samples.len() / 2]
    });
    Ok((dump, listen, syn_recv))
}

/// Runs a one-shot mode with its output thrown away: its wall time and peak resident
/// memory (`ru_maxrss` of the reaped child).
fn one_shot(args: &[&str]) -> Result<(Duration, u64)> {
    let started = Instant::now();
    let child = tcpscope_command(args)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting tcpscope {args:?}"))?;
    let pid = i32::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes the status and rusage through pointers to live locals.
    let reaped = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let took = started.elapsed();
    ensure!(reaped == pid, "wait4 on tcpscope {args:?} failed");
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) <= 1,
        "tcpscope {args:?} ended with status {status}"
    );
    Ok((took, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
