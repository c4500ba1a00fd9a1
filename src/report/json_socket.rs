//! One socket's fields as JSON, written into a fixed buffer on the stack: the inner loop
//! of `--json`, which writes every socket of the host.
//!
//! At a million sockets the writing costs about as much as the kernel's dump when each
//! field goes through a growing `Vec` and a `memcpy` of its own. Here the fixed text is
//! copied in pieces of constant size (the kernel's state and family names come
//! precomposed with the field names around them), numbers are written digit pair by
//! digit pair in place, and the socket reaches the document in one copy. The output is
//! byte for byte what serde writes for the same fields (see the tests of
//! [`super::json`]); nothing here needs escaping, since every byte is a number, a fixed
//! name or an address. Process names, which may hold any byte, are not written here.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};

use crate::snapshot::{Family, SocketRecord, Timer};
use crate::tcp::State;

/// Room for the longest socket: two 39-byte IPv6 addresses, eight 20-digit numbers,
/// the field names, and the slack the constant-size copies write past their text.
const LINE_BYTES: usize = 640;

/// The widest precomposed piece, padded: each is copied whole, then the line moves on
/// by its true length.
const PIECE_BYTES: usize = 64;

/// Text of known length padded to [`PIECE_BYTES`].
#[derive(Clone, Copy)]
struct Piece {
    bytes: [u8; PIECE_BYTES],
    len: usize,
}

impl Piece {
    fn of(parts: &[&[u8]]) -> Piece {
        let mut piece = Piece {
            bytes: [0; PIECE_BYTES],
            len: 0,
        };
        for part in parts {
            piece.bytes[piece.len..piece.len + part.len()].copy_from_slice(part);
            piece.len += part.len();
        }
        piece
    }
}

/// The pieces of text that depend only on a socket's family, state and timer.
pub(crate) struct Pieces {
    /// `{"family":"ipv4","state":"LISTEN","local_addr":"`, by family and state.
    heads: Vec<Piece>,
    /// `,"timer":"on","expires_ms":`, by timer.
    timers: Vec<Piece>,
}

const TIMERS: [Timer; 6] = [
    Timer::Off,
    Timer::On,
    Timer::Keepalive,
    Timer::TimeWait,
    Timer::Persist,
    Timer::Unknown(0),
];

impl Pieces {
    pub(crate) fn new() -> Pieces {
        let mut heads = Vec::with_capacity(2 * State::ALL.len());
        for family in [Family::Ipv4, Family::Ipv6] {
            for number in 1..=State::ALL.len() {
                let state = u8::try_from(number)
                    .ok()
                    .and_then(State::from_kernel)
                    .map_or("", State::name);
                heads.push(Piece::of(&[
                    b"{\"family\":\"",
                    family.name().as_bytes(),
                    b"\",\"state\":\"",
                    state.as_bytes(),
                    b"\",\"local_addr\":\"",
                ]));
            }
        }
        let timers = TIMERS
            .iter()
            .map(|timer| {
                Piece::of(&[
                    b",\"timer\":\"",
                    timer.name().as_bytes(),
                    b"\",\"expires_ms\":",
                ])
            })
            .collect();
        Pieces { heads, timers }
    }

    fn head(&self, family: Family, state: State) -> &Piece {
        let family = match family {
            Family::Ipv4 => 0,
            Family::Ipv6 => State::ALL.len(),
        };
        // Kernel numbers run from 1 to 11, one per state.
        &self.heads[family + usize::from(state.kernel_number()) - 1]
    }

    fn timer(&self, timer: Timer) -> &Piece {
        let index = match timer {
            Timer::Off => 0,
            Timer::On => 1,
            Timer::Keepalive => 2,
            Timer::TimeWait => 3,
            Timer::Persist => 4,
            Timer::Unknown(_) => 5,
        };
        &self.timers[index]
    }
}

/// `"00"` to `"99"`, for writing numbers two digits at a time.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut n = 0;
    while n < 100 {
        pairs[2 * n] = b'0' + (n / 10) as u8;
        pairs[2 * n + 1] = b'0' + (n % 10) as u8;
        n += 1;
    }
    pairs
};

/// Each octet's decimal text, padded to four bytes, and its length.
const OCTETS: [([u8; 4], usize); 256] = {
    let mut octets = [([0u8; 4], 0usize); 256];
    let mut n = 0;
    while n < 256 {
        let (hundreds, tens, ones) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        octets[n] = if n >= 100 {
            ([b'0' + hundreds, b'0' + tens, b'0' + ones, b'.'], 3)
        } else if n >= 10 {
            ([b'0' + tens, b'0' + ones, b'.', 0], 2)
        } else {
            ([b'0' + ones, b'.', 0, 0], 1)
        };
        n += 1;
    }
    octets
};

/// One socket's text as it is being written.
pub(crate) struct SocketLine {
    bytes: [u8; LINE_BYTES],
    len: usize,
}

impl SocketLine {
    pub(crate) fn new() -> SocketLine {
        SocketLine {
            bytes: [0; LINE_BYTES],
            len: 0,
        }
    }

