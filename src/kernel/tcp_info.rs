//! `tcp_info` for one socket: a sock_diag request *without* `NLM_F_DUMP` that names the
//! socket exactly (endpoints, interface and cookie) and asks for the `INET_DIAG_INFO`
//! extension, and an in-place parse of the `struct tcp_info` in the reply.
//!
//! The detail pane asks this for the one connection it shows. A dump asks for it only
//! with `-i` (`DumpRequest::info`): tcp_info for 100k sockets more than triples the
//! dump's size, so the default dumps never do. Both read the attribute with
//! [`info_attribute`] and [`parse_tcp_info`]. Every read of the reply
//! checks its length first: older kernels send a shorter `struct tcp_info`, and fields
//! past its end are `None`.

use std::io;
use std::net::IpAddr;

use anyhow::{Context, bail};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use crate::snapshot::SocketRecord;

const NLMSG_HEADER_BYTES: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
/// `SOCK_DIAG_BY_FAMILY`, with a `struct inet_diag_req_v2`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_REQ_V2_BYTES: usize = 56;
const INET_DIAG_MSG_BYTES: usize = 72;
/// The attribute that carries `struct tcp_info` (`include/uapi/linux/inet_diag.h`).
pub const INET_DIAG_INFO: u16 = 2;
/// The top bits of `nla_type` are flags (nested, byte order), not part of the type.
const ATTRIBUTE_TYPE_MASK: u16 = 0x3fff;
const SEQUENCE: u32 = 1;

/// What the detail pane shows of `struct tcp_info` (`include/uapi/linux/tcp.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    /// Smoothed round-trip time and its variance, in microseconds.
    pub rtt_us: u32,
    pub rttvar_us: u32,
    /// Retransmission timeout, in microseconds.
    pub rto_us: u32,
    /// Congestion window, in segments.
    pub snd_cwnd: u32,
    pub snd_mss: u32,
    pub unacked: u32,
    pub lost: u32,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Bytes acknowledged by the peer and received from it; `None` on kernels whose
    /// `tcp_info` ends before them (before 4.1).
    pub bytes_acked: Option<u64>,
    pub bytes_received: Option<u64>,
    /// The most recent delivery rate, in bytes a second; `None` before 4.9.
    pub delivery_rate: Option<u64>,
}

/// Parses a `struct tcp_info` attribute's payload.
pub fn parse_tcp_info(bytes: &[u8]) -> Option<TcpInfo> {
    let u32_at = |at: usize| -> Option<u32> {
        let field = bytes.get(at..at + 4)?;
        Some(u32::from_ne_bytes([field[0], field[1], field[2], field[3]]))
    };
    let u64_at = |at: usize| -> Option<u64> {
        let field: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_ne_bytes(field))
    };
    Some(TcpInfo {
        rto_us: u32_at(8)?,
        snd_mss: u32_at(16)?,
        unacked: u32_at(24)?,
        lost: u32_at(32)?,
        rtt_us: u32_at(68)?,
        rttvar_us: u32_at(72)?,
        snd_cwnd: u32_at(80)?,
        total_retrans: u32_at(100)?,
        bytes_acked: u64_at(120),
        bytes_received: u64_at(128),
        delivery_rate: u64_at(160),
    })
}

/// The payload of the `INET_DIAG_INFO` attribute among the attributes that follow an
/// `inet_diag_msg`: `Ok(None)` when there is none (not asked for, or a request socket
/// or TIME_WAIT remnant, which carry none). `Err` holds the length of an attribute
/// that cannot be (shorter than its header or longer than what is left).
pub fn info_attribute(mut attributes: &[u8]) -> Result<Option<&[u8]>, u16> {
    while attributes.len() >= 4 {
        let length = u16::from_ne_bytes([attributes[0], attributes[1]]);
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]) & ATTRIBUTE_TYPE_MASK;
        let size = usize::from(length);
        if size < 4 || size > attributes.len() {
            return Err(length);
        }
        if kind == INET_DIAG_INFO {
            return Ok(Some(&attributes[4..size]));
        }
        // The last attribute's padding may be missing.
        attributes = &attributes[size.next_multiple_of(4).min(attributes.len())..];
    }
    Ok(None)
}

