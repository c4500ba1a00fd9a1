//! Benchmark: tcpscope's one-shot modes against their `ss` twins, timed alternately in
//! one run over the same sockets in a lab namespace.
//!
//! ```sh
//! cargo test --release --test bench_snapshot   # 100k sockets, targets enforced
//! cargo test --test bench_snapshot             # debug build: 10k sockets, figures only
//! ```
//!
//! Targets (from the project's issue tracker): `--json` at most 1.15× a bare kernel
//! dump of the same sockets (`support::dump::bare_dump`: the request tcpscope sends,
//! its reply received and only counted), each run against the bare dumps just before
//! and after it; `--json` at most 0.5× `ss -tan`;
//! `--grep SYN_RECV` (1,000 SYN_RECV among 100k ESTABLISHED) at most 1.0×
//! `ss -tan state syn-recv`; `--json -i` at most 0.5× `ss -tani`; `--json -p` at most
//! 0.1× `ss -tanp`; `--json`'s peak resident memory at most 100 bytes a socket above
//! the same run with no socket matching (`--grep closing`). Grouping a dumped snapshot
//! by each `--group-by` key (what the view and `--serve` do each poll) takes under
//! 10 ms, and naming its cgroups walks the cgroup2 tree once, never again for ids
//! already seen; `--json --group-by cgroup` against `--json` is reported.
// Test code: it may unwrap, and the lab calls unshare and setns.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use support::TCPSCOPE;
use support::dump::{thread_cpu_time, timed_bare_dump};
use support::lab::{Lab, SETTLE, TcpState};
use tcpscope::filter::Filter;
use tcpscope::group::{self, Group, GroupKey};
use tcpscope::kernel::cgroups::CgroupNames;
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};

/// The most grouping a snapshot by one key may add to a poll.
const GROUPING_TARGET: Duration = Duration::from_millis(10);

struct Scale {
    established: usize,
    half_open: usize,
    rounds: usize,
    /// `ss -tanp` is quadratic in open files: a few rounds say enough.
    process_rounds: usize,
    enforce: bool,
}

const RELEASE: Scale = Scale {
    established: 100_000,
    half_open: 1_000,
    rounds: 7,
    process_rounds: 3,
    enforce: true,
};

const DEBUG: Scale = Scale {
    established: 10_000,
    half_open: 100,
    rounds: 3,
    process_rounds: 1,
    enforce: false,
};

struct Comparison {
    name: &'static str,
    ours: Vec<&'static str>,
    theirs: Vec<&'static str>,
    rounds: usize,
    target: f64,
}

fn main() -> ExitCode {
    support::bench_exit("bench_snapshot", run())
}

