//! Closing one socket with `SOCK_DESTROY`, as `ss -K` does.
//!
//! The request is an `inet_diag_req_v2` naming the exact socket: family, both
//! endpoints, interface and cookie. The kernel looks the socket up by its endpoints and
//! refuses (ENOENT) when the cookie differs, so a socket that closed and whose
//! endpoints were reused is never hit by mistake (`inet_diag_find_one_icsk` in
//! `net/ipv4/inet_diag.c`). It then calls `tcp_abort` (`net/ipv4/tcp.c`): the socket
//! is closed with ECONNABORTED, and the peer of a synchronised connection gets a reset.
//!
//! Two things must be there: CAP_NET_ADMIN in the socket's network namespace
//! (`sock_diag_destroy` in `net/core/sock_diag.c` answers EPERM without it) and a kernel
//! built with `CONFIG_INET_DIAG_DESTROY` (EOPNOTSUPP otherwise). This module only sends
//! the request and reads the answer; which sockets to close is the caller's business.

use std::io;

use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use super::diag_msg::{self, NLMSG_HEADER_BYTES, ParseError, REQUEST_V2_BYTES};
use crate::snapshot::SocketRecord;

/// `SOCK_DESTROY` in `include/uapi/linux/sock_diag.h`.
const SOCK_DESTROY: u16 = 21;
const ANSWER_BUFFER_BYTES: usize = 8 * 1024;

