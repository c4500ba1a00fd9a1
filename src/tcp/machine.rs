//! The TCP state machine of RFC 9293 as Linux runs it, written down once as a table of
//! legal transitions ([`EDGES`]), and the two questions the diff asks of it: is a step
//! legal ([`is_legal`]), and which states did a connection most likely pass through
//! between two polls ([`shortest_path`]).
//!
//! This module knows states only; it never sees a socket or a snapshot. The paths are
//! worked out once, at compile time, so asking costs one table read.

use std::fmt;

use crate::tcp::State;

/// How often connections take an edge. Only the usual edges are used to explain skipped
/// states, so that a connection seen in ESTABLISHED and then in TIME_WAIT is said to
/// have passed FIN_WAIT1 and FIN_WAIT2, as nearly every active close does, rather than
/// to have taken the one-segment shortcut from FIN_WAIT1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Course {
    /// The opening and closing most connections follow: the main lines of RFC 9293
    /// section 3.3.2, figure 5.
    Usual,
    /// Legal but out of the ordinary: simultaneous open and close, a FIN that also
    /// acknowledges ours, resets and aborts.
    Unusual,
}

/// One legal transition: `from` becomes `to` when `cause` happens, written as RFC 9293
/// figure 5 writes it, "event / what is sent".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub from: State,
    pub to: State,
    pub cause: &'static str,
    pub course: Course,
}

const fn usual(from: State, to: State, cause: &'static str) -> Edge {
    Edge {
        from,
        to,
        cause,
        course: Course::Usual,
    }
}

const fn unusual(from: State, to: State, cause: &'static str) -> Edge {
    Edge {
        from,
        to,
        cause,
        course: Course::Unusual,
    }
}

/// Every legal transition, one edge per pair of states.
///
/// The order matters: when two paths of the same length explain a gap, the search takes
/// the one whose edges come first here, so the common edges are listed first.
///
/// Resets go to CLOSED only. RFC 9293 lets the side that sends a RST enter TIME-WAIT;
/// Linux does not: `tcp_reset()` and `tcp_done()` (net/ipv4/tcp_input.c, tcp.c) move the
/// socket straight to TCP_CLOSE.
pub const EDGES: [Edge; 27] = [
    // Opening (RFC 9293 section 3.5).
    usual(State::Closed, State::Listen, "passive OPEN / create TCB"),
    usual(State::Closed, State::SynSent, "active OPEN / snd SYN"),
    usual(State::Listen, State::SynRecv, "rcv SYN / snd SYN,ACK"),
    usual(State::SynSent, State::Established, "rcv SYN,ACK / snd ACK"),
    usual(State::SynRecv, State::Established, "rcv ACK of SYN"),
    // Active close: we send the first FIN (section 3.6).
    usual(State::Established, State::FinWait1, "CLOSE / snd FIN"),
    usual(State::FinWait1, State::FinWait2, "rcv ACK of FIN"),
    usual(State::FinWait2, State::TimeWait, "rcv FIN / snd ACK"),
    // Linux waits TCP_TIMEWAIT_LEN (60 s, include/net/tcp.h); it also ends TIME_WAIT
    // early on a RST (unless net.ipv4.tcp_rfc1337) or a new SYN for the same endpoints.
    usual(
        State::TimeWait,
        State::Closed,
        "2MSL timeout, or rcv RST / delete TCB",
    ),
    // Passive close: the peer sends the first FIN.
    usual(State::Established, State::CloseWait, "rcv FIN / snd ACK"),
    usual(State::CloseWait, State::LastAck, "CLOSE / snd FIN"),
    usual(
        State::LastAck,
        State::Closed,
        "rcv ACK of FIN, or rcv RST / delete TCB",
    ),
    // Giving up before the connection exists.
    usual(State::Listen, State::Closed, "CLOSE / delete TCB"),
    usual(
        State::SynSent,
        State::Closed,
        "CLOSE, rcv RST or SYN retries exhausted / delete TCB",
    ),
    // Simultaneous close; CLOSING has no other way out than on to TIME_WAIT.
    unusual(State::FinWait1, State::Closing, "rcv FIN / snd ACK"),
    usual(State::Closing, State::TimeWait, "rcv ACK of FIN"),
    // The peer's FIN arrives with the ACK of ours: "if our FIN has been ACKed (perhaps
    // in this segment), then enter TIME-WAIT" (section 3.10.7.4). Figure 5 leaves it out.
    unusual(
        State::FinWait1,
        State::TimeWait,
        "rcv FIN,ACK of FIN / snd ACK",
    ),
    // Simultaneous open (section 3.5, figure 7).
    unusual(State::SynSent, State::SynRecv, "rcv SYN / snd SYN,ACK"),
    // A listener asked to send (section 3.10.2, SEND in LISTEN); Linux has no such call.
    unusual(State::Listen, State::SynSent, "SEND / snd SYN"),
    // The application closes before the handshake's last ACK arrives (a TCP Fast Open
    // child socket in Linux; a request socket has no owner to close it).
    unusual(State::SynRecv, State::FinWait1, "CLOSE / snd FIN"),
    // A RST in SYN-RECEIVED returns a passively opened connection to LISTEN (section
    // 3.10.7.4). In Linux the listener never left LISTEN: the request socket just goes.
    unusual(State::SynRecv, State::Listen, "rcv RST (passive open)"),
    // Resets and aborts of synchronized connections (section 3.10.7.4, and ABORT in
    // section 3.10.5), and timeouts (retries exhausted, section 3.8.3).
    unusual(
        State::SynRecv,
        State::Closed,
        "rcv RST (active open), ABORT / snd RST, or SYN,ACK retries exhausted",
    ),
    unusual(
        State::Established,
        State::Closed,
        "rcv RST, or ABORT / snd RST, or retries exhausted",
    ),
    unusual(
        State::FinWait1,
        State::Closed,
        "rcv RST, or ABORT / snd RST, or retries exhausted",
    ),
    // Linux also ends an orphaned FIN_WAIT2 after net.ipv4.tcp_fin_timeout.
    unusual(
        State::FinWait2,
        State::Closed,
        "rcv RST, or ABORT / snd RST, or FIN_WAIT2 timeout",
    ),
    unusual(
        State::CloseWait,
        State::Closed,
        "rcv RST, or ABORT / snd RST, or retries exhausted",
    ),
    unusual(
        State::Closing,
        State::Closed,
        "rcv RST, or retries exhausted",
    ),
];

