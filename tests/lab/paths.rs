//! The findings about peers and paths, each built for real inside a private network
//! namespace and asserted with its subject and evidence in `--json` or
//! `--watch --json`, each beside a negative twin that must not raise it: connects into
//! the lab's sink (`connect_stalled`, with `-p` naming the process waiting), a server that never reads (`peer_not_reading`),
//! a receiving socket whose filter drops every segment (`retransmitting_path`), and a
//! client opening 200 connections a second (`connection_churn`). The view names a
//! stalled connect in its Findings panel, in a pseudo-terminal.
//!
//! Each test enters its own lab and fails, never skips, without root.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use socket2::Socket;

use crate::support::lab::Lab;
use crate::support::lab::sockets::start_connect;
use crate::support::pty::Terminal;
use crate::support::stream::Stream;
use crate::support::{json, tcpscope_command};

/// An address in the lab's sink: a SYN sent there is never answered.
const SILENT: Ipv4Addr = Ipv4Addr::new(127, 64, 0, 7);

/// The findings of `kind` in a one-shot `--json` reading.
fn findings_of(kind: &str) -> Result<Vec<Value>> {
    let reading = json(&["--json"])?;
    let findings = reading["findings"]
        .as_array()
        .context("--json has no findings[]")?;
    Ok(findings
        .iter()
        .filter(|finding| finding["kind"] == kind)
        .cloned()
        .collect())
}

/// `--watch --json` polling every 200 ms, so that a finding is raised within a second.
/// Every poll is a full dump (`--max-cpu 0`): on a machine loaded by the rest of the
/// suite the CPU budget would space the dumps out, and these tests are about the
/// findings, not the budget.
fn watch() -> Result<Stream> {
    Stream::watch(&["--interval", "200ms", "--max-cpu", "0"])
}

/// Whether `line` says that a finding of `kind` was raised.
fn raised(line: &Value, kind: &str) -> bool {
    line["type"] == "finding" && line["event"] == "raised" && line["kind"] == kind
}

/// `count` non-blocking connects to `peer`, left waiting for their answers.
fn connects(peer: SocketAddr, count: usize) -> Result<Vec<Socket>> {
    (0..count).map(|_| start_connect(peer)).collect()
}

/// A listener on 127.0.0.1 at a port the kernel picks.
fn listener() -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a listener")?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// A connection to `listener`: the client's end and the server's.
fn connection(listener: &TcpListener) -> Result<(TcpStream, TcpStream)> {
    let client = TcpStream::connect(listener.local_addr()?).context("connecting")?;
    let (server, _) = listener.accept().context("accepting")?;
    Ok((client, server))
}

#[test]
fn connects_into_an_address_that_never_answers_are_connect_stalled() -> Result<()> {
    let _lab = Lab::enter()?;
    let peer = SocketAddr::V4(SocketAddrV4::new(SILENT, 80));
    let _waiting = connects(peer, 6)?;
    // The first SYN times out after a second; its first retransmit shows in the timer.
    thread::sleep(Duration::from_millis(1_300));
    let found = findings_of("connect_stalled")?;
    ensure!(found.len() == 1, "connect_stalled findings: {found:#?}");
    let finding = &found[0];
    assert_eq!(finding["subject"], "remote 127.64.0.7:80");
    assert_eq!(finding["severity"], "warning");
    assert_eq!(finding["evidence"]["connecting"], 6);
    let oldest = finding["evidence"]["oldest_seconds"]
        .as_f64()
        .context("oldest")?;
    assert!(oldest >= 1.0, "oldest {oldest}");
    Ok(())
}