fn run() -> Result<bool> {
    let scale = if cfg!(debug_assertions) {
        DEBUG
    } else {
        RELEASE
    };
    let lab = Lab::enter()?;
    let crowd = lab.crowd(scale.established)?;
    let listener = lab.listener_v4()?;
    let _flood = lab.syn_flood(listener.addr_v4()?, scale.half_open, 11)?;
    lab.wait_for_count(TcpState::SynRecv, scale.half_open, SETTLE)?;
    ensure!(crowd.sockets() == scale.established, "the crowd is short");
    println!(
        "bench_snapshot: {} ESTABLISHED + {} SYN_RECV + 1 LISTEN in a lab namespace ({} build)",
        scale.established,
        scale.half_open,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    let comparisons = [
        Comparison {
            name: "--json vs ss -tan",
            ours: vec!["--json"],
            theirs: vec!["-tan"],
            rounds: scale.rounds,
            target: 0.5,
        },
        Comparison {
            name: "--grep SYN_RECV vs ss -tan state syn-recv",
            ours: vec!["--grep", "SYN_RECV"],
            theirs: vec!["-tan", "state", "syn-recv"],
            rounds: scale.rounds,
            target: 1.0,
        },
        Comparison {
            name: "--json -i vs ss -tani",
            ours: vec!["--json", "-i"],
            theirs: vec!["-tani"],
            rounds: scale.rounds,
            target: 0.5,
        },
        Comparison {
            name: "--json -p vs ss -tanp",
            ours: vec!["--json", "-p"],
            theirs: vec!["-tanp"],
            rounds: scale.process_rounds,
            target: 0.1,
        },
    ];

    let mut all_met = json_against_bare_dump(&scale)?;
    for comparison in &comparisons {
        let (ours, theirs) = time_alternately(comparison)?;
        let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
        let met = ratio <= comparison.target;
        all_met &= met;
        println!(
            "  {:<42} tcpscope {:>8.1} ms   ss {:>8.1} ms   ratio {:.3} (target <= {}) {}",
            comparison.name,
            millis(ours),
            millis(theirs),
            ratio,
            comparison.target,
            verdict(met, scale.enforce)
        );
    }
    let per_socket = json_bytes_per_socket(scale.established + scale.half_open)?;
    let met = per_socket <= MAX_JSON_BYTES_PER_SOCKET;
    all_met &= met;
    println!(
        "  {:<42} {per_socket:>8.0} bytes a socket at its peak (target <= {MAX_JSON_BYTES_PER_SOCKET}) {}",
        "--json memory",
        verdict(met, scale.enforce)
    );
    all_met &= grouping(&scale)?;
    if !scale.enforce {
        println!("  debug build: figures only; run with --release to hold the targets");
        return Ok(true);
    }
    Ok(all_met)
}

/// `--json`'s time target as a multiple of a bare kernel dump.
const JSON_AGAINST_BARE_DUMP: f64 = 1.15;

/// Times `--json` against the bare dump, alternately: a bare dump, `--json`, a bare
/// dump, … and a bare dump last. Each `--json` is divided by the mean of the bare dumps
/// just before and after it, so that a machine busier for a while weighs on both sides
/// of the ratio alike; the median ratio of wall times is held. CPU times (the whole
/// `--json` process's, the bare dump's thread's) are printed beside it: on a machine
/// with no core to spare, the wall time follows the CPU time.
fn json_against_bare_dump(scale: &Scale) -> Result<bool> {
    let (mut bare, mut json) = (Vec::new(), Vec::new());
    let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    let (mut records, mut records_cpu) = (Vec::new(), Vec::new());
    let mut diag = SockDiag::open()?;
    let mut into = Vec::new();
    let mut counted = 0;
    bare.push(timed_bare_dump()?);
    // Each round is two dumps' time: cheap enough to take twice as many, which the
    // ratio's spread on a shared machine needs.
    for _ in 0..2 * scale.rounds + 1 {
        let ours = run_measured(&["--json"])?;
        let (start, cpu_start) = (Instant::now(), thread_cpu_time());
        into.clear();
        diag.dump_into(&DumpRequest::everything(), &mut into)?;
        records.push(start.elapsed());
        records_cpu.push(thread_cpu_time().saturating_sub(cpu_start));
        let after = timed_bare_dump()?;
        counted = after.sockets;
        let before = bare.last().copied().unwrap_or(after);
        ratios.push(ours.wall.as_secs_f64() / ((before.wall + after.wall) / 2).as_secs_f64());
        cpu_ratios.push(ours.cpu.as_secs_f64() / ((before.cpu + after.cpu) / 2).as_secs_f64());
        json.push(ours);
        bare.push(after);
    }
    ratios.sort_by(f64::total_cmp);
    cpu_ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    let met = ratio <= JSON_AGAINST_BARE_DUMP;
    println!(
        "  {:<42} tcpscope {:>8.1} ms   bare {:>8.1} ms   ratio {ratio:.3} (target <= {JSON_AGAINST_BARE_DUMP}) {}",
        "--json vs a bare kernel dump",
        millis(median(json.iter().map(|run| run.wall).collect())),
        millis(median(bare.iter().map(|run| run.wall).collect())),
        verdict(met, scale.enforce)
    );
    println!(
        "  {:<42} {counted} sockets; wall ratios {:.3} to {:.3}; CPU {:.1} ms vs {:.1} ms, ratio {:.3}",
        "",
        ratios[0],
        ratios[ratios.len() - 1],
        millis(median(json.iter().map(|run| run.cpu).collect())),
        millis(median(bare.iter().map(|run| run.cpu).collect())),
        cpu_ratios[cpu_ratios.len() / 2],
    );
    println!(
        "  {:<42} {:>8.1} ms, CPU {:.1} ms (the dump tcpscope takes, parsed, nothing else)",
        "dump into records, in this process",
        millis(median(records)),
        millis(median(records_cpu)),
    );
    Ok(met)
}

/// `--json`'s peak memory target: the document streams, so only the records stay.
const MAX_JSON_BYTES_PER_SOCKET: f64 = 100.0;

/// `--json`'s peak resident memory per socket: its peak over the lab's sockets less its
/// peak when the kernel matches none of them, so that the binary, its libraries and its
/// buffers do not count.
fn json_bytes_per_socket(sockets: usize) -> Result<f64> {
    let mut all = Vec::new();
    let mut none = Vec::new();
    for _ in 0..3 {
        all.push(peak_resident_kib(&["--json"])?);
        none.push(peak_resident_kib(&["--json", "--grep", "closing"])?);
    }
    all.sort_unstable();
    none.sort_unstable();
    let above = all[1].saturating_sub(none[1]);
    println!(
        "  --json peak resident memory: {} KiB, {} KiB with no socket matching",
        all[1], none[1]
    );
    Ok(above as f64 * 1024.0 / sockets as f64)
}

/// The peak resident memory of one run of tcpscope, from the kernel's accounting of
/// the child (`ru_maxrss`), output discarded.
fn peak_resident_kib(args: &[&str]) -> Result<u64> {
    Ok(run_measured(args)?.peak_kib)
}

/// What one run of tcpscope cost.
struct Measured {
    wall: Duration,
    /// User and system time of the whole process, every thread.
    cpu: Duration,
    peak_kib: u64,
}

/// Runs tcpscope with its output discarded, and reads what it cost from the kernel's
/// accounting of the child (`wait4`'s rusage).
fn run_measured(args: &[&str]) -> Result<Measured> {
    let start = Instant::now();
    let child = Command::new(TCPSCOPE)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running tcpscope")?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; both pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    ensure!(
        waited == pid,
        "waiting for tcpscope: {}",
        std::io::Error::last_os_error()
    );
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) <= 1,
        "tcpscope {args:?} ended with status {status:#x}"
    );
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(Measured {
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        peak_kib: u64::try_from(usage.ru_maxrss)?,
    })
}

