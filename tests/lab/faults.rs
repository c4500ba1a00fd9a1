//! The tcpscope binary when the kernel says no, in a lab namespace: faults are made at
//! the system-call boundary (a seccomp filter that refuses one call, a descriptor limit
//! lowered on the running process), and everything else is the real kernel.
//!
//! | fault | outcome |
//! |---|---|
//! | no sock_diag (`socket` refused) | every mode exits 2 naming CONFIG_INET_DIAG and tcp_diag; nothing on stdout |
//! | destroy-event subscription refused | `--watch` notes it once on stderr and goes on polling |
//! | a poll fails (no descriptor left) | an `error` line; the next poll succeeds, with no false closes |
//! | ENOBUFS on the event socket | an `events_lost` line; the polls resynchronise |
//! | the reader of stdout goes away | every streaming mode ends quietly with status 0 |

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::support::fault::{Refusal, set_descriptor_limit};
use crate::support::lab::Lab;
use crate::support::stream::Stream;
use crate::support::tcpscope_command;
use crate::support::{fault, lab};

const PATIENCE: Duration = Duration::from_secs(10);

/// Runs tcpscope with `refusals` and returns its output; `--watch` is ended after a
/// while if it has not ended by itself.
fn run_refused(args: &[&str], refusals: &[Refusal]) -> Result<Output> {
    let mut command = tcpscope_command(args);
    fault::refuse(&mut command, refusals);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tcpscope under a seccomp filter")?;
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output()?;
            bail!(
                "tcpscope {args:?} did not exit: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

#[test]
fn without_sock_diag_every_mode_exits_2_and_names_what_the_kernel_lacks() -> Result<()> {
    let _lab = Lab::enter()?;
    for args in [
        &["--json"][..],
        &["--grep", "all"],
        &["--grep", "listen", "-p"],
        &["--watch"],
        &["--watch", "--json", "--interval", "100ms"],
        // Every live mode starts from the same source, and so asks the kernel first.
        &["--serve", "127.0.0.1:0"],
    ] {
        let output = run_refused(args, &[Refusal::sock_diag_socket(libc::EPROTONOSUPPORT)])?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} wrote to stdout");
        for needed in [
            "tcpscope: error:",
            "cannot open a NETLINK_SOCK_DIAG socket",
            "Protocol not supported",
            "CONFIG_INET_DIAG",
            "tcp_diag",
        ] {
            assert!(
                stderr.contains(needed),
                "{args:?}: {needed:?} not in {stderr}"
            );
        }
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
    Ok(())
}

/// A running `tcpscope --watch --json` whose stderr is kept, read a poll at a time.
struct Watch(Stream);

impl Watch {
    fn start(mut command: Command) -> Result<Watch> {
        Ok(Watch(Stream::start(command.stderr(Stdio::piped()))?))
    }

    /// Reads lines until one of `kind`, returning those before it as well.
    fn until(&mut self, kind: &str) -> Result<(Vec<Value>, Value)> {
        let lines = self
            .0
            .read_until(&format!("a {kind} line"), PATIENCE, |line| {
                line["type"] == kind
            })?;
        let mut values: Vec<Value> = lines.iter().map(|line| line.value.clone()).collect();
        let found = values.pop().context("no line")?;
        Ok((values, found))
    }

    fn pid(&self) -> libc::pid_t {
        self.0.pid()
    }

    /// Ends it with SIGTERM and returns its status and standard error.
    fn stop(mut self) -> Result<(ExitStatus, String)> {
        let status = self.0.stop(libc::SIGTERM)?;
        Ok((status, self.0.stderr()))
    }
}

#[test]
fn a_refused_destroy_subscription_is_noted_once_and_watch_goes_on() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = TcpListener::bind("127.0.0.1:7400")?;
    let mut command = tcpscope_command(&["--watch", "--json", "--interval", "100ms"]);
    fault::refuse(&mut command, &[Refusal::netlink_membership(libc::EPERM)]);
    let mut watch = Watch::start(command)?;

    for _ in 0..3 {
        watch.until("counts")?;
    }
    // Without events, a connection that lives across polls is still seen.
    let _client = TcpStream::connect(listener.local_addr()?)?;
    let (_server, _) = listener.accept()?;
    let (before, _) = watch.until("counts")?;
    let (more, _) = watch.until("counts")?;
    let opened = before
        .iter()
        .chain(&more)
        .filter(|line| line["kind"] == "opened")
        .count();
    for _ in 0..5 {
        watch.until("counts")?;
    }
    let (status, stderr) = watch.stop()?;

    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(opened, 2, "both ends of the new connection");
    let notes: Vec<_> = stderr
        .lines()
        .filter(|line| line.contains("destroy events are unavailable"))
        .collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].contains("Operation not permitted") && notes[0].contains("may be missed"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    Ok(())
}

#[test]
fn a_poll_that_fails_is_reported_and_the_next_one_succeeds_without_false_closes() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = TcpListener::bind("127.0.0.1:7401")?;
    let _client = TcpStream::connect(listener.local_addr()?)?;
    let (_server, _) = listener.accept()?;
    let mut watch = Watch::start(tcpscope_command(&[
        "--watch",
        "--json",
        "--interval",
        "100ms",
    ]))?;
    let (_, first) = watch.until("counts")?;

    // No descriptor may be opened: the next poll cannot read /proc/net/netstat.
    let old = set_descriptor_limit(watch.pid(), 0)?;
    let (_, error) = watch.until("error")?;
    set_descriptor_limit(watch.pid(), old.rlim_cur)?;
    let mut after = Vec::new();
    for _ in 0..3 {
        let (lines, counts) = watch.until("counts")?;
        after.extend(lines);
        after.push(counts);
    }
    let (status, stderr) = watch.stop()?;

    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("reading the kernel's TcpExt counters")
            && message.contains("Too many open files"),
        "{error}"
    );
    let last = after.last().cloned().unwrap_or_default();
    assert_eq!(
        last["counts"], first["counts"],
        "the sockets were not seen again"
    );
    let transitions: Vec<_> = after
        .iter()
        .filter(|line| line["type"] == "transition")
        .collect();
    assert!(
        transitions.is_empty(),
        "a failed poll made connections look changed: {transitions:?}"
    );
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    Ok(())
}

