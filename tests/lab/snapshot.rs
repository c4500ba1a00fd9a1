//! The snapshot engine and the one-shot modes against real sockets in every TCP state
//! that can be held, with `ss -tanH` in the same namespace as the oracle.
//!
//! Each test enters its own private network namespace (the lab) and fails, never skips,
//! without root.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, ensure};
use tcpscope::filter::{Comparison, Condition, Filter, Side};
use tcpscope::kernel::bytecode;
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::tcp::{State, StateSet};

use crate::support::lab;
use crate::support::lab::{Entry, Lab, SETTLE, TcpState};
use crate::support::schema;
use crate::support::{entries, json, tcpscope};

const V4: &str = "127.0.0.1";
const V6: &str = "::1";

/// The sockets of every holdable state, kept open for as long as the test needs them.
struct EveryState {
    entries: Vec<Entry>,
    _held: Vec<Box<dyn std::any::Any>>,
}

impl EveryState {
    /// The port of the IPv4 listener, the one the forged SYNs went to.
    fn ipv4_listener_port(&self) -> Result<u16> {
        self.entries
            .iter()
            .find(|e| e.state == TcpState::Listen && e.local.is_ipv4())
            .map(|e| e.local.port())
            .context("no IPv4 listener")
    }
}

/// Builds LISTEN and ESTABLISHED (IPv4 and IPv6), FIN_WAIT2 + CLOSE_WAIT, TIME_WAIT,
/// FIN_WAIT1, LAST_ACK, SYN_SENT and SYN_RECV, and waits until `ss` shows exactly them.
fn every_state(lab: &Lab) -> Result<EveryState> {
    let v4: IpAddr = V4.parse()?;
    let v6: IpAddr = V6.parse()?;
    let mut entries = Vec::new();
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();

    let listener = lab.listener_v4()?;
    let half_open = lab.syn_flood(listener.addr_v4()?, 25, 7)?;
    entries.extend(listener.entries());
    entries.extend(half_open.entries());
    held.push(Box::new(listener));
    let listener6 = lab.listener_v6()?;
    entries.extend(listener6.entries());
    held.push(Box::new(listener6));
    for connection in [
        lab.established(v4)?,
        lab.established(v6)?,
        lab.fin_wait2_close_wait(v4)?,
        lab.fin_wait1(v4)?,
        lab.last_ack(v4)?,
    ] {
        entries.extend(connection.entries());
        held.push(Box::new(connection));
    }
    let time_wait = lab.time_wait(v4)?;
    entries.extend(time_wait.entries());
    held.push(Box::new(time_wait));
    let syn_sent = lab.syn_sent(3)?;
    entries.extend(syn_sent.entries());
    held.push(Box::new(syn_sent));

    lab.wait_for_exactly(&entries, SETTLE)?;
    entries.sort();
    Ok(EveryState {
        entries,
        _held: held,
    })
}

#[test]
fn a_snapshot_holds_exactly_the_sockets_of_every_state() -> Result<()> {
    let lab = Lab::enter()?;
    let built = every_state(&lab)?;
    let snapshot = SockDiag::open()?.snapshot(&Filter::default())?;

    assert_eq!(entries::of_records(&snapshot.sockets)?, built.entries);
    let mut oracle = lab.ss_entries()?;
    oracle.sort();
    assert_eq!(
        entries::of_records(&snapshot.sockets)?,
        oracle,
        "tcpscope and ss disagree"
    );

    let counts = snapshot.counts();
    let expected = [
        (State::Closed, 0),
        (State::Listen, 2),
        (State::SynSent, 3),
        (State::SynRecv, 25),
        // Two pairs, and the peer of the FIN_WAIT1 end that has not seen its FIN yet.
        (State::Established, 5),
        (State::FinWait1, 1),
        // The half-closer, and the peer of the LAST_ACK end.
        (State::FinWait2, 2),
        (State::CloseWait, 1),
        (State::Closing, 0),
        (State::LastAck, 1),
        (State::TimeWait, 1),
    ];
    assert_eq!(counts.iter().collect::<Vec<_>>(), expected);
    Ok(())
}