/// The edge from `from` to `to`, if the machine has one.
#[cfg(test)]
pub fn edge(from: State, to: State) -> Option<&'static Edge> {
    EDGES.iter().find(|edge| edge.from == from && edge.to == to)
}

/// Whether `to` can follow `from` in one step.
pub fn is_legal(from: State, to: State) -> bool {
    LEGAL[from.index()][to.index()]
}

/// The states a connection most likely passed through on its way from `from` to `to`,
/// both ends left out: empty when one edge joins them (or when they are the same state),
/// `None` when `to` cannot be reached at all (the machine has no such pair today: every
/// state can reset to CLOSED and start again).
///
/// Found by a breadth-first search over [`EDGES`]: first over the usual edges only, and
/// over every edge if that finds nothing. Among paths of equal length the one whose edges
/// come first in [`EDGES`] wins. ESTABLISHED to TIME_WAIT gives `[FIN_WAIT1, FIN_WAIT2]`.
pub fn shortest_path(from: State, to: State) -> Option<Path> {
    ROUTES[from.index()][to.index()]
}

/// A few states in order, stored inline: the diff builds one per changed connection, and
/// this keeps that free of allocation.
#[derive(Clone, Copy, Eq)]
pub struct Path {
    states: [State; Path::CAPACITY],
    len: u8,
}

impl Path {
    /// As long as the longest shortest path in the machine, FIN_WAIT1 to LAST_ACK by way
    /// of a new connection; building the path table fails to compile if one is longer.
    pub const CAPACITY: usize = 6;

    pub const EMPTY: Path = Path {
        states: [State::Closed; Path::CAPACITY],
        len: 0,
    };

    /// A path of the given states, or `None` if there are more than [`Path::CAPACITY`].
    pub const fn of(states: &[State]) -> Option<Path> {
        let mut path = Path::EMPTY;
        let mut i = 0;
        while i < states.len() {
            path = match path.then(states[i]) {
                Some(longer) => longer,
                None => return None,
            };
            i += 1;
        }
        Some(path)
    }

    /// This path with `state` added at the end, or `None` if it is full.
    pub const fn then(self, state: State) -> Option<Path> {
        if self.len as usize == Path::CAPACITY {
            return None;
        }
        let mut longer = self;
        longer.states[self.len as usize] = state;
        longer.len += 1;
        Some(longer)
    }

