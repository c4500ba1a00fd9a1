//! The findings analyst over real dumps of the lab, judged with the namespace's own
//! sysctls: a listener that keeps turning clients away, and a narrowed port range used
//! up toward one listener, as the live modes' analysis sees them poll after poll.
//!
//! Each test enters its own lab and fails, never skips, without root.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::support::lab::Lab;
use crate::support::lab::sockets::{listener_with_backlog, start_connect};
use anyhow::{Context, Result, ensure};
use tcpscope::filter::Filter;
use tcpscope::kernel::procfs::read_connection_limits;
use tcpscope::kernel::sockdiag::SockDiag;
use tcpscope::watch::findings::{
    Analyst, FindingThresholds, HostLimits, Kind, Observation, Report, Severity, Value,
};

/// One poll of the findings over a fresh dump of the lab, with its sysctls.
fn poll(diag: &mut SockDiag, analyst: &mut Analyst) -> Result<Report> {
    let snapshot = diag.snapshot(&Filter::default())?;
    let limits = HostLimits::from_sysctls(&read_connection_limits()?);
    Ok(analyst.observe(&Observation {
        snapshot: &snapshot,
        limits: &limits,
        time_wait_overflows: None,
        syn_watch: None,
        syn_cookies_rising: false,
        leaks: None,
        transitions: &[],
        processes: None,
    }))
}

#[test]
fn a_listener_turning_away_new_clients_is_raised_as_listen_drops() -> Result<()> {
    let _lab = Lab::enter()?;
    let (_listener, address) = listener_with_backlog(0, 1)?;

    let mut diag = SockDiag::open()?;
    let mut analyst = Analyst::new(FindingThresholds::default());
    let mut clients = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..4 {
        reports.push(poll(&mut diag, &mut analyst)?);
        // Five more clients a round, which the full accept queue turns away.
        for _ in 0..5 {
            clients.push(start_connect(address)?);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    reports.push(poll(&mut diag, &mut analyst)?);

    let kinds: Vec<Vec<Kind>> = reports
        .iter()
        .map(|report| report.findings.iter().map(|f| f.kind).collect())
        .collect();
    ensure!(
        kinds[0].is_empty() && kinds[1].is_empty(),
        "raised too early: {kinds:?}"
    );
    let last = reports.last().context("no report")?;
    let drops = last
        .findings
        .iter()
        .find(|f| f.kind == Kind::ListenDrops)
        .with_context(|| format!("no listen_drops after four rounds: {kinds:?}"))?;
    ensure!(drops.severity == Severity::Critical);
    ensure!(
        drops.subject.to_string() == address.to_string(),
        "the finding is about {}, the listener is {address}",
        drops.subject
    );
    Ok(())
}

/// Opens `count` connections to `listener` from ports `connect()` picks; the accepted
/// ends are kept too.
fn connections(listener: &TcpListener, count: usize) -> Result<Vec<(TcpStream, TcpStream)>> {
    (0..count)
        .map(|_| {
            let client = TcpStream::connect(listener.local_addr()?)?;
            let (server, _) = listener.accept()?;
            Ok((client, server))
        })
        .collect()
}

#[test]
fn most_of_a_narrowed_port_range_used_toward_one_listener_is_port_exhaustion() -> Result<()> {
    let lab = Lab::enter()?;
    // Bound before the range is narrowed, so that the listener's own port is not in it.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    lab.set_sysctl("net.ipv4.ip_local_port_range", "40000 40099")?;
    let mut diag = SockDiag::open()?;

    // A calm twin first: 40 of the 100 ports.
    let mut held = connections(&listener, 40)?;
    let mut analyst = Analyst::new(FindingThresholds::default());
    for _ in 0..3 {
        let report = poll(&mut diag, &mut analyst)?;
        ensure!(
            report.findings.is_empty(),
            "40% raised {:?}",
            report.findings
        );
    }

    held.extend(connections(&listener, 25)?);
    poll(&mut diag, &mut analyst)?;
    let report = poll(&mut diag, &mut analyst)?;
    let finding = report
        .findings
        .iter()
        .find(|f| f.kind == Kind::PortExhaustion)
        .with_context(|| format!("65% raised {:?}", report.findings))?;
    ensure!(finding.severity == Severity::Warning);
    ensure!(
        finding.subject.to_string() == format!("127.0.0.1 -> 127.0.0.1:{port}"),
        "{}",
        finding.subject
    );
    let listed = lab.run("ss", &["-tanH", "dst", &format!("127.0.0.1:{port}")])?;
    let by_ss = listed
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count();
    ensure!(
        finding.evidence.get("used") == Some(&Value::Count(by_ss as u64)),
        "used {:?}, ss lists {by_ss}",
        finding.evidence.get("used")
    );
    ensure!(finding.evidence.get("range_size") == Some(&Value::Count(100)));
    drop(held);
    Ok(())
}
