//! Parsing sock_diag replies in place: `nlmsghdr` framing and `inet_diag_msg` records,
//! straight from the receive buffer, with no allocation per socket; and the one request
//! both a lookup and `SOCK_DESTROY` send about a single socket
//! ([`encode_exact_request`]).
//!
//! Every byte here came from the kernel, or (in tests and fuzzing) from anywhere: each
//! length is checked before it is read, and a bad one is an error, never a panic.
//! Layouts are those of `include/uapi/linux/netlink.h` and `inet_diag.h`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::tcp_info::{self, TcpInfo};
use crate::snapshot::{Family, SocketRecord, Timer};
use crate::tcp::State;

pub const NLMSG_HEADER_BYTES: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Set on every message of a dump that raced with a change to the socket table.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `struct inet_diag_msg`: 4 bytes of family/state/timer/retrans, the 48-byte
/// `inet_diag_sockid`, then expires, rqueue, wqueue, uid and inode.
pub const INET_DIAG_MSG_BYTES: usize = 72;
/// The attribute carrying `u32 sk_meminfo[SK_MEMINFO_VARS]`, sent when the request sets
/// its bit in `idiag_ext` (`include/uapi/linux/inet_diag.h`).
pub const INET_DIAG_SKMEMINFO: u16 = 7;
/// `SK_MEMINFO_DROPS` (`include/uapi/linux/sock_diag.h`): the index of `sk_drops` in
/// that array, the ninth `u32`.
const SK_MEMINFO_DROPS: usize = 8;
/// The attribute carrying the socket's cgroup v2 id (`u64`), sent with every full
/// socket since Linux 5.7 unasked (`inet_diag_msg_attrs_fill` in
/// `net/ipv4/inet_diag.c`); request sockets and TIME_WAIT remnants have none.
pub const INET_DIAG_CGROUP_ID: u16 = 21;
/// `struct nlattr`: length (header included) and type, then the payload, padded to 4.
const ATTRIBUTE_HEADER_BYTES: usize = 4;
/// The top bits of `nla_type` are flags (nested, byte order), not part of the type.
const ATTRIBUTE_TYPE_MASK: u16 = 0x3fff;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// A reply that cannot be read, or an error the kernel sent instead of sockets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message at byte {offset} needs {needed} bytes but only {available} remain")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("message at byte {offset} declares an impossible length {length}")]
    BadLength { offset: usize, length: u32 },
    #[error("socket record at byte {offset} has unknown address family {family}")]
    UnknownFamily { offset: usize, family: u8 },
    #[error("socket record at byte {offset} has an attribute of impossible length {length}")]
    BadAttribute { offset: usize, length: u16 },
    /// The kernel answered with `NLMSG_ERROR` (or a failed `NLMSG_DONE`): an errno.
    #[error("the kernel reported error {}", std::io::Error::from_raw_os_error(*.0))]
    Kernel(i32),
}

/// What one received buffer said about the dump as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Batch {
    /// `NLMSG_DONE` was seen: the dump is complete.
    pub done: bool,
    /// The kernel flagged the dump as inconsistent: repeat it.
    pub interrupted: bool,
}

/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then the 48-byte
/// `inet_diag_sockid`.
pub const REQUEST_V2_BYTES: usize = 56;
/// `INET_DIAG_NOCOOKIE` in both halves: a cookie that matches any socket.
pub const NO_COOKIE: u64 = u64::MAX;

