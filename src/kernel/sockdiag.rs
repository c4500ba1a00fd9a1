//! Netlink sock_diag dumps of TCP sockets: building the request, the receive loop, and
//! parsing the replies in place.
//!
//! Replies are walked where they lie in one reused receive buffer: the crate's owned
//! message types cost 70–200 ms of allocation at 100k sockets, a walk in place a few.
//! Parsing lives in [`super::diag_msg`] as pure functions over bytes, so that it can be
//! tested and fuzzed without a kernel. This module must not interpret what it reads
//! beyond turning it into [`SocketRecord`]s (and, for `-i` only, their `tcp_info`
//! beside them, never inside them: live modes keep two records of every socket).
//!
//! Every reply passes through one function, [`SockDiag::receive`], so that a test can
//! stand between the real kernel and the parser ([`SockDiag::interpose`]) and corrupt,
//! cut, flag or replace the kernel's own bytes: that is how the dump loop's answers to
//! interrupted, failed and malformed dumps are tested, with real kernel data around the
//! fault.

use std::io;
use std::time::SystemTime;

use netlink_packet_core::{
    Emitable, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use super::bytecode;
use super::diag_msg::{self, Batch, NLMSG_HEADER_BYTES, ParseError};
use super::tcp_info::TcpInfo;
use crate::filter::Filter;
use crate::snapshot::{Family, Snapshot, SocketRecord};
use crate::tcp::{State, StateSet};

/// How often a dump the kernel marked inconsistent (`NLM_F_DUMP_INTR`) is retried
/// before giving up. Each retry is a full dump, so keep it small.
const DUMP_ATTEMPTS: u32 = 4;

/// The receive buffer. The kernel fills each dump reply up to about 32 KiB
/// (`netlink_dump` sizes by `max_recvmsg_len`), so 64 KiB never truncates a reply.
const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;

/// `INET_DIAG_REQ_BYTECODE`: the request attribute that carries a filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// The original inet_diag request type, still served by `inet_diag_rcv_msg_compat`.
/// Unlike `SOCK_DIAG_BY_FAMILY`, it dumps both families in one walk of the socket
/// tables, which is measurably cheaper than two walks.
const TCPDIAG_GETSOCK: u16 = 18;
/// `struct inet_diag_req`: family, src_len, dst_len, ext, the 48-byte
/// `inet_diag_sockid`, states and dbs.
const LEGACY_REQUEST_BYTES: usize = 60;

/// Why a dump failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(
        "cannot open a NETLINK_SOCK_DIAG socket: {0}{hint}",
        hint = refusal_hint(.0)
    )]
    Open(#[source] io::Error),
    #[error("sending the sock_diag request failed: {0}")]
    Send(#[source] io::Error),
    #[error("receiving the sock_diag reply failed: {0}")]
    Receive(#[source] io::Error),
    #[error(
        "the kernel refused the sock_diag request: {error}{hint}",
        hint = refusal_hint(.error)
    )]
    Refused { error: io::Error },
    #[error("the socket table changed during every one of {DUMP_ATTEMPTS} dumps; try again")]
    Interrupted,
    #[error("the kernel failed the sock_diag dump part-way: {error}")]
    Failed { error: io::Error },
    #[error("malformed sock_diag reply: {0}")]
    Malformed(#[from] ParseError),
}

/// What a refusal most likely means, for the user who has to act on it.
fn refusal_hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::ENOENT)
        | Some(libc::EOPNOTSUPP)
        | Some(libc::EPROTONOSUPPORT)
        | Some(libc::EAFNOSUPPORT) => {
            " (is the kernel built with CONFIG_INET_DIAG and CONFIG_INET_TCP_DIAG, or is the tcp_diag module missing?)"
        }
        Some(libc::EINVAL) => " (the kernel rejected the filter)",
        Some(libc::EPERM) | Some(libc::EACCES) => " (permission denied)",
        _ => "",
    }
}

/// What to ask the kernel for. The kernel filters by state, family and (through
/// `bytecode`) ports, so that a rare state among 100k sockets costs little.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpRequest {
    pub states: StateSet,
    pub ipv4: bool,
    pub ipv6: bool,
    /// An `INET_DIAG_REQ_BYTECODE` program, see [`super::bytecode`].
    pub bytecode: Option<Vec<u8>>,
    /// Ask for each full socket's `tcp_info` (`-i`). It more than triples the size of
    /// an ESTABLISHED socket's message, so only the one-shot modes that show it ask.
    pub info: bool,
}

impl DumpRequest {
    /// Every TCP socket of both families.
    pub fn everything() -> DumpRequest {
        DumpRequest {
            states: StateSet::all(),
            ipv4: true,
            ipv6: true,
            bytecode: None,
            info: false,
        }
    }

