//! The lab checked against `ss`: every builder makes exactly the sockets it promises, in
//! exactly the states it promises, and holds them there.
//!
//! Each test enters its own namespace (each test runs on its own thread). Without root these
//! tests fail, with the lab's message saying why; they never skip.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::support::lab;
use crate::support::lab::{Entry, Lab, SETTLE, TcpState};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Waits until `ss` lists exactly `expected`, then checks that it still does a moment later:
/// the lab promises states that are held, not passed through.
fn assert_held(lab: &Lab, expected: &[Entry]) -> Result<()> {
    lab.wait_for_exactly(expected, SETTLE)
        .context("ss never listed exactly what the builder promised")?;
    thread::sleep(Duration::from_millis(200));
    lab.wait_for_exactly(expected, Duration::ZERO)
        .context("ss listed what the builder promised, but not for long")?;
    Ok(())
}

fn entries_in(entries: &[Entry], state: TcpState) -> usize {
    entries.iter().filter(|entry| entry.state == state).count()
}

#[test]
fn a_listener_on_127_0_0_1_is_listed_as_listen() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    assert_held(&lab, &listener.entries())
}

#[test]
fn a_listener_on_ipv6_loopback_is_listed_as_listen() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v6()?;
    assert_held(&lab, &listener.entries())
}

#[test]
fn an_ipv4_connection_is_established_at_both_ends() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = lab.established(V4)?;
    assert_held(&lab, &connection.entries())
}

#[test]
fn an_ipv6_connection_is_established_at_both_ends() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = lab.established(V6)?;
    assert_held(&lab, &connection.entries())
}

#[test]
fn a_half_close_leaves_the_closer_in_fin_wait2_and_its_peer_in_close_wait() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = lab.fin_wait2_close_wait(V4)?;
    let expected = connection.entries();
    ensure!(entries_in(&expected, TcpState::FinWait2) == 1);
    ensure!(entries_in(&expected, TcpState::CloseWait) == 1);
    assert_held(&lab, &expected)
}

#[test]
fn an_active_close_leaves_the_closer_in_time_wait_and_nothing_else() -> Result<()> {
    let lab = Lab::enter()?;
    let time_wait = lab.time_wait(V4)?;
    assert_held(&lab, &time_wait.entries())
}

#[test]
fn a_fin_queued_behind_unread_data_holds_fin_wait1() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = lab.fin_wait1(V4)?;
    let expected = connection.entries();
    ensure!(entries_in(&expected, TcpState::FinWait1) == 1);
    ensure!(entries_in(&expected, TcpState::Established) == 1);
    assert_held(&lab, &expected)
}

#[test]
fn a_fin_queued_behind_unread_data_after_close_wait_holds_last_ack() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = lab.last_ack(V4)?;
    let expected = connection.entries();
    ensure!(entries_in(&expected, TcpState::LastAck) == 1);
    ensure!(entries_in(&expected, TcpState::FinWait2) == 1);
    assert_held(&lab, &expected)
}

#[test]
fn ipv6_connections_reach_the_closing_states_too() -> Result<()> {
    let lab = Lab::enter()?;
    let half_closed = lab.fin_wait2_close_wait(V6)?;
    let fin_wait1 = lab.fin_wait1(V6)?;
    let last_ack = lab.last_ack(V6)?;
    let time_wait = lab.time_wait(V6)?;
    let expected: Vec<Entry> = [
        half_closed.entries(),
        fin_wait1.entries(),
        last_ack.entries(),
        time_wait.entries(),
    ]
    .concat();
    assert_held(&lab, &expected)
}

#[test]
fn a_connect_into_the_sink_stays_syn_sent() -> Result<()> {
    let lab = Lab::enter()?;
    let syn_sent = lab.syn_sent(3)?;
    let expected = syn_sent.entries();
    ensure!(entries_in(&expected, TcpState::SynSent) == 3);
    assert_held(&lab, &expected)
}

#[test]
fn a_thousand_forged_syns_from_a_flood_of_sources_stay_syn_recv() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    let started = Instant::now();
    let flood = lab.syn_flood(listener.addr_v4()?, 1000, 7)?;
    let sending = started.elapsed();
    ensure!(
        sending < Duration::from_millis(500),
        "sending 1000 SYNs took {sending:?}"
    );
    let spread: std::collections::HashSet<[u8; 3]> = flood
        .sources
        .iter()
        .map(|source| {
            let [a, b, c, _] = source.ip().octets();
            [a, b, c]
        })
        .collect();
    ensure!(
        spread.len() > 900,
        "the flood came from only {} /24s",
        spread.len()
    );
    let expected = [listener.entries(), flood.entries()].concat();
    assert_held(&lab, &expected)
}