/// Writes a request about the one socket at `socket`'s endpoints and interface into
/// `buffer`: a netlink header of message type `kind` with `flags`, and an
/// `inet_diag_req_v2` whose socket id is laid out as a dump reply's (ports in network
/// order, addresses as network-order words, `cookie` as two host-order halves;
/// [`NO_COOKIE`] for any socket there). An exact request does not consult the states:
/// all are asked for, as `ss -K` does.
pub fn encode_exact_request(
    kind: u16,
    flags: u16,
    socket: &SocketRecord,
    cookie: u64,
    sequence: u32,
    buffer: &mut Vec<u8>,
) {
    let length = NLMSG_HEADER_BYTES + REQUEST_V2_BYTES;
    buffer.clear();
    buffer.extend_from_slice(&(length as u32).to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(&flags.to_ne_bytes());
    buffer.extend_from_slice(&sequence.to_ne_bytes());
    buffer.extend_from_slice(&0u32.to_ne_bytes());
    buffer.push(match socket.family {
        Family::Ipv4 => AF_INET,
        Family::Ipv6 => AF_INET6,
    });
    buffer.push(libc::IPPROTO_TCP as u8);
    buffer.push(0); // no extensions
    buffer.push(0); // pad
    buffer.extend_from_slice(&u32::MAX.to_ne_bytes());
    buffer.extend_from_slice(&socket.local_port.to_be_bytes());
    buffer.extend_from_slice(&socket.remote_port.to_be_bytes());
    for address in [socket.local_addr, socket.remote_addr] {
        let mut octets = [0u8; 16];
        match address {
            IpAddr::V4(v4) => octets[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => octets = v6.octets(),
        }
        buffer.extend_from_slice(&octets);
    }
    buffer.extend_from_slice(&socket.interface.to_ne_bytes());
    buffer.extend_from_slice(&(cookie as u32).to_ne_bytes());
    buffer.extend_from_slice(&((cookie >> 32) as u32).to_ne_bytes());
}

/// Walks the netlink messages in `bytes`, handing every socket record of the dump with
/// sequence number `sequence` to `sink`. Messages of other sequence numbers (left over
/// from an abandoned dump) are skipped.
pub fn parse_batch(
    bytes: &[u8],
    sequence: u32,
    mut sink: impl FnMut(SocketRecord),
) -> Result<Batch, ParseError> {
    parse_messages(bytes, sequence, false, |record, _| sink(record))
}

/// [`parse_batch`] for a dump that asked for `INET_DIAG_INFO`: each socket comes with
/// its `tcp_info`, or `None` when it carries none (request sockets, TIME_WAIT
/// remnants) or one shorter than the oldest layout.
pub fn parse_batch_with_info(
    bytes: &[u8],
    sequence: u32,
    sink: impl FnMut(SocketRecord, Option<TcpInfo>),
) -> Result<Batch, ParseError> {
    parse_messages(bytes, sequence, true, sink)
}

fn parse_messages(
    bytes: &[u8],
    sequence: u32,
    with_info: bool,
    mut sink: impl FnMut(SocketRecord, Option<TcpInfo>),
) -> Result<Batch, ParseError> {
    walk_messages(bytes, sequence, |payload, at| {
        if let Some(record) = parse_socket(payload, at)? {
            let info = if with_info {
                socket_info(payload, at)?
            } else {
                None
            };
            sink(record, info);
        }
        Ok(())
    })
}

/// What [`parse_batch`] says of the dump, from the messages' headers alone: the
/// sockets' messages are counted into `sockets`, not read. For a receive loop that
/// hands its replies to another thread to parse.
pub fn scan_batch(bytes: &[u8], sequence: u32, sockets: &mut usize) -> Result<Batch, ParseError> {
    walk_messages(bytes, sequence, |_, _| {
        *sockets += 1;
        Ok(())
    })
}

/// Walks the messages of the dump numbered `sequence` in `bytes`: the end of the dump
/// and the kernel's errors here, each socket's message to `socket` (its payload and
/// where it lies).
fn walk_messages(
    bytes: &[u8],
    sequence: u32,
    mut socket: impl FnMut(&[u8], usize) -> Result<(), ParseError>,
) -> Result<Batch, ParseError> {
    let mut batch = Batch::default();
    for message in messages(bytes) {
        let message = message?;
        if message.header.sequence != sequence {
            continue;
        }
        batch.interrupted |= message.header.flags & NLM_F_DUMP_INTR != 0;
        match message.header.kind {
            NLMSG_DONE => {
                // A dump that failed part-way ends with a negative errno in DONE.
                if let Some(errno) = read_i32(message.payload, 0).filter(|e| *e < 0) {
                    // i32::MIN has no negation: any i32 may come in.
                    return Err(ParseError::Kernel(errno.saturating_neg()));
                }
                batch.done = true;
                return Ok(batch);
            }
            NLMSG_ERROR => {
                let errno = message.error_code()?;
                if errno != 0 {
                    return Err(ParseError::Kernel(errno));
                }
            }
            _ => socket(message.payload, message.at)?,
        }
    }
    Ok(batch)
}

/// Looks for the kernel's answer to a request sent with `NLM_F_ACK` (such as
/// `SOCK_DESTROY`): the `NLMSG_ERROR` message of sequence number `sequence`, whose
/// errno is 0 on success. `None` when `bytes` holds no such message.
pub fn acknowledgement(bytes: &[u8], sequence: u32) -> Result<Option<i32>, ParseError> {
    for message in messages(bytes) {
        let message = message?;
        if message.header.sequence == sequence && message.header.kind == NLMSG_ERROR {
            return message.error_code().map(Some);
        }
    }
    Ok(None)
}

/// The netlink messages packed in one received buffer, in order. A message that cannot
/// be framed is an error, and ends the walk: nothing after it can be found.
fn messages(bytes: &[u8]) -> impl Iterator<Item = Result<Message<'_>, ParseError>> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        if offset >= bytes.len() {
            return None;
        }
        let at = offset;
        let header = match read_header(bytes, at) {
            Ok(header) => header,
            Err(error) => {
                offset = bytes.len();
                return Some(Err(error));
            }
        };
        let payload = &bytes[at + NLMSG_HEADER_BYTES..at + header.length];
        // Messages start on 4-byte boundaries; the last one's padding may be missing.
        offset += header.length.next_multiple_of(4).min(bytes.len() - at);
        Some(Ok(Message {
            at,
            header,
            payload,
        }))
    })
}