    /// The request for a user's filter: states and families as the request's own
    /// fields, port and address conditions compiled to a filter program (state tests
    /// under `or` or `not` are left to user space; see [`Filter::kernel_condition`]).
    pub fn for_filter(filter: &Filter) -> DumpRequest {
        DumpRequest {
            states: filter.states,
            ipv4: filter.ipv4,
            ipv6: filter.ipv6,
            bytecode: filter
                .kernel_condition()
                .map(|condition| bytecode::compile(&condition)),
            info: false,
        }
    }

    /// This request narrowed to `states` (and the states it asked for already).
    pub fn only(self, states: StateSet) -> DumpRequest {
        DumpRequest {
            states: self.states.intersection(states),
            ..self
        }
    }

    fn families(&self) -> impl Iterator<Item = Family> {
        [(self.ipv4, Family::Ipv4), (self.ipv6, Family::Ipv6)]
            .into_iter()
            .filter_map(|(wanted, family)| wanted.then_some(family))
    }
}

/// Stands between the kernel and the parser, for fault-injection tests only (tcpscope
/// never sets one). It is called for every reply with the real receive, which it may
/// call or not, and the receive buffer, whose bytes it may change; it returns what the
/// receive is to be taken to have returned.
#[doc(hidden)]
pub type Interposer = Box<
    dyn FnMut(&mut dyn FnMut(&mut [u8]) -> io::Result<usize>, &mut [u8]) -> io::Result<usize>
        + Send,
>;

/// An open sock_diag socket with its reusable buffers: keep one per poller.
pub struct SockDiag {
    socket: Socket,
    /// The last dump ended before `NLMSG_DONE` (an error, a malformed reply): the kernel
    /// still holds the rest of it for this socket and would answer the next request
    /// with EBUSY, so the next request goes out on a fresh socket.
    abandoned: bool,
    interposer: Option<Interposer>,
    receive: Vec<u8>,
    request: Vec<u8>,
    sequence: u32,
    /// How many sockets the last snapshot held, to size the next one in one go.
    last_size: usize,
    /// Whether the kernel serves the one-walk `TCPDIAG_GETSOCK` request.
    single_walk: bool,
    /// The sockets parsed from one received buffer.
    batch: Vec<SocketRecord>,
    /// Their `tcp_info`, index for index, when the request asked for it; else empty.
    batch_info: Vec<Option<TcpInfo>>,
}

/// Which sockets one dump request walks.
#[derive(Debug, Clone, Copy)]
enum Walk {
    Family(Family),
    BothFamilies,
}

impl SockDiag {
    pub fn open() -> Result<SockDiag, DumpError> {
        Ok(SockDiag {
            socket: open_socket()?,
            abandoned: false,
            interposer: None,
            receive: vec![0; RECEIVE_BUFFER_BYTES],
            request: Vec::with_capacity(256),
            sequence: 0,
            last_size: 0,
            single_walk: true,
            batch: Vec::with_capacity(RECEIVE_BUFFER_BYTES / diag_msg::INET_DIAG_MSG_BYTES),
            batch_info: Vec::new(),
        })
    }

    /// Puts `interposer` between the kernel's replies and the parser: for tests that
    /// inject faults into real replies. Not for use outside tests.
    #[doc(hidden)]
    pub fn interpose(&mut self, interposer: Interposer) {
        self.interposer = Some(interposer);
    }

    /// Checks that the kernel answers TCP sock_diag requests at all, at no cost: a dump
    /// of no state, which the kernel refuses as it would any other when inet_diag or
    /// tcp_diag is missing, but answers without walking its tables.
    pub fn probe(&mut self) -> Result<(), DumpError> {
        let request = DumpRequest {
            states: StateSet::EMPTY,
            ..DumpRequest::everything()
        };
        self.stream(&request, &mut |_| {})
    }

    /// A snapshot of the sockets `filter` matches. The kernel does the filtering it
    /// can; the rest (and a check of the kernel's part) happens here.
    pub fn snapshot(&mut self, filter: &Filter) -> Result<Snapshot, DumpError> {
        self.snapshot_into(filter, Vec::new())
    }

    /// As [`SockDiag::snapshot`], into the memory of `sockets` (emptied first): a live
    /// poller hands back the last table once nothing reads it, so that one table is
    /// alive at a time, not two.
    pub fn snapshot_into(
        &mut self,
        filter: &Filter,
        mut sockets: Vec<SocketRecord>,
    ) -> Result<Snapshot, DumpError> {
        let taken_at = SystemTime::now();
        sockets.clear();
        sockets.reserve_exact(self.last_size + self.last_size / 8);
        self.dump_into(&DumpRequest::for_filter(filter), &mut sockets)?;
        // A filter that takes every socket has nothing to check: the pass would read
        // every record again (about 1 ms at 100k sockets) to keep them all.
        if !takes_everything(filter) {
            sockets.retain(|socket| filter.matches(socket));
        }
        self.last_size = sockets.len();
        Ok(Snapshot::new(taken_at, sockets))
    }

