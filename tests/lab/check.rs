//! `tcpscope --check` as a monitoring system runs it, in a lab namespace: a forged SYN
//! flood is CRITICAL (exit 2) and named on the status line, an accept queue that nothing
//! empties is a WARNING (exit 1), a calm lab is OK (exit 0),
//! and a check that cannot be made (no sock_diag, a usage error) is UNKNOWN (exit 3),
//! always with one status line on stdout and perfdata after a `|`.

use std::net::TcpStream;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::support::fault::{self, Refusal};
use crate::support::lab::sockets::listener_with_backlog;
use crate::support::lab::{Lab, SETTLE};
use crate::support::tcpscope_command;

/// Runs `tcpscope --check ARGS` (IPv4 only) to its end.
fn check(args: &[&str]) -> Result<(Output, Duration)> {
    let mut all = vec!["--check", "-4"];
    all.extend_from_slice(args);
    let started = Instant::now();
    let output = tcpscope_command(&all)
        .output()
        .context("running tcpscope --check")?;
    Ok((output, started.elapsed()))
}

/// The status line and the perfdata after its `|`.
fn status_line(output: &Output) -> Result<(String, String)> {
    let stdout = String::from_utf8(output.stdout.clone())?;
    let first = stdout.lines().next().context("no status line")?;
    let (status, perfdata) = first
        .split_once(" | ")
        .with_context(|| format!("no perfdata in {first:?}"))?;
    ensure!(!perfdata.contains('|'), "one | only: {first:?}");
    Ok((status.to_owned(), perfdata.to_owned()))
}

/// The value of one perfdata field, `label=value;;;0`.
fn perf(perfdata: &str, label: &str) -> Option<u64> {
    perfdata.split(' ').find_map(|field| {
        let (name, rest) = field.split_once('=')?;
        (name == label).then(|| rest.split(';').next()?.parse().ok())?
    })
}

#[test]
fn a_forged_syn_flood_is_critical_and_named_on_the_status_line() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    let flood = lab.syn_flood(listener.addr_v4()?, 300, 17)?;
    lab.wait_for_exactly(&[listener.entries(), flood.entries()].concat(), SETTLE)?;

    let (output, took) = check(&[])?;
    let (status, perfdata) = status_line(&output)?;
    assert_eq!(
        output.status.code(),
        Some(2),
        "{status} | {perfdata}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let named = format!("syn_flood on {}", listener.addr);
    assert!(
        status.starts_with("TCPSCOPE CRITICAL - ") && status.contains(&named),
        "{status}"
    );
    assert_eq!(perf(&perfdata, "syn_recv"), Some(300), "{perfdata}");
    assert_eq!(perf(&perfdata, "listen"), Some(1), "{perfdata}");
    assert_eq!(perf(&perfdata, "findings_critical"), Some(1), "{perfdata}");
    let stdout = String::from_utf8(output.stdout)?;
    assert!(
        stdout
            .lines()
            .nth(1)
            .is_some_and(|line| line.starts_with("critical: SYN flood on")),
        "a line per finding follows:\n{stdout}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "the default window is 2 s; the check took {took:?}"
    );
    Ok(())
}

#[test]
fn a_full_accept_queue_nothing_accepts_from_is_a_warning() -> Result<()> {
    let _lab = Lab::enter()?;
    // A backlog of 4 holds 4 completed handshakes (5 before the kernel drops): 4
    // clients fill it, and no attempt is dropped, so there is nothing critical.
    let (_listener, address) = listener_with_backlog(0, 4)?;
    let clients = (0..4)
        .map(|_| TcpStream::connect(address))
        .collect::<std::io::Result<Vec<_>>>()?;

    let (output, _) = check(&["--window", "1s"])?;
    let (status, perfdata) = status_line(&output)?;
    assert_eq!(output.status.code(), Some(1), "{status} | {perfdata}");
    assert_eq!(
        status,
        format!("TCPSCOPE WARNING - accept_queue_full on {address}")
    );
    assert_eq!(perf(&perfdata, "findings_warning"), Some(1), "{perfdata}");
    assert_eq!(perf(&perfdata, "findings_critical"), Some(0), "{perfdata}");
    drop(clients);
    Ok(())
}

#[test]
fn a_calm_lab_is_ok_with_its_counts_as_perfdata() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    // Half-open connections from a few hosts are no flood.
    let half_open = lab.syns_from_two_hosts(listener.addr_v4()?, 10)?;
    let established = lab.established("127.0.0.1".parse()?)?;
    lab.wait_for_exactly(
        &[
            listener.entries(),
            half_open.entries(),
            established.entries(),
        ]
        .concat(),
        SETTLE,
    )?;

    let (output, _) = check(&["--window", "1s"])?;
    let (status, perfdata) = status_line(&output)?;
    assert_eq!(output.status.code(), Some(0), "{status} | {perfdata}");
    assert_eq!(status, "TCPSCOPE OK - no findings");
    assert_eq!(perf(&perfdata, "syn_recv"), Some(10), "{perfdata}");
    assert_eq!(perf(&perfdata, "established"), Some(2), "{perfdata}");
    assert_eq!(perf(&perfdata, "findings_critical"), Some(0), "{perfdata}");
    assert_eq!(perf(&perfdata, "findings_warning"), Some(0), "{perfdata}");
    Ok(())
}

#[test]
fn a_kernel_without_sock_diag_is_unknown_with_the_reason() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut command = tcpscope_command(&["--check"]);
    fault::refuse(
        &mut command,
        &[Refusal::sock_diag_socket(libc::EPROTONOSUPPORT)],
    );
    let output = command.output()?;
    let stdout = String::from_utf8(output.stdout)?;
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.starts_with("TCPSCOPE UNKNOWN - ") && stdout.contains("NETLINK_SOCK_DIAG"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    Ok(())
}

#[test]
fn a_usage_error_is_unknown_for_check_and_stays_2_elsewhere() -> Result<()> {
    let output = tcpscope_command(&["--check", "--no-such-flag"]).output()?;
    let stdout = String::from_utf8(output.stdout)?;
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.starts_with("TCPSCOPE UNKNOWN - usage: ") && stdout.contains("--no-such-flag"),
        "{stdout}"
    );
    let output = tcpscope_command(&["--check", "--window", "10ms"]).output()?;
    assert_eq!(output.status.code(), Some(3));

    let output = tcpscope_command(&["--json", "--no-such-flag"]).output()?;
    assert_eq!(output.status.code(), Some(2));
    let output = tcpscope_command(&["--check", "--help"]).output()?;
    assert_eq!(output.status.code(), Some(0), "help is no error");
    Ok(())
}