/// Destroy events take about 400 bytes of queue each, and the queue is at most twice
/// `net.core.rmem_max` (4 MiB on the project's machine): this many overflow it.
const SOCKETS: usize = 60_000;

#[test]
fn an_overflowing_event_queue_is_reported_and_the_polls_resynchronise() -> Result<()> {
    let lab = Lab::enter()?;
    let crowd = lab.crowd(SOCKETS)?;
    let mut watch = Watch::start(tcpscope_command(&[
        "--watch",
        "--json",
        "--interval",
        "200ms",
    ]))?;
    let (_, before) = watch.until("counts")?;
    let established = before["counts"]["ESTABLISHED"].as_u64().unwrap_or_default();

    // Stopped, tcpscope cannot read while every socket is reset at once: more destroy
    // events than its queue holds (ENOBUFS on its next read).
    // SAFETY: kill(2) on the child this test started, then on the lab's holders.
    unsafe { libc::kill(watch.pid(), libc::SIGSTOP) };
    for &holder in crowd.holders() {
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(holder, libc::SIGKILL) };
    }
    lab.wait_for_count(lab::TcpState::Established, 0, lab::SETTLE)?;
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(watch.pid(), libc::SIGCONT) };
    let (_, lost) = watch.until("events_lost")?;
    // The third full dump after the loss (a fast-lane line between full dumps
    // carries the last full dump's ESTABLISHED, so it does not count).
    let mut last = before.clone();
    let mut full_dumps = 0;
    while full_dumps < 3 {
        last = watch.until("counts")?.1;
        if last.get("lane").is_none() {
            full_dumps += 1;
        }
    }
    let (status, stderr) = watch.stop()?;

    assert!(established >= SOCKETS as u64, "{before}");
    assert!(lost["count"].as_u64().unwrap_or_default() >= 1, "{lost}");
    assert_eq!(last["counts"]["ESTABLISHED"], 0, "{last}");
    assert!(status.success(), "{status}: {stderr}");
    Ok(())
}

/// Starts `args` with stdout on a pipe, waits until it has written something (or
/// `settle` passed), closes the reading end, and returns how it ended.
fn close_the_reader(args: &[&str], settle: Duration) -> Result<(Output, Duration)> {
    let mut child = tcpscope_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let started = Instant::now();
    if settle.is_zero() {
        let mut first = [0u8; 1];
        stdout.read_exact(&mut first)?;
    } else {
        thread::sleep(settle);
    }
    drop(stdout);
    let closed = Instant::now();
    let deadline = closed + PATIENCE;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "tcpscope {args:?} went on for {PATIENCE:?} after its reader left (started {:?} before)",
                closed - started
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    let took = closed.elapsed();
    Ok((child.wait_with_output()?, took))
}

#[test]
fn a_closed_stdout_ends_every_streaming_mode_quietly() -> Result<()> {
    let lab = Lab::enter()?;
    // More output than a pipe holds, so that the one-shot modes meet the closed pipe.
    let _crowd = lab.crowd(4_000)?;
    let cases: [(&[&str], Duration); 5] = [
        (&["--json"], Duration::ZERO),
        (&["--grep", "all"], Duration::ZERO),
        (
            &["--watch", "--json", "--interval", "100ms"],
            Duration::ZERO,
        ),
        // Nothing changes in the lab, so the text stream has nothing to write: it must
        // notice the reader is gone without a write failing.
        (
            &["--watch", "--interval", "100ms"],
            Duration::from_millis(500),
        ),
        (&["--watch", "--interval", "5s"], Duration::from_millis(500)),
    ];
    for (args, settle) in cases {
        let (output, took) = close_the_reader(args, settle)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert!(
            took < Duration::from_secs(2),
            "{args:?} took {took:?} to notice"
        );
    }
    Ok(())
}