    /// What has been written since the last [`SocketLine::clear`].
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Every field of `s` up to and including `cookie`, after a comma unless `first`:
    /// no closing brace, so that the caller can add fields.
    pub(crate) fn write_fields(&mut self, pieces: &Pieces, s: &SocketRecord, first: bool) {
        if !first {
            self.byte(b',');
        }
        self.piece(pieces.head(s.family, s.state));
        self.address(s.local_addr);
        self.text(b"\",\"local_port\":");
        self.number(u64::from(s.local_port));
        self.text(b",\"remote_addr\":\"");
        self.address(s.remote_addr);
        self.text(b"\",\"remote_port\":");
        self.number(u64::from(s.remote_port));
        self.text(b",\"recv_q\":");
        self.number(u64::from(s.recv_q));
        self.text(b",\"send_q\":");
        self.number(u64::from(s.send_q));
        self.piece(pieces.timer(s.timer));
        self.number(u64::from(s.expires_ms));
        self.text(b",\"retransmits\":");
        self.number(u64::from(s.retransmits));
        self.text(b",\"uid\":");
        self.number(u64::from(s.uid));
        self.text(b",\"inode\":");
        self.number(u64::from(s.inode));
        self.text(b",\"cookie\":");
        self.number(s.cookie);
    }

    /// `,"netns":N`.
    pub(crate) fn write_netns(&mut self, netns: u64) {
        self.text(b",\"netns\":");
        self.number(netns);
    }

    #[inline(always)]
    fn byte(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// Fixed text: its length is known where this is inlined, so the copy is too.
    #[inline(always)]
    fn text(&mut self, text: &[u8]) {
        self.bytes[self.len..self.len + text.len()].copy_from_slice(text);
        self.len += text.len();
    }

    #[inline(always)]
    fn piece(&mut self, piece: &Piece) {
        self.bytes[self.len..self.len + PIECE_BYTES].copy_from_slice(&piece.bytes);
        self.len += piece.len;
    }

    /// A number in decimal, written from its last digit back, two digits at a time.
    #[inline(always)]
    fn number(&mut self, mut n: u64) {
        let digits = n.checked_ilog10().map_or(1, |log| log as usize + 1);
        let mut at = self.len + digits;
        self.len = at;
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            at -= 2;
            self.bytes[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            let pair = n as usize * 2;
            self.bytes[at - 2..at].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        } else {
            self.bytes[at - 1] = b'0' + n as u8;
        }
    }

    fn address(&mut self, address: IpAddr) {
        match address {
            IpAddr::V4(v4) => self.ipv4(v4),
            // IPv6 through its `Display`, which gives the RFC 5952 form; rare enough
            // among a host's sockets not to matter.
            IpAddr::V6(v6) => {
                let mut rest = &mut self.bytes[self.len..];
                let room = rest.len();
                // 39 bytes at most, and the line has room for two: cannot fail.
                let _ = write!(rest, "{v6}");
                let written = room - rest.len();
                self.len += written;
            }
        }
    }

    /// A dotted quad: each octet's padded text copied whole, dot included.
    #[inline(always)]
    fn ipv4(&mut self, v4: Ipv4Addr) {
        for octet in v4.octets() {
            let (text, len) = &OCTETS[usize::from(octet)];
            self.bytes[self.len..self.len + 4].copy_from_slice(text);
            self.len += len + 1;
        }
        // The last octet's dot is not part of the address.
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::socket;

    #[test]
    fn the_longest_socket_fits_its_line() {
        let mut record = socket(
            State::Established,
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            u16::MAX,
            "1111:2222:3333:4444:5555:6666:7777:8888",
            u16::MAX,
        );
        record.recv_q = u32::MAX;
        record.send_q = u32::MAX;
        record.timer = Timer::Unknown(7);
        record.expires_ms = u32::MAX;
        record.retransmits = u8::MAX;
        record.uid = u32::MAX;
        record.inode = u32::MAX;
        record.cookie = u64::MAX;
        let mut line = SocketLine::new();
        line.write_fields(&Pieces::new(), &record, false);
        line.write_netns(u64::MAX);
        let text = format!("[{{{}}}]", String::from_utf8_lossy(&line.as_bytes()[2..]));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0]["cookie"], u64::MAX);
        assert_eq!(parsed[0]["timer"], "unknown");
        assert!(line.len + PIECE_BYTES <= LINE_BYTES, "{} bytes", line.len);
    }

    #[test]
    fn numbers_are_written_in_decimal_at_every_length() {
        let mut line = SocketLine::new();
        let mut n = 1u64;
        let mut expected = String::new();
        for _ in 0..20 {
            for value in [n - 1, n, n + 1, n.saturating_mul(9)] {
                line.clear();
                line.number(value);
                expected.clear();
                expected.push_str(&value.to_string());
                assert_eq!(line.as_bytes(), expected.as_bytes());
            }
            n = n.saturating_mul(10);
        }
        line.clear();
        line.number(u64::MAX);
        assert_eq!(line.as_bytes(), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn every_ipv4_octet_is_written_as_display_writes_it() {
        let mut line = SocketLine::new();
        for octet in 0..=255u8 {
            let address = Ipv4Addr::new(octet, 255 - octet, octet / 2, 0);
            line.clear();
            line.ipv4(address);
            assert_eq!(line.as_bytes(), address.to_string().as_bytes());
        }
    }
}
