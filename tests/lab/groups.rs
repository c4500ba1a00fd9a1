//! `--group-by`: counts per group against `ss` grouped by hand, in a private network
//! namespace, with processes in cgroup v2 groups made for the test.
//!
//! Request sockets (SYN_RECV) and TIME_WAIT remnants carry no cgroup: `ss --cgroup`
//! prints none for them, and both the oracle below and tcpscope count them in the
//! cgroup of their listener (the LISTEN socket of the same local port and the same or
//! a wildcard address).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::support::lab::cgroups::Cgroups;
use crate::support::lab::ss::{Probe, wait_until};
use crate::support::lab::{Lab, SETTLE, TcpState};
use crate::support::pty::Terminal;
use crate::support::scrape::Server;
use crate::support::{json, tcpscope, tcpscope_command};

/// Group label → state name (as `--json` spells it) → sockets.
type Grouped = BTreeMap<String, BTreeMap<String, u64>>;

/// The name `--json` gives the state `ss` calls `name`.
fn json_state(name: &str) -> String {
    match name {
        "ESTAB" => "ESTABLISHED".to_owned(),
        "FIN-WAIT-1" => "FIN_WAIT1".to_owned(),
        "FIN-WAIT-2" => "FIN_WAIT2".to_owned(),
        "UNCONN" => "CLOSED".to_owned(),
        other => other.replace('-', "_"),
    }
}

/// The `groups` of a `--json --group-by` document, by `field` of each entry (its
/// label, or its cgroup path), with the states that have sockets.
fn groups_of(document: &Value, field: &str) -> Result<Grouped> {
    let mut grouped = Grouped::new();
    for group in document["groups"].as_array().context("no groups array")? {
        let name = group[field].as_str().unwrap_or("-").to_owned();
        let counts = group["counts"]
            .as_object()
            .context("group without counts")?;
        let mut total = 0;
        for (state, count) in counts {
            let count = count.as_u64().context("count is not a number")?;
            total += count;
            if count > 0 {
                *grouped
                    .entry(name.clone())
                    .or_default()
                    .entry(state.clone())
                    .or_default() += count;
            }
        }
        ensure!(group["total"] == total, "{name}: total is not the sum");
    }
    Ok(grouped)
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}

/// What `ss -tanH` shows, by state: to wait until the kernel has settled.
fn ss_states(lab: &Lab) -> Result<BTreeMap<String, u64>> {
    let mut states = BTreeMap::new();
    for line in lab.ss_tanh()? {
        *states.entry(json_state(&line.state)).or_default() += 1;
    }
    Ok(states)
}

fn wait_for_states(lab: &Lab, wanted: &BTreeMap<String, u64>) -> Result<()> {
    wait_until(SETTLE, "the sockets to settle", || {
        let seen = ss_states(lab)?;
        Ok(if &seen == wanted {
            Probe::Done(())
        } else {
            Probe::NotYet(format!("{seen:?}"))
        })
    })
}

const PORT: u16 = 18080;

/// How long the view may take to show what a key asked for.
const VIEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A server in cgroup `a` listening on 127.0.0.1:18080 with five request sockets, two
/// connections established, one in CLOSE_WAIT and a TIME_WAIT remnant of one it closed
/// first; a client in cgroup `b` holding the other ends (two ESTABLISHED, one
/// FIN_WAIT2).
fn server_and_client(lab: &Lab) -> Result<Cgroups> {
    let mut cgroups = Cgroups::create(&["a", "b"])?;
    let mut server = cgroups.worker(lab, 0)?;
    let mut client = cgroups.worker(lab, 1)?;
    let listener = SocketAddrV4::new([127, 0, 0, 1].into(), PORT);
    server.listen(listener)?;
    let half_open = lab.syn_flood(listener, 5, 16)?;
    ensure!(half_open.sources.len() == 5);
    for _ in 0..4 {
        client.connect(PORT)?;
    }
    // The server takes the first connection and closes it; the client then closes its
    // end, leaving the server's in TIME_WAIT.
    server.accept_and_close()?;
    lab.wait_for_count(TcpState::CloseWait, 1, SETTLE)?;
    client.close(1)?;
    // The client half-closes the second: FIN_WAIT2 on its side, CLOSE_WAIT on the
    // server's (never accepted, still the server's).
    client.shutdown(2)?;
    wait_for_states(
        lab,
        &counts(&[
            ("LISTEN", 1),
            ("SYN_RECV", 5),
            ("ESTABLISHED", 4),
            ("CLOSE_WAIT", 1),
            ("FIN_WAIT2", 1),
            ("TIME_WAIT", 1),
        ]),
    )?;
    Ok(cgroups)
}

