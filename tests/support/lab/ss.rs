//! The oracle: `ss -tanH` run inside the lab, parsed into entries that tests compare with,
//! and waiting until it agrees with what a test expects.
//!
//! This module deliberately shares no code with tcpscope, not even its state names: an
//! oracle that reused the code under test would agree with its bugs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Lab;

/// A TCP state, as `ss` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
}

impl TcpState {
    /// Every state, in the kernel's order: `ALL[n - 1]` is the state the kernel numbers `n`.
    const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// The name in `ss`'s State column (iproute2's `sstate_name`).
    pub fn ss_name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTAB",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynRecv => "SYN-RECV",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::TimeWait => "TIME-WAIT",
            TcpState::Close => "UNCONN",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::LastAck => "LAST-ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// The name `ss`'s `state` filter takes.
    pub fn ss_filter(self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn-sent",
            TcpState::SynRecv => "syn-recv",
            TcpState::FinWait1 => "fin-wait-1",
            TcpState::FinWait2 => "fin-wait-2",
            TcpState::TimeWait => "time-wait",
            TcpState::Close => "closed",
            TcpState::CloseWait => "close-wait",
            TcpState::LastAck => "last-ack",
            TcpState::Listen => "listening",
            TcpState::Closing => "closing",
        }
    }

    /// The state `ss` prints as `name`.
    pub fn from_ss_name(name: &str) -> Option<TcpState> {
        TcpState::ALL
            .into_iter()
            .find(|state| state.ss_name() == name)
    }

    /// The state the kernel numbers `number` (`include/net/tcp_states.h`), as `TCP_INFO`
    /// reports it.
    pub fn from_kernel(number: u8) -> Option<TcpState> {
        match number {
            1..=11 => Some(TcpState::ALL[usize::from(number) - 1]),
            // TCP_NEW_SYN_RECV, a request socket; sock_diag reports it as SYN_RECV.
            12 => Some(TcpState::SynRecv),
            _ => None,
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ss_name())
    }
}

/// One socket as `ss` lists it: its state and its 4-tuple. A listener has no peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entry {
    pub state: TcpState,
    pub local: SocketAddr,
    pub peer: Option<SocketAddr>,
}

impl Entry {
    /// An entry for a connected socket.
    pub fn connected(state: TcpState, local: SocketAddr, peer: SocketAddr) -> Entry {
        Entry {
            state,
            local,
            peer: Some(peer),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peer {
            Some(peer) => write!(f, "{} {} {}", self.state, self.local, peer),
            None => write!(f, "{} {} *", self.state, self.local),
        }
    }
}

/// One line of `ss -tanH`, as printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsLine {
    /// The state as `ss` prints it: `ESTAB`, `SYN-RECV`, ….
    pub state: String,
    pub recv_q: u64,
    pub send_q: u64,
    /// `addr:port`, IPv6 in brackets: `127.0.0.1:80`, `[::1]:80`.
    pub local: String,
    /// `addr:port`, or `addr:*` for a listener: `0.0.0.0:*`, `[::]:*`.
    pub peer: String,
}

impl SsLine {
    /// Parses one line. `ss ... state X` leaves out the State column; pass the state it was
    /// filtered on as `filtered`.
    pub fn parse(line: &str, filtered: Option<TcpState>) -> Result<SsLine> {
        let mut columns = line.split_whitespace();
        let mut next = |what: &str| {
            columns
                .next()
                .with_context(|| format!("ss line {line:?} has no {what} column"))
        };
        let state = match filtered {
            Some(state) => state.ss_name().to_owned(),
            None => next("State")?.to_owned(),
        };
        let recv_q = next("Recv-Q")?;
        let recv_q = recv_q
            .parse()
            .with_context(|| format!("ss line {line:?}: Recv-Q {recv_q:?}"))?;
        let send_q = next("Send-Q")?;
        let send_q = send_q
            .parse()
            .with_context(|| format!("ss line {line:?}: Send-Q {send_q:?}"))?;
        let local = next("Local Address:Port")?.to_owned();
        let peer = next("Peer Address:Port")?.to_owned();
        Ok(SsLine {
            state,
            recv_q,
            send_q,
            local,
            peer,
        })
    }

    /// The state and 4-tuple this line shows.
    pub fn entry(&self) -> Result<Entry> {
        let state = TcpState::from_ss_name(&self.state)
            .with_context(|| format!("ss printed an unknown state {:?}", self.state))?;
        // ss prints a dual-stack socket bound to the IPv6 wildcard (not IPV6_V6ONLY)
        // as `*:port`.
        let local = match self.local.strip_prefix("*:") {
            Some(port) => format!("[::]:{port}"),
            None => self.local.clone(),
        };
        let local = local
            .parse()
            .with_context(|| format!("ss printed local address {:?}", self.local))?;
        let peer = if self.peer.ends_with(":*") {
            None
        } else {
            Some(
                self.peer
                    .parse()
                    .with_context(|| format!("ss printed peer address {:?}", self.peer))?,
            )
        };
        Ok(Entry { state, local, peer })
    }
}