#[test]
fn request_sockets_and_time_wait_remnants_have_no_inode_but_a_cookie() -> Result<()> {
    let lab = Lab::enter()?;
    let _built = every_state(&lab)?;
    let snapshot = SockDiag::open()?.snapshot(&Filter::default())?;
    for socket in &snapshot.sockets {
        match socket.state {
            State::SynRecv | State::TimeWait => assert_eq!(socket.inode, 0, "{socket:?}"),
            _ => assert_ne!(socket.inode, 0, "{socket:?}"),
        }
        assert_ne!(socket.cookie, 0, "{socket:?}");
    }
    Ok(())
}

#[test]
fn json_counts_every_state_and_lists_what_ss_lists() -> Result<()> {
    let lab = Lab::enter()?;
    let built = every_state(&lab)?;
    let document = json(&["--json"])?;

    assert_eq!(document["schema_version"], 1);
    let counts: BTreeMap<String, u64> = serde_json::from_value(document["counts"].clone())?;
    assert_eq!(counts, entries::counts_of(&built.entries));
    let mut oracle = lab.ss_entries()?;
    oracle.sort();
    assert_eq!(entries::of_json(&document)?, oracle);
    for key in [
        "syncookies_sent",
        "syncookies_recv",
        "syncookies_failed",
        "listen_overflows",
        "listen_drops",
        "tcp_max_syn_backlog",
        "somaxconn",
    ] {
        assert!(document["kernel"][key].is_u64(), "kernel.{key}");
    }
    // The lab set these sysctls in its own namespace; the JSON must show the namespace's.
    assert_eq!(document["kernel"]["somaxconn"], 65535);
    assert_eq!(document["kernel"]["tcp_max_syn_backlog"], 65535);
    Ok(())
}

#[test]
fn a_json_document_too_large_to_hold_back_lists_every_socket_ss_lists() -> Result<()> {
    let lab = Lab::enter()?;
    // 20,000 sockets render to several megabytes: more than --json holds back before
    // it writes its sockets out while the kernel still dumps.
    let built = every_state(&lab)?;
    let _crowd = lab.crowd(20_000)?;
    let document = json(&["--json"])?;
    let mut oracle = lab.ss_entries()?;
    oracle.sort();
    let listed = entries::of_json(&document)?;
    ensure!(
        listed.len() >= 20_000,
        "--json listed {} sockets",
        listed.len()
    );
    assert_eq!(listed, oracle);
    let counts: BTreeMap<String, u64> = serde_json::from_value(document["counts"].clone())?;
    let counted: u64 = counts.values().sum();
    assert_eq!(counted, listed.len() as u64, "counts {counts:?}");
    assert_eq!(
        counts["SYN_RECV"],
        entries::counts_of(&built.entries)["SYN_RECV"]
    );
    Ok(())
}

#[test]
fn the_json_document_validates_against_the_shipped_schema() -> Result<()> {
    let lab = Lab::enter()?;
    let _built = every_state(&lab)?;
    let validator = schema::validator(schema::DOCUMENT)?;
    for args in [
        &["--json"][..],
        &["--json", "-p"],
        &["--json", "--grep", "syn-recv"],
        &["--json", "--group-by", "port"],
        &["--json", "--group-by", "cgroup"],
        &["--json", "-p", "--group-by", "process"],
        &["--json", "-i"],
    ] {
        let document = json(args)?;
        let errors = schema::errors(&validator, &document);
        assert!(errors.is_empty(), "{args:?}: {errors:#?}");
    }
    Ok(())
}

#[test]
fn json_grep_filters_to_the_states_asked_for() -> Result<()> {
    let lab = Lab::enter()?;
    let built = every_state(&lab)?;
    let document = json(&["--json", "--grep", "syn-recv,TIME_WAIT"])?;
    let wanted: Vec<Entry> = built
        .entries
        .iter()
        .filter(|e| matches!(e.state, TcpState::SynRecv | TcpState::TimeWait))
        .copied()
        .collect();
    assert_eq!(entries::of_json(&document)?, wanted);
    assert_eq!(document["counts"]["SYN_RECV"], 25);
    assert_eq!(document["counts"]["ESTABLISHED"], 0);
    Ok(())
}