/// Times grouping one dumped snapshot by each key, and the cgroup names' cache;
/// reports `--json --group-by cgroup` beside `--json`.
fn grouping(scale: &Scale) -> Result<bool> {
    let snapshot = SockDiag::open()?.snapshot(&Filter::default())?;
    let sockets = &snapshot.sockets;
    let mut met = true;
    for key in GroupKey::ALL {
        let mut times = Vec::new();
        let mut groups = 0;
        for _ in 0..scale.rounds {
            let start = Instant::now();
            let rows = group::group(key, sockets, |inode| Some(inode as i32 % 64));
            times.push(start.elapsed());
            groups = rows.len();
        }
        let took = median(times);
        met &= took <= GROUPING_TARGET;
        println!(
            "  group by {:<33} {:>8.2} ms for {} sockets in {groups} groups (target <= {} ms) {}",
            key.name(),
            millis(took),
            sockets.len(),
            millis(GROUPING_TARGET),
            verdict(took <= GROUPING_TARGET, scale.enforce)
        );
    }

    let rows = group::group(GroupKey::Cgroup, sockets, |_| None);
    let ids = || {
        rows.iter().filter_map(|row| match row.group {
            Group::Cgroup(id) => Some(id),
            _ => None,
        })
    };
    let mut names = CgroupNames::open();
    let start = Instant::now();
    names.learn(ids());
    let first = start.elapsed();
    let start = Instant::now();
    names.learn(ids());
    let again = start.elapsed();
    let cached = names.walks() <= 1;
    met &= cached;
    println!(
        "  cgroup names: first {:.2} ms ({} walk), then {:.3} ms ({} walks in all) {}",
        millis(first),
        names.walks(),
        millis(again),
        names.walks(),
        verdict(cached, scale.enforce)
    );

    let mut plain = Vec::new();
    let mut grouped = Vec::new();
    for _ in 0..scale.rounds {
        plain.push(time(TCPSCOPE, &["--json"])?);
        grouped.push(time(TCPSCOPE, &["--json", "--group-by", "cgroup"])?);
    }
    let (plain, grouped) = (median(plain), median(grouped));
    println!(
        "  --json --group-by cgroup vs --json         {:>8.1} ms vs {:>8.1} ms (+{:.1} ms)",
        millis(grouped),
        millis(plain),
        millis(grouped.saturating_sub(plain))
    );
    Ok(met)
}

fn verdict(met: bool, enforced: bool) -> &'static str {
    match (enforced, met) {
        (false, _) => "(not held in debug builds)",
        (true, true) => "met",
        (true, false) => "MISSED",
    }
}

/// Runs tcpscope and ss in turn, `rounds` times each, and returns the median times.
fn time_alternately(comparison: &Comparison) -> Result<(Duration, Duration)> {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..comparison.rounds {
        ours.push(time(TCPSCOPE, &comparison.ours)?);
        theirs.push(time("ss", &comparison.theirs)?);
    }
    Ok((median(ours), median(theirs)))
}

/// Wall time of one run, output discarded (both tools still format all of it).
fn time(program: &str, args: &[&str]) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {program}"))?;
    let elapsed = start.elapsed();
    ensure!(status.success(), "{program} {args:?} failed: {status}");
    Ok(elapsed)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
