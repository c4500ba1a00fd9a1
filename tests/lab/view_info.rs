//! The view's tcp_info columns end to end (`-i`, and `i` at run time): the real binary
//! in a pseudo-terminal, in a private network namespace with one loopback connection
//! that has moved data. Fails, never skips, without root.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::support::lab::Connection;
use crate::support::lab::Lab;
use crate::support::pty::Terminal;
use crate::support::tcpscope_command;

const SCREEN_TIMEOUT: Duration = Duration::from_secs(20);

/// A loopback connection whose client sent 64 KiB that the server read.
fn moved_data(lab: &Lab) -> Result<Connection> {
    sent(lab, 64 * 1024)
}

/// A loopback connection whose client sent `bytes` that the server read.
fn sent(lab: &Lab, bytes: usize) -> Result<Connection> {
    let connection = lab.established("127.0.0.1".parse()?)?;
    let payload = vec![7u8; bytes];
    (&connection.client).write_all(&payload)?;
    let mut received = vec![0u8; payload.len()];
    (&connection.server).read_exact(&mut received)?;
    Ok(connection)
}

/// The connections table's header, as words (sort arrows cut off).
fn header(screen: &str) -> Option<Vec<String>> {
    let line = screen
        .lines()
        .find(|line| line.contains("State") && line.contains("Local"))?;
    Some(
        words(line)
            .map(|word| word.trim_end_matches(['▲', '▼']).to_owned())
            .collect(),
    )
}

fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| c == '│' || c.is_whitespace())
        .filter(|word| !word.is_empty())
}

/// The RTT and cwnd cells of the row whose local endpoint is `local`, when the table
/// shows those columns.
fn rtt_and_cwnd(screen: &str, local: &str) -> Option<(String, String)> {
    let header = header(screen)?;
    let rtt = header.iter().position(|word| word == "RTT")?;
    let cwnd = header.iter().position(|word| word == "Cwnd")?;
    let row: Vec<&str> = screen
        .lines()
        .find(|line| line.contains("ESTABLISHED") && words(line).nth(1) == Some(local))
        .map(|line| words(line).collect())?;
    Some((row.get(rtt)?.to_string(), row.get(cwnd)?.to_string()))
}

/// Whether an RTT cell and a cwnd cell hold what a live connection has: a time in
/// milliseconds and a window of at least one segment.
fn plausible(rtt: &str, cwnd: &str) -> bool {
    let rtt_ms = rtt.strip_suffix("ms").and_then(|ms| ms.parse::<f64>().ok());
    let cwnd = cwnd.parse::<u32>().ok();
    rtt_ms.is_some_and(|ms| ms >= 0.0) && cwnd.is_some_and(|segments| segments >= 1)
}

#[test]
fn info_shows_rtt_and_cwnd_of_a_loopback_connection_in_the_connections_table() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = moved_data(&lab)?;
    let client = connection.client_addr.to_string();

    // 80 columns: the endpoints keep their room, RTT and cwnd take the queues' place.
    let mut terminal = Terminal::spawn(tcpscope_command(&["-i"]), 80, 24)?;
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "the client's RTT and cwnd", |screen| {
        rtt_and_cwnd(screen, &client).is_some_and(|(rtt, cwnd)| plausible(&rtt, &cwnd))
    })?;
    let (rtt, cwnd) = rtt_and_cwnd(&screen, &client).context("no RTT and cwnd cells")?;
    ensure!(plausible(&rtt, &cwnd), "RTT {rtt}, cwnd {cwnd}:\n{screen}");
    let server = connection.server_addr.to_string();
    ensure!(
        screen.contains(&server),
        "the peer endpoint {server} is not shown whole:\n{screen}"
    );
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "q exited with {status}");
    Ok(())
}

#[test]
fn without_info_the_table_has_no_tcp_info_columns_until_i_asks_for_them() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = moved_data(&lab)?;
    let client = connection.client_addr.to_string();

    let mut terminal = Terminal::spawn(tcpscope_command(&[]), 100, 30)?;
    terminal.wait_for(SCREEN_TIMEOUT, "the view", |screen| {
        screen.contains("ESTABLISHED") && screen.contains("q quit")
    })?;
    terminal.send(b"2")?;
    let screen = terminal.wait_for(SCREEN_TIMEOUT, "the client's row", |screen| {
        screen
            .lines()
            .any(|line| words(line).nth(1) == Some(client.as_str()))
            && header(screen).is_some()
    })?;
    let shown = header(&screen).context("no header")?;
    ensure!(
        shown.iter().all(|word| word != "RTT" && word != "Cwnd"),
        "tcp_info columns without -i: {shown:?}\n{screen}"
    );
    ensure!(
        shown.iter().any(|word| word == "Recv-Q"),
        "no Recv-Q column: {shown:?}\n{screen}"
    );

    // `i` asks the pollers for tcp_info from their next full dump.
    terminal.send(b"i")?;
    terminal.wait_for(
        SCREEN_TIMEOUT,
        "the client's RTT and cwnd after i",
        |screen| rtt_and_cwnd(screen, &client).is_some_and(|(rtt, cwnd)| plausible(&rtt, &cwnd)),
    )?;
    // And `i` again takes them away.
    terminal.send(b"i")?;
    terminal.wait_for(
        SCREEN_TIMEOUT,
        "the table without tcp_info again",
        |screen| header(screen).is_some_and(|words| words.iter().all(|word| word != "RTT")),
    )?;
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "q exited with {status}");
    Ok(())
}

/// The row on screen of the connection whose local endpoint is `local`.
fn row_of(screen: &str, local: &str) -> Option<usize> {
    screen
        .lines()
        .position(|line| line.contains("ESTABLISHED") && words(line).nth(1) == Some(local))
}

/// Whether the table is sorted by `Acked` in the direction `arrow` shows, with the row
/// of `first` above that of `second`.
fn acked_order(screen: &str, arrow: char, first: &str, second: &str) -> bool {
    let sorted = screen
        .lines()
        .any(|line| line.contains("State") && line.contains(&format!("Acked{arrow}")));
    let rows = row_of(screen, first).zip(row_of(screen, second));
    sorted && rows.is_some_and(|(first, second)| first < second)
}

#[test]
fn s_sorts_by_bytes_acked_and_r_reverses_it() -> Result<()> {
    let lab = Lab::enter()?;
    let little = sent(&lab, 1024)?;
    let much = sent(&lab, 256 * 1024)?;
    let little = little.client_addr.to_string();
    let much = much.client_addr.to_string();

    // Wide enough for every tcp_info column.
    let mut terminal = Terminal::spawn(tcpscope_command(&["-i"]), 200, 30)?;
    terminal.wait_for(SCREEN_TIMEOUT, "both clients' rows", |screen| {
        row_of(screen, &little).is_some() && row_of(screen, &much).is_some()
    })?;
    // State, then Local, Peer, Recv-Q, Send-Q, RTT, RTTvar, Cwnd, Retr, Acked.
    terminal.send(b"sssssssss")?;
    terminal.wait_for(
        SCREEN_TIMEOUT,
        "Acked ascending: the client that sent 1 KiB above the one that sent 256 KiB",
        |screen| acked_order(screen, '▲', &little, &much),
    )?;
    terminal.send(b"r")?;
    terminal.wait_for(
        SCREEN_TIMEOUT,
        "Acked descending: the client that sent 256 KiB above the one that sent 1 KiB",
        |screen| acked_order(screen, '▼', &much, &little),
    )?;
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "q exited with {status}");
    Ok(())
}