/// Parses the (local, peer) columns of a `--grep` table.
fn table_endpoints(stdout: &[u8]) -> Result<Vec<(String, String, String)>> {
    let text = String::from_utf8(stdout.to_vec())?;
    let mut lines = text.lines();
    let header = lines.next().context("no header")?;
    ensure!(header.starts_with("State"), "header was {header:?}");
    let mut rows: Vec<_> = lines
        .map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            (
                columns[0].to_string(),
                columns[1].to_string(),
                columns[2].to_string(),
            )
        })
        .collect();
    rows.sort();
    Ok(rows)
}

#[test]
fn grep_syn_recv_prints_what_ss_shows_in_that_state() -> Result<()> {
    let lab = Lab::enter()?;
    let _built = every_state(&lab)?;
    let output = tcpscope(&["--grep", "SYN_RECV"])?;
    assert_eq!(output.status.code(), Some(0));
    let rows = table_endpoints(&output.stdout)?;

    let mut oracle: Vec<_> = lab
        .ss_tanh_state(TcpState::SynRecv)?
        .into_iter()
        .map(|line| ("SYN_RECV".to_string(), line.local, line.peer))
        .collect();
    oracle.sort();
    assert_eq!(oracle.len(), 25);
    assert_eq!(rows, oracle);
    Ok(())
}

#[test]
fn grep_takes_ss_and_rfc_spellings_and_groups() -> Result<()> {
    let lab = Lab::enter()?;
    let _built = every_state(&lab)?;
    let by_name = table_endpoints(&tcpscope(&["--grep", "fin-wait-1,LAST-ACK"])?.stdout)?;
    assert_eq!(
        by_name.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["FIN_WAIT1", "LAST_ACK"]
    );
    let bucket = table_endpoints(&tcpscope(&["--grep", "bucket"])?.stdout)?;
    assert_eq!(bucket.len(), 26, "25 SYN_RECV and one TIME_WAIT");
    let rfc = tcpscope(&["--grep", "SYN-RECEIVED"])?;
    assert_eq!(table_endpoints(&rfc.stdout)?.len(), 25);
    Ok(())
}

#[test]
fn grep_with_nothing_matching_prints_nothing_and_exits_1() -> Result<()> {
    let lab = Lab::enter()?;
    let _built = every_state(&lab)?;
    let output = tcpscope(&["--grep", "CLOSING"])?;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(output.stderr.is_empty());
    Ok(())
}

#[test]
fn port_and_family_filters_keep_only_matching_sockets() -> Result<()> {
    let lab = Lab::enter()?;
    let built = every_state(&lab)?;
    let listener_port = built.ipv4_listener_port()?;

    let on_port = entries::of_json(&json(&["--json", "--port", &listener_port.to_string()])?)?;
    let expected: Vec<Entry> = built
        .entries
        .iter()
        .filter(|e| {
            e.local.port() == listener_port || e.peer.is_some_and(|p| p.port() == listener_port)
        })
        .copied()
        .collect();
    assert_eq!(on_port, expected);
    assert_eq!(on_port.len(), 26, "the listener and its 25 half-open");

    let sport = entries::of_json(&json(&["--json", "--sport", "80"])?)?;
    // An empty document is still a success: only --grep alone speaks through its status.
    assert!(
        sport.is_empty(),
        "SYN_SENT sockets have peer port 80, not local"
    );
    let dport = entries::of_json(&json(&["--json", "--dport", "80"])?)?;
    assert_eq!(dport.len(), 3, "the three SYN_SENT sockets");

    let v6 = entries::of_json(&json(&["--json", "-6"])?)?;
    assert_eq!(
        v6.len(),
        3,
        "the IPv6 listener and both ends of its connection"
    );
    assert!(v6.iter().all(|e| e.local.is_ipv6()));
    let v4 = entries::of_json(&json(&["--json", "-4"])?)?;
    assert_eq!(v4.len() + v6.len(), built.entries.len());
    Ok(())
}