    pub fn as_slice(&self) -> &[State] {
        &self.states[..usize::from(self.len)]
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, state: State) -> bool {
        self.as_slice().contains(&state)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = State> + '_ {
        self.as_slice().iter().copied()
    }
}

impl Default for Path {
    fn default() -> Path {
        Path::EMPTY
    }
}

impl PartialEq for Path {
    fn eq(&self, other: &Path) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl std::hash::Hash for Path {
    fn hash<H: std::hash::Hasher>(&self, hasher: &mut H) {
        self.as_slice().hash(hasher);
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// `FIN_WAIT1 → FIN_WAIT2`, as the views print a route.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, state) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" → ")?;
            }
            f.write_str(state.name())?;
        }
        Ok(())
    }
}

const STATES: usize = State::ALL.len();

/// `LEGAL[from][to]`, by [`State::index`].
static LEGAL: [[bool; STATES]; STATES] = legal_pairs();

/// `ROUTES[from][to]`: the answer of [`shortest_path`] for every pair.
static ROUTES: [[Option<Path>; STATES]; STATES] = all_routes();

const fn legal_pairs() -> [[bool; STATES]; STATES] {
    let mut legal = [[false; STATES]; STATES];
    let mut e = 0;
    while e < EDGES.len() {
        let edge = &EDGES[e];
        if legal[edge.from.index()][edge.to.index()] {
            panic!("EDGES lists a pair of states twice");
        }
        legal[edge.from.index()][edge.to.index()] = true;
        e += 1;
    }
    legal
}

const fn all_routes() -> [[Option<Path>; STATES]; STATES] {
    let legal = legal_pairs();
    let mut routes = [[None; STATES]; STATES];
    let mut from = 0;
    while from < STATES {
        let mut to = 0;
        while to < STATES {
            routes[from][to] = if from == to || legal[from][to] {
                Some(Path::EMPTY)
            } else {
                match search(from, to, true) {
                    Some(path) => Some(path),
                    None => search(from, to, false),
                }
            };
            to += 1;
        }
        from += 1;
    }
    routes
}