/// The request for exactly this socket, with the `INET_DIAG_INFO` extension.
pub fn encode_request(socket: &SocketRecord) -> Vec<u8> {
    let length = NLMSG_HEADER_BYTES + INET_DIAG_REQ_V2_BYTES;
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_ne_bytes());
    out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    out.extend_from_slice(&SEQUENCE.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    let family = match socket.local_addr {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    };
    out.extend_from_slice(&[
        family,
        libc::IPPROTO_TCP as u8,
        1 << (INET_DIAG_INFO - 1),
        0,
    ]);
    out.extend_from_slice(&(1u32 << socket.state.kernel_number()).to_ne_bytes());
    // struct inet_diag_sockid: ports in network order, addresses as the kernel stores them.
    out.extend_from_slice(&socket.local_port.to_be_bytes());
    out.extend_from_slice(&socket.remote_port.to_be_bytes());
    for address in [socket.local_addr, socket.remote_addr] {
        let mut octets = [0u8; 16];
        match address {
            IpAddr::V4(v4) => octets[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => octets = v6.octets(),
        }
        out.extend_from_slice(&octets);
    }
    out.extend_from_slice(&socket.interface.to_ne_bytes());
    // The kernel checks the cookie, so a socket replaced by another with the same
    // endpoints is not mistaken for it.
    out.extend_from_slice(&((socket.cookie & 0xffff_ffff) as u32).to_ne_bytes());
    out.extend_from_slice(&((socket.cookie >> 32) as u32).to_ne_bytes());
    out
}

/// Parses the reply to [`encode_request`]: the `tcp_info` attribute, or the kernel's
/// error.
pub fn parse_reply(bytes: &[u8]) -> anyhow::Result<TcpInfo> {
    let header = bytes
        .get(..NLMSG_HEADER_BYTES)
        .context("reply shorter than a netlink header")?;
    let length = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let kind = u16::from_ne_bytes([header[4], header[5]]);
    let message = bytes
        .get(NLMSG_HEADER_BYTES..length.max(NLMSG_HEADER_BYTES))
        .context("reply shorter than its header says")?;
    if kind == NLMSG_ERROR {
        let errno = message.get(..4).context("truncated netlink error")?;
        let errno = i32::from_ne_bytes([errno[0], errno[1], errno[2], errno[3]]);
        // Any i32 may come in: i32::MIN has no negation (found by the fuzz target).
        return Err(io::Error::from_raw_os_error(errno.saturating_neg()))
            .context("the kernel has no such socket any more");
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        bail!("unexpected netlink message type {kind}");
    }
    let attributes = message
        .get(INET_DIAG_MSG_BYTES..)
        .context("reply shorter than an inet_diag_msg")?;
    match info_attribute(attributes) {
        Ok(Some(payload)) => {
            parse_tcp_info(payload).context("tcp_info shorter than its oldest layout")
        }
        Ok(None) => {
            bail!("the kernel sent no tcp_info for this socket (not a full socket in this state)")
        }
        Err(_) => bail!("malformed attribute in the reply"),
    }
}

/// Asks the kernel for one socket's `tcp_info`, in the calling thread's namespace.
pub fn fetch(socket: &SocketRecord) -> anyhow::Result<TcpInfo> {
    let mut netlink = Socket::new(NETLINK_SOCK_DIAG).context("opening a sock_diag socket")?;
    netlink
        .bind(&SocketAddr::new(0, 0))
        .context("binding the sock_diag socket")?;
    let request = encode_request(socket);
    netlink
        .send_to(&request, &SocketAddr::new(0, 0), 0)
        .context("asking for tcp_info")?;
    let mut reply = vec![0u8; 8192];
    let length = netlink
        .recv(&mut &mut reply[..], 0)
        .context("receiving tcp_info")?;
    parse_reply(reply.get(..length).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_info_bytes(length: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; length];
        let mut put = |at: usize, value: &[u8]| {
            if at + value.len() <= length {
                bytes[at..at + value.len()].copy_from_slice(value);
            }
        };
        put(68, &1500u32.to_ne_bytes());
        put(80, &10u32.to_ne_bytes());
        put(100, &3u32.to_ne_bytes());
        put(120, &123_456u64.to_ne_bytes());
        bytes
    }

    #[test]
    fn a_current_tcp_info_gives_rtt_cwnd_retransmits_and_bytes() {
        let info = parse_tcp_info(&tcp_info_bytes(232)).unwrap();
        assert_eq!(
            (info.rtt_us, info.snd_cwnd, info.total_retrans),
            (1500, 10, 3)
        );
        assert_eq!(info.bytes_acked, Some(123_456));
    }

    #[test]
    fn an_old_short_tcp_info_leaves_the_byte_counts_unknown() {
        let info = parse_tcp_info(&tcp_info_bytes(104)).unwrap();
        assert_eq!(info.bytes_acked, None);
        assert!(parse_tcp_info(&tcp_info_bytes(80)).is_none());
    }

    #[test]
    fn an_error_reply_with_any_errno_is_an_error_not_a_panic() {
        for errno in [-libc::ENOENT, 0, i32::MAX, i32::MIN] {
            let mut reply = Vec::new();
            reply.extend_from_slice(&20u32.to_ne_bytes());
            reply.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            reply.extend_from_slice(&[0; 10]);
            reply.extend_from_slice(&errno.to_ne_bytes());
            assert!(parse_reply(&reply).is_err(), "errno {errno}");
        }
    }

    #[test]
    fn a_reply_cut_anywhere_is_an_error_not_a_panic() {
        let mut reply = Vec::new();
        let info = tcp_info_bytes(232);
        let length = NLMSG_HEADER_BYTES + INET_DIAG_MSG_BYTES + 4 + info.len();
        reply.extend_from_slice(&(length as u32).to_ne_bytes());
        reply.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        reply.extend_from_slice(&[0; 10]);
        reply.extend_from_slice(&[0; INET_DIAG_MSG_BYTES]);
        reply.extend_from_slice(&((4 + info.len()) as u16).to_ne_bytes());
        reply.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        reply.extend_from_slice(&info);
        assert_eq!(parse_reply(&reply).unwrap().rtt_us, 1500);
        for cut in 0..reply.len() {
            assert!(parse_reply(&reply[..cut]).is_err(), "cut at {cut}");
        }
    }
}
