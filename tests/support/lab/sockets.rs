//! Plain sockets the findings tests build their conditions from: a listener with a
//! chosen `listen()` backlog, and connects that do not wait for their handshake.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

/// A listener on 127.0.0.1:`port` (0: the kernel picks) with this `listen()` backlog.
/// The kernel holds `backlog + 1` completed handshakes before it drops.
pub fn listener_with_backlog(port: u16, backlog: i32) -> Result<(Socket, SocketAddr)> {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    listener.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port).into())?;
    listener.listen(backlog)?;
    let address = listener
        .local_addr()?
        .as_socket()
        .context("the listener has no IP address")?;
    Ok((listener, address))
}

/// Starts a connection to `address` without waiting for its handshake; the socket
/// stays in SYN_SENT until something answers.
pub fn start_connect(address: SocketAddr) -> Result<Socket> {
    let domain = if address.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let client = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    client.set_nonblocking(true)?;
    match client.connect(&address.into()) {
        Ok(()) => {}
        // In progress is what a non-blocking connect says; the handshake goes on.
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error).with_context(|| format!("connecting to {address}")),
    }
    Ok(client)
}
