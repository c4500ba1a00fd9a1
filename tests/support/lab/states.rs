//! Builders for the TCP states that real sockets can be held in, one connection at a time.
//!
//! Each builder drives real sockets in the lab until the kernel reports the state it promises
//! (read back with `TCP_INFO` from the descriptors it holds), and returns a value that keeps
//! them alive and names the exact entries `ss` should list. Builders never consult `ss`: it
//! is the oracle the tests check them against.
//!
//! SYN_RECV is built by [`super::syn`], and large numbers of sockets by [`super::crowd`].

use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

use super::ss::{Entry, TcpState};
use super::{LISTEN_BACKLOG, Lab, SETTLE, tun};

/// A listening socket.
pub struct Listener {
    pub socket: Socket,
    pub addr: SocketAddr,
}

impl Listener {
    /// The listener's IPv4 address, for [`Lab::send_syns`].
    pub fn addr_v4(&self) -> Result<SocketAddrV4> {
        match self.addr {
            SocketAddr::V4(addr) => Ok(addr),
            SocketAddr::V6(addr) => bail!("listener {addr} is not IPv4"),
        }
    }

    /// What `ss` lists for it: LISTEN, no peer.
    pub fn entries(&self) -> Vec<Entry> {
        vec![Entry {
            state: TcpState::Listen,
            local: self.addr,
            peer: None,
        }]
    }
}

/// Both ends of one connection. The listener that accepted it is already closed.
///
/// `client_state` and `server_state` are the states the builder left the ends in; a test
/// that drives the sockets further must expect the new states itself.
pub struct Connection {
    /// The end that called `connect()`.
    pub client: Socket,
    /// The end `accept()` returned.
    pub server: Socket,
    pub client_addr: SocketAddr,
    pub server_addr: SocketAddr,
    pub client_state: TcpState,
    pub server_state: TcpState,
}

impl Connection {
    /// What `ss` lists for it: one entry per end.
    pub fn entries(&self) -> Vec<Entry> {
        vec![
            Entry::connected(self.client_state, self.client_addr, self.server_addr),
            Entry::connected(self.server_state, self.server_addr, self.client_addr),
        ]
    }
}

/// The end of a connection that closed first, now TIME_WAIT. The kernel holds it alone, with
/// no descriptor, for 60 seconds (`TCP_TIMEWAIT_LEN`); the other end is gone.
pub struct TimeWait {
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

impl TimeWait {
    /// What `ss` lists for it: one TIME-WAIT entry.
    pub fn entries(&self) -> Vec<Entry> {
        vec![Entry::connected(TcpState::TimeWait, self.local, self.peer)]
    }
}

/// Connections whose SYN went into the sink and will never be answered. They stay SYN_SENT
/// while the kernel retransmits the SYN (`tcp_syn_retries`, 6 by default: about 127 s).
pub struct SynSent {
    pub sockets: Vec<(Socket, SocketAddr, SocketAddr)>,
}

impl SynSent {
    /// What `ss` lists for them: one SYN-SENT entry per socket.
    pub fn entries(&self) -> Vec<Entry> {
        self.sockets
            .iter()
            .map(|(_, local, peer)| Entry::connected(TcpState::SynSent, *local, *peer))
            .collect()
    }
}

/// Which buffers a connection's sockets get.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Buffers {
    /// The kernel's defaults.
    Default,
    /// A tiny receive buffer at both ends, fixed before the handshake so the advertised
    /// window is small from the start, and a send buffer much larger than it: a writer that
    /// fills its send buffer then has data the peer can never take without reading, and a
    /// FIN queued behind that data is never sent.
    Clogging,
}

const CLOGGING_RECEIVE_BUFFER: usize = 4096;
const CLOGGING_SEND_BUFFER: usize = 256 * 1024;