#[test]
fn the_kernel_applies_the_port_filter_itself() -> Result<()> {
    let lab = Lab::enter()?;
    let built = every_state(&lab)?;
    let listener_port = built.ipv4_listener_port()?;
    // Ask the kernel directly, without the user-space check `snapshot` adds.
    let request = DumpRequest {
        states: StateSet::all(),
        ipv4: true,
        ipv6: true,
        bytecode: Some(bytecode::compile(&Condition::port(
            Side::Source,
            Comparison::Equal,
            listener_port,
        ))),
        info: false,
    };
    let mut records = Vec::new();
    SockDiag::open()?.dump_into(&request, &mut records)?;
    assert_eq!(records.len(), 26);
    assert!(records.iter().all(|r| r.local_port == listener_port));
    Ok(())
}

#[test]
fn processes_name_the_owner_of_each_socket() -> Result<()> {
    let lab = Lab::enter()?;
    let _built = every_state(&lab)?;
    let document = json(&["--json", "-p", "--grep", "LISTEN"])?;
    let sockets = document["sockets"].as_array().context("no sockets")?;
    assert_eq!(sockets.len(), 2);
    for socket in sockets {
        assert_eq!(socket["pid"], std::process::id(), "{socket}");
        assert!(socket["process"].is_string(), "{socket}");
    }
    let half_open = json(&["--json", "-p", "--grep", "SYN_RECV"])?;
    let first = &half_open["sockets"][0];
    assert!(
        first["pid"].is_null(),
        "request sockets belong to no process: {first}"
    );

    let table = tcpscope(&["--grep", "LISTEN", "-p"])?;
    let text = String::from_utf8(table.stdout)?;
    let header = text.lines().next().context("no header")?;
    assert!(header.ends_with("Process"), "{header}");
    let owner = format!("{}/", std::process::id());
    assert!(
        text.lines().skip(1).all(|line| line.contains(&owner)),
        "{text}"
    );
    Ok(())
}

#[test]
fn tcpext_counters_are_the_namespaces_own() -> Result<()> {
    let lab = Lab::enter()?;
    lab.set_syncookies(lab::Syncookies::OnOverflow)?;
    // A listener with a SYN queue of 8: the forged SYNs beyond it are answered with
    // cookies, which the namespace's SyncookiesSent counts.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let address: SocketAddr = "127.0.0.1:9000".parse()?;
    socket.bind(&address.into())?;
    socket.listen(8)?;
    let listener = match address {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => unreachable!("an IPv4 literal"),
    };
    lab.syn_flood(listener, 64, 3)?;

    let document = json(&["--json"])?;
    let sent = document["kernel"]["syncookies_sent"]
        .as_u64()
        .context("syncookies_sent")?;
    assert!(sent > 0, "cookies were sent: {}", document["kernel"]);
    assert_eq!(document["kernel"]["syncookies"], 1);
    Ok(())
}

#[test]
fn json_flags_a_random_source_flood_but_not_a_backlog_from_two_hosts() -> Result<()> {
    let lab = Lab::enter()?;
    let flooded = lab.listener_v4()?;
    let busy = lab.listener_v4()?;
    lab.syn_flood(flooded.addr_v4()?, 200, 5)?;
    lab.syns_from_two_hosts(busy.addr_v4()?, 200)?;
    lab.wait_for_count(TcpState::SynRecv, 400, SETTLE)?;

    let document = json(&["--json"])?;
    let listeners = document["syn_watch"]["listeners"]
        .as_array()
        .context("no syn_watch.listeners")?;
    let row = |port: u16| {
        listeners
            .iter()
            .find(|row| row["local_port"] == port)
            .with_context(|| format!("no row for port {port}: {listeners:?}"))
    };
    let flood = row(flooded.addr.port())?;
    assert_eq!(flood["half_open"], 200);
    assert_eq!(flood["distinct_sources"], 200);
    assert_eq!(flood["suspected_flood"], true);
    assert_eq!(flood["verdict"], "SYN flood suspected");
    assert_eq!(flood["local_addr"], "127.0.0.1");
    assert_eq!(flood["backlog"], 65535);

    let backlog = row(busy.addr.port())?;
    assert_eq!(backlog["half_open"], 200);
    assert_eq!(backlog["distinct_sources"], 2);
    assert_eq!(backlog["distinct_prefixes"], 1);
    assert_eq!(backlog["suspected_flood"], false);
    assert_eq!(backlog["verdict"], "backlog from few hosts");
    Ok(())
}