/// One netlink message: where it starts in its buffer, its header and what follows it.
struct Message<'a> {
    at: usize,
    header: Header,
    payload: &'a [u8],
}

impl Message<'_> {
    /// The errno an `NLMSG_ERROR` message carries, as a positive number (0 for an
    /// acknowledgement). The kernel sends it negated; i32::MIN has no negation, and any
    /// i32 may come in.
    fn error_code(&self) -> Result<i32, ParseError> {
        read_i32(self.payload, 0)
            .map(i32::saturating_neg)
            .ok_or(ParseError::Truncated {
                offset: self.at,
                needed: 4,
                available: self.payload.len(),
            })
    }
}

struct Header {
    length: usize,
    kind: u16,
    flags: u16,
    sequence: u32,
}

fn read_header(bytes: &[u8], offset: usize) -> Result<Header, ParseError> {
    let available = bytes.len() - offset;
    if available < NLMSG_HEADER_BYTES {
        return Err(ParseError::Truncated {
            offset,
            needed: NLMSG_HEADER_BYTES,
            available,
        });
    }
    let at = &bytes[offset..];
    let length = u32::from_ne_bytes([at[0], at[1], at[2], at[3]]);
    if (length as usize) < NLMSG_HEADER_BYTES {
        return Err(ParseError::BadLength { offset, length });
    }
    if length as usize > available {
        return Err(ParseError::Truncated {
            offset,
            needed: length as usize,
            available,
        });
    }
    Ok(Header {
        length: length as usize,
        kind: u16::from_ne_bytes([at[4], at[5]]),
        flags: u16::from_ne_bytes([at[6], at[7]]),
        sequence: u32::from_ne_bytes([at[8], at[9], at[10], at[11]]),
    })
}

/// Reads one `inet_diag_msg`. Returns `None` for a state this tool does not know (a
/// newer kernel's), which is skipped rather than failing the whole dump.
fn parse_socket(payload: &[u8], offset: usize) -> Result<Option<SocketRecord>, ParseError> {
    if payload.len() < INET_DIAG_MSG_BYTES {
        return Err(ParseError::Truncated {
            offset,
            needed: INET_DIAG_MSG_BYTES,
            available: payload.len(),
        });
    }
    let m = &payload[..INET_DIAG_MSG_BYTES];
    let family = match m[0] {
        AF_INET => Family::Ipv4,
        AF_INET6 => Family::Ipv6,
        family => return Err(ParseError::UnknownFamily { offset, family }),
    };
    let Some(state) = State::from_kernel(m[1]) else {
        return Ok(None);
    };
    let u32_at = |i: usize| u32::from_ne_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
    let address = |i: usize| -> IpAddr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&m[i..i + 16]);
        match family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(octets)),
        }
    };
    let extra = attributes(&payload[INET_DIAG_MSG_BYTES..], offset)?;
    Ok(Some(SocketRecord {
        family,
        state,
        // Only a listener's drops mean something to the tool.
        drops: if state == State::Listen {
            extra.drops
        } else {
            0
        },
        cgroup_id: extra.cgroup_id,
        timer: Timer::from_kernel(m[2]),
        retransmits: m[3],
        // Ports are in network byte order, everything else in host order.
        local_port: u16::from_be_bytes([m[4], m[5]]),
        remote_port: u16::from_be_bytes([m[6], m[7]]),
        local_addr: address(8),
        remote_addr: address(24),
        interface: u32_at(40),
        cookie: u64::from(u32_at(44)) | (u64::from(u32_at(48)) << 32),
        expires_ms: u32_at(52),
        recv_q: u32_at(56),
        send_q: u32_at(60),
        uid: u32_at(64),
        inode: u32_at(68),
    }))
}