/// `ss -tanH --cgroup` grouped by cgroup path by hand: sockets without one count in
/// their listener's when their local port is one a listener holds, else under `-`.
fn ss_by_cgroup(lab: &Lab) -> Result<Grouped> {
    let output = lab.run("ss", &["-tanH", "--cgroup"])?;
    let lines: Vec<Vec<&str>> = output
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    let cgroup_of = |columns: &Vec<&str>| {
        columns
            .iter()
            .find_map(|c| c.strip_prefix("cgroup:"))
            .map(str::to_owned)
    };
    let mut listeners = BTreeMap::new();
    for columns in &lines {
        if columns.first() == Some(&"LISTEN") {
            let local: SocketAddr = columns[3].parse()?;
            listeners.insert(
                local.port(),
                cgroup_of(columns).context("listener without cgroup")?,
            );
        }
    }
    let mut grouped = Grouped::new();
    for columns in &lines {
        let local: SocketAddr = columns[3].parse()?;
        let cgroup = cgroup_of(columns)
            .or_else(|| listeners.get(&local.port()).cloned())
            .unwrap_or_else(|| "-".to_owned());
        *grouped
            .entry(cgroup)
            .or_default()
            .entry(json_state(columns[0]))
            .or_default() += 1;
    }
    Ok(grouped)
}

#[test]
fn group_by_cgroup_counts_what_ss_shows_per_cgroup_with_requests_and_time_wait_in_the_listeners()
-> Result<()> {
    let lab = Lab::enter()?;
    let cgroups = server_and_client(&lab)?;
    let (a, b) = (cgroups.path(0).to_owned(), cgroups.path(1).to_owned());

    let oracle = ss_by_cgroup(&lab)?;
    // The oracle itself must see what was built, or the comparison proves nothing.
    assert_eq!(
        oracle.get(&a),
        Some(&counts(&[
            ("LISTEN", 1),
            ("SYN_RECV", 5),
            ("ESTABLISHED", 2),
            ("CLOSE_WAIT", 1),
            ("TIME_WAIT", 1),
        ])),
        "ss: {oracle:#?}"
    );
    assert_eq!(
        oracle.get(&b),
        Some(&counts(&[("ESTABLISHED", 2), ("FIN_WAIT2", 1)])),
        "ss: {oracle:#?}"
    );

    let document = json(&["--json", "--group-by", "cgroup"])?;
    assert_eq!(groups_of(&document, "cgroup")?, oracle);
    // Not a unit, container or pod: labelled by the path.
    assert_eq!(groups_of(&document, "label")?.get(&a), oracle.get(&a));
    assert!(
        document["groups"]
            .as_array()
            .is_some_and(|g| g.iter().all(|g| g["key"] == "cgroup")),
    );
    Ok(())
}