#[test]
fn with_p_a_stalled_connect_names_the_local_process_waiting() -> Result<()> {
    let _lab = Lab::enter()?;
    let peer = SocketAddr::V4(SocketAddrV4::new(SILENT, 80));
    let _waiting = connects(peer, 6)?;
    thread::sleep(Duration::from_millis(1_300));
    let reading = json(&["--json", "-p"])?;
    let finding = reading["findings"]
        .as_array()
        .context("--json has no findings[]")?
        .iter()
        .find(|finding| finding["kind"] == "connect_stalled")
        .context("no connect_stalled finding")?;
    let waiting = format!("(pid {}, 6 sockets)", std::process::id());
    let processes = finding["evidence"]["processes"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        processes.contains(&waiting),
        "processes {processes:?}, want {waiting}"
    );
    let summary = finding["summary"].as_str().unwrap_or_default();
    ensure!(summary.contains("; waiting: "), "summary {summary:?}");
    Ok(())
}

/// What the view's Findings panel says of six connects into the lab's sink.
const STALLED_SUMMARY: &str = "connections to 127.64.0.7:80 are not answered";

/// The view, polling every 200 ms in a lab where six connects wait on the sink, once
/// its Findings panel names them; and the screen then. The lab and the connects live as
/// long as the returned values.
fn view_over_a_stalled_upstream() -> Result<(Lab, Vec<Socket>, Terminal, String)> {
    let lab = Lab::enter()?;
    let waiting = connects(SocketAddr::V4(SocketAddrV4::new(SILENT, 80)), 6)?;
    let mut command = tcpscope_command(&[]);
    command.args(["--interval", "200ms"]);
    let terminal = Terminal::spawn(command, 120, 40)?;
    let screen = terminal.wait_for(Duration::from_secs(20), "the stalled connects", |screen| {
        screen.contains(STALLED_SUMMARY)
    })?;
    Ok((lab, waiting, terminal, screen))
}

#[test]
fn the_view_names_stalled_connects_in_its_findings_panel_and_enter_shows_the_evidence() -> Result<()>
{
    let (_lab, _waiting, mut terminal, screen) = view_over_a_stalled_upstream()?;
    let summary = STALLED_SUMMARY;
    let line = screen
        .lines()
        .find(|line| line.contains(summary))
        .unwrap_or_default();
    ensure!(
        line.contains("warning") && line.contains("connect_stalled"),
        "the finding's line lacks its severity or kind: {line}\n{screen}"
    );
    terminal.send(b"\r")?;
    let screen = terminal.wait_for(
        Duration::from_secs(20),
        "the finding's evidence",
        |screen| screen.contains("Finding (Esc to close)") && screen.contains("connecting: 6"),
    )?;
    for shown in [
        "oldest_seconds: ",
        "most_retransmits: ",
        "Remedy",
        "firewalls",
    ] {
        ensure!(
            screen.contains(shown),
            "no {shown:?} in the opened finding:\n{screen}"
        );
    }
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

#[test]
fn the_view_names_the_processes_waiting_on_a_stalled_upstream() -> Result<()> {
    let (_lab, _waiting, mut terminal, _) = view_over_a_stalled_upstream()?;
    terminal.send(b"\r")?;
    // The view's walk over /proc reaches the pollers' findings at the next poll.
    let waiting = format!("(pid {}, 6 sockets)", std::process::id());
    terminal.wait_for(
        Duration::from_secs(20),
        "the processes waiting, in the finding's evidence",
        |screen| screen.contains("processes: ") && screen.contains(&waiting),
    )?;
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}

#[test]
fn connects_to_an_upstream_that_answers_are_not_stalled() -> Result<()> {
    let _lab = Lab::enter()?;
    let (listener, addr) = listener()?;
    let sockets = connects(addr, 6)?;
    thread::sleep(Duration::from_millis(1_300));
    let found = findings_of("connect_stalled")?;
    ensure!(found.is_empty(), "connect_stalled findings: {found:#?}");
    drop((sockets, listener));
    Ok(())
}

/// Writes to `stream` until its send buffer is full (the peer's window is closed).
fn write_until_full(stream: &mut TcpStream) -> Result<usize> {
    stream.set_nonblocking(true)?;
    let chunk = [0x5a_u8; 65_536];
    let mut written = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut full_since: Option<Instant> = None;
    while Instant::now() < deadline {
        match stream.write(&chunk) {
            Ok(n) => {
                written += n;
                full_since = None;
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                // Full for a while: the window is shut, not just momentarily busy.
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    return Ok(written);
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(error) => return Err(error).context("writing"),
        }
    }
    bail!("the send buffer never filled after {written} bytes")
}

#[test]
fn a_server_that_never_reads_is_named_peer_not_reading_with_its_unread_bytes() -> Result<()> {
    let _lab = Lab::enter()?;
    let (listener, addr) = listener()?;
    let (mut client, _server) = connection(&listener)?;
    write_until_full(&mut client)?;
    let found = findings_of("peer_not_reading")?;
    ensure!(found.len() == 1, "peer_not_reading findings: {found:#?}");
    let finding = &found[0];
    assert_eq!(finding["subject"], format!("remote {addr}"));
    assert_eq!(finding["evidence"]["zero_window"], 1);
    let send_q = finding["evidence"]["largest_send_q"]
        .as_u64()
        .context("send_q")?;
    assert!(send_q > 0, "Send-Q {send_q}");
    // The reader is the server's socket here: what it holds unread is its Recv-Q.
    assert_eq!(finding["evidence"]["reader_local_port"], addr.port());
    let unread = finding["evidence"]["reader_recv_q"]
        .as_u64()
        .context("recv_q")?;
    assert!(unread > 0, "Recv-Q {unread}");
    Ok(())
}

/// A thread reading everything `stream` brings until it ends.
fn drain(mut stream: TcpStream) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buffer = [0u8; 65_536];
        while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
    })
}

