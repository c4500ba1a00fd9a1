//! The eleven TCP states as data: their numbers in the Linux kernel, the names users
//! type (netstat, `ss` and RFC spellings), and the `ss` state groups.
//!
//! This module knows nothing of sockets or the kernel interface; it only names states.

use std::fmt;

/// A TCP connection state, numbered as in the Linux kernel's `include/net/tcp_states.h`.
///
/// Linux's internal `TCP_NEW_SYN_RECV` (a request socket) is reported by sock_diag as
/// `SYN_RECV`, and that is how it is counted here too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum State {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Closed = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
}

/// Linux's number for a request socket (`TCP_NEW_SYN_RECV`); shown as SYN_RECV.
const KERNEL_NEW_SYN_RECV: u8 = 12;

impl State {
    /// Every state, in the order a user reads a connection's life: opening, open, closing.
    pub const ALL: [State; 11] = [
        State::Closed,
        State::Listen,
        State::SynSent,
        State::SynRecv,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
    ];

    /// The state for a kernel state number, or `None` for a number this tool does not know.
    pub fn from_kernel(number: u8) -> Option<State> {
        Some(match number {
            1 => State::Established,
            2 => State::SynSent,
            3 | KERNEL_NEW_SYN_RECV => State::SynRecv,
            4 => State::FinWait1,
            5 => State::FinWait2,
            6 => State::TimeWait,
            7 => State::Closed,
            8 => State::CloseWait,
            9 => State::LastAck,
            10 => State::Listen,
            11 => State::Closing,
            _ => return None,
        })
    }

    /// The kernel's number for this state.
    pub fn kernel_number(self) -> u8 {
        self as u8
    }

