//! The findings on real sockets in a private network namespace. First their kernel
//! inputs, checked against the kernel's own tools: a listener's drop counter against
//! the `d` of `ss -tlm`, and the local port and TIME_WAIT sysctls after the test
//! narrowed them. Then each kind of finding, built for real (forged SYNs, a listener
//! that never accepts, a narrowed port range, a lowered `tcp_max_tw_buckets`, a server
//! that never closes) and read as a user reads it, each with its negative twin.
//!
//! Each test enters its own lab and fails, never skips, without root.

use std::time::{Duration, Instant};

use crate::support;
use crate::support::lab::sockets::{listener_with_backlog, start_connect};
use crate::support::lab::{self, Lab, SETTLE, TcpState};
use crate::support::stream::Stream;
use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tcpscope::kernel::procfs::{TwReuse, read_connection_limits};
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::tcp::State;
use tcpscope::watch::findings::KINDS;

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
    // An accept queue of two that nothing accepts from: the third handshake on is
    // dropped, and each client's SYN retries are dropped again.
    let (_listener, address) = listener_with_backlog(0, 1)?;
    let port = address.port();

    let mut diag = SockDiag::open()?;
    ensure!(
        dumped_drops(&mut diag, port)? == 0,
        "a fresh listener has dropped nothing"
    );

    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(start_connect(address)?);
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

// Each kind of finding, built for real in the lab and read the way a user reads it: in
// `--json`'s `findings` for the kinds one reading shows, in `--watch --json`'s
// `finding` lines for those that need time. Each beside its twin, the look-alike that
// must not be named.

/// The `findings` of one `tcpscope --json ARGS` in the lab.
fn json_findings(args: &[&str]) -> Result<Vec<Value>> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let document = support::json(&all)?;
    document["findings"]
        .as_array()
        .cloned()
        .with_context(|| format!("--json has no findings array: {}", document["findings"]))
}

/// The findings of `kind` among `findings`.
fn of_kind<'a>(findings: &'a [Value], kind: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["kind"] == kind).collect()
}

#[test]
fn a_flood_of_forged_syns_is_a_critical_syn_flood_finding_in_json() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    let address = listener.addr_v4()?;
    lab.syn_flood(address, 300, 11)?;
    lab.wait_for_count(TcpState::SynRecv, 300, SETTLE)?;

    let findings = json_findings(&[])?;
    let floods = of_kind(&findings, "syn_flood");
    ensure!(floods.len() == 1, "one syn_flood finding: {findings:#?}");
    let flood = floods[0];
    ensure!(flood["severity"] == "critical", "{flood}");
    ensure!(flood["subject"] == address.to_string(), "{flood}");
    ensure!(flood["evidence"]["half_open"] == 300, "{flood}");
    ensure!(flood["evidence"]["distinct_sources"] == 300, "{flood}");
    ensure!(
        flood["remedy"]
            .as_str()
            .is_some_and(|remedy| remedy.contains("tcp_syncookies")),
        "{flood}"
    );
    ensure!(
        flood["since"].is_null(),
        "one reading raises nothing: {flood}"
    );
    Ok(())
}

#[test]
fn as_many_half_open_connections_from_two_hosts_are_no_finding() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    lab.syns_from_two_hosts(listener.addr_v4()?, 300)?;
    lab.wait_for_count(TcpState::SynRecv, 300, SETTLE)?;

    let findings = json_findings(&[])?;
    ensure!(
        findings.is_empty(),
        "a backlog from two hosts: {findings:#?}"
    );
    Ok(())
}

#[test]
fn a_listener_that_never_accepts_its_few_real_clients_is_accept_queue_full_not_a_flood()
-> Result<()> {
    let lab = Lab::enter()?;
    let (listener, address) = listener_with_backlog(0, 8)?;
    // Eight real clients from one host complete their handshakes and wait in the
    // accept queue, which holds eight: full.
    let clients = (0..8)
        .map(|_| std::net::TcpStream::connect(address))
        .collect::<std::io::Result<Vec<_>>>()?;
    lab.wait_for_count(TcpState::Established, 16, SETTLE)?;

    let findings = json_findings(&[])?;
    ensure!(findings.len() == 1, "only the full queue: {findings:#?}");
    let full = &findings[0];
    ensure!(full["kind"] == "accept_queue_full", "{full}");
    ensure!(full["severity"] == "warning", "{full}");
    ensure!(full["subject"] == address.to_string(), "{full}");
    ensure!(
        full["evidence"]["accept_queue"] == 8 && full["evidence"]["backlog"] == 8,
        "{full}"
    );

    // The twin: the same clients, accepted.
    let accepted = (0..8)
        .map(|_| listener.accept())
        .collect::<std::io::Result<Vec<_>>>()?;
    let findings = json_findings(&[])?;
    ensure!(findings.is_empty(), "all accepted: {findings:#?}");
    drop((clients, accepted));
    Ok(())
}

