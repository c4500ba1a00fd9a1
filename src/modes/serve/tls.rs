//! The bytes of one connection, in the clear or through TLS (rustls), behind the same
//! non-blocking read and write the HTTP loop uses.
//!
//! rustls does no I/O of its own: each read here moves what the socket has into the
//! TLS session and takes plaintext out, and each write puts plaintext in and moves what
//! the session has to send out to the socket, until the socket would block. So a TLS
//! connection obeys the loop's limits like a plain one: its handshake is part of the
//! request head, bound by the same deadline from accept, and what it holds is rustls's
//! buffers (at most one record of about 16 KiB coming in, [`SEND_BUFFER`] going out).

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

/// The most bytes a TLS connection holds to send, plaintext and records together.
const SEND_BUFFER: usize = 64 * 1024;

/// How a connection's bytes travel.
pub enum Transport {
    Plain,
    Tls(Box<ServerConnection>),
}

impl Transport {
    /// A new connection's transport: TLS when a configuration is given.
    pub fn new(tls: Option<&Arc<ServerConfig>>) -> io::Result<Transport> {
        let Some(config) = tls else {
            return Ok(Transport::Plain);
        };
        let mut session = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        session.set_buffer_limit(Some(SEND_BUFFER));
        Ok(Transport::Tls(Box::new(session)))
    }

    /// Whether the loop must hear of the socket turning writable while it reads (a
    /// handshake answers before the request comes).
    pub fn writes_while_reading(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Reads plaintext, as `Read::read` does on a non-blocking socket: `Ok(0)` at the
    /// end, `WouldBlock` when nothing more has come.
    pub fn read(&mut self, stream: &mut TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
        let session = match self {
            Transport::Plain => return stream.read(buffer),
            Transport::Tls(session) => session,
        };
        loop {
            match session.reader().read(buffer) {
                Ok(read) => return Ok(read),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
            // The handshake's answers go out before more is read.
            send(session, stream)?;
            if session.read_tls(stream)? == 0 {
                return Ok(0);
            }
            if let Err(error) = session.process_new_packets() {
                // Tell the peer why (an alert), as far as the socket takes it.
                let _ = send(session, stream);
                return Err(io::Error::new(ErrorKind::InvalidData, error));
            }
        }
    }

    /// Writes some of `slices`, as `Write::write_vectored` does on a non-blocking
    /// socket. Through TLS, "written" means taken by the session; [`Transport::finish`]
    /// sends the rest.
    pub fn write_vectored(
        &mut self,
        stream: &mut TcpStream,
        slices: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        let session = match self {
            Transport::Plain => return stream.write_vectored(slices),
            Transport::Tls(session) => session,
        };
        send(session, stream)?;
        let taken = session.writer().write_vectored(slices)?;
        match send(session, stream) {
            Err(error) if error.kind() != ErrorKind::WouldBlock => Err(error),
            _ => Ok(taken),
        }
    }

    /// After the whole answer was written: ends the TLS session and sends what it still
    /// holds. Returns whether all of it went.
    pub fn finish(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        let Transport::Tls(session) = self else {
            return Ok(true);
        };
        session.send_close_notify();
        match send(session, stream) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// Sends what the session has to send, until it is all gone or the socket would block.
fn send(session: &mut ServerConnection, stream: &mut TcpStream) -> io::Result<()> {
    while session.wants_write() {
        match session.write_tls(stream) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