    /// The sockets `filter` matches in `states` only, appended to `out`: a dump the
    /// kernel answers by walking only the tables those states live in (the listening
    /// hash for LISTEN; request sockets for SYN_RECV hang off the established hash, but
    /// the kernel skips every entry in another state without building a reply), so it
    /// costs what those sockets cost, not the host's socket count.
    pub fn sockets_in(
        &mut self,
        filter: &Filter,
        states: StateSet,
        out: &mut Vec<SocketRecord>,
    ) -> Result<(), DumpError> {
        let start = out.len();
        let request = DumpRequest::for_filter(filter).only(states);
        self.dump_into(&request, out)?;
        let mut index = start;
        out.retain(|socket| {
            index += 1;
            index <= start || (states.contains(socket.state) && filter.matches(socket))
        });
        Ok(())
    }

    /// Dumps every socket the request matches, appending them to `out`. On error, `out`
    /// holds what it held before the call.
    pub fn dump_into(
        &mut self,
        request: &DumpRequest,
        out: &mut Vec<SocketRecord>,
    ) -> Result<(), DumpError> {
        let start = out.len();
        let result = self.stream(request, &mut |delivery| match delivery {
            Delivery::Sockets(sockets) => out.extend_from_slice(sockets),
            Delivery::Restart => out.truncate(start),
        });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Dumps every socket the request matches, handing them to `sink` one received
    /// batch at a time, as the kernel produces them, so that a consumer on another
    /// thread can work while the kernel is still walking its tables.
    ///
    /// When the kernel reports that the socket table changed during the dump, the whole
    /// dump is repeated: `sink` first gets [`Delivery::Restart`] and must forget every
    /// socket it was given before.
    pub fn stream(
        &mut self,
        request: &DumpRequest,
        sink: &mut dyn FnMut(Delivery<'_>),
    ) -> Result<(), DumpError> {
        self.stream_with_info(request, &mut |delivery, _| sink(delivery))
    }

    /// [`SockDiag::stream`], handing each batch of sockets with their `tcp_info`, index
    /// for index, when the request asks for it ([`DumpRequest::info`]; an empty slice
    /// otherwise). Sockets that carry none (request sockets, TIME_WAIT remnants) have
    /// `None`.
    pub fn stream_with_info(
        &mut self,
        request: &DumpRequest,
        sink: &mut dyn FnMut(Delivery<'_>, &[Option<TcpInfo>]),
    ) -> Result<(), DumpError> {
        let mut parser = Parser {
            with_info: request.info,
            batch: std::mem::take(&mut self.batch),
            info: std::mem::take(&mut self.batch_info),
            sink,
        };
        let result = self.dump(request, &mut parser);
        self.batch = parser.batch;
        self.batch_info = parser.info;
        result
    }

    /// Dumps every socket the request matches, handing on the kernel's replies as they
    /// came, unparsed, to be parsed with [`parse_replies`]: the thread that receives
    /// then does no more than the kernel's own work, and another parses meanwhile.
    /// Each reply has been checked for the end of the dump, the kernel's errors and
    /// its restarts, as [`SockDiag::stream`] checks them; [`RawDelivery::Restart`]
    /// means what [`Delivery::Restart`] does.
    pub fn stream_replies(
        &mut self,
        request: &DumpRequest,
        sink: &mut dyn FnMut(RawDelivery<'_>),
    ) -> Result<(), DumpError> {
        self.dump(request, &mut Forwarder { sink })
    }

    fn dump(
        &mut self,
        request: &DumpRequest,
        reader: &mut dyn ReplyReader,
    ) -> Result<(), DumpError> {
        for attempt in 0..DUMP_ATTEMPTS {
            if attempt > 0 {
                reader.restart();
            }
            if self.stream_once(request, reader)? == Completion::Consistent {
                return Ok(());
            }
        }
        Err(DumpError::Interrupted)
    }

    fn stream_once(
        &mut self,
        request: &DumpRequest,
        reader: &mut dyn ReplyReader,
    ) -> Result<Completion, DumpError> {
        let mut completion = Completion::Consistent;
        for part in parts(request) {
            if self.stream_part(&part, reader)? == Completion::Interrupted {
                completion = Completion::Interrupted;
            }
        }
        Ok(completion)
    }

    /// One part of a dump (see [`parts`]): one walk for both families, or one each.
    fn stream_part(
        &mut self,
        request: &DumpRequest,
        reader: &mut dyn ReplyReader,
    ) -> Result<Completion, DumpError> {
        if request.ipv4 && request.ipv6 && self.single_walk {
            match self.walk(Walk::BothFamilies, request, reader) {
                // A kernel without the compatibility request refuses it before sending
                // any socket (a refusal is only ever that): use two walks from now on.
                Err(DumpError::Refused { .. }) => self.single_walk = false,
                other => return other,
            }
        }
        let mut completion = Completion::Consistent;
        for family in request.families() {
            if self.walk(Walk::Family(family), request, reader)? == Completion::Interrupted {
                completion = Completion::Interrupted;
            }
        }
        Ok(completion)
    }

    /// One dump request and its replies.
    fn walk(
        &mut self,
        walk: Walk,
        request: &DumpRequest,
        reader: &mut dyn ReplyReader,
    ) -> Result<Completion, DumpError> {
        self.send_request(walk, request)?;
        self.abandoned = true;
        let mut completion = Completion::Consistent;
        let mut delivered = false;
        loop {
            let length = match self.receive() {
                Ok(length) => length,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(DumpError::Receive(error)),
            };
            let read = reader.read(&self.receive[..length], self.sequence);
            delivered |= read.sockets;
            let Batch { done, interrupted } = read.batch.map_err(|error| match error {
                // An error before any socket refuses the request; one after some is a
                // dump that failed part-way, whose sockets must not be used.
                ParseError::Kernel(errno) if delivered => DumpError::Failed {
                    error: io::Error::from_raw_os_error(errno),
                },
                ParseError::Kernel(errno) => DumpError::Refused {
                    error: io::Error::from_raw_os_error(errno),
                },
                other => DumpError::Malformed(other),
            })?;
            if interrupted {
                completion = Completion::Interrupted;
            }
            if done {
                self.abandoned = false;
                return Ok(completion);
            }
        }
    }

    /// The socket the kernel holds now at `socket`'s endpoints (and interface), if
    /// any: one exact `SOCK_DIAG_BY_FAMILY` request, not a dump. The kernel looks the
    /// endpoints up as an arriving segment would (`inet_diag_find_one_icsk()`,
    /// net/ipv4/inet_diag.c): the established hash first, where full sockets, request
    /// sockets and TIME_WAIT or FIN_WAIT2 remnants live, then the listeners. The
    /// request carries no cookie, so any object there answers; `None` when none does
    /// (ENOENT). What the answer means is the caller's business.
    pub fn lookup(&mut self, socket: &SocketRecord) -> Result<Option<SocketRecord>, DumpError> {
        if self.abandoned {
            self.socket = open_socket()?;
            self.abandoned = false;
        }
        self.sequence = self.sequence.wrapping_add(1);
        encode_lookup(socket, self.sequence, &mut self.request);
        self.send_encoded()?;
        // Until the answer is read, a failure leaves it queued for the next request.
        self.abandoned = true;
        loop {
            let length = match self.receive() {
                Ok(length) => length,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(DumpError::Receive(error)),
            };
            let mut found = None;
            let parsed = diag_msg::parse_batch(&self.receive[..length], self.sequence, |r| {
                found.get_or_insert(r);
            });
            match parsed {
                Ok(_) if found.is_some() => {
                    self.abandoned = false;
                    return Ok(found);
                }
                // Another request's late answer, or nothing for this one yet.
                Ok(_) => continue,
                Err(ParseError::Kernel(libc::ENOENT)) => {
                    self.abandoned = false;
                    return Ok(None);
                }
                Err(ParseError::Kernel(errno)) => {
                    self.abandoned = false;
                    return Err(DumpError::Refused {
                        error: io::Error::from_raw_os_error(errno),
                    });
                }
                Err(other) => return Err(DumpError::Malformed(other)),
            }
        }
    }

    /// Receives one reply into `self.receive`: the only place bytes come in.
    fn receive(&mut self) -> io::Result<usize> {
        let SockDiag {
            socket,
            receive,
            interposer,
            ..
        } = self;
        let length = match interposer {
            None => socket.recv(&mut &mut receive[..], 0)?,
            Some(interposer) => interposer(
                &mut |buffer: &mut [u8]| socket.recv(&mut &mut buffer[..], 0),
                receive,
            )?,
        };
        Ok(length.min(receive.len()))
    }

    /// Sends the request encoded in `self.request` to the kernel, whole.
    fn send_encoded(&mut self) -> Result<(), DumpError> {
        let kernel = SocketAddr::new(0, 0);
        let sent = self
            .socket
            .send_to(&self.request, &kernel, 0)
            .map_err(DumpError::Send)?;
        if sent != self.request.len() {
            return Err(DumpError::Send(io::Error::other("short write")));
        }
        Ok(())
    }

    fn send_request(&mut self, walk: Walk, request: &DumpRequest) -> Result<(), DumpError> {
        if self.abandoned {
            self.socket = open_socket()?;
            self.abandoned = false;
        }
        self.sequence = self.sequence.wrapping_add(1);
        match walk {
            Walk::Family(family) => {
                encode_request(family, request, self.sequence, &mut self.request)
            }
            Walk::BothFamilies => encode_legacy_request(request, self.sequence, &mut self.request),
        }
        self.send_encoded()?;
        Ok(())
    }
}

fn open_socket() -> Result<Socket, DumpError> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(DumpError::Open)?;
    socket
        .bind(&SocketAddr::new(0, 0))
        .map_err(DumpError::Open)?;
    Ok(socket)
}

/// What [`SockDiag::stream`] hands its consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// The next sockets of the dump.
    Sockets(&'a [SocketRecord]),
    /// The dump starts over: forget every socket delivered so far.
    Restart,
}

/// What [`SockDiag::stream_replies`] hands its consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawDelivery<'a> {
    /// The next reply of the dump numbered `sequence`, as the kernel sent it, with
    /// sockets in it: for [`parse_replies`].
    Reply { bytes: &'a [u8], sequence: u32 },
    /// The dump starts over: forget every reply delivered so far.
    Restart,
}

/// Parses replies [`SockDiag::stream_replies`] handed on (one, or several laid end to
/// end, each starting at a multiple of four bytes), handing each socket to `sink` with
/// its `tcp_info` when `with_info` (the request asked for it) and there is one.
pub fn parse_replies(
    bytes: &[u8],
    sequence: u32,
    with_info: bool,
    mut sink: impl FnMut(SocketRecord, Option<TcpInfo>),
) -> Result<(), DumpError> {
    let parsed = if with_info {
        diag_msg::parse_batch_with_info(bytes, sequence, sink)
    } else {
        diag_msg::parse_batch(bytes, sequence, |record| sink(record, None))
    };
    match parsed {
        Ok(_) => Ok(()),
        // The receive loop saw no error in these replies, so none can be here.
        Err(ParseError::Kernel(errno)) => Err(DumpError::Failed {
            error: io::Error::from_raw_os_error(errno),
        }),
        Err(other) => Err(DumpError::Malformed(other)),
    }
}

/// How the receive loop has each reply read: parsed here ([`Parser`]), or handed on
/// whole for another thread to parse ([`Forwarder`]).
trait ReplyReader {
    /// Reads one reply of the dump numbered `sequence`.
    fn read(&mut self, bytes: &[u8], sequence: u32) -> Read;
    /// The dump starts over.
    fn restart(&mut self);
}

/// What reading one reply found.
struct Read {
    /// Sockets came in it (before an error in it, if any).
    sockets: bool,
    batch: Result<Batch, ParseError>,
}

/// Parses each reply into records and hands them to the consumer.
struct Parser<'s> {
    with_info: bool,
    batch: Vec<SocketRecord>,
    info: Vec<Option<TcpInfo>>,
    sink: &'s mut dyn FnMut(Delivery<'_>, &[Option<TcpInfo>]),
}

impl ReplyReader for Parser<'_> {
    fn read(&mut self, bytes: &[u8], sequence: u32) -> Read {
        self.batch.clear();
        self.info.clear();
        let (batch, info) = (&mut self.batch, &mut self.info);
        let parsed = if self.with_info {
            diag_msg::parse_batch_with_info(bytes, sequence, |record, tcp_info| {
                batch.push(record);
                info.push(tcp_info);
            })
        } else {
            diag_msg::parse_batch(bytes, sequence, |record| batch.push(record))
        };
        let sockets = !self.batch.is_empty();
        // A reply with an error in it delivers none of its sockets.
        if parsed.is_ok() && sockets {
            (self.sink)(Delivery::Sockets(&self.batch), &self.info);
        }
        Read {
            sockets,
            batch: parsed,
        }
    }