impl Lab {
    /// A listener on `ip` (a loopback address outside the sink) at a port the kernel picks,
    /// with the lab's full backlog. It is LISTEN when this returns.
    pub fn listener(&self, ip: IpAddr) -> Result<Listener> {
        let socket = listening_socket(ip, Buffers::Default)?;
        let addr = local_addr(&socket)?;
        Ok(Listener { socket, addr })
    }

    /// A listener on 127.0.0.1.
    pub fn listener_v4(&self) -> Result<Listener> {
        self.listener(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// A listener on ::1.
    pub fn listener_v6(&self) -> Result<Listener> {
        self.listener(IpAddr::V6(Ipv6Addr::LOCALHOST))
    }

    /// A connection on `ip`, both ends ESTABLISHED when this returns.
    pub fn established(&self, ip: IpAddr) -> Result<Connection> {
        connect(ip, Buffers::Default)
    }

    /// A connection whose client has half-closed it with `shutdown(SHUT_WR)`: the client is
    /// FIN_WAIT2 (its FIN acknowledged) and the server CLOSE_WAIT (its FIN received) when this
    /// returns. The client keeps its descriptor, so `tcp_fin_timeout` never ends FIN_WAIT2.
    pub fn fin_wait2_close_wait(&self, ip: IpAddr) -> Result<Connection> {
        let mut connection = connect(ip, Buffers::Default)?;
        half_close(&mut connection)?;
        Ok(connection)
    }

    /// A connection whose client wrote more than the server will ever read and then
    /// half-closed: the FIN waits behind unsent data, so the client stays FIN_WAIT1 and the
    /// server, which never receives the FIN, ESTABLISHED.
    pub fn fin_wait1(&self, ip: IpAddr) -> Result<Connection> {
        let mut connection = connect(ip, Buffers::Clogging)?;
        clog(&connection.client).context("filling the client → server direction")?;
        connection
            .client
            .shutdown(Shutdown::Write)
            .context("half-closing the clogged client")?;
        settle(&connection.client, TcpState::FinWait1, "client")?;
        connection.client_state = TcpState::FinWait1;
        Ok(connection)
    }

    /// A connection whose client half-closed first (client FIN_WAIT2, server CLOSE_WAIT) and
    /// whose server then wrote more than the client will ever read and half-closed too: the
    /// server's FIN waits behind unsent data, so the server stays LAST_ACK and the client
    /// FIN_WAIT2.
    pub fn last_ack(&self, ip: IpAddr) -> Result<Connection> {
        let mut connection = connect(ip, Buffers::Clogging)?;
        half_close(&mut connection)?;
        clog(&connection.server).context("filling the server → client direction")?;
        connection
            .server
            .shutdown(Shutdown::Write)
            .context("half-closing the clogged server")?;
        settle(&connection.server, TcpState::LastAck, "server")?;
        connection.server_state = TcpState::LastAck;
        Ok(connection)
    }

    /// A connection closed actively by its client: the client's end is TIME_WAIT when this
    /// returns, and the server's end is gone.
    pub fn time_wait(&self, ip: IpAddr) -> Result<TimeWait> {
        let Connection {
            client,
            mut server,
            client_addr,
            server_addr,
            ..
        } = connect(ip, Buffers::Default)?;
        drop(client);
        read_to_end_of_stream(&mut server).context("waiting for the client's FIN")?;
        // shutdown, not close, so that the descriptor can tell when the server has reached
        // CLOSED: it gets there on the ACK of its FIN, which the client sends on entering
        // TIME_WAIT.
        server
            .shutdown(Shutdown::Write)
            .context("closing the server's side")?;
        settle(&server, TcpState::Close, "server")?;
        Ok(TimeWait {
            local: client_addr,
            peer: server_addr,
        })
    }

    /// `count` connections from 127.0.0.1 to addresses in the sink (127.64.x.y port 80): each
    /// is SYN_SENT when this returns, and stays so while the kernel retries its SYN.
    pub fn syn_sent(&self, count: usize) -> Result<SynSent> {
        let mut sockets = Vec::with_capacity(count);
        for index in 0..count {
            let peer = SocketAddr::V4(SocketAddrV4::new(sink_peer(index)?, 80));
            let socket = tcp_socket(peer.ip())?;
            socket
                .set_nonblocking(true)
                .context("making it non-blocking")?;
            match socket.connect(&peer.into()) {
                Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("connecting to {peer}"));
                }
                Ok(()) => bail!("connect to {peer} in the sink succeeded: the sink answered"),
            }
            // The port is bound by connect(), before the SYN is sent.
            let local = local_addr(&socket)?;
            settle(&socket, TcpState::SynSent, "connecting socket")?;
            sockets.push((socket, local, peer));
        }
        Ok(SynSent { sockets })
    }
}

