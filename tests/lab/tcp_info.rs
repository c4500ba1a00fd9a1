//! `tcp_info` for one socket, asked of the kernel in a lab: the detail pane's numbers.
//! Fails, never skips, without root.

use std::io::Write;

use anyhow::{Context, Result, ensure};
use tcpscope::filter::Filter;
use tcpscope::kernel::sockdiag::SockDiag;
use tcpscope::kernel::tcp_info;
use tcpscope::tcp::State;

use crate::support::lab::Lab;

#[test]
fn an_established_connection_reports_its_rtt_window_and_bytes() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = lab.established("127.0.0.1".parse()?)?;
    let payload = [7u8; 1000];
    (&connection.client).write_all(&payload)?;
    std::thread::sleep(std::time::Duration::from_millis(100));

    let snapshot = SockDiag::open()?.snapshot(&Filter::default())?;
    let client = snapshot
        .sockets
        .iter()
        .find(|s| s.state == State::Established && s.local_port == connection.client_addr.port())
        .context("the client socket is not in the dump")?;
    let info = tcp_info::fetch(client)?;
    ensure!(info.snd_cwnd > 0, "{info:?}");
    ensure!(info.snd_mss > 0, "{info:?}");
    ensure!(info.bytes_acked.is_some_and(|b| b >= 1000), "{info:?}");
    Ok(())
}

#[test]
fn a_socket_that_is_gone_is_an_error_not_a_stale_answer() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = lab.established("127.0.0.1".parse()?)?;
    let snapshot = SockDiag::open()?.snapshot(&Filter::default())?;
    let mut client = *snapshot
        .sockets
        .iter()
        .find(|s| s.state == State::Established && s.local_port == connection.client_addr.port())
        .context("the client socket is not in the dump")?;
    // Another kernel object with the same endpoints would have another cookie.
    client.cookie ^= 0xdead_beef;
    ensure!(tcp_info::fetch(&client).is_err());
    Ok(())
}

/// What `ss -tani` says of the socket bound to `local`: its `rtt:RTT/VAR`, `cwnd:N`,
/// `bytes_acked:N` and `bytes_received:N` fields (absent ones as 0, as ss leaves out
/// zero counts).
#[derive(Debug)]
struct SsInfo {
    rtt_ms: f64,
    cwnd: u64,
    bytes_acked: u64,
    bytes_received: u64,
}

fn ss_info(local: std::net::SocketAddr) -> Result<SsInfo> {
    let output = std::process::Command::new("ss").arg("-tani").output()?;
    ensure!(output.status.success(), "ss -tani failed");
    let text = String::from_utf8(output.stdout)?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with(char::is_whitespace) || columns.get(3) != Some(&&*local.to_string()) {
            continue;
        }
        let details = lines.next().context("ss printed no details line")?;
        let field = |name: &str| -> Option<&str> {
            details
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name)?.strip_prefix(':'))
        };
        let number = |name: &str| -> Result<u64> { Ok(field(name).map_or(Ok(0), str::parse)?) };
        let rtt = field("rtt").context("no rtt: field")?;
        let (rtt, _variance) = rtt.split_once('/').context("rtt: without a variance")?;
        return Ok(SsInfo {
            rtt_ms: rtt.parse()?,
            cwnd: number("cwnd")?,
            bytes_acked: number("bytes_acked")?,
            bytes_received: number("bytes_received")?,
        });
    }
    anyhow::bail!("ss -tani does not list {local}:\n{text}")
}

/// A connection whose client sent 64 KiB that the server read, and its two ends' tcp_info.
fn moved_data(lab: &Lab) -> Result<crate::support::lab::Connection> {
    use std::io::Read;
    let connection = lab.established("127.0.0.1".parse()?)?;
    let payload = vec![7u8; 64 * 1024];
    (&connection.client).write_all(&payload)?;
    let mut received = vec![0u8; payload.len()];
    (&connection.server).read_exact(&mut received)?;
    // Let the last acknowledgements land, so that nothing changes between readings.
    std::thread::sleep(std::time::Duration::from_millis(200));
    Ok(connection)
}

#[test]
fn json_info_gives_the_rtt_cwnd_and_bytes_that_ss_tani_shows() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = moved_data(&lab)?;
    let document = crate::support::json(&["--json", "-i"])?;
    let sockets = document["sockets"].as_array().context("no sockets array")?;
    for (end, peer) in [
        (connection.client_addr, connection.server_addr),
        (connection.server_addr, connection.client_addr),
    ] {
        let socket = sockets
            .iter()
            .find(|s| {
                s["state"] == "ESTABLISHED"
                    && s["local_port"] == end.port()
                    && s["remote_port"] == peer.port()
            })
            .with_context(|| format!("{end} is not in the document"))?;
        let info = &socket["info"];
        let ss = ss_info(end)?;
        let rtt_ms = info["rtt_ms"].as_f64().context("no rtt_ms")?;
        // Both read the same smoothed RTT; allow for an ACK landing between the readings.
        ensure!(
            (rtt_ms - ss.rtt_ms).abs() <= 1.0 + ss.rtt_ms * 0.5,
            "{end}: rtt {rtt_ms} ms, ss {ss:?}"
        );
        ensure!(info["cwnd"] == ss.cwnd, "{end}: {info} vs {ss:?}");
        ensure!(
            info["bytes_acked"] == ss.bytes_acked,
            "{end}: {info} vs {ss:?}"
        );
        ensure!(
            info["bytes_received"] == ss.bytes_received,
            "{end}: {info} vs {ss:?}"
        );
    }
    let client = ss_info(connection.client_addr)?;
    ensure!(client.bytes_acked > 64 * 1024, "{client:?}");
    Ok(())
}

#[test]
fn grep_with_info_shows_ss_i_columns_and_without_it_does_not() -> Result<()> {
    let lab = Lab::enter()?;
    let connection = moved_data(&lab)?;
    let with_info = crate::support::tcpscope(&["--grep", "ESTABLISHED", "-i"])?;
    ensure!(with_info.status.success());
    let text = String::from_utf8(with_info.stdout)?;
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    for column in [
        "RTT/Var(ms)",
        "Cwnd",
        "Retrans",
        "Acked",
        "Received",
        "Rate",
    ] {
        ensure!(header.contains(&column), "{column} missing from {header:?}");
    }
    let acked = header
        .iter()
        .position(|c| *c == "Acked")
        .context("no Acked")?;
    // "Local Address:Port" and "Peer Address:Port" are two words each in the header.
    let acked = acked - 2;
    let client = connection.client_addr.to_string();
    let cells: Vec<&str> = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.get(1) == Some(&&*client))
        .with_context(|| format!("no row for the client in\n{text}"))?;
    let ss = ss_info(connection.client_addr)?;
    ensure!(
        cells.get(acked) == Some(&&*ss.bytes_acked.to_string()),
        "{cells:?} vs {ss:?}"
    );

    let without = crate::support::tcpscope(&["--grep", "ESTABLISHED"])?;
    let text = String::from_utf8(without.stdout)?;
    ensure!(!text.contains("Cwnd"), "{text}");
    Ok(())
}