/// Why a socket was not closed.
#[derive(Debug, thiserror::Error)]
pub enum DestroyError {
    #[error("cannot open a NETLINK_SOCK_DIAG socket: {0}")]
    Open(#[source] io::Error),
    #[error("sending the SOCK_DESTROY request failed: {0}")]
    Send(#[source] io::Error),
    #[error("receiving the kernel's answer to SOCK_DESTROY failed: {0}")]
    Receive(#[source] io::Error),
    #[error(
        "closing sockets needs the CAP_NET_ADMIN capability in their network namespace (run as root)"
    )]
    NotPermitted,
    #[error("this kernel cannot close sockets: it was built without CONFIG_INET_DIAG_DESTROY")]
    NotSupported,
    /// The socket is gone already, or its endpoints now belong to another socket.
    #[error("the socket no longer exists")]
    Gone,
    #[error("the kernel refused to close the socket: {0}")]
    Refused(#[source] io::Error),
    #[error("malformed answer to SOCK_DESTROY: {0}")]
    Malformed(#[from] ParseError),
}

/// A netlink socket for `SOCK_DESTROY` requests.
pub struct Destroyer {
    socket: Socket,
    request: Vec<u8>,
    answer: Vec<u8>,
    sequence: u32,
}

impl Destroyer {
    pub fn open() -> Result<Destroyer, DestroyError> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(DestroyError::Open)?;
        socket
            .bind(&SocketAddr::new(0, 0))
            .map_err(DestroyError::Open)?;
        Ok(Destroyer {
            socket,
            request: Vec::with_capacity(NLMSG_HEADER_BYTES + REQUEST_V2_BYTES),
            answer: vec![0; ANSWER_BUFFER_BYTES],
            sequence: 0,
        })
    }

    /// Closes the socket `record` describes (the very kernel object: its cookie must
    /// match), and waits for the kernel's answer.
    pub fn destroy(&mut self, record: &SocketRecord) -> Result<(), DestroyError> {
        self.sequence = self.sequence.wrapping_add(1);
        encode_request(record, self.sequence, &mut self.request);
        let kernel = SocketAddr::new(0, 0);
        let sent = self
            .socket
            .send_to(&self.request, &kernel, 0)
            .map_err(DestroyError::Send)?;
        if sent != self.request.len() {
            return Err(DestroyError::Send(io::Error::other("short write")));
        }
        loop {
            let length = match self.socket.recv(&mut &mut self.answer[..], 0) {
                Ok(length) => length,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(DestroyError::Receive(error)),
            };
            if let Some(errno) = diag_msg::acknowledgement(&self.answer[..length], self.sequence)? {
                return outcome(errno);
            }
        }
    }
}

/// What the kernel's errno means for the user.
fn outcome(errno: i32) -> Result<(), DestroyError> {
    match errno {
        0 => Ok(()),
        libc::EPERM | libc::EACCES => Err(DestroyError::NotPermitted),
        // No destroy handler for TCP (`__sock_diag_cmd`), or no `diag_destroy` in the
        // protocol (`sock_diag_destroy`): both mean CONFIG_INET_DIAG_DESTROY is off.
        libc::EOPNOTSUPP => Err(DestroyError::NotSupported),
        libc::ENOENT => Err(DestroyError::Gone),
        errno => Err(DestroyError::Refused(io::Error::from_raw_os_error(errno))),
    }
}

/// Writes the `SOCK_DESTROY` request for `record` into `buffer`: a netlink header with
/// `NLM_F_REQUEST | NLM_F_ACK`, and an `inet_diag_req_v2` whose socket id is the one
/// the dump reported (ports in network order, addresses as network-order words, the
/// cookie as two host-order halves).
fn encode_request(record: &SocketRecord, sequence: u32, buffer: &mut Vec<u8>) {
    let flags = NLM_F_REQUEST | NLM_F_ACK;
    diag_msg::encode_exact_request(SOCK_DESTROY, flags, record, record.cookie, sequence, buffer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures;
    use crate::tcp::State;

    #[test]
    fn the_request_names_the_exact_socket_the_dump_reported() {
        let mut record = fixtures::socket(State::Established, "127.0.0.1", 8080, "10.1.2.3", 40000);
        record.cookie = 0x1122_3344_5566_7788;
        record.interface = 3;
        let mut buffer = Vec::new();
        encode_request(&record, 9, &mut buffer);
        assert_eq!(buffer.len(), 72);
        let u16_at = |i: usize| u16::from_ne_bytes([buffer[i], buffer[i + 1]]);
        let u32_at = |i: usize| u32::from_ne_bytes(buffer[i..i + 4].try_into().unwrap());
        assert_eq!(u32_at(0), 72);
        assert_eq!(u16_at(4), SOCK_DESTROY);
        assert_eq!(u16_at(6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_at(8), 9);
        assert_eq!(
            (buffer[16], buffer[17]),
            (libc::AF_INET as u8, libc::IPPROTO_TCP as u8)
        );
        assert_eq!(&buffer[24..26], &8080u16.to_be_bytes());
        assert_eq!(&buffer[26..28], &40000u16.to_be_bytes());
        assert_eq!(&buffer[28..32], &[127, 0, 0, 1]);
        assert_eq!(&buffer[44..48], &[10, 1, 2, 3]);
        assert_eq!(u32_at(60), 3);
        assert_eq!(u32_at(64), 0x5566_7788);
        assert_eq!(u32_at(68), 0x1122_3344);
    }

    #[test]
    fn the_request_round_trips_through_the_reply_parser_as_the_same_socket() {
        // The socket id of a request is laid out like the one in a dump reply, so the
        // reply parser reads back what was sent.
        let mut record = fixtures::socket(State::Established, "::1", 443, "::ffff:10.0.0.1", 5);
        record.cookie = 42;
        let mut buffer = Vec::new();
        encode_request(&record, 1, &mut buffer);
        let id = &buffer[NLMSG_HEADER_BYTES + 8..];
        assert_eq!(&id[..2], &443u16.to_be_bytes());
        assert_eq!(
            &id[4..20],
            &"::1".parse::<std::net::Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            &id[20..36],
            &"::ffff:10.0.0.1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(u32::from_ne_bytes(id[40..44].try_into().unwrap()), 42);
    }

    #[test]
    fn the_kernels_answers_name_what_is_missing() {
        assert!(outcome(0).is_ok());
        let message = outcome(libc::EPERM).unwrap_err().to_string();
        assert!(message.contains("CAP_NET_ADMIN"), "{message}");
        let message = outcome(libc::EOPNOTSUPP).unwrap_err().to_string();
        assert!(message.contains("CONFIG_INET_DIAG_DESTROY"), "{message}");
        assert!(matches!(outcome(libc::ENOENT), Err(DestroyError::Gone)));
        assert!(matches!(
            outcome(libc::EINVAL),
            Err(DestroyError::Refused(_))
        ));
    }
}