#[test]
fn connections_that_use_most_of_a_narrowed_port_range_are_port_exhaustion() -> Result<()> {
    let lab = Lab::enter()?;
    // A range of 100 ports; the listeners' ports lie outside it.
    lab.set_sysctl("net.ipv4.ip_local_port_range", "40000 40099")?;
    let (_first, first) = listener_with_backlog(7400, 1024)?;
    let (_second, second) = listener_with_backlog(7401, 1024)?;

    // The twin: 90 connections, 45 to each destination. Each destination has the
    // whole range to itself, so neither reaches half of it.
    let mut clients = Vec::new();
    for destination in [first, second] {
        for _ in 0..45 {
            clients.push(std::net::TcpStream::connect(destination)?);
        }
    }
    lab.wait_for_count(TcpState::Established, 180, SETTLE)?;
    let findings = json_findings(&[])?;
    ensure!(
        of_kind(&findings, "port_exhaustion").is_empty(),
        "spread over two destinations: {findings:#?}"
    );

    // 40 more to the first: 85 of its 100 ports.
    for _ in 0..40 {
        clients.push(std::net::TcpStream::connect(first)?);
    }
    lab.wait_for_count(TcpState::Established, 260, SETTLE)?;
    let findings = json_findings(&[])?;
    let exhausted = of_kind(&findings, "port_exhaustion");
    ensure!(exhausted.len() == 1, "one destination: {findings:#?}");
    let exhausted = exhausted[0];
    ensure!(exhausted["severity"] == "critical", "{exhausted}");
    ensure!(
        exhausted["subject"] == "127.0.0.1 -> 127.0.0.1:7400",
        "{exhausted}"
    );
    let evidence = &exhausted["evidence"];
    ensure!(
        evidence["used"] == 85 && evidence["range_size"] == 100,
        "{exhausted}"
    );
    ensure!(evidence["time_wait"] == 0, "{exhausted}");
    drop(clients);
    Ok(())
}

/// Closes `count` connections actively: the client closes first and keeps a TIME_WAIT
/// remnant. Returns once `ss` counts `total` TIME_WAIT sockets in the lab.
fn active_closes(lab: &Lab, count: usize, total: usize) -> Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    for _ in 0..count {
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        drop(client);
        // The client's FIN has been taken in on loopback by now: the server closes
        // second, and TIME_WAIT stays with the client.
        drop(server);
    }
    lab.wait_for_count(TcpState::TimeWait, total, SETTLE)
}

#[test]
fn time_wait_remnants_filling_a_lowered_tcp_max_tw_buckets_are_time_wait_pressure() -> Result<()> {
    let lab = Lab::enter()?;
    lab.set_sysctl("net.ipv4.tcp_max_tw_buckets", 100)?;

    // The twin: 40 of 100, under the warning's half.
    active_closes(&lab, 40, 40)?;
    let findings = json_findings(&[])?;
    ensure!(findings.is_empty(), "40% of the buckets: {findings:#?}");

    active_closes(&lab, 20, 60)?;
    let findings = json_findings(&[])?;
    ensure!(findings.len() == 1, "{findings:#?}");
    let pressure = &findings[0];
    ensure!(pressure["kind"] == "time_wait_pressure", "{pressure}");
    ensure!(pressure["severity"] == "warning", "{pressure}");
    ensure!(
        pressure["subject"] == "this network namespace",
        "{pressure}"
    );
    ensure!(
        pressure["evidence"]["time_wait"] == 60 && pressure["evidence"]["max_tw_buckets"] == 100,
        "{pressure}"
    );

    active_closes(&lab, 35, 95)?;
    let findings = json_findings(&[])?;
    ensure!(
        findings.len() == 1 && findings[0]["severity"] == "critical",
        "95 of 100 buckets: {findings:#?}"
    );
    Ok(())
}

/// How long a `--watch` test waits for a finding line: a few polls of 200 ms, with room
/// for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(15);

/// Whether `line` is a `finding` line of this event, kind and subject.
fn finding_line(line: &Value, event: &str, kind: &str, subject: &str) -> bool {
    line["type"] == "finding"
        && line["event"] == event
        && line["kind"] == kind
        && line["subject"] == subject
}