/// Breadth-first search from `start` to `goal` (dense indexes), over the usual edges
/// only or over all of them. Each state is claimed by the first edge, in table order,
/// that reaches it, which is what makes the table order the tie-break.
const fn search(start: usize, goal: usize, usual_only: bool) -> Option<Path> {
    let mut reached = [false; STATES];
    let mut came_from = [0usize; STATES];
    let mut queue = [0usize; STATES];
    let (mut head, mut tail) = (0, 1);
    queue[0] = start;
    reached[start] = true;
    while head < tail {
        let here = queue[head];
        head += 1;
        let mut e = 0;
        while e < EDGES.len() {
            let edge = &EDGES[e];
            let next = edge.to.index();
            let allowed = !usual_only || matches!(edge.course, Course::Usual);
            if allowed && edge.from.index() == here && !reached[next] {
                reached[next] = true;
                came_from[next] = here;
                queue[tail] = next;
                tail += 1;
            }
            e += 1;
        }
    }
    if !reached[goal] {
        return None;
    }
    // Walk back from the goal, then lay the states out forwards.
    let mut backwards = [State::Closed; STATES];
    let mut count = 0;
    let mut at = came_from[goal];
    while at != start {
        backwards[count] = State::ALL[at];
        count += 1;
        at = came_from[at];
    }
    let mut path = Path::EMPTY;
    while count > 0 {
        count -= 1;
        path = match path.then(backwards[count]) {
            Some(longer) => longer,
            None => panic!("a shortest path is longer than Path::CAPACITY"),
        };
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    fn path(from: State, to: State) -> Vec<State> {
        shortest_path(from, to)
            .map(|path| path.as_slice().to_vec())
            .unwrap_or_else(|| panic!("no path from {from} to {to}"))
    }

    #[test]
    fn every_transition_of_rfc_9293_figure_5_is_legal() {
        let figure_5 = [
            (Closed, Listen),
            (Closed, SynSent),
            (Listen, SynRecv),
            (Listen, SynSent),
            (Listen, Closed),
            (SynSent, SynRecv),
            (SynSent, Established),
            (SynSent, Closed),
            (SynRecv, Established),
            (SynRecv, FinWait1),
            (SynRecv, Listen),
            (Established, FinWait1),
            (Established, CloseWait),
            (FinWait1, FinWait2),
            (FinWait1, Closing),
            (FinWait2, TimeWait),
            (Closing, TimeWait),
            (CloseWait, LastAck),
            (LastAck, Closed),
            (TimeWait, Closed),
        ];
        for (from, to) in figure_5 {
            assert!(is_legal(from, to), "{from} → {to} should be legal");
        }
    }

    #[test]
    fn a_fin_that_acknowledges_ours_goes_straight_to_time_wait() {
        assert!(is_legal(FinWait1, TimeWait));
    }

    #[test]
    fn every_synchronized_state_can_be_reset_to_closed() {
        for from in [
            SynRecv,
            Established,
            FinWait1,
            FinWait2,
            CloseWait,
            Closing,
            LastAck,
            TimeWait,
        ] {
            assert!(is_legal(from, Closed), "{from} → CLOSED should be legal");
        }
    }

    #[test]
    fn time_wait_never_becomes_established() {
        assert!(!is_legal(TimeWait, Established));
        assert!(!is_legal(TimeWait, SynRecv));
    }

    #[test]
    fn a_listener_never_becomes_established_in_one_step() {
        assert!(!is_legal(Listen, Established));
        assert_eq!(path(Listen, Established), [SynRecv]);
    }

    #[test]
    fn nothing_goes_back_to_an_earlier_closing_state() {
        assert!(!is_legal(FinWait2, FinWait1));
        assert!(!is_legal(LastAck, CloseWait));
        assert!(!is_legal(CloseWait, Established));
        assert!(!is_legal(TimeWait, FinWait2));
    }

    #[test]
    fn a_state_is_not_a_transition_to_itself() {
        for state in State::ALL {
            assert!(!is_legal(state, state));
            assert_eq!(path(state, state), []);
        }
    }

    #[test]
    fn a_direct_edge_has_an_empty_path() {
        for edge in EDGES {
            assert_eq!(path(edge.from, edge.to), [], "{} → {}", edge.from, edge.to);
        }
    }

    #[test]
    fn an_active_close_seen_late_went_through_both_fin_waits() {
        assert_eq!(path(Established, TimeWait), [FinWait1, FinWait2]);
    }

    #[test]
    fn a_passive_close_seen_late_went_through_close_wait() {
        assert_eq!(path(Established, LastAck), [CloseWait]);
    }

    #[test]
    fn a_handshake_seen_late_went_through_the_usual_opening() {
        assert_eq!(path(Closed, Established), [SynSent]);
        assert_eq!(path(SynRecv, TimeWait), [Established, FinWait1, FinWait2]);
        assert_eq!(path(SynSent, CloseWait), [Established]);
    }

    #[test]
    fn closing_states_only_reach_earlier_states_by_starting_again() {
        assert_eq!(
            path(TimeWait, Established),
            [Closed, SynSent],
            "TIME_WAIT to ESTABLISHED needs a new connection"
        );
        assert!(path(LastAck, TimeWait).contains(&Closed));
    }

    #[test]
    fn every_pair_of_states_has_a_path_made_of_legal_steps() {
        for from in State::ALL {
            for to in State::ALL {
                let Some(via) = shortest_path(from, to) else {
                    panic!("no path from {from} to {to}");
                };
                if from == to {
                    continue;
                }
                let mut at = from;
                for state in via.iter().chain([to]) {
                    assert!(is_legal(at, state), "{from} → {to} steps {at} → {state}");
                    at = state;
                }
            }
        }
    }

    #[test]
    fn an_edge_names_what_causes_it() {
        let handshake = edge(SynSent, Established).map(|edge| edge.cause);
        assert_eq!(handshake, Some("rcv SYN,ACK / snd ACK"));
        assert_eq!(edge(TimeWait, Established), None);
    }

    #[test]
    fn a_path_prints_as_a_route() {
        let via = shortest_path(Established, TimeWait).unwrap_or_default();
        assert_eq!(via.to_string(), "FIN_WAIT1 → FIN_WAIT2");
    }

    #[test]
    fn a_path_refuses_more_states_than_it_holds() {
        let full = [Established; Path::CAPACITY];
        assert!(Path::of(&full).is_some());
        assert!(Path::of(&[Established; Path::CAPACITY + 1]).is_none());
    }
}