/// What the attributes after an `inet_diag_msg` add to the record.
#[derive(Default)]
struct Attributes {
    /// `sk_drops` from `INET_DIAG_SKMEMINFO`; 0 when the attribute is missing (not
    /// requested) or too short to hold it (a kernel older than 3.15, whose array ends
    /// before `SK_MEMINFO_DROPS`).
    drops: u32,
    /// From `INET_DIAG_CGROUP_ID`; 0 when missing or short.
    cgroup_id: u64,
}

/// Reads the attributes that follow an `inet_diag_msg`, checking every length.
fn attributes(mut attributes: &[u8], offset: usize) -> Result<Attributes, ParseError> {
    let mut found = Attributes::default();
    while attributes.len() >= ATTRIBUTE_HEADER_BYTES {
        let length = u16::from_ne_bytes([attributes[0], attributes[1]]);
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]) & ATTRIBUTE_TYPE_MASK;
        let size = usize::from(length);
        if size < ATTRIBUTE_HEADER_BYTES || size > attributes.len() {
            return Err(ParseError::BadAttribute { offset, length });
        }
        let value = &attributes[ATTRIBUTE_HEADER_BYTES..size];
        match kind {
            INET_DIAG_SKMEMINFO => {
                let at = SK_MEMINFO_DROPS * 4;
                found.drops = value
                    .get(at..at + 4)
                    .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            }
            INET_DIAG_CGROUP_ID => {
                found.cgroup_id = value
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_ne_bytes);
            }
            _ => {}
        }
        // The last attribute's padding may be missing.
        attributes = &attributes[size.next_multiple_of(4).min(attributes.len())..];
    }
    Ok(found)
}