#[test]
fn the_group_table_shows_each_cgroup_and_keeps_greps_exit_codes() -> Result<()> {
    let lab = Lab::enter()?;
    let cgroups = server_and_client(&lab)?;
    let output = tcpscope(&["--grep", "all", "--group-by", "cgroup"])?;
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout)?;
    let row = text
        .lines()
        .find(|line| line.starts_with(cgroups.path(0)))
        .with_context(|| format!("no row for {}:\n{text}", cgroups.path(0)))?;
    assert!(
        row.split_whitespace().any(|cell| cell == "10"),
        "total 10: {row}"
    );

    // Filtered to the sockets without a cgroup of their own, they still find their
    // listener's.
    let output = tcpscope(&["--grep", "syn-recv,time-wait", "--group-by", "cgroup"])?;
    let text = String::from_utf8(output.stdout)?;
    let row = text
        .lines()
        .find(|line| line.starts_with(cgroups.path(0)))
        .with_context(|| format!("no row for {}:\n{text}", cgroups.path(0)))?;
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[1..4],
        ["5", "1", "6"],
        "SYN_RECV, TIME_WAIT, total:\n{text}"
    );

    let none = tcpscope(&["--grep", "syn-sent", "--group-by", "cgroup"])?;
    assert_eq!(
        none.status.code(),
        Some(1),
        "no match is exit 1, as with --grep"
    );
    assert!(none.stdout.is_empty());
    Ok(())
}

/// `ss -tanH` grouped by hand the way `--group-by port` groups: the local port of a
/// listener and of the connections it accepted (same port, same or wildcard address),
/// `to PORT` for the rest.
fn ss_by_port(lab: &Lab) -> Result<Grouped> {
    let entries: Vec<_> = lab
        .ss_tanh()?
        .iter()
        .map(|line| Ok((line.entry()?, json_state(&line.state))))
        .collect::<Result<_>>()?;
    let listeners: Vec<SocketAddr> = entries
        .iter()
        .filter(|(entry, _)| entry.state == TcpState::Listen)
        .map(|(entry, _)| entry.local)
        .collect();
    let canonical = |ip: IpAddr| ip.to_canonical();
    let mut grouped = Grouped::new();
    for (entry, state) in &entries {
        let served = listeners.iter().any(|l| {
            l.port() == entry.local.port()
                && (l.ip().is_unspecified() || canonical(l.ip()) == canonical(entry.local.ip()))
        });
        let label = match entry.peer {
            Some(peer) if !served => format!("to {}", peer.port()),
            _ => entry.local.port().to_string(),
        };
        *grouped
            .entry(label)
            .or_default()
            .entry(state.clone())
            .or_default() += 1;
    }
    Ok(grouped)
}

#[test]
fn group_by_port_counts_what_ss_shows_per_port_with_requests_and_time_wait() -> Result<()> {
    let lab = Lab::enter()?;
    let v4: IpAddr = "127.0.0.1".parse()?;
    let listener = lab.listener_v4()?;
    let half_open = lab.syn_flood(listener.addr_v4()?, 7, 3)?;
    let established = lab.established(v4)?;
    let closing = lab.fin_wait2_close_wait(v4)?;
    let time_wait = lab.time_wait(v4)?;
    let syn_sent = lab.syn_sent(2)?;
    let mut entries = listener.entries();
    for part in [
        half_open.entries(),
        established.entries(),
        closing.entries(),
        time_wait.entries(),
        syn_sent.entries(),
    ] {
        entries.extend(part);
    }
    lab.wait_for_exactly(&entries, SETTLE)?;

    let oracle = ss_by_port(&lab)?;
    let port = listener.addr_v4()?.port().to_string();
    assert_eq!(
        oracle.get(&port).and_then(|c| c.get("SYN_RECV")),
        Some(&7),
        "ss: {oracle:#?}"
    );
    assert!(
        oracle.values().any(|c| c.contains_key("TIME_WAIT")),
        "ss: {oracle:#?}"
    );
    assert_eq!(
        oracle.get("to 80").and_then(|c| c.get("SYN_SENT")),
        Some(&2)
    );

    let document = json(&["--json", "--group-by", "port"])?;
    assert_eq!(groups_of(&document, "label")?, oracle);
    Ok(())
}

#[test]
fn an_unknown_key_or_process_without_p_is_a_usage_error_naming_what_is_wanted() -> Result<()> {
    let unknown = tcpscope(&["--grep", "all", "--group-by", "container"])?;
    assert_eq!(unknown.status.code(), Some(2));
    let message = String::from_utf8(unknown.stderr)?;
    assert!(
        message.contains("port, cgroup, peer, peer/24, process"),
        "{message}"
    );

    let process = tcpscope(&["--json", "--group-by", "process"])?;
    assert_eq!(process.status.code(), Some(2));
    assert!(String::from_utf8(process.stderr)?.contains("needs -p"));
    Ok(())
}