#[test]
fn forged_syns_from_two_hosts_fill_a_backlog_with_syn_recv() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    let busy = lab.syns_from_two_hosts(listener.addr_v4()?, 3000)?;
    let hosts: std::collections::HashSet<Ipv4Addr> =
        busy.sources.iter().map(|source| *source.ip()).collect();
    ensure!(
        hosts.len() == 2,
        "the backlog came from {} hosts",
        hosts.len()
    );
    let expected = [listener.entries(), busy.entries()].concat();
    assert_held(&lab, &expected)
}

#[test]
fn a_forged_syn_carries_valid_ip_and_tcp_checksums() -> Result<()> {
    let source = SocketAddrV4::new(Ipv4Addr::new(127, 64, 1, 2), 40000);
    let destination = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080);
    let packet = lab::syn::syn_packet(source, destination, 0x1234_5678);
    let (ip, tcp) = packet.split_at(20);
    ensure!(
        lab::syn::internet_checksum(&[ip]) == 0,
        "bad IPv4 header checksum"
    );
    let pseudo_header = lab::syn::pseudo_header(source, destination, tcp.len());
    ensure!(
        lab::syn::internet_checksum(&[&pseudo_header, tcp]) == 0,
        "bad TCP checksum"
    );
    ensure!(tcp[13] == 0x02, "the packet is not a bare SYN");
    Ok(())
}

#[test]
fn twenty_thousand_established_sockets_are_held_across_child_processes() -> Result<()> {
    let lab = Lab::enter()?;
    let started = Instant::now();
    let crowd = lab.crowd(20_000)?;
    let building = started.elapsed();
    ensure!(crowd.sockets() == 20_000);
    ensure!(
        crowd.holders().len() >= 2,
        "20,000 sockets do not fit in one process here"
    );
    ensure!(
        building < Duration::from_secs(10),
        "building took {building:?}"
    );
    ensure!(lab.ss_count(TcpState::Established)? == 20_000);
    lab.wait_for_exactly(&crowd.entries(), Duration::ZERO)?;
    Ok(())
}

#[test]
fn five_thousand_time_wait_sockets_need_no_descriptors() -> Result<()> {
    let lab = Lab::enter()?;
    let crowd = lab.time_wait_crowd(5_000)?;
    ensure!(crowd.sockets() == 5_000);
    lab.wait_for_exactly(&crowd.entries(), SETTLE)?;
    Ok(())
}

#[test]
fn the_lab_changes_neither_the_hosts_sysctls_nor_its_sockets() -> Result<()> {
    let before = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .context("reading the host's somaxconn")?;
    // A thread spawned before entering stays in the host's namespace.
    let (ask, questions) = mpsc::channel::<()>();
    let (tell, answers) = mpsc::channel();
    let host = thread::spawn(move || {
        for () in questions {
            let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn");
            let ss = std::process::Command::new("ss").args(["-tanH"]).output();
            if tell.send((somaxconn, ss)).is_err() {
                break;
            }
        }
    });
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    ensure!(lab.sysctl("net.core.somaxconn")? == lab::LISTEN_BACKLOG.to_string());
    ask.send(())?;
    let (after, ss) = answers.recv()?;
    drop(ask);
    host.join().ok().context("the host thread panicked")?;
    let after = after.context("reading the host's somaxconn from the host thread")?;
    ensure!(
        before == after,
        "the host's somaxconn went from {before:?} to {after:?}"
    );
    let ss = String::from_utf8(ss.context("running ss on the host")?.stdout)?;
    let shown = listener.addr.to_string();
    ensure!(
        !ss.lines().any(|line| line.contains(&shown)),
        "the host sees the lab's listener {shown}"
    );
    Ok(())
}

#[test]
fn dropping_the_lab_kills_its_crowd_holders() -> Result<()> {
    let lab = Lab::enter()?;
    let crowd = lab.crowd(2_000)?;
    let holders = crowd.holders().to_vec();
    ensure!(!holders.is_empty());
    for pid in &holders {
        ensure!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "holder {pid} is not running"
        );
    }
    drop(lab);
    for pid in &holders {
        // Killed and reaped: no process, not even a zombie.
        ensure!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "holder {pid} outlived the lab"
        );
    }
    Ok(())
}

#[test]
fn dropping_the_lab_returns_the_thread_to_its_namespace() -> Result<()> {
    let namespace = || {
        std::fs::read_link("/proc/thread-self/ns/net").context("reading this thread's namespace")
    };
    let home = namespace()?;
    let lab = Lab::enter()?;
    ensure!(
        namespace()? != home,
        "entering the lab did not change namespace"
    );
    drop(lab);
    ensure!(
        namespace()? == home,
        "the thread stayed in the lab's namespace"
    );
    Ok(())
}
