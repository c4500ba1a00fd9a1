//! The kernel's destroy events, read directly: what they carry, and what happens when
//! more arrive than the queue holds.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use tcpscope::kernel::events::DestroyEvents;
use tcpscope::snapshot::SocketRecord;
use tcpscope::tcp::State;

use crate::support::lab::Lab;

fn endpoints(record: &SocketRecord) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(record.local_addr, record.local_port),
        SocketAddr::new(record.remote_addr, record.remote_port),
    )
}

/// Drains until `enough` says so or a few seconds pass (events are asynchronous).
fn drain_until(
    events: &mut DestroyEvents,
    enough: impl Fn(&[SocketRecord]) -> bool,
) -> Result<(Vec<SocketRecord>, u32)> {
    let mut records = Vec::new();
    let mut overflows = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !enough(&records) && Instant::now() < deadline {
        events.wait(Duration::from_millis(100))?;
        overflows += events.drain(&mut records)?.overflows;
    }
    Ok((records, overflows))
}

#[test]
fn a_closed_connection_is_announced_with_both_endpoints() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut events = DestroyEvents::subscribe(true, true)?;
    let listener = TcpListener::bind("127.0.0.1:7200")?;
    let mut closed = HashSet::new();
    for _ in 0..5 {
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        closed.insert((client.local_addr()?, server.local_addr()?));
        closed.insert((server.local_addr()?, client.local_addr()?));
        drop(client);
        drop(server);
    }
    let (records, overflows) = drain_until(&mut events, |records| {
        closed
            .iter()
            .all(|pair| records.iter().any(|r| endpoints(r) == *pair))
    })?;
    assert_eq!(overflows, 0);
    for pair in &closed {
        let record = records.iter().find(|r| endpoints(r) == *pair);
        let record = record.unwrap_or_else(|| panic!("no destroy event for {pair:?}"));
        assert_eq!(
            record.state,
            State::Closed,
            "the kernel frees a socket once CLOSED"
        );
        assert_ne!(record.cookie, 0);
    }
    Ok(())
}

#[test]
fn an_overflowing_queue_is_reported_not_hidden() -> Result<()> {
    let _lab = Lab::enter()?;
    // A small queue, so that the burst below overflows it whatever net.core.rmem_max
    // allows on this machine.
    let mut events = DestroyEvents::subscribe_with_queue(true, false, 16 * 1024)?;
    let listener = TcpListener::bind("127.0.0.1:7201")?;
    // Far more events than the queue holds, none read until the end.
    let connections = 2_000;
    for _ in 0..connections {
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        drop(client);
        drop(server);
    }
    // Read until the kernel has nothing more to say.
    let mut records = Vec::new();
    let mut overflows = 0;
    while events.wait(Duration::from_millis(300))? {
        overflows += events.drain(&mut records)?.overflows;
    }
    ensure!(
        overflows > 0,
        "{} of {} events arrived and no overflow was reported",
        records.len(),
        2 * connections
    );
    assert!(records.len() < 2 * connections);
    Ok(())
}