/// The `finding` lines of the stream so far that are about `subject`.
fn findings_about<'a>(stream: &'a Stream, subject: &str) -> Vec<&'a Value> {
    stream
        .seen()
        .iter()
        .map(|line| &line.value)
        .filter(|value| value["type"] == "finding" && value["subject"] == subject)
        .collect()
}

#[test]
fn watch_raises_a_syn_flood_within_three_polls_and_clears_it_once_the_hold_has_passed() -> Result<()>
{
    let lab = Lab::enter()?;
    // One SYN+ACK retry: forged requests expire about 3 s after their SYN, and the
    // flood is over.
    lab.set_sysctl("net.ipv4.tcp_synack_retries", 1)?;
    let listener = lab.listener_v4()?;
    let subject = listener.addr_v4()?.to_string();
    let mut stream = Stream::watch(&["--interval", "200ms", "--finding-hold", "2s"])?;
    stream.wait_for("the first poll", PATIENCE, |line| line["type"] == "counts")?;

    lab.syn_flood(listener.addr_v4()?, 300, 12)?;
    let lines = stream.read_until("syn_flood raised", PATIENCE, |line| {
        finding_line(line, "raised", "syn_flood", &subject)
    })?;
    let polls = lines
        .iter()
        .filter(|line| line.value["type"] == "counts")
        .count();
    // The raise comes before its poll's counts line: the polls before it, plus its own.
    ensure!(
        polls < 3,
        "raised on poll {} after the flood began",
        polls + 1
    );
    let raised = lines.last().context("the raised line")?;
    ensure!(raised.value["severity"] == "critical", "{}", raised.text);
    ensure!(raised.value["since"].is_string(), "{}", raised.text);

    let lines = stream.read_until("syn_flood cleared", PATIENCE, |line| {
        finding_line(line, "cleared", "syn_flood", &subject)
    })?;
    let cleared = lines.last().context("the cleared line")?.arrived;
    // The last poll that still saw the flood: the last counts line with its half-open
    // connections (the SYN watch calls 64 many).
    let last_flooded = stream
        .seen()
        .iter()
        .rfind(|line| {
            line.value["type"] == "counts" && line.value["counts"]["SYN_RECV"].as_u64() >= Some(64)
        })
        .context("no poll saw the flood")?;
    let held = cleared.duration_since(last_flooded.arrived);
    ensure!(
        held >= Duration::from_millis(1_800) && held <= Duration::from_secs(6),
        "cleared {held:?} after the last poll that saw the flood, with a hold of 2 s"
    );
    ensure!(
        findings_about(&stream, &subject).len() == 2,
        "raised once and cleared once: {:#?}",
        findings_about(&stream, &subject)
    );
    stream.stop(libc::SIGINT)?;
    Ok(())
}

#[test]
fn watch_names_the_listener_dropping_connection_attempts_and_not_the_one_keeping_up() -> Result<()>
{
    let _lab = Lab::enter()?;
    // Both with a queue of two; only the second is accepted from.
    let (_stalled, stalled) = listener_with_backlog(0, 1)?;
    let (keeping_up, keeping_addr) = listener_with_backlog(0, 1)?;
    let mut stream = Stream::watch(&["--interval", "200ms"])?;
    stream.wait_for("the first poll", PATIENCE, |line| line["type"] == "counts")?;

    // A new client of each about every 50 ms for 4 s: the stalled listener drops each
    // SYN (and each retry) once its queue is full.
    let mut clients = Vec::new();
    let mut accepted = Vec::new();
    for _ in 0..80 {
        clients.push(start_connect(stalled)?);
        clients.push(start_connect(keeping_addr)?);
        accepted.push(keeping_up.accept()?);
        stream.collect(Duration::from_millis(50))?;
    }
    let subject = stalled.to_string();
    let raised = stream.find("listen_drops raised", PATIENCE, |line| {
        finding_line(line, "raised", "listen_drops", &subject)
    })?;
    ensure!(raised["severity"] == "critical", "{raised}");
    ensure!(
        raised["evidence"]["drops_per_second"].as_f64() >= Some(1.0),
        "{raised}"
    );
    ensure!(raised["evidence"]["backlog"] == 1, "{raised}");
    let twin = findings_about(&stream, &keeping_addr.to_string());
    ensure!(twin.is_empty(), "the listener keeping up: {twin:#?}");
    stream.stop(libc::SIGINT)?;
    drop((clients, accepted));
    Ok(())
}