#[test]
fn serve_exports_connections_per_listening_port_and_per_cgroup() -> Result<()> {
    let lab = Lab::enter()?;
    let cgroups = server_and_client(&lab)?;
    let server = Server::start("[::1]:0", &["--interval", "200ms"])?;
    let port = PORT.to_string();
    let metrics = server.wait_for("the per-port series", |m| {
        m.value(
            "tcpscope_port_connections",
            &[("port", port.as_str()), ("state", "SYN_RECV")],
        )
        .is_some()
    })?;
    let per_port = |state: &str| {
        metrics.value(
            "tcpscope_port_connections",
            &[("port", port.as_str()), ("state", state)],
        )
    };
    assert_eq!(per_port("SYN_RECV"), Some(5.0), "{}", metrics.text);
    assert_eq!(per_port("TIME_WAIT"), Some(1.0));
    assert_eq!(per_port("ESTABLISHED"), Some(2.0));
    assert_eq!(
        per_port("FIN_WAIT2"),
        None,
        "the client's side is not the port's"
    );

    let per_cgroup = |index: usize, state: &str| {
        let path = cgroups.path(index);
        metrics.value(
            "tcpscope_cgroup_connections",
            &[("cgroup", path), ("unit", path), ("state", state)],
        )
    };
    assert_eq!(per_cgroup(0, "SYN_RECV"), Some(5.0), "{}", metrics.text);
    assert_eq!(per_cgroup(0, "LISTEN"), Some(1.0));
    assert_eq!(per_cgroup(1, "FIN_WAIT2"), Some(1.0));
    assert_eq!(per_cgroup(1, "ESTABLISHED"), Some(2.0));
    server.terminate()?;
    Ok(())
}

#[test]
fn in_the_view_g_groups_by_cgroup_and_enter_shows_only_that_cgroups_connections() -> Result<()> {
    let lab = Lab::enter()?;
    let cgroups = server_and_client(&lab)?;
    let server = cgroups.path(0).to_owned();
    let mut terminal = Terminal::spawn(tcpscope_command(&[]), 120, 30)?;
    terminal.wait_for(VIEW_TIMEOUT, "the view", |screen| {
        screen.contains("Overview") && screen.contains("ESTABLISHED")
    })?;
    terminal.send(b"5")?;
    terminal.wait_for(VIEW_TIMEOUT, "the Groups tab", |screen| {
        screen.contains("Groups by port")
    })?;
    terminal.send(b"g")?;
    let screen = terminal.wait_for(VIEW_TIMEOUT, "groups by cgroup", |screen| {
        screen.contains("Groups by cgroup") && screen.contains(server.as_str())
    })?;
    // The server's cgroup holds the most (10 sockets): first, and selected.
    let first = screen
        .lines()
        .find(|line| line.contains("/tcpscope-lab-"))
        .context("no cgroup row")?;
    ensure!(
        first.contains(server.as_str()),
        "first row: {first}\n{screen}"
    );
    ensure!(
        first
            .split_whitespace()
            .any(|cell| cell.trim_matches('│') == "10"),
        "{first}"
    );
    terminal.send(b"\r")?;
    let screen = terminal.wait_for(VIEW_TIMEOUT, "the cgroup's connections", |screen| {
        screen.contains(&format!("cgroup:{server}")) && screen.contains("SYN_RECV")
    })?;
    let locals = local_addresses(&screen);
    ensure!(
        locals.len() == 10 && locals.iter().all(|local| *local == "127.0.0.1:18080"),
        "the server cgroup's 10 sockets, all local to :18080: {locals:#?}\n{screen}"
    );
    ensure!(
        !screen.contains("FIN_WAIT2"),
        "the client's half-closed socket is another cgroup's:\n{screen}"
    );
    terminal.send(b"q")?;
    terminal.wait(VIEW_TIMEOUT)?;
    Ok(())
}