/// The `index`th address in the sink: 127.64.0.1, …, 127.64.0.250, 127.64.1.1, ….
fn sink_peer(index: usize) -> Result<Ipv4Addr> {
    let third = u8::try_from(index / 250).context("too many peers in the sink")?;
    let fourth = (index % 250) as u8 + 1;
    let address = Ipv4Addr::new(127, 64, third, fourth);
    debug_assert!(tun::in_sink(address));
    Ok(address)
}

/// Refuses addresses outside loopback, and IPv4 addresses that lead into the sink.
fn check_lab_address(ip: IpAddr) -> Result<()> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() && !tun::in_sink(v4) => Ok(()),
        IpAddr::V6(v6) if v6.is_loopback() => Ok(()),
        _ => bail!("{ip} is not a lab address: use 127.0.0.0/10 or ::1"),
    }
}

/// A close-on-exec TCP socket for `ip`'s family.
pub(crate) fn tcp_socket(ip: IpAddr) -> Result<Socket> {
    let domain = match ip {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    };
    // socket2 opens sockets with SOCK_CLOEXEC, so processes spawned by tests running on other
    // threads do not inherit them (an inherited socket would outlive its close()).
    Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).context("creating a TCP socket")
}

fn local_addr(socket: &Socket) -> Result<SocketAddr> {
    socket
        .local_addr()
        .context("reading a socket's local address")?
        .as_socket()
        .context("a TCP socket's local address is not an IP address")
}

fn listening_socket(ip: IpAddr, buffers: Buffers) -> Result<Socket> {
    check_lab_address(ip)?;
    let socket = tcp_socket(ip)?;
    if buffers == Buffers::Clogging {
        // Accepted sockets inherit the listener's receive buffer; it must be small before the
        // handshake, when the window scale is chosen.
        socket
            .set_recv_buffer_size(CLOGGING_RECEIVE_BUFFER)
            .context("shrinking the listener's receive buffer")?;
    }
    let addr = SocketAddr::new(ip, 0);
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding a listener to {addr}"))?;
    socket
        .listen(LISTEN_BACKLOG as i32)
        .with_context(|| format!("listening on {addr}"))?;
    Ok(socket)
}

/// Connects a client to a fresh listener on `ip` and accepts it; both ends are ESTABLISHED
/// on return and the listener is closed.
fn connect(ip: IpAddr, buffers: Buffers) -> Result<Connection> {
    let listener = listening_socket(ip, buffers)?;
    let server_addr = local_addr(&listener)?;
    let client = tcp_socket(ip)?;
    if buffers == Buffers::Clogging {
        client
            .set_recv_buffer_size(CLOGGING_RECEIVE_BUFFER)
            .context("shrinking the client's receive buffer")?;
        client
            .set_send_buffer_size(CLOGGING_SEND_BUFFER)
            .context("growing the client's send buffer")?;
    }
    // On loopback a blocking connect() returns once the handshake is done.
    client
        .connect(&server_addr.into())
        .with_context(|| format!("connecting to {server_addr}"))?;
    let client_addr = local_addr(&client)?;
    let (server, _) = listener
        .accept()
        .with_context(|| format!("accepting on {server_addr}"))?;
    if buffers == Buffers::Clogging {
        server
            .set_send_buffer_size(CLOGGING_SEND_BUFFER)
            .context("growing the server's send buffer")?;
    }
    settle(&client, TcpState::Established, "client")?;
    settle(&server, TcpState::Established, "server")?;
    Ok(Connection {
        client,
        server,
        client_addr,
        server_addr,
        client_state: TcpState::Established,
        server_state: TcpState::Established,
    })
}