    fn restart(&mut self) {
        (self.sink)(Delivery::Restart, &[]);
    }
}

/// Checks each reply's headers and hands it on unparsed.
struct Forwarder<'s> {
    sink: &'s mut dyn FnMut(RawDelivery<'_>),
}

impl ReplyReader for Forwarder<'_> {
    fn read(&mut self, bytes: &[u8], sequence: u32) -> Read {
        let mut sockets = 0;
        let scanned = diag_msg::scan_batch(bytes, sequence, &mut sockets);
        if scanned.is_ok() && sockets > 0 {
            (self.sink)(RawDelivery::Reply { bytes, sequence });
        }
        Read {
            sockets: sockets > 0,
            batch: scanned,
        }
    }

    fn restart(&mut self) {
        (self.sink)(RawDelivery::Restart);
    }
}

/// Whether a dump finished without the kernel flagging it as interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completion {
    Consistent,
    Interrupted,
}

/// Writes one `SOCK_DIAG_BY_FAMILY` dump request (an `inet_diag_req_v2`, plus the
/// filter program when there is one) into `buffer`.
fn encode_request(family: Family, request: &DumpRequest, sequence: u32, buffer: &mut Vec<u8>) {
    let (family_number, socket_id) = match family {
        Family::Ipv4 => (AF_INET, SocketId::new_v4()),
        Family::Ipv6 => (AF_INET6, SocketId::new_v6()),
    };
    let inet_request = InetRequest {
        family: family_number,
        protocol: IPPROTO_TCP,
        extensions: extensions(request),
        states: StateFlags::from_bits_truncate(request.states.kernel_mask()),
        socket_id,
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(SockDiagMessage::InetRequest(inet_request)),
    );
    message.finalize();
    buffer.clear();
    buffer.resize(message.buffer_len(), 0);
    message.serialize(buffer);

    if let Some(program) = &request.bytecode {
        append_attribute(buffer, INET_DIAG_REQ_BYTECODE, program);
    }
}

