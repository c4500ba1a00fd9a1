//! The findings and their kernel inputs, inside a private network namespace, checked
//! against the kernel's own tools: a listener's drop counter against the `d` of
//! `ss -tlm`, the local port and TIME_WAIT sysctls after the test narrowed them, and
//! the findings a real overflowing listener and a real run on the port range raise.
//!
//! Each test enters its own lab and fails, never skips, without root.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::support::lab::{self, Lab, SETTLE};
use anyhow::{Context, Result, ensure};
use socket2::{Domain, Protocol, Socket, Type};
use tcpscope::filter::Filter;
use tcpscope::kernel::procfs::{TwReuse, read_connection_limits};
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::tcp::State;
use tcpscope::watch::findings::{
    Analyst, FindingThresholds, HostLimits, Kind, Observation, Report, Severity, Value,
};

/// The listener's drop counter as `ss -tlmH` prints it: the `d` field of `skmem:(…)` on
/// the line of the listener on `port`.
fn ss_drops(lab: &Lab, port: u16) -> Result<u32> {
    let output = lab.run("ss", &["-tlmH", "sport", &format!("= :{port}")])?;
    let skmem = output
        .split_whitespace()
        .find_map(|field| field.strip_prefix("skmem:("))
        .with_context(|| format!("no skmem in `ss -tlm` output {output:?}"))?;
    skmem
        .trim_end_matches(')')
        .split(',')
        .find_map(|item| item.strip_prefix('d'))
        .with_context(|| format!("no drop count in skmem:({skmem}"))?
        .parse()
        .context("parsing the drop count of `ss -tlm`")
}

/// Our reading of the listener's drops, from a whole dump.
fn dumped_drops(diag: &mut SockDiag, port: u16) -> Result<u32> {
    let mut sockets = Vec::new();
    diag.dump_into(&DumpRequest::everything(), &mut sockets)?;
    sockets
        .iter()
        .find(|socket| socket.state == State::Listen && socket.local_port == port)
        .map(|listener| listener.drops)
        .context("the listener is not in the dump")
}

#[test]
fn a_listeners_drops_are_what_ss_tlm_shows_when_its_backlog_overflows() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    listener.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).into())?;
    // An accept queue of two that nothing accepts from: the third handshake on is
    // dropped, and each client's SYN retries are dropped again.
    listener.listen(1)?;
    let address = listener
        .local_addr()?
        .as_socket()
        .context("the listener has no IP address")?;
    let port = address.port();

    let mut diag = SockDiag::open()?;
    ensure!(
        dumped_drops(&mut diag, port)? == 0,
        "a fresh listener has dropped nothing"
    );

    let mut clients = Vec::new();
    for _ in 0..12 {
        let client = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        client.set_nonblocking(true)?;
        // In progress is what a non-blocking connect says; the handshake goes on.
        let _ = client.connect(&address.into());
        clients.push(client);
    }
    lab::ss::wait_until(SETTLE, "the listener to drop connection attempts", || {
        let drops = ss_drops(&lab, port)?;
        Ok(if drops >= 8 {
            lab::ss::Probe::Done(())
        } else {
            lab::ss::Probe::NotYet(format!("ss -tlm shows d{drops}"))
        })
    })?;

    // The clients keep retrying, so the count may grow between readings: ours must lie
    // between the two of `ss` taken around it.
    let before = ss_drops(&lab, port)?;
    let ours = dumped_drops(&mut diag, port)?;
    let after = ss_drops(&lab, port)?;
    ensure!(
        before <= ours && ours <= after,
        "tcpscope read {ours} drops, ss -tlm {before} before and {after} after"
    );
    drop(clients);
    Ok(())
}

#[test]
fn the_port_range_and_time_wait_limits_are_those_set_in_the_namespace() -> Result<()> {
    let lab = Lab::enter()?;
    lab.set_sysctl("net.ipv4.ip_local_port_range", "40000 40999")?;
    lab.set_sysctl("net.ipv4.ip_local_reserved_ports", "40100,40200-40299")?;
    lab.set_sysctl("net.ipv4.tcp_tw_reuse", 1)?;
    lab.set_sysctl("net.ipv4.tcp_max_tw_buckets", 5000)?;

    let limits = read_connection_limits()?;

    ensure!(
        limits.local_port_range == (40000, 40999),
        "{:?}",
        limits.local_port_range
    );
    ensure!(
        limits.reserved_ports == [(40100, 40100), (40200, 40299)],
        "{:?}",
        limits.reserved_ports
    );
    ensure!(limits.tw_reuse == TwReuse::On, "{:?}", limits.tw_reuse);
    ensure!(limits.max_tw_buckets == 5000, "{}", limits.max_tw_buckets);
    Ok(())
}

/// One poll of the findings over a fresh dump of the lab, with its sysctls.
fn poll(diag: &mut SockDiag, analyst: &mut Analyst) -> Result<Report> {
    let snapshot = diag.snapshot(&Filter::default())?;
    let limits = HostLimits::from_sysctls(&read_connection_limits()?);
    Ok(analyst.observe(&Observation {
        snapshot: &snapshot,
        limits: &limits,
        time_wait_overflows: None,
        syn_watch: None,
        leaks: None,
        transitions: &[],
    }))
}

#[test]
fn a_listener_turning_away_new_clients_is_raised_as_listen_drops() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    listener.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).into())?;
    listener.listen(1)?;
    let address = listener
        .local_addr()?
        .as_socket()
        .context("the listener has no IP address")?;

    let mut diag = SockDiag::open()?;
    let mut analyst = Analyst::new(FindingThresholds::default());
    let mut clients = Vec::new();
    let mut reports = Vec::new();
    for _ in 0..4 {
        reports.push(poll(&mut diag, &mut analyst)?);
        // Five more clients a round, which the full accept queue turns away.
        for _ in 0..5 {
            let client = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            client.set_nonblocking(true)?;
            let _ = client.connect(&address.into());
            clients.push(client);
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