/// The client sends its FIN; returns once the server has read it (CLOSE_WAIT) and the
/// client has had it acknowledged (FIN_WAIT2).
fn half_close(connection: &mut Connection) -> Result<()> {
    connection
        .client
        .shutdown(Shutdown::Write)
        .context("half-closing the client")?;
    read_to_end_of_stream(&mut connection.server).context("waiting for the client's FIN")?;
    settle(&connection.server, TcpState::CloseWait, "server")?;
    // The ACK of a FIN may be delayed a little (the receiver enters pingpong mode).
    settle(&connection.client, TcpState::FinWait2, "client")?;
    connection.client_state = TcpState::FinWait2;
    connection.server_state = TcpState::CloseWait;
    Ok(())
}

/// Reads until the peer's FIN, failing if it does not come within [`SETTLE`].
fn read_to_end_of_stream(socket: &mut Socket) -> Result<()> {
    socket
        .set_read_timeout(Some(SETTLE))
        .context("setting a read timeout")?;
    let mut buffer = [0u8; 4096];
    loop {
        match socket.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("reading until the peer's FIN"),
        }
    }
}

/// Writes until the send buffer is full and some of it cannot even be sent, because the peer
/// (which never reads) has closed its window. A FIN queued after this is never sent.
fn clog(socket: &Socket) -> Result<()> {
    socket
        .set_nonblocking(true)
        .context("making the writer non-blocking")?;
    let chunk = [0x5a_u8; 16 * 1024];
    let start = Instant::now();
    loop {
        let mut writer = socket;
        match writer.write(&chunk) {
            Ok(_) => continue,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => return Err(error).context("writing to clog the connection"),
        }
        // EAGAIN alone is not enough: everything might be in flight and about to be accepted.
        // Bytes not yet sent prove the window is closed.
        if unsent_bytes(socket)? > 0 {
            return Ok(());
        }
        if start.elapsed() > SETTLE {
            bail!("the peer kept accepting data for {SETTLE:?}; its window never closed");
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Bytes in the send queue that have not been sent yet (`SIOCOUTQNSD`).
fn unsent_bytes(socket: &Socket) -> Result<usize> {
    let mut unsent: libc::c_int = 0;
    // SAFETY: SIOCOUTQNSD writes one int, which lives for the whole call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCOUTQNSD, &mut unsent) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading unsent bytes (SIOCOUTQNSD)");
    }
    usize::try_from(unsent).context("the kernel reported a negative number of unsent bytes")
}

/// The state the kernel reports for a socket we hold (`TCP_INFO`).
pub(crate) fn tcp_state(socket: &Socket) -> Result<TcpState> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `length` bytes into `info` and updates `length`.
    let status = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut length,
        )
    };
    if status != 0 {
        return Err(std::io::Error::last_os_error()).context("reading TCP_INFO");
    }
    if length < 1 {
        bail!("TCP_INFO returned no state");
    }
    // SAFETY: zero-initialised plain data, partly overwritten by the kernel.
    let number = unsafe { info.assume_init() }.tcpi_state;
    TcpState::from_kernel(number).with_context(|| format!("TCP_INFO reported state {number}"))
}

/// Waits until the kernel reports `socket` in `state`, failing after [`SETTLE`].
pub(crate) fn settle(socket: &Socket, state: TcpState, which: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let now = tcp_state(socket)?;
        if now == state {
            return Ok(());
        }
        if start.elapsed() > SETTLE {
            bail!("the {which} stayed {now} for {SETTLE:?} instead of becoming {state}");
        }
        thread::sleep(Duration::from_millis(1));
    }
}