/// `SOCK_DIAG_BY_FAMILY` in `include/uapi/linux/sock_diag.h`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Writes the exact request for `socket`'s endpoints into `buffer`: `NLM_F_REQUEST`
/// without `NLM_F_DUMP`, and the socket id laid out as a dump reply's (ports in network
/// order, addresses as network-order words), with no cookie.
fn encode_lookup(socket: &SocketRecord, sequence: u32, buffer: &mut Vec<u8>) {
    diag_msg::encode_exact_request(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST,
        socket,
        diag_msg::NO_COOKIE,
        sequence,
        buffer,
    );
}

/// Writes one `TCPDIAG_GETSOCK` dump request for both families. The crate has no type
/// for this older `struct inet_diag_req`, so it is laid out here: all zeros (family
/// `AF_UNSPEC`, no extensions, a wildcard socket id) but for the state mask.
fn encode_legacy_request(request: &DumpRequest, sequence: u32, buffer: &mut Vec<u8>) {
    let mut header = NetlinkHeader::default();
    header.length = (NLMSG_HEADER_BYTES + LEGACY_REQUEST_BYTES) as u32;
    header.message_type = TCPDIAG_GETSOCK;
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    buffer.clear();
    buffer.resize(NLMSG_HEADER_BYTES + LEGACY_REQUEST_BYTES, 0);
    header.emit(&mut buffer[..NLMSG_HEADER_BYTES]);
    buffer[NLMSG_HEADER_BYTES + 3] = extensions(request).bits();
    let states_at = NLMSG_HEADER_BYTES + 4 + 48;
    buffer[states_at..states_at + 4].copy_from_slice(&request.states.kernel_mask().to_ne_bytes());
    if let Some(program) = &request.bytecode {
        append_attribute(buffer, INET_DIAG_REQ_BYTECODE, program);
    }
}