fn parse_lines(output: &str, filtered: Option<TcpState>) -> Result<Vec<SsLine>> {
    output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| SsLine::parse(line, filtered))
        .collect()
}

/// What is missing from, and what is extra in, what `ss` shows compared with what was
/// expected; both empty when they agree.
#[derive(Debug, Default)]
pub struct Disagreement {
    pub missing: Vec<Entry>,
    pub unexpected: Vec<Entry>,
}

impl Disagreement {
    /// Compares as multisets: each expected entry must be shown once per time it is expected.
    pub fn between(shown: &[Entry], expected: &[Entry]) -> Disagreement {
        let mut balance: BTreeMap<Entry, i64> = BTreeMap::new();
        for entry in expected {
            *balance.entry(*entry).or_default() += 1;
        }
        for entry in shown {
            *balance.entry(*entry).or_default() -= 1;
        }
        let mut disagreement = Disagreement::default();
        for (entry, count) in balance {
            let list = if count > 0 {
                &mut disagreement.missing
            } else {
                &mut disagreement.unexpected
            };
            for _ in 0..count.unsigned_abs() {
                list.push(entry);
            }
        }
        disagreement
    }

    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 10;
        for (title, list) in [("missing", &self.missing), ("unexpected", &self.unexpected)] {
            if list.is_empty() {
                continue;
            }
            writeln!(f, "{} {title}:", list.len())?;
            for entry in list.iter().take(SHOWN) {
                writeln!(f, "  {entry}")?;
            }
            if list.len() > SHOWN {
                writeln!(f, "  … and {} more", list.len() - SHOWN)?;
            }
        }
        Ok(())
    }
}

/// What one look at the kernel found while waiting.
pub enum Probe<T> {
    /// What was waited for is there.
    Done(T),
    /// Not yet; says what was seen instead, for the timeout's message.
    NotYet(String),
}

/// Looks with `probe` until it reports [`Probe::Done`], or fails after `timeout` saying what
/// it waited for and what was seen last. For state changes, which the kernel makes
/// asynchronously; an error from `probe` ends the wait at once.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Probe<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match probe()? {
            Probe::Done(value) => return Ok(value),
            Probe::NotYet(seen) => seen,
        };
        if start.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for {what}; last seen:\n{last}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

impl Lab {
    /// Every TCP socket in the lab, as `ss -tanH` prints it.
    pub fn ss_tanh(&self) -> Result<Vec<SsLine>> {
        let output = self.run("ss", &["-tanH"])?;
        parse_lines(&output, None)
    }

    /// The TCP sockets in one state, as `ss -tanH state X` prints them.
    pub fn ss_tanh_state(&self, state: TcpState) -> Result<Vec<SsLine>> {
        let output = self.run("ss", &["-tanH", "state", state.ss_filter()])?;
        parse_lines(&output, Some(state))
    }

    /// Every TCP socket in the lab, as `ss -tanH` shows it.
    pub fn ss_entries(&self) -> Result<Vec<Entry>> {
        self.ss_tanh()?.iter().map(SsLine::entry).collect()
    }

    /// How many TCP sockets are in `state`, like `ss -tanH state X | wc -l`.
    pub fn ss_count(&self, state: TcpState) -> Result<usize> {
        let output = self.run("ss", &["-tanH", "state", state.ss_filter()])?;
        Ok(output
            .lines()
            .filter(|line| !line.trim().is_empty())
            .count())
    }

    /// Waits until `ss` lists exactly `expected`: every expected socket in its expected state
    /// and no other socket at all. Returns what `ss` showed; on timeout the error lists what
    /// was missing and what was extra.
    pub fn wait_for_exactly(&self, expected: &[Entry], timeout: Duration) -> Result<Vec<Entry>> {
        wait_until(timeout, "ss to list exactly the expected sockets", || {
            let shown = self.ss_entries()?;
            let disagreement = Disagreement::between(&shown, expected);
            Ok(if disagreement.is_empty() {
                Probe::Done(shown)
            } else {
                Probe::NotYet(disagreement.to_string())
            })
        })
    }

    /// Waits until `ss -tanH state X` lists exactly `count` sockets.
    pub fn wait_for_count(&self, state: TcpState, count: usize, timeout: Duration) -> Result<()> {
        let what = format!("{count} sockets in {state}");
        wait_until(timeout, &what, || {
            let shown = self.ss_count(state)?;
            Ok(if shown == count {
                Probe::Done(())
            } else {
                Probe::NotYet(format!("{shown} sockets in {state}"))
            })
        })
    }
}