#[test]
fn watch_names_a_port_whose_close_wait_keeps_growing_and_not_one_holding_steady() -> Result<()> {
    let _lab = Lab::enter()?;
    let leaking = std::net::TcpListener::bind("127.0.0.1:7501")?;
    let steady = std::net::TcpListener::bind("127.0.0.1:7502")?;
    // Connections whose client closed and whose server never does: CLOSE_WAIT.
    let mut kept = Vec::new();
    let mut close_wait = |listener: &std::net::TcpListener| -> Result<()> {
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        drop(client);
        kept.push(server);
        Ok(())
    };
    // The twin: twenty in CLOSE_WAIT before tcpscope starts, and no more.
    for _ in 0..20 {
        close_wait(&steady)?;
    }
    let mut stream = Stream::watch(&["--interval", "200ms"])?;
    stream.wait_for("the first poll", PATIENCE, |line| line["type"] == "counts")?;

    let subject = "local port 7501";
    let started = Instant::now();
    while started.elapsed() < PATIENCE && findings_about(&stream, subject).is_empty() {
        close_wait(&leaking)?;
        stream.collect(Duration::from_millis(150))?;
    }
    let raised = stream.find("close_wait_leak raised", Duration::ZERO, |line| {
        finding_line(line, "raised", "close_wait_leak", subject)
    })?;
    ensure!(raised["severity"] == "warning", "{raised}");
    ensure!(
        raised["evidence"]["close_wait"].as_u64() >= Some(6),
        "{raised}"
    );
    let twin = findings_about(&stream, "local port 7502");
    ensure!(twin.is_empty(), "20 CLOSE_WAIT, not growing: {twin:#?}");
    stream.stop(libc::SIGINT)?;
    drop(kept);
    Ok(())
}

#[test]
fn watch_calls_time_wait_pressure_critical_at_once_when_the_kernel_starts_skipping_time_wait()
-> Result<()> {
    let lab = Lab::enter()?;
    lab.set_sysctl("net.ipv4.tcp_max_tw_buckets", 20)?;
    let mut stream = Stream::watch(&["--interval", "200ms"])?;
    stream.wait_for("the first poll", PATIENCE, |line| line["type"] == "counts")?;
    let subject = "this network namespace";

    // The twin: 8 of 20 buckets, held for a few polls.
    active_closes(&lab, 8, 8)?;
    stream.collect(Duration::from_secs(1))?;
    let calm = findings_about(&stream, subject);
    ensure!(calm.is_empty(), "8 of 20 buckets: {calm:#?}");

    // 52 more: 12 fill the table, the kernel closes 40 without TIME_WAIT.
    active_closes(&lab, 52, 20)?;
    let lines = stream.read_until("time_wait_pressure raised", PATIENCE, |line| {
        finding_line(line, "raised", "time_wait_pressure", subject)
    })?;
    let polls = lines
        .iter()
        .filter(|line| line.value["type"] == "counts")
        .count();
    // At once: on the poll that saw the overflows, or the next if the closes straddled
    // two polls; never after the two polls in a row a share needs.
    ensure!(
        polls <= 1,
        "raised on poll {} after the overflow",
        polls + 1
    );
    let raised = &lines.last().context("the raised line")?.value;
    ensure!(raised["severity"] == "critical", "{raised}");
    ensure!(
        raised["evidence"]["overflows_per_second"].as_f64() > Some(0.0),
        "{raised}"
    );
    ensure!(
        raised["summary"]
            .as_str()
            .is_some_and(|summary| summary.starts_with("TIME_WAIT table full")),
        "{raised}"
    );
    stream.stop(libc::SIGINT)?;
    Ok(())
}

/// Every kind in the README's table of findings, with the remedy the outputs give: the
/// table is where a user looks up what a finding means, and it must say what tcpscope
/// says.
#[test]
fn the_readmes_findings_table_has_a_row_for_every_kind_with_its_remedy() -> Result<()> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))?;
    let section = readme
        .split("\n## ")
        .find(|section| section.starts_with("Findings"))
        .context("README.md has no Findings section")?;
    for kind in &KINDS {
        let start = format!("| `{}` |", kind.id);
        let row = section
            .lines()
            .find(|line| line.starts_with(&start))
            .with_context(|| format!("README.md's Findings table has no row for {}", kind.id))?;
        ensure!(
            row.contains(kind.remedy),
            "the README's row for {} does not give its remedy {:?}",
            kind.id,
            kind.remedy
        );
        if let Some(severity) = kind.severity {
            ensure!(
                row.contains(&format!("| {} |", severity.name())),
                "the README's row for {} does not say it is {}",
                kind.id,
                severity.name()
            );
        }
    }
    Ok(())
}