/// The requests a dump is made of: listeners apart from every other state, when both
/// are wanted. Listeners' drop counters need the `INET_DIAG_SKMEMINFO` extension, which
/// the kernel adds to every full socket a request returns: asked for with the other
/// states, it would grow each ESTABLISHED socket's message from 88 to 128 bytes, for
/// nothing. Apart, it costs one more request: the kernel walks its listening hash for
/// the one and its established hash for the other, never both (`inet_diag_dump_icsk()`
/// in `net/ipv4/inet_diag.c`), so the two together walk what one would.
///
/// Listeners come first, as in the kernel's own one-request dump (and `ss`): a consumer
/// that counts sockets as they come knows every listener before the first connection.
fn parts(request: &DumpRequest) -> Vec<DumpRequest> {
    let listen: StateSet = [State::Listen].into_iter().collect();
    if !request.states.contains(State::Listen) || request.states == listen {
        return vec![request.clone()];
    }
    let mut others = request.states;
    others.remove(State::Listen);
    vec![
        DumpRequest {
            states: listen,
            ..request.clone()
        },
        DumpRequest {
            states: others,
            ..request.clone()
        },
    ]
}

/// The attributes asked for beside each socket: `INET_DIAG_SKMEMINFO` when listeners
/// are wanted, for their drop counter (see [`parts`]); the parser reads it for
/// listeners only. `INET_DIAG_INFO` with `-i` only.
fn extensions(request: &DumpRequest) -> ExtensionFlags {
    let mut extensions = if request.states.contains(State::Listen) {
        ExtensionFlags::SKMEMINFO
    } else {
        ExtensionFlags::empty()
    };
    if request.info {
        extensions |= ExtensionFlags::INFO;
    }
    extensions
}

