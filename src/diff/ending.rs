//! How a connection that vanished from the polls most likely ended, and the states it
//! most likely passed on the way.
//!
//! A poll only sees states; it never sees the segments. So an ending is an inference
//! from the last state seen, made with what Linux does: an active close leaves a
//! TIME_WAIT remnant for 60 s (`TCP_TIMEWAIT_LEN`, include/net/tcp.h) that the next poll
//! would have seen, so a connection that vanishes without one closed passively or was
//! reset.

use crate::tcp::{Path, State};

/// The likely ending of a connection that is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// TIME_WAIT ran out (60 s in Linux), or a RST or a new SYN for the same endpoints
    /// ended it early.
    TimeWaitExpired,
    /// In LAST_ACK the peer acknowledged our FIN: the end of a passive close.
    LastAckCompleted,
    /// A SYN_RECV that never completed its handshake: the SYN,ACK retries ran out
    /// (`net.ipv4.tcp_synack_retries`), a RST came, or the listener dropped the request.
    HalfOpenAbandoned,
    /// A SYN_SENT that never connected: refused, unreachable, timed out
    /// (`net.ipv4.tcp_syn_retries`) or given up by the application.
    ConnectFailed,
    /// A listening socket was closed.
    ListenerClosed,
    /// Gone from ESTABLISHED or CLOSE_WAIT with no TIME_WAIT after it: a passive close
    /// that finished between polls, or a reset or abort. Polls cannot tell which.
    PeerClosedOrReset,
    /// Our close never finished: FIN_WAIT1, FIN_WAIT2 or CLOSING ended without TIME_WAIT,
    /// because FIN_WAIT2 timed out (`net.ipv4.tcp_fin_timeout`), retries ran out, or a
    /// RST came.
    CloseCutShort,
    /// Opened and closed between two polls: only the kernel's destroy message saw it.
    BetweenPolls,
    /// An unconnected socket in CLOSED went away.
    Released,
}

impl Ending {
    /// The likely ending of a connection last seen in `state`.
    pub fn after(state: State) -> Ending {
        match state {
            State::TimeWait => Ending::TimeWaitExpired,
            State::LastAck => Ending::LastAckCompleted,
            State::SynRecv => Ending::HalfOpenAbandoned,
            State::SynSent => Ending::ConnectFailed,
            State::Listen => Ending::ListenerClosed,
            State::Established | State::CloseWait => Ending::PeerClosedOrReset,
            State::FinWait1 | State::FinWait2 | State::Closing => Ending::CloseCutShort,
            State::Closed => Ending::Released,
        }
    }

    /// A short phrase for the event log: "TIME_WAIT expired".
    pub fn describe(self) -> &'static str {
        match self {
            Ending::TimeWaitExpired => "TIME_WAIT expired",
            Ending::LastAckCompleted => "last ACK received",
            Ending::HalfOpenAbandoned => "half-open, abandoned or reset",
            Ending::ConnectFailed => "connect failed",
            Ending::ListenerClosed => "listener closed",
            Ending::PeerClosedOrReset => "closed by peer, or reset",
            Ending::CloseCutShort => "close cut short: FIN timeout or reset",
            Ending::BetweenPolls => "opened and closed between polls",
            Ending::Released => "released before connecting",
        }
    }
}

/// The states a connection last seen in `state` most likely passed before CLOSED, when
/// no later poll saw it.
///
/// Only ESTABLISHED and CLOSE_WAIT have an orderly way out that leaves nothing behind,
/// the passive close; it is taken as the likely one (the ending still says "or reset").
/// Every other state either ends in one step (TIME_WAIT, LAST_ACK, SYN_SENT, a SYN_RECV
/// request socket, LISTEN) or would have passed TIME_WAIT, which would have been seen,
/// so its end was a reset or timeout: one step too.
pub fn route_to_closed(state: State) -> Path {
    match state {
        State::Established => PASSIVE_CLOSE,
        State::CloseWait => AFTER_CLOSE_WAIT,
        _ => Path::EMPTY,
    }
}

/// The route of a SYN_RECV request socket whose full socket, made when the handshake
/// completed, was destroyed before any poll saw it: established, then closed passively
/// (an active close would have left a TIME_WAIT remnant).
pub fn route_after_handshake() -> Path {
    HANDSHAKE_THEN_PASSIVE_CLOSE
}

const PASSIVE_CLOSE: Path = must(Path::of(&[State::CloseWait, State::LastAck]));
const AFTER_CLOSE_WAIT: Path = must(Path::of(&[State::LastAck]));
const HANDSHAKE_THEN_PASSIVE_CLOSE: Path = must(Path::of(&[
    State::Established,
    State::CloseWait,
    State::LastAck,
]));

/// Unwraps at compile time; the paths above are shorter than [`Path::CAPACITY`].
const fn must(path: Option<Path>) -> Path {
    match path {
        Some(path) => path,
        None => panic!("path longer than Path::CAPACITY"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::is_legal;

    fn walks_legally(from: State, via: Path) -> bool {
        let mut at = from;
        for state in via.iter().chain([State::Closed]) {
            if !is_legal(at, state) {
                return false;
            }
            at = state;
        }
        true
    }

    #[test]
    fn every_inferred_route_to_closed_is_made_of_legal_steps() {
        for state in State::ALL.into_iter().filter(|s| *s != State::Closed) {
            let via = route_to_closed(state);
            assert!(walks_legally(state, via), "{state} via {via:?}");
            assert!(
                !via.contains(State::TimeWait),
                "TIME_WAIT would have been seen"
            );
        }
        assert!(walks_legally(State::SynRecv, route_after_handshake()));
    }

    #[test]
    fn an_established_connection_that_vanished_closed_passively() {
        assert_eq!(
            route_to_closed(State::Established).as_slice(),
            [State::CloseWait, State::LastAck]
        );
    }

    #[test]
    fn each_last_state_names_its_ending() {
        assert_eq!(Ending::after(State::TimeWait), Ending::TimeWaitExpired);
        assert_eq!(Ending::after(State::LastAck), Ending::LastAckCompleted);
        assert_eq!(Ending::after(State::SynRecv), Ending::HalfOpenAbandoned);
        assert_eq!(Ending::after(State::Established), Ending::PeerClosedOrReset);
        assert_eq!(
            Ending::after(State::TimeWait).describe(),
            "TIME_WAIT expired"
        );
    }
}