#[test]
fn a_server_that_reads_while_the_client_writes_is_not_peer_not_reading() -> Result<()> {
    let _lab = Lab::enter()?;
    let (listener, _) = listener()?;
    let (mut client, server) = connection(&listener)?;
    let reader = drain(server);
    let mut stream = watch()?;
    // A steady stream the reader keeps up with: 64 KiB every 10 ms, 6.4 MB/s.
    let chunk = [0x5a_u8; 65_536];
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        client.write_all(&chunk).context("writing")?;
        thread::sleep(Duration::from_millis(10));
    }
    client.shutdown(Shutdown::Write)?;
    reader.join().ok();
    stream.collect(Duration::from_millis(600))?;
    ensure!(
        !stream
            .seen()
            .iter()
            .any(|line| raised(&line.value, "peer_not_reading")),
        "peer_not_reading raised while the server read"
    );
    Ok(())
}

/// Makes `socket` drop every segment that arrives for it: a classic BPF program of one
/// instruction, `ret #0`, attached with `SO_ATTACH_FILTER`. TCP runs the filter on each
/// segment before taking it in (`tcp_filter()`), so the peer's data is lost on arrival
/// and the peer retransmits it, as over a lossy path.
fn drop_everything_arriving(socket: &TcpStream) -> Result<()> {
    let mut program = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let filter = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `filter` points at `program`, which outlives the call; the kernel copies
    // the program.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const filter).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    ensure!(
        result == 0,
        "SO_ATTACH_FILTER: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

#[test]
fn segments_dropped_on_arrival_are_named_retransmitting_path_by_network() -> Result<()> {
    let _lab = Lab::enter()?;
    let (listener, _) = listener()?;
    let (mut client, server) = connection(&listener)?;
    drop_everything_arriving(&server)?;
    let mut stream = watch()?;
    client.write_all(b"a request that never arrives")?;
    // The RTO on loopback starts at 200 ms and doubles: the third retransmission is
    // about 1.4 s in.
    let line = stream.wait_for(
        "a retransmitting_path finding",
        Duration::from_secs(15),
        |line| raised(line, "retransmitting_path"),
    )?;
    assert_eq!(line["subject"], "127.0.0.0/24");
    assert_eq!(line["evidence"]["connections"], 1);
    assert_eq!(line["evidence"]["remote_addresses"], "127.0.0.1");
    let most = line["evidence"]["most_retransmits"]
        .as_u64()
        .context("most")?;
    assert!(most >= 3, "most retransmits {most}");
    drop(server);
    Ok(())
}

#[test]
fn a_clean_path_with_data_in_flight_is_not_retransmitting() -> Result<()> {
    let _lab = Lab::enter()?;
    let (listener, _) = listener()?;
    let (mut client, server) = connection(&listener)?;
    let reader = drain(server);
    let mut stream = watch()?;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        client.write_all(&[0x5a_u8; 16_384])?;
        thread::sleep(Duration::from_millis(5));
    }
    client.shutdown(Shutdown::Write)?;
    reader.join().ok();
    stream.collect(Duration::from_millis(600))?;
    ensure!(
        !stream
            .seen()
            .iter()
            .any(|line| raised(&line.value, "retransmitting_path")),
        "retransmitting_path raised on a clean path"
    );
    Ok(())
}