/// A listener on [`PORT`] in a cgroup of its own, flooded with 300 half-open
/// connections from scattered sources.
fn flooded_listener(lab: &Lab) -> Result<Cgroups> {
    let mut cgroups = Cgroups::create(&["flooded"])?;
    let mut server = cgroups.worker(lab, 0)?;
    let listener = SocketAddrV4::new([127, 0, 0, 1].into(), PORT);
    server.listen(listener)?;
    lab.syn_flood(listener, 300, 5)?;
    lab.wait_for_count(TcpState::SynRecv, 300, SETTLE)?;
    Ok(cgroups)
}

#[test]
fn a_syn_flood_finding_names_the_cgroup_of_the_listener_it_floods() -> Result<()> {
    let lab = Lab::enter()?;
    let cgroups = flooded_listener(&lab)?;

    let document = json(&["--json"])?;
    let flood = document["findings"]
        .as_array()
        .and_then(|findings| findings.iter().find(|f| f["kind"] == "syn_flood"))
        .with_context(|| format!("no syn_flood finding: {:#}", document["findings"]))?;
    let path = cgroups.path(0);
    let summary = flood["summary"].as_str().unwrap_or_default();
    assert!(
        summary.ends_with(&format!("(in {path})")),
        "the request sockets count in their listener's cgroup: {summary}"
    );
    assert_eq!(flood["evidence"]["cgroup"], path);
    Ok(())
}

#[test]
fn in_the_view_a_syn_flood_finding_names_the_cgroup_of_the_listener_it_floods() -> Result<()> {
    let lab = Lab::enter()?;
    let cgroups = flooded_listener(&lab)?;

    let path = cgroups.path(0).to_owned();
    let mut terminal = Terminal::spawn(tcpscope_command(&[]), 160, 40)?;
    // The view places the finding on its worker: the overview names the cgroup once
    // the worker has answered, and keeps naming it poll after poll.
    let placed = format!("(in {path})");
    terminal.wait_for(VIEW_TIMEOUT, "the flood placed in its cgroup", |screen| {
        screen.contains("SYN flood") && screen.contains(&placed)
    })?;
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let screen = terminal.wait_for(VIEW_TIMEOUT, "the flood still placed", |screen| {
        screen.contains("SYN flood")
    })?;
    ensure!(
        screen.contains(&placed),
        "a later poll keeps the cgroup:\n{screen}"
    );
    terminal.send(b"q")?;
    terminal.wait(VIEW_TIMEOUT)?;
    Ok(())
}

#[test]
fn in_the_view_a_cgroup_word_typed_on_the_filter_line_keeps_that_cgroups_connections() -> Result<()>
{
    let lab = Lab::enter()?;
    let cgroups = server_and_client(&lab)?;
    let server = cgroups.path(0).to_owned();
    let mut terminal = Terminal::spawn(tcpscope_command(&[]), 120, 30)?;
    terminal.wait_for(VIEW_TIMEOUT, "the view", |screen| {
        screen.contains("Overview") && screen.contains("ESTABLISHED")
    })?;
    // Straight to the filter line: no Groups tab has named the cgroups first.
    terminal.send(format!("2/cgroup:{server}\r").as_bytes())?;
    let screen = terminal.wait_for(VIEW_TIMEOUT, "the cgroup's connections", |screen| {
        screen.contains(&format!("cgroup:{server}")) && screen.contains("SYN_RECV")
    })?;
    let locals = local_addresses(&screen);
    ensure!(
        locals.len() == 10 && locals.iter().all(|local| *local == "127.0.0.1:18080"),
        "the server cgroup's 10 sockets, all local to :18080: {locals:#?}\n{screen}"
    );
    terminal.send(b"q")?;
    terminal.wait(VIEW_TIMEOUT)?;
    Ok(())
}

/// The local address of each connection row on the view's screen: a row's first
/// address is its local one.
fn local_addresses(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|cell| cell.starts_with("127."))
        })
        .collect()
}
