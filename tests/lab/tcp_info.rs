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
