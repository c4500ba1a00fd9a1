//! What a record's payload holds, and its byte layout: one poll (all its sockets, or
//! what changed since the previous poll), or a failed poll.
//!
//! Every number is little-endian so that a recording reads the same on any machine.
//! Decoding checks every length before it reads, as the sock_diag parser does: a
//! recording is outside data (it may come from another machine, or be damaged in a
//! way its checksum cannot see).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::diff::{Ending, Kind, Transition};
use crate::kernel::events::EventStatus;
use crate::kernel::procfs::{COUNTERS, TcpExt};
use crate::snapshot::{Endpoints, Family, SocketRecord, Timer};
use crate::tcp::{Path, State};

const POLL_ALL: u8 = 1;
const POLL_CHANGES: u8 = 2;
const POLL_FAILED: u8 = 3;

/// How many of [`COUNTERS`], from the first, a record holds: format version 1 holds
/// seven. Counters kept since (`TCPTimeWaitOverflow`) are not recorded and replay as 0;
/// recording them needs a new format version, with version 1 files still read.
const RECORDED_COUNTERS: usize = 7;

/// The last second a record may be dated: 9999-12-31T23:59:59Z.
pub const LAST_SECOND: u64 = 253_402_300_799;

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Poll(PollRecord),
    PollFailed { at: SystemTime, message: String },
}

/// One poll as the poller delivered it, with its sockets as a whole or as changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRecord {
    pub taken_at: SystemTime,
    pub took: Duration,
    pub events: EventStatus,
    pub event_overflows: u32,
    pub counters: TcpExt,
    pub sockets: Sockets,
    pub transitions: Vec<Transition>,
}

/// A poll's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sockets {
    /// Every socket: the first poll of a file, from which the rest follow.
    All(Vec<SocketRecord>),
    /// What changed since the previous poll, sockets named by cookie.
    Changes(Changes),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// New sockets, and sockets whose identity fields changed.
    pub added: Vec<SocketRecord>,
    /// Sockets whose state, queues or timer changed.
    pub updated: Vec<Dynamic>,
    pub removed: Vec<u64>,
}

/// The fields of a socket that change while it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dynamic {
    pub cookie: u64,
    pub state: State,
    pub timer: Timer,
    pub retransmits: u8,
    pub recv_q: u32,
    pub send_q: u32,
    pub expires_ms: u32,
}

impl Dynamic {
    pub fn of(socket: &SocketRecord) -> Dynamic {
        Dynamic {
            cookie: socket.cookie,
            state: socket.state,
            timer: socket.timer,
            retransmits: socket.retransmits,
            recv_q: socket.recv_q,
            send_q: socket.send_q,
            expires_ms: socket.expires_ms,
        }
    }

    pub fn apply_to(&self, socket: &mut SocketRecord) {
        socket.state = self.state;
        socket.timer = self.timer;
        socket.retransmits = self.retransmits;
        socket.recv_q = self.recv_q;
        socket.send_q = self.send_q;
        socket.expires_ms = self.expires_ms;
    }
}

/// A payload that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable record: {0}")]
pub struct DecodeError(pub String);

// ---- encoding ----