/// The `tcp_info` among the attributes of a socket message [`parse_socket`] accepted
/// (so at least an `inet_diag_msg` long).
fn socket_info(payload: &[u8], offset: usize) -> Result<Option<TcpInfo>, ParseError> {
    let attributes = payload.get(INET_DIAG_MSG_BYTES..).unwrap_or(&[]);
    let info = tcp_info::info_attribute(attributes)
        .map_err(|length| ParseError::BadAttribute { offset, length })?;
    Ok(info.and_then(tcp_info::parse_tcp_info))
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let b = bytes.get(at..at + 4)?;
    Some(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Builders of reply bytes, for tests here and for the fuzz target's seed corpus.
#[cfg(test)]
pub(crate) mod encode {
    use super::*;

    pub fn header(length: usize, kind: u16, flags: u16, sequence: u32) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(NLMSG_HEADER_BYTES);
        bytes.extend_from_slice(&(length as u32).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&flags.to_ne_bytes());
        bytes.extend_from_slice(&sequence.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes
    }

    /// The kernel's message for `record`; a listener's with the `INET_DIAG_SKMEMINFO`
    /// attribute carrying its drops, as a dump that asked for it has.
    pub fn socket_message(record: &SocketRecord, sequence: u32, flags: u16) -> Vec<u8> {
        let meminfo_bytes = ATTRIBUTE_HEADER_BYTES + 9 * 4;
        let cgroup_bytes = ATTRIBUTE_HEADER_BYTES + 8;
        let meminfo = if record.state == State::Listen {
            meminfo_bytes
        } else {
            0
        };
        let cgroup = if record.cgroup_id != 0 {
            cgroup_bytes
        } else {
            0
        };
        let attributes = meminfo + cgroup;
        let mut bytes = header(
            NLMSG_HEADER_BYTES + INET_DIAG_MSG_BYTES + attributes,
            20,
            flags,
            sequence,
        );
        bytes.push(match record.family {
            Family::Ipv4 => AF_INET,
            Family::Ipv6 => AF_INET6,
        });
        bytes.push(record.state.kernel_number());
        bytes.push(1);
        bytes.push(record.retransmits);
        bytes.extend_from_slice(&record.local_port.to_be_bytes());
        bytes.extend_from_slice(&record.remote_port.to_be_bytes());
        for address in [record.local_addr, record.remote_addr] {
            let mut octets = [0u8; 16];
            match address {
                IpAddr::V4(v4) => octets[..4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => octets = v6.octets(),
            }
            bytes.extend_from_slice(&octets);
        }
        for word in [
            record.interface,
            record.cookie as u32,
            (record.cookie >> 32) as u32,
            record.expires_ms,
            record.recv_q,
            record.send_q,
            record.uid,
            record.inode,
        ] {
            bytes.extend_from_slice(&word.to_ne_bytes());
        }
        if cgroup > 0 {
            bytes.extend_from_slice(&(cgroup_bytes as u16).to_ne_bytes());
            bytes.extend_from_slice(&INET_DIAG_CGROUP_ID.to_ne_bytes());
            bytes.extend_from_slice(&record.cgroup_id.to_ne_bytes());
        }
        if meminfo > 0 {
            bytes.extend_from_slice(&(meminfo_bytes as u16).to_ne_bytes());
            bytes.extend_from_slice(&INET_DIAG_SKMEMINFO.to_ne_bytes());
            let mut meminfo = [0u32; 9];
            meminfo[SK_MEMINFO_DROPS] = record.drops;
            for word in meminfo {
                bytes.extend_from_slice(&word.to_ne_bytes());
            }
        }
        bytes
    }

    pub fn done(sequence: u32, flags: u16) -> Vec<u8> {
        let mut bytes = header(NLMSG_HEADER_BYTES + 4, NLMSG_DONE, flags, sequence);
        bytes.extend_from_slice(&0i32.to_ne_bytes());
        bytes
    }

    pub fn error(sequence: u32, errno: i32) -> Vec<u8> {
        let mut bytes = header(NLMSG_HEADER_BYTES + 4 + 16, NLMSG_ERROR, 0, sequence);
        bytes.extend_from_slice(&(-errno).to_ne_bytes());
        bytes.extend_from_slice(&header(16, 20, 0, sequence));
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;

    fn established(port: u16) -> SocketRecord {
        SocketRecord {
            family: Family::Ipv4,
            state: State::Established,
            local_addr: "127.0.0.1".parse().unwrap(),
            local_port: 8080,
            remote_addr: "127.0.0.2".parse().unwrap(),
            remote_port: port,
            recv_q: 3,
            send_q: 4,
            timer: Timer::On,
            expires_ms: 200,
            uid: 1000,
            inode: 4242,
            cookie: 0x1_0000_0002,
            ..SocketRecord::default()
        }
    }

    fn collect(bytes: &[u8], sequence: u32) -> Result<(Vec<SocketRecord>, Batch), ParseError> {
        let mut records = Vec::new();
        let batch = parse_batch(bytes, sequence, |r| records.push(r))?;
        Ok((records, batch))
    }

    #[test]
    fn a_scan_says_of_the_dump_what_a_parse_says_and_counts_its_sockets() {
        let mut bytes = socket_message(&established(1), 5, 2);
        bytes.extend(socket_message(&established(2), 9, 2));
        bytes.extend(socket_message(&established(3), 5, 0x10 | 2));
        bytes.extend(done(5, 2));
        let mut sockets = 0;
        let scanned = scan_batch(&bytes, 5, &mut sockets).unwrap();
        let (records, parsed) = collect(&bytes, 5).unwrap();
        assert_eq!(scanned, parsed);
        assert!(scanned.done && scanned.interrupted);
        assert_eq!(
            sockets,
            records.len(),
            "another dump's message is not counted"
        );

        let mut failed = socket_message(&established(1), 5, 2);
        failed.extend(error(5, libc::ENOMEM));
        let mut sockets = 0;
        assert_eq!(
            scan_batch(&failed, 5, &mut sockets),
            Err(ParseError::Kernel(libc::ENOMEM))
        );
        assert_eq!(sockets, 1, "the socket before the error was counted");
    }

    #[test]
    fn records_and_done_parse_back_to_what_was_encoded() {
        let mut bytes = socket_message(&established(1), 5, 2);
        bytes.extend(socket_message(&established(2), 5, 2));
        bytes.extend(done(5, 2));
        let (records, batch) = collect(&bytes, 5).unwrap();
        assert_eq!(records, [established(1), established(2)]);
        assert_eq!(
            batch,
            Batch {
                done: true,
                interrupted: false
            }
        );
    }

    #[test]
    fn ipv6_addresses_and_the_split_cookie_are_reassembled() {
        let mut record = established(9);
        record.family = Family::Ipv6;
        record.local_addr = "::1".parse().unwrap();
        record.remote_addr = "::ffff:127.0.0.1".parse().unwrap();
        record.cookie = 0xdead_beef_0000_0001;
        let (records, _) = collect(&socket_message(&record, 1, 0), 1).unwrap();
        assert_eq!(records, [record]);
    }

    #[test]
    fn a_request_socket_counts_as_syn_recv() {
        let mut bytes = socket_message(&established(1), 1, 0);
        bytes[NLMSG_HEADER_BYTES + 1] = 12;
        let (records, _) = collect(&bytes, 1).unwrap();
        assert_eq!(records[0].state, State::SynRecv);
    }

    #[test]
    fn a_dump_the_kernel_flagged_as_interrupted_is_reported_so() {
        let mut bytes = socket_message(&established(1), 1, NLM_F_DUMP_INTR);
        bytes.extend(done(1, NLM_F_DUMP_INTR));
        let (_, batch) = collect(&bytes, 1).unwrap();
        assert!(batch.interrupted && batch.done);
    }

    #[test]
    fn messages_of_another_dump_are_skipped() {
        let mut bytes = socket_message(&established(1), 4, 0);
        bytes.extend(done(4, 0));
        bytes.extend(socket_message(&established(2), 5, 0));
        let (records, batch) = collect(&bytes, 5).unwrap();
        assert_eq!(records, [established(2)]);
        assert!(!batch.done);
    }

    fn listener(drops: u32) -> SocketRecord {
        let mut listener = established(0);
        listener.state = State::Listen;
        listener.remote_addr = "0.0.0.0".parse().unwrap();
        listener.drops = drops;
        listener
    }

    /// `record`'s message with an `INET_DIAG_INFO` attribute of `info_bytes` bytes
    /// whose RTT (at byte 68) is 1500 µs, as a dump that asked for it has.
    fn with_info(record: &SocketRecord, info_bytes: usize) -> Vec<u8> {
        let mut bytes = socket_message(record, 1, 0);
        let mut info = vec![0u8; info_bytes];
        info[68..72].copy_from_slice(&1500u32.to_ne_bytes());
        bytes.extend_from_slice(&((ATTRIBUTE_HEADER_BYTES + info_bytes) as u16).to_ne_bytes());
        bytes.extend_from_slice(&tcp_info::INET_DIAG_INFO.to_ne_bytes());
        bytes.extend_from_slice(&info);
        let length = bytes.len() as u32;
        bytes[..4].copy_from_slice(&length.to_ne_bytes());
        bytes
    }

    #[test]
    fn a_dump_with_info_hands_each_socket_its_tcp_info_and_one_without_ignores_it() {
        let bytes = with_info(&established(40000), 232);
        let mut seen = Vec::new();
        parse_batch_with_info(&bytes, 1, |record, info| seen.push((record, info))).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, established(40000));
        assert_eq!(seen[0].1.map(|info| info.rtt_us), Some(1500));
        let (records, _) = collect(&bytes, 1).unwrap();
        assert_eq!(records, [established(40000)]);
    }

    #[test]
    fn a_socket_without_the_attribute_or_with_a_short_one_has_no_tcp_info() {
        for bytes in [
            socket_message(&established(40000), 1, 0),
            with_info(&established(40000), 80),
        ] {
            let mut seen = Vec::new();
            parse_batch_with_info(&bytes, 1, |_, info| seen.push(info)).unwrap();
            assert_eq!(seen, [None]);
        }
    }

    #[test]
    fn a_listeners_drops_come_from_its_skmeminfo_attribute() {
        let (records, _) = collect(&socket_message(&listener(1234), 1, 0), 1).unwrap();
        assert_eq!(records, [listener(1234)]);
    }

    #[test]
    fn a_listener_without_the_attribute_or_with_a_short_one_reads_no_drops() {
        let mut bare = socket_message(&established(1), 1, 0);
        bare[NLMSG_HEADER_BYTES + 1] = State::Listen.kernel_number();
        assert_eq!(collect(&bare, 1).unwrap().0[0].drops, 0);

        // An older kernel's array of eight u32s ends before SK_MEMINFO_DROPS.
        let mut short = socket_message(&listener(77), 1, 0);
        let short_length = (ATTRIBUTE_HEADER_BYTES + 8 * 4) as u16;
        let at = NLMSG_HEADER_BYTES + INET_DIAG_MSG_BYTES;
        short[at..at + 2].copy_from_slice(&short_length.to_ne_bytes());
        short.truncate(at + usize::from(short_length));
        let total = short.len() as u32;
        short[0..4].copy_from_slice(&total.to_ne_bytes());
        assert_eq!(collect(&short, 1).unwrap().0[0].drops, 0);
    }

    #[test]
    fn a_sockets_cgroup_comes_from_its_cgroup_id_attribute() {
        let mut record = established(3);
        record.cgroup_id = 0x1_0000_2a2a;
        let (records, _) = collect(&socket_message(&record, 1, 0), 1).unwrap();
        assert_eq!(records[0].cgroup_id, 0x1_0000_2a2a);
        let mut listening = listener(9);
        listening.cgroup_id = 77;
        let (records, _) = collect(&socket_message(&listening, 1, 0), 1).unwrap();
        assert_eq!(records, [listening], "both attributes are read");
    }

    #[test]
    fn a_cgroup_id_attribute_too_short_for_its_u64_reads_as_none() {
        let mut record = established(3);
        record.cgroup_id = 5;
        let mut bytes = socket_message(&record, 1, 0);
        let at = NLMSG_HEADER_BYTES + INET_DIAG_MSG_BYTES;
        let short_length = (ATTRIBUTE_HEADER_BYTES + 4) as u16;
        bytes[at..at + 2].copy_from_slice(&short_length.to_ne_bytes());
        bytes.truncate(at + usize::from(short_length));
        let total = bytes.len() as u32;
        bytes[0..4].copy_from_slice(&total.to_ne_bytes());
        assert_eq!(collect(&bytes, 1).unwrap().0[0].cgroup_id, 0);
    }

    #[test]
    fn an_attribute_longer_than_its_message_is_an_error() {
        let mut bytes = socket_message(&listener(5), 1, 0);
        let at = NLMSG_HEADER_BYTES + INET_DIAG_MSG_BYTES;
        bytes[at..at + 2].copy_from_slice(&400u16.to_ne_bytes());
        assert!(matches!(
            collect(&bytes, 1),
            Err(ParseError::BadAttribute { length: 400, .. })
        ));
    }

    #[test]
    fn a_kernel_error_message_becomes_its_errno() {
        let bytes = error(3, libc::ENOENT);
        assert_eq!(collect(&bytes, 3), Err(ParseError::Kernel(libc::ENOENT)));
    }

    #[test]
    fn a_failed_done_becomes_its_errno() {
        let mut bytes = done(3, 0);
        bytes[16..20].copy_from_slice(&(-libc::EINTR).to_ne_bytes());
        assert_eq!(collect(&bytes, 3), Err(ParseError::Kernel(libc::EINTR)));
    }

    #[test]
    fn a_done_or_error_with_the_most_negative_errno_is_an_error_not_a_panic() {
        let mut failed_done = done(3, 0);
        failed_done[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert_eq!(collect(&failed_done, 3), Err(ParseError::Kernel(i32::MAX)));
        let mut error_message = error(3, 0);
        error_message[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert_eq!(
            collect(&error_message, 3),
            Err(ParseError::Kernel(i32::MAX))
        );
    }

    #[test]
    fn an_acknowledgement_carries_the_errno_of_its_own_request() {
        let mut bytes = encode::error(6, libc::EPERM);
        bytes.extend(encode::error(7, 0));
        assert_eq!(acknowledgement(&bytes, 7), Ok(Some(0)));
        assert_eq!(acknowledgement(&bytes, 6), Ok(Some(libc::EPERM)));
        assert_eq!(acknowledgement(&bytes, 8), Ok(None));
        assert!(acknowledgement(&bytes[..20], 7).is_err());
    }

    #[test]
    fn a_done_with_the_most_negative_errno_is_an_error_not_a_panic() {
        let mut failed_done = done(3, 0);
        failed_done[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert_eq!(collect(&failed_done, 3), Err(ParseError::Kernel(i32::MAX)));
    }

    #[test]
    fn a_truncated_record_is_an_error_not_a_read_past_the_end() {
        let bytes = socket_message(&established(1), 1, 0);
        for cut in 1..bytes.len() {
            assert!(
                collect(&bytes[..cut], 1).is_err(),
                "cut at {cut} was accepted"
            );
        }
    }

    #[test]
    fn a_header_that_claims_too_little_or_too_much_is_an_error() {
        let mut bytes = socket_message(&established(1), 1, 0);
        bytes[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(
            collect(&bytes, 1),
            Err(ParseError::BadLength { .. })
        ));
        bytes[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(
            collect(&bytes, 1),
            Err(ParseError::Truncated { .. })
        ));
    }

    #[test]
    fn a_record_short_of_an_inet_diag_msg_is_an_error() {
        let mut bytes = header(NLMSG_HEADER_BYTES + 10, 20, 0, 1);
        bytes.extend_from_slice(&[2; 10]);
        assert!(matches!(
            collect(&bytes, 1),
            Err(ParseError::Truncated { needed: 72, .. })
        ));
    }

    #[test]
    fn an_unknown_family_is_an_error_and_an_unknown_state_is_skipped() {
        let mut bytes = socket_message(&established(1), 1, 0);
        bytes[NLMSG_HEADER_BYTES + 1] = 13;
        assert_eq!(collect(&bytes, 1).unwrap().0, []);
        bytes[NLMSG_HEADER_BYTES] = 99;
        assert!(matches!(
            collect(&bytes, 1),
            Err(ParseError::UnknownFamily { family: 99, .. })
        ));
    }

    /// Replies the kernel sent for a namespace holding a listener on 127.0.0.1:8080
    /// with one connection from 127.0.0.2:40001, a TIME_WAIT from 127.0.0.3:40002,
    /// and a listener on [::1]:8443 (request sequence number 77).
    const CAPTURED_IPV4: &[u8] = include_bytes!("../../tests/data/sockdiag_ipv4.bin");
    const CAPTURED_IPV6: &[u8] = include_bytes!("../../tests/data/sockdiag_ipv6.bin");

    #[test]
    fn a_captured_kernel_reply_parses_to_the_sockets_that_were_there() {
        let (records, batch) = collect(CAPTURED_IPV4, 77).unwrap();
        assert!(batch.done && !batch.interrupted);
        let seen: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.state,
                    r.local_addr.to_string(),
                    r.local_port,
                    r.remote_addr.to_string(),
                    r.remote_port,
                )
            })
            .collect();
        let owned = |state, l: &str, lp, r: &str, rp| (state, l.to_string(), lp, r.to_string(), rp);
        assert_eq!(
            seen,
            [
                owned(State::Listen, "127.0.0.1", 8080, "0.0.0.0", 0),
                owned(State::Established, "127.0.0.2", 40001, "127.0.0.1", 8080),
                owned(State::Established, "127.0.0.1", 8080, "127.0.0.2", 40001),
                owned(State::TimeWait, "127.0.0.3", 40002, "127.0.0.1", 8080),
            ]
        );
        let listener = &records[0];
        assert_eq!(listener.send_q, 16, "a listener's Send-Q is its backlog");
        assert_ne!(listener.inode, 0);
        let time_wait = &records[3];
        assert_eq!(time_wait.inode, 0, "TIME_WAIT remnants have no file");
        assert_eq!(time_wait.timer, Timer::TimeWait);
        let cookies: std::collections::HashSet<_> = records.iter().map(|r| r.cookie).collect();
        assert_eq!(cookies.len(), 4, "every kernel object has its own cookie");
    }

    #[test]
    fn a_captured_ipv6_reply_parses() {
        let (records, batch) = collect(CAPTURED_IPV6, 77).unwrap();
        assert!(batch.done);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].family, Family::Ipv6);
        assert_eq!(records[0].local_addr.to_string(), "::1");
        assert_eq!(records[0].local_port, 8443);
        assert_eq!(records[0].state, State::Listen);
    }

    #[test]
    fn every_cut_of_a_captured_reply_is_handled() {
        for cut in 0..CAPTURED_IPV4.len() {
            let _ = collect(&CAPTURED_IPV4[..cut], 77);
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // A cheap stand-in for the fuzz target: every prefix and every single-byte
        // corruption of a valid reply parses or errors, and never panics.
        let mut valid = socket_message(&established(1), 1, 0);
        valid.extend(done(1, 0));
        for position in 0..valid.len() {
            for value in [0u8, 1, 0x7f, 0xff] {
                let mut corrupt = valid.clone();
                corrupt[position] = value;
                let _ = collect(&corrupt, 1);
            }
        }
    }
}