    /// The name netstat prints (`SYN_RECV`, `FIN_WAIT1`), used in every output.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN_WAIT1",
            State::FinWait2 => "FIN_WAIT2",
            State::CloseWait => "CLOSE_WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST_ACK",
            State::TimeWait => "TIME_WAIT",
        }
    }

    /// The name `ss` prints and accepts (`syn-recv`, `fin-wait-1`, `estab`).
    pub fn ss_name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Listen => "listening",
            State::SynSent => "syn-sent",
            State::SynRecv => "syn-recv",
            State::Established => "established",
            State::FinWait1 => "fin-wait-1",
            State::FinWait2 => "fin-wait-2",
            State::CloseWait => "close-wait",
            State::Closing => "closing",
            State::LastAck => "last-ack",
            State::TimeWait => "time-wait",
        }
    }

    /// The name RFC 9293 uses (`SYN-RECEIVED`, `FIN-WAIT-1`).
    pub fn rfc_name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynRecv => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }

    /// A dense index 0..11 in [`State::ALL`] order, for per-state arrays.
    pub const fn index(self) -> usize {
        match self {
            State::Closed => 0,
            State::Listen => 1,
            State::SynSent => 2,
            State::SynRecv => 3,
            State::Established => 4,
            State::FinWait1 => 5,
            State::FinWait2 => 6,
            State::CloseWait => 7,
            State::Closing => 8,
            State::LastAck => 9,
            State::TimeWait => 10,
        }
    }

    /// Parses one state name in any accepted spelling, ignoring case.
    ///
    /// Accepts the netstat, `ss` and RFC spellings plus the short forms `ss` takes
    /// (`estab`, `listen`, `close`).
    pub fn parse(name: &str) -> Option<State> {
        let wanted = normalise(name);
        State::ALL.into_iter().find(|state| {
            [state.name(), state.ss_name(), state.rfc_name()]
                .into_iter()
                .chain(short_aliases(*state).iter().copied())
                .any(|spelling| normalise(spelling) == wanted)
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The abbreviations `ss` accepts beside its full names.
fn short_aliases(state: State) -> &'static [&'static str] {
    match state {
        State::Established => &["estab"],
        State::Listen => &["listen"],
        State::Closed => &["close"],
        State::SynRecv => &["syn-received"],
        _ => &[],
    }
}

/// Folds case and the separators `-` and `_` so that `fin-wait-1`, `FIN_WAIT1` and
/// `Fin-Wait1` compare equal.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A set of states, stored as the kernel's state bitmask (bit `n` for state number `n`)
/// so that it can be handed to sock_diag unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StateSet(u32);

impl StateSet {
    pub const EMPTY: StateSet = StateSet(0);

    pub fn all() -> StateSet {
        State::ALL.into_iter().collect()
    }

    pub fn contains(self, state: State) -> bool {
        self.0 & (1 << state.kernel_number()) != 0
    }

    pub fn insert(&mut self, state: State) {
        self.0 |= 1 << state.kernel_number();
    }

    pub fn union(self, other: StateSet) -> StateSet {
        StateSet(self.0 | other.0)
    }

    pub fn intersection(self, other: StateSet) -> StateSet {
        StateSet(self.0 & other.0)
    }

    pub fn remove(&mut self, state: State) {
        self.0 &= !(1 << state.kernel_number());
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bitmask for `inet_diag_req_v2.idiag_states`. Bit 12 (`TCP_NEW_SYN_RECV`) is
    /// implied by bit 3 in the kernel; bit 13 (`TCP_BOUND_INACTIVE`) is never set, since
    /// bound-but-unconnected sockets are not connections.
    pub fn kernel_mask(self) -> u32 {
        self.0
    }

    pub fn iter(self) -> impl Iterator<Item = State> {
        State::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses a comma-separated list of state names and `ss` group names, such as
    /// `SYN_RECV,time-wait` or `connected`.
    pub fn parse_list(list: &str) -> Result<StateSet, UnknownState> {
        let mut set = StateSet::EMPTY;
        for word in list.split(',').map(str::trim) {
            if word.is_empty() {
                continue;
            }
            if let Some(state) = State::parse(word) {
                set.insert(state);
            } else if let Some(group) = Group::parse(word) {
                set = set.union(group.states());
            } else {
                return Err(UnknownState(word.to_string()));
            }
        }
        if set.is_empty() {
            return Err(UnknownState(list.to_string()));
        }
        Ok(set)
    }
}

impl FromIterator<State> for StateSet {
    fn from_iter<I: IntoIterator<Item = State>>(iter: I) -> Self {
        let mut set = StateSet::EMPTY;
        for state in iter {
            set.insert(state);
        }
        set
    }
}

/// The state groups `ss` accepts (see `ss(8)`, "STATE-FILTER").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    All,
    Connected,
    Synchronized,
    Bucket,
    Big,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::All,
        Group::Connected,
        Group::Synchronized,
        Group::Bucket,
        Group::Big,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::All => "all",
            Group::Connected => "connected",
            Group::Synchronized => "synchronized",
            Group::Bucket => "bucket",
            Group::Big => "big",
        }
    }

    pub fn parse(name: &str) -> Option<Group> {
        Group::ALL
            .into_iter()
            .find(|group| group.name().eq_ignore_ascii_case(name))
    }

    /// The states in the group, as `ss` defines them: `connected` is every state but
    /// LISTEN and CLOSED; `synchronized` is `connected` without SYN_SENT; `bucket` is the
    /// minisocket states (SYN_RECV request sockets and TIME_WAIT); `big` is the rest.
    pub fn states(self) -> StateSet {
        let all = StateSet::all();
        let without = |excluded: &[State]| {
            all.iter()
                .filter(|s| !excluded.contains(s))
                .collect::<StateSet>()
        };
        match self {
            Group::All => all,
            Group::Connected => without(&[State::Listen, State::Closed]),
            Group::Synchronized => without(&[State::Listen, State::Closed, State::SynSent]),
            Group::Bucket => [State::SynRecv, State::TimeWait].into_iter().collect(),
            Group::Big => without(&[State::SynRecv, State::TimeWait]),
        }
    }
}

/// A state name that matches no state or group; its message lists what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TCP state '{0}'; valid states: {states}; groups: {groups}", states = valid_state_names(), groups = valid_group_names())]
pub struct UnknownState(pub String);

fn valid_state_names() -> String {
    State::ALL.map(State::name).join(", ")
}

fn valid_group_names() -> String {
    Group::ALL.map(Group::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_kernel_number() {
        for state in State::ALL {
            assert_eq!(State::from_kernel(state.kernel_number()), Some(state));
        }
    }

    #[test]
    fn request_sockets_count_as_syn_recv() {
        assert_eq!(State::from_kernel(12), Some(State::SynRecv));
    }

    #[test]
    fn unknown_kernel_numbers_are_not_states() {
        assert_eq!(State::from_kernel(0), None);
        assert_eq!(State::from_kernel(13), None);
    }

    #[test]
    fn netstat_ss_and_rfc_spellings_all_parse() {
        for state in State::ALL {
            assert_eq!(State::parse(state.name()), Some(state));
            assert_eq!(State::parse(state.ss_name()), Some(state));
            assert_eq!(State::parse(state.rfc_name()), Some(state));
        }
        assert_eq!(State::parse("syn_recv"), Some(State::SynRecv));
        assert_eq!(State::parse("SYN-RECEIVED"), Some(State::SynRecv));
        assert_eq!(State::parse("estab"), Some(State::Established));
        assert_eq!(State::parse("fin-wait-1"), Some(State::FinWait1));
        assert_eq!(State::parse("Time_Wait"), Some(State::TimeWait));
    }

    #[test]
    fn dense_indexes_follow_the_display_order() {
        for (i, state) in State::ALL.into_iter().enumerate() {
            assert_eq!(state.index(), i);
        }
    }

    #[test]
    fn a_list_mixes_states_and_groups() {
        let set = StateSet::parse_list("SYN_RECV,time-wait").unwrap();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [State::SynRecv, State::TimeWait]
        );
        let connected = StateSet::parse_list("connected").unwrap();
        assert!(!connected.contains(State::Listen));
        assert!(!connected.contains(State::Closed));
        assert_eq!(connected.iter().count(), 9);
    }

    #[test]
    fn ss_groups_have_the_members_ss_gives_them() {
        let synchronized = Group::Synchronized.states();
        assert!(!synchronized.contains(State::SynSent));
        assert!(synchronized.contains(State::SynRecv));
        assert_eq!(
            Group::Bucket.states().iter().collect::<Vec<_>>(),
            [State::SynRecv, State::TimeWait]
        );
        assert_eq!(Group::Big.states().iter().count(), 9);
    }

    #[test]
    fn an_unknown_name_is_an_error_that_lists_the_valid_names() {
        let error = StateSet::parse_list("SYN_RECV,BOGUS").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("'BOGUS'"));
        assert!(message.contains("SYN_RECV"));
        assert!(message.contains("TIME_WAIT"));
        assert!(message.contains("connected"));
    }

    #[test]
    fn the_kernel_mask_never_asks_for_bound_inactive_sockets() {
        assert_eq!(StateSet::all().kernel_mask() & (1 << 13), 0);
        assert_eq!(StateSet::all().kernel_mask(), 0xffe);
    }
}