pub fn encode(entry: &Entry, out: &mut Vec<u8>) {
    out.clear();
    match entry {
        Entry::Poll(poll) => {
            out.push(match poll.sockets {
                Sockets::All(_) => POLL_ALL,
                Sockets::Changes(_) => POLL_CHANGES,
            });
            put_time(out, poll.taken_at);
            put_u32(
                out,
                u32::try_from(poll.took.as_micros()).unwrap_or(u32::MAX),
            );
            match &poll.events {
                EventStatus::Subscribed => out.push(0),
                EventStatus::Off => out.push(1),
                EventStatus::Refused(reason) => {
                    out.push(2);
                    put_text(out, reason);
                }
            }
            put_u32(out, poll.event_overflows);
            for counter in &COUNTERS[..RECORDED_COUNTERS] {
                put_u64(out, counter.get(&poll.counters));
            }
            match &poll.sockets {
                Sockets::All(sockets) => put_sockets(out, sockets),
                Sockets::Changes(changes) => {
                    put_sockets(out, &changes.added);
                    put_count(out, changes.updated.len());
                    for update in &changes.updated {
                        put_u64(out, update.cookie);
                        out.extend_from_slice(&[
                            update.state.kernel_number(),
                            timer_number(update.timer),
                            update.retransmits,
                            0,
                        ]);
                        put_u32(out, update.recv_q);
                        put_u32(out, update.send_q);
                        put_u32(out, update.expires_ms);
                    }
                    put_count(out, changes.removed.len());
                    for cookie in &changes.removed {
                        put_u64(out, *cookie);
                    }
                }
            }
            put_count(out, poll.transitions.len());
            for transition in &poll.transitions {
                put_transition(out, transition);
            }
        }
        Entry::PollFailed { at, message } => {
            out.push(POLL_FAILED);
            put_time(out, *at);
            put_text(out, message);
        }
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    put_u32(out, u32::try_from(count).unwrap_or(u32::MAX));
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_count(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn put_time(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    put_u64(out, since.as_secs());
    put_u32(out, since.subsec_nanos());
}

fn put_address(out: &mut Vec<u8>, address: IpAddr) {
    let mut octets = [0u8; 16];
    match address {
        IpAddr::V4(v4) => octets[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => octets = v6.octets(),
    }
    out.extend_from_slice(&octets);
}

/// 72 bytes per socket, the same fields as an `inet_diag_msg` plus the family.
fn put_sockets(out: &mut Vec<u8>, sockets: &[SocketRecord]) {
    put_count(out, sockets.len());
    for s in sockets {
        out.extend_from_slice(&[
            family_number(s.family),
            s.state.kernel_number(),
            timer_number(s.timer),
            s.retransmits,
        ]);
        out.extend_from_slice(&s.local_port.to_le_bytes());
        out.extend_from_slice(&s.remote_port.to_le_bytes());
        put_address(out, s.local_addr);
        put_address(out, s.remote_addr);
        for value in [
            s.recv_q,
            s.send_q,
            s.expires_ms,
            s.uid,
            s.inode,
            s.interface,
        ] {
            put_u32(out, value);
        }
        put_u64(out, s.cookie);
    }
}

fn put_transition(out: &mut Vec<u8>, t: &Transition) {
    out.push(match t.kind {
        Kind::Opened => 0,
        Kind::Changed => 1,
        Kind::Closed => 2,
    });
    out.push(family_number(t.endpoints.family));
    put_address(out, t.endpoints.local.0);
    out.extend_from_slice(&t.endpoints.local.1.to_le_bytes());
    put_address(out, t.endpoints.remote.0);
    out.extend_from_slice(&t.endpoints.remote.1.to_le_bytes());
    out.push(t.from.map_or(0, State::kernel_number));
    out.push(t.to.map_or(0, State::kernel_number));
    out.push(t.via.len() as u8);
    out.extend(t.via.iter().map(State::kernel_number));
    out.push(u8::from(t.exact));
    out.push(t.ending.map_or(0, ending_number));
    put_u64(out, t.cookie);
}

fn family_number(family: Family) -> u8 {
    match family {
        Family::Ipv4 => 4,
        Family::Ipv6 => 6,
    }
}

fn timer_number(timer: Timer) -> u8 {
    match timer {
        Timer::Off => 0,
        Timer::On => 1,
        Timer::Keepalive => 2,
        Timer::TimeWait => 3,
        Timer::Persist => 4,
        Timer::Unknown(number) => number,
    }
}

/// Endings by number, 1-based (0 is "none"); append only, never reorder.
const ENDINGS: [Ending; 9] = [
    Ending::TimeWaitExpired,
    Ending::LastAckCompleted,
    Ending::HalfOpenAbandoned,
    Ending::ConnectFailed,
    Ending::ListenerClosed,
    Ending::PeerClosedOrReset,
    Ending::CloseCutShort,
    Ending::BetweenPolls,
    Ending::Released,
];

fn ending_number(ending: Ending) -> u8 {
    ENDINGS
        .iter()
        .position(|known| *known == ending)
        .map_or(0, |index| index as u8 + 1)
}

// ---- decoding ----

pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
    let mut input = Input { bytes, at: 0 };
    let kind = input.u8()?;
    let entry = match kind {
        POLL_ALL | POLL_CHANGES => {
            let taken_at = input.time()?;
            let took = Duration::from_micros(u64::from(input.u32()?));
            let events = match input.u8()? {
                0 => EventStatus::Subscribed,
                1 => EventStatus::Off,
                2 => EventStatus::Refused(input.text()?),
                other => return Err(input.error(&format!("event status {other}"))),
            };
            let event_overflows = input.u32()?;
            let mut counters = TcpExt::default();
            for counter in &COUNTERS[..RECORDED_COUNTERS] {
                *counter.get_mut(&mut counters) = input.u64()?;
            }
            let sockets = if kind == POLL_ALL {
                Sockets::All(input.sockets()?)
            } else {
                let added = input.sockets()?;
                let updated = input.list(24, Input::dynamic)?;
                let removed = input.list(8, Input::u64)?;
                Sockets::Changes(Changes {
                    added,
                    updated,
                    removed,
                })
            };
            let transitions = input.list(50, Input::transition)?;
            Entry::Poll(PollRecord {
                taken_at,
                took,
                events,
                event_overflows,
                counters,
                sockets,
                transitions,
            })
        }
        POLL_FAILED => Entry::PollFailed {
            at: input.time()?,
            message: input.text()?,
        },
        other => return Err(input.error(&format!("unknown record kind {other}"))),
    };
    if input.at != bytes.len() {
        return Err(input.error("bytes left over after the record"));
    }
    Ok(entry)
}

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn error(&self, what: &str) -> DecodeError {
        DecodeError(format!("{what} at byte {} of the record", self.at))
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.error(&format!("{count} bytes wanted, the record ends")))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn time(&mut self) -> Result<SystemTime, DecodeError> {
        let seconds = self.u64()?;
        let nanos = self.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(self.error("a time with more than a second of nanoseconds"));
        }
        // What the outputs can print: RFC 3339 and the clock have four-digit years.
        if seconds > LAST_SECOND {
            return Err(self.error("a time after the year 9999"));
        }
        UNIX_EPOCH
            .checked_add(Duration::new(seconds, nanos))
            .ok_or_else(|| self.error("a time out of range"))
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        let length = self.u32()? as usize;
        let bytes = self.take(length)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// A count, then that many items of at least `min_bytes` each: the count is
    /// checked against what is left, so a damaged count cannot make a huge allocation.
    fn list<T>(
        &mut self,
        min_bytes: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_bytes) > self.bytes.len() - self.at {
            return Err(self.error(&format!("a count of {count} that cannot fit")));
        }
        (0..count).map(|_| item(self)).collect()
    }

    fn state(&mut self) -> Result<State, DecodeError> {
        let number = self.u8()?;
        State::from_kernel(number).ok_or_else(|| self.error(&format!("state {number}")))
    }

    fn optional_state(&mut self) -> Result<Option<State>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            number => State::from_kernel(number)
                .map(Some)
                .ok_or_else(|| self.error(&format!("state {number}"))),
        }
    }

    fn family(&mut self) -> Result<Family, DecodeError> {
        match self.u8()? {
            4 => Ok(Family::Ipv4),
            6 => Ok(Family::Ipv6),
            other => Err(self.error(&format!("family {other}"))),
        }
    }

    fn address(&mut self, family: Family) -> Result<IpAddr, DecodeError> {
        let octets: [u8; 16] = self.array()?;
        Ok(match family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(octets)),
        })
    }

    fn sockets(&mut self) -> Result<Vec<SocketRecord>, DecodeError> {
        self.list(72, Input::socket)
    }

    fn socket(&mut self) -> Result<SocketRecord, DecodeError> {
        let family = self.family()?;
        let state = self.state()?;
        let timer = Timer::from_kernel(self.u8()?);
        let retransmits = self.u8()?;
        let local_port = self.u16()?;
        let remote_port = self.u16()?;
        let local_addr = self.address(family)?;
        let remote_addr = self.address(family)?;
        Ok(SocketRecord {
            family,
            state,
            timer,
            retransmits,
            local_port,
            remote_port,
            local_addr,
            remote_addr,
            recv_q: self.u32()?,
            send_q: self.u32()?,
            expires_ms: self.u32()?,
            uid: self.u32()?,
            inode: self.u32()?,
            interface: self.u32()?,
            cookie: self.u64()?,
            // Not recorded: a replayed listener shows no drops.
            drops: 0,
            // Not recorded either: a replay groups by cgroup as "none".
            cgroup_id: 0,
        })
    }

    fn dynamic(&mut self) -> Result<Dynamic, DecodeError> {
        let cookie = self.u64()?;
        let state = self.state()?;
        let timer = Timer::from_kernel(self.u8()?);
        let retransmits = self.u8()?;
        self.u8()?;
        Ok(Dynamic {
            cookie,
            state,
            timer,
            retransmits,
            recv_q: self.u32()?,
            send_q: self.u32()?,
            expires_ms: self.u32()?,
        })
    }

    fn transition(&mut self) -> Result<Transition, DecodeError> {
        let kind = match self.u8()? {
            0 => Kind::Opened,
            1 => Kind::Changed,
            2 => Kind::Closed,
            other => return Err(self.error(&format!("transition kind {other}"))),
        };
        let family = self.family()?;
        let local = (self.address(family)?, self.u16()?);
        let remote = (self.address(family)?, self.u16()?);
        let from = self.optional_state()?;
        let to = self.optional_state()?;
        let length = usize::from(self.u8()?);
        let mut via = Path::EMPTY;
        for _ in 0..length {
            let state = self.state()?;
            via = via
                .then(state)
                .ok_or_else(|| self.error("a path longer than any in the state machine"))?;
        }
        let exact = self.u8()? != 0;
        let ending = match self.u8()? {
            0 => None,
            number => Some(
                *ENDINGS
                    .get(usize::from(number) - 1)
                    .ok_or_else(|| self.error(&format!("ending {number}")))?,
            ),
        };
        Ok(Transition {
            kind,
            endpoints: Endpoints {
                family,
                local,
                remote,
            },
            from,
            to,
            via,
            exact,
            ending,
            cookie: self.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures;

    fn sample_poll(sockets: Sockets) -> Entry {
        let endpoints = fixtures::socket(State::Established, "::1", 80, "::1", 5000).endpoints();
        Entry::Poll(PollRecord {
            taken_at: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            took: Duration::from_micros(1500),
            events: EventStatus::Refused("no permission".into()),
            event_overflows: 2,
            counters: TcpExt {
                syncookies_sent: 1,
                syncookies_recv: 2,
                syncookies_failed: 3,
                listen_overflows: 4,
                listen_drops: 5,
                req_q_full_do_cookies: 6,
                req_q_full_drop: u64::MAX,
                tcp_time_wait_overflow: 0,
            },
            sockets,
            transitions: vec![
                Transition {
                    kind: Kind::Changed,
                    endpoints,
                    from: Some(State::Established),
                    to: Some(State::TimeWait),
                    via: Path::of(&[State::FinWait1, State::FinWait2]).unwrap(),
                    exact: false,
                    ending: None,
                    cookie: 77,
                },
                Transition {
                    kind: Kind::Closed,
                    endpoints,
                    from: Some(State::LastAck),
                    to: None,
                    via: Path::EMPTY,
                    exact: true,
                    ending: Some(Ending::Released),
                    cookie: u64::MAX,
                },
            ],
        })
    }

    fn sockets() -> Vec<SocketRecord> {
        let mut a = fixtures::socket(State::SynRecv, "127.0.0.1", 80, "127.64.3.4", 40000);
        a.timer = Timer::On;
        a.expires_ms = 812;
        a.retransmits = 1;
        a.cookie = 9;
        let mut b = fixtures::socket(State::Listen, "::", 443, "::", 0);
        b.timer = Timer::Unknown(9);
        b.inode = 12345;
        b.uid = 1000;
        b.cookie = u64::MAX - 1;
        vec![a, b]
    }

    #[test]
    fn every_entry_decodes_to_what_was_encoded() {
        let entries = [
            sample_poll(Sockets::All(sockets())),
            sample_poll(Sockets::Changes(Changes {
                added: sockets(),
                updated: vec![Dynamic::of(&sockets()[0])],
                removed: vec![1, 2, u64::MAX],
            })),
            Entry::PollFailed {
                at: UNIX_EPOCH + Duration::from_secs(5),
                message: "dumping failed: ENOBUFS ✗".into(),
            },
        ];
        let mut bytes = Vec::new();
        for entry in entries {
            encode(&entry, &mut bytes);
            assert_eq!(decode(&bytes), Ok(entry));
        }
    }

    /// Recordings already made hold the seven counters of format version 1 in this
    /// order; they must keep replaying as they were recorded.
    #[test]
    fn a_poll_holds_the_seven_tcpext_counters_in_their_version_1_order() {
        let mut bytes = Vec::new();
        encode(&sample_poll(Sockets::All(Vec::new())), &mut bytes);

        // sample_poll counts 1 SyncookiesSent, 2 SyncookiesRecv, … 6
        // TCPReqQFullDoCookies and u64::MAX TCPReqQFullDrop.
        let version_1: Vec<u8> = [1u64, 2, 3, 4, 5, 6, u64::MAX]
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        assert!(bytes.windows(56).any(|window| window == version_1));
        let recorded: Vec<&str> = COUNTERS[..RECORDED_COUNTERS]
            .iter()
            .map(|counter| counter.key)
            .collect();
        assert_eq!(
            recorded,
            [
                "syncookies_sent",
                "syncookies_recv",
                "syncookies_failed",
                "listen_overflows",
                "listen_drops",
                "req_q_full_do_cookies",
                "req_q_full_drop"
            ],
            "format version 1 holds these seven TcpExt counters in this order"
        );
    }

    #[test]
    fn a_socket_takes_72_bytes() {
        let mut one = Vec::new();
        encode(
            &sample_poll(Sockets::All(sockets()[..1].to_vec())),
            &mut one,
        );
        let mut two = Vec::new();
        encode(&sample_poll(Sockets::All(sockets())), &mut two);
        assert_eq!(two.len() - one.len(), 72);
    }

    #[test]
    fn every_truncation_of_a_record_is_an_error_not_a_panic() {
        let mut bytes = Vec::new();
        encode(&sample_poll(Sockets::All(sockets())), &mut bytes);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        bytes.push(0);
        assert!(decode(&bytes).is_err(), "trailing bytes");
    }

    #[test]
    fn a_time_after_the_year_9999_is_an_error_and_its_last_second_is_not() {
        let failed = |seconds| {
            let mut bytes = vec![POLL_FAILED];
            put_u64(&mut bytes, seconds);
            put_u32(&mut bytes, 999_999_999);
            put_text(&mut bytes, "x");
            decode(&bytes)
        };
        assert!(failed(LAST_SECOND).is_ok());
        let error = failed(LAST_SECOND + 1).unwrap_err();
        assert!(error.0.contains("9999"), "{error}");
        assert!(failed(u64::MAX).is_err());
    }

    #[test]
    fn damaged_fields_are_errors_not_panics() {
        let mut bytes = Vec::new();
        encode(&sample_poll(Sockets::All(sockets())), &mut bytes);
        for at in 0..bytes.len() {
            for value in [0u8, 0x7f, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] = value;
                let _ = decode(&damaged);
            }
        }
    }
}