/// Whether `filter` keeps every TCP socket: all states, both families, no condition.
fn takes_everything(filter: &Filter) -> bool {
    filter.states == StateSet::all() && filter.ipv4 && filter.ipv6 && filter.condition.is_none()
}

/// Appends one `rtattr` to a netlink message and fixes up `nlmsg_len`.
fn append_attribute(message: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let attribute_length = 4 + payload.len();
    message.extend_from_slice(&(attribute_length as u16).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(payload);
    message.resize(message.len().next_multiple_of(4), 0);
    let total = message.len() as u32;
    message[0..4].copy_from_slice(&total.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_laid_end_to_end_parse_as_the_sockets_of_each_in_turn() {
        use crate::kernel::diag_msg::encode::{done, socket_message};
        let record = |port| SocketRecord {
            local_addr: "127.0.0.1".parse().unwrap(),
            remote_addr: "127.0.0.2".parse().unwrap(),
            local_port: 80,
            remote_port: port,
            state: State::Established,
            ..SocketRecord::default()
        };
        let mut replies = socket_message(&record(1), 3, 2);
        replies.extend(socket_message(&record(2), 3, 2));
        assert_eq!(replies.len() % 4, 0);
        replies.extend(socket_message(&record(3), 3, 2));
        replies.extend(done(3, 2));
        let mut ports = Vec::new();
        parse_replies(&replies, 3, false, |socket, info| {
            assert!(info.is_none());
            ports.push(socket.remote_port);
        })
        .unwrap();
        assert_eq!(ports, [1, 2, 3]);

        let cut = &replies[..replies.len() - 30];
        assert!(matches!(
            parse_replies(cut, 3, false, |_, _| {}),
            Err(DumpError::Malformed(_))
        ));
    }

    #[test]
    fn only_a_filter_of_every_state_and_both_families_with_no_condition_skips_the_check() {
        assert!(takes_everything(&Filter::default()));
        for narrower in [
            "state established",
            "sport = :80",
            "-4",
            "not state listening",
        ] {
            let filter = match narrower {
                "-4" => Filter {
                    ipv6: false,
                    ..Filter::default()
                },
                expression => crate::filter::parse(expression).expect("a valid filter"),
            };
            assert!(!takes_everything(&filter), "{narrower}");
        }
    }

    #[test]
    fn a_request_with_a_filter_carries_it_as_an_attribute_and_counts_it_in_the_length() {
        let mut request = DumpRequest::everything();
        request.bytecode = Some(vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let mut buffer = Vec::new();
        encode_request(Family::Ipv4, &request, 7, &mut buffer);
        // nlmsghdr (16) + inet_diag_req_v2 (56) + rtattr header (4) + program (8).
        assert_eq!(buffer.len(), 84);
        assert_eq!(u32::from_ne_bytes(buffer[0..4].try_into().unwrap()), 84);
        assert_eq!(u16::from_ne_bytes(buffer[4..6].try_into().unwrap()), 20);
        assert_eq!(buffer[16], AF_INET);
        assert_eq!(buffer[17], IPPROTO_TCP);
        assert_eq!(
            u32::from_ne_bytes(buffer[20..24].try_into().unwrap()),
            0xffe
        );
        assert_eq!(u16::from_ne_bytes(buffer[72..74].try_into().unwrap()), 12);
        assert_eq!(u16::from_ne_bytes(buffer[74..76].try_into().unwrap()), 1);
        assert_eq!(&buffer[76..84], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn the_one_walk_request_asks_for_both_families_and_the_wanted_states() {
        let mut request = DumpRequest::everything();
        request.states = StateSet::parse_list("SYN_RECV").unwrap();
        let mut buffer = Vec::new();
        encode_legacy_request(&request, 3, &mut buffer);
        assert_eq!(buffer.len(), 76);
        assert_eq!(u32::from_ne_bytes(buffer[0..4].try_into().unwrap()), 76);
        assert_eq!(u16::from_ne_bytes(buffer[4..6].try_into().unwrap()), 18);
        assert_eq!(buffer[16], 0, "AF_UNSPEC: both families");
        assert_eq!(
            u32::from_ne_bytes(buffer[68..72].try_into().unwrap()),
            1 << 3
        );
    }

    #[test]
    fn a_dump_with_listeners_asks_for_skmeminfo_and_one_without_does_not() {
        let skmeminfo = 1 << (diag_msg::INET_DIAG_SKMEMINFO - 1);
        let mut buffer = Vec::new();
        let everything = DumpRequest::everything();
        encode_request(Family::Ipv4, &everything, 1, &mut buffer);
        assert_eq!(buffer[18], skmeminfo, "inet_diag_req_v2.idiag_ext");
        encode_legacy_request(&everything, 1, &mut buffer);
        assert_eq!(buffer[19], skmeminfo, "inet_diag_req.idiag_ext");

        let half_open = DumpRequest {
            states: StateSet::parse_list("SYN_RECV").unwrap(),
            ..DumpRequest::everything()
        };
        encode_request(Family::Ipv4, &half_open, 1, &mut buffer);
        assert_eq!(buffer[18], 0);
        encode_legacy_request(&half_open, 1, &mut buffer);
        assert_eq!(buffer[19], 0);
    }

    #[test]
    fn a_dump_of_listeners_and_other_states_is_two_requests_only_one_with_skmeminfo() {
        let mut filtered = DumpRequest::everything();
        filtered.bytecode = Some(vec![1, 2, 3, 4]);
        let split = parts(&filtered);
        assert_eq!(split.len(), 2);
        assert_eq!(
            split[0].states,
            [State::Listen].into_iter().collect(),
            "listeners first"
        );
        assert_eq!(split[0].states.union(split[1].states), StateSet::all());
        assert_eq!(extensions(&split[0]), ExtensionFlags::SKMEMINFO);
        assert_eq!(extensions(&split[1]), ExtensionFlags::empty());
        assert!(split.iter().all(|part| part.bytecode == filtered.bytecode));

        for states in ["LISTEN", "SYN_RECV,ESTABLISHED"] {
            let one = DumpRequest {
                states: StateSet::parse_list(states).unwrap(),
                ..DumpRequest::everything()
            };
            assert_eq!(parts(&one), std::slice::from_ref(&one), "{states}");
        }
    }

    #[test]
    fn only_a_dump_for_info_asks_the_kernel_for_tcp_info() {
        let info_bit = 1 << (crate::kernel::tcp_info::INET_DIAG_INFO - 1);
        let half_open = DumpRequest {
            states: StateSet::parse_list("ESTABLISHED").unwrap(),
            ..DumpRequest::everything()
        };
        let mut buffer = Vec::new();
        for request in parts(&DumpRequest::everything()).iter().chain([&half_open]) {
            encode_request(Family::Ipv4, request, 1, &mut buffer);
            assert_eq!(buffer[18] & info_bit, 0, "inet_diag_req_v2.idiag_ext");
            encode_legacy_request(request, 1, &mut buffer);
            assert_eq!(buffer[19] & info_bit, 0, "inet_diag_req.idiag_ext");
        }
        let with_info = DumpRequest {
            info: true,
            ..half_open
        };
        encode_request(Family::Ipv4, &with_info, 1, &mut buffer);
        assert_eq!(buffer[18], info_bit);
        encode_legacy_request(&with_info, 1, &mut buffer);
        assert_eq!(buffer[19], info_bit);
    }

    #[test]
    fn a_lookup_names_the_endpoints_with_no_cookie_and_asks_for_no_dump() {
        let mut socket = crate::snapshot::fixtures::socket(
            State::Established,
            "127.0.0.1",
            8080,
            "10.1.2.3",
            40000,
        );
        socket.cookie = 77;
        socket.interface = 3;
        let mut buffer = Vec::new();
        encode_lookup(&socket, 9, &mut buffer);
        let u16_at = |i: usize| u16::from_ne_bytes([buffer[i], buffer[i + 1]]);
        let u32_at = |i: usize| u32::from_ne_bytes(buffer[i..i + 4].try_into().unwrap());
        assert_eq!(
            buffer.len(),
            NLMSG_HEADER_BYTES + diag_msg::REQUEST_V2_BYTES
        );
        assert_eq!(u32_at(0) as usize, buffer.len());
        assert_eq!(u16_at(4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16_at(6), NLM_F_REQUEST, "no NLM_F_DUMP: one socket");
        assert_eq!(u32_at(8), 9);
        assert_eq!((buffer[16], buffer[17]), (AF_INET, IPPROTO_TCP));
        assert_eq!(&buffer[24..26], &8080u16.to_be_bytes());
        assert_eq!(&buffer[26..28], &40000u16.to_be_bytes());
        assert_eq!(&buffer[28..32], &[127, 0, 0, 1]);
        assert_eq!(&buffer[44..48], &[10, 1, 2, 3]);
        assert_eq!(u32_at(60), 3);
        // INET_DIAG_NOCOOKIE in both halves: any socket at those endpoints.
        assert_eq!((u32_at(64), u32_at(68)), (u32::MAX, u32::MAX));
    }

    #[test]
    fn a_request_without_a_filter_is_the_bare_v2_request() {
        let mut buffer = Vec::new();
        encode_request(Family::Ipv6, &DumpRequest::everything(), 1, &mut buffer);
        assert_eq!(buffer.len(), 72);
        assert_eq!(buffer[16], AF_INET6);
    }
}