/// A server on 127.0.0.1:`port` that accepts every connection and closes it once the
/// client has; stops when `stop` is set.
fn closing_server(port: u16, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    listener.set_nonblocking(true)?;
    Ok(thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((connection, _)) => {
                    let _ = connection.set_nonblocking(false);
                    drain(connection);
                }
                Err(_) => thread::sleep(Duration::from_millis(1)),
            }
        }
    }))
}

/// A port outside the ephemeral range, as a service's is.
const SERVICE_PORT: u16 = 8080;

#[test]
fn a_client_opening_200_connections_a_second_is_named_connection_churn() -> Result<()> {
    let _lab = Lab::enter()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = closing_server(SERVICE_PORT, Arc::clone(&stop))?;
    let mut stream = watch()?;
    let service = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), SERVICE_PORT);
    let client = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || -> Result<()> {
            // One connection every 5 ms, kept to that pace: 200 a second.
            let start = Instant::now();
            let mut opened = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let connection = TcpStream::connect(service)?;
                drop(connection);
                opened += 1;
                let next = start + Duration::from_millis(5) * opened;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
            Ok(())
        })
    };
    let found = stream.wait_for(
        "a connection_churn finding",
        Duration::from_secs(10),
        |line| raised(line, "connection_churn") && line["subject"] == "remote 127.0.0.1:8080",
    );
    stop.store(true, Ordering::Relaxed);
    client
        .join()
        .map_err(|_| anyhow::anyhow!("the client panicked"))??;
    server.join().ok();
    let line = found?;
    let rate = line["evidence"]["per_second"].as_f64().context("rate")?;
    assert!((100.0..=260.0).contains(&rate), "rate {rate}");
    let time_wait = line["evidence"]["time_wait"]
        .as_u64()
        .context("time_wait")?;
    assert!(time_wait >= 50, "TIME_WAIT left {time_wait}");
    Ok(())
}

#[test]
fn a_client_keeping_a_pool_of_ten_connections_is_not_churn() -> Result<()> {
    let _lab = Lab::enter()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = closing_server(SERVICE_PORT, Arc::clone(&stop))?;
    let mut stream = watch()?;
    let service = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), SERVICE_PORT);
    let mut pool = (0..10)
        .map(|_| TcpStream::connect(service))
        .collect::<std::io::Result<Vec<_>>>()?;
    // As many requests as the churning client makes, over the same ten connections.
    let until = Instant::now() + Duration::from_secs(3);
    let mut request = 0usize;
    while Instant::now() < until {
        pool[request % 10].write_all(b"GET / HTTP/1.1\r\n\r\n")?;
        request += 1;
        thread::sleep(Duration::from_millis(5));
    }
    stream.collect(Duration::from_millis(400))?;
    stop.store(true, Ordering::Relaxed);
    drop(pool);
    server.join().ok();
    ensure!(
        !stream
            .seen()
            .iter()
            .any(|line| raised(&line.value, "connection_churn")),
        "connection_churn raised for a pool of ten"
    );
    Ok(())
}
