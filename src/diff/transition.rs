//! What the diff reports: one connection's step between two polls.

use crate::snapshot::Endpoints;
use crate::tcp::{Path, State, shortest_path};

use super::ending::{Ending, route_to_closed};

/// Which kind of step a [`Transition`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A connection no earlier poll had.
    Opened,
    /// A known connection in a new state.
    Changed,
    /// A connection that is gone.
    Closed,
}

impl Kind {
    /// The word the outputs print: `opened`, `changed`, `closed`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Opened => "opened",
            Kind::Changed => "changed",
            Kind::Closed => "closed",
        }
    }
}

/// One connection's step between two polls.
///
/// - `Opened`: `from` is `None`, `to` the first state seen, `via` empty. `exact` when
///   that state is one a connection starts in (LISTEN, SYN_SENT, SYN_RECV), so that
///   nothing of its life was missed.
/// - `Changed`: `from` and `to` are both set; `via` holds the states most likely
///   skipped between them ([`shortest_path`]); `exact` when none were.
/// - `Closed`: `to` is `None` and `ending` says how it most likely ended; `via` holds the
///   states most likely passed on the way to CLOSED, inferred from the last state seen:
///   a connection gone from ESTABLISHED without a TIME_WAIT remnant closed passively, via
///   CLOSE_WAIT and LAST_ACK (or was reset, as its [`Ending`] says); `exact` when none
///   were inferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub kind: Kind,
    pub endpoints: Endpoints,
    pub from: Option<State>,
    pub to: Option<State>,
    pub via: Path,
    pub exact: bool,
    pub ending: Option<Ending>,
    /// The kernel object the connection is now, or was last, for finding its record.
    pub cookie: u64,
}

impl Transition {
    pub(crate) fn opened(endpoints: Endpoints, state: State, cookie: u64) -> Transition {
        let born_here = matches!(state, State::Listen | State::SynSent | State::SynRecv);
        Transition {
            kind: Kind::Opened,
            endpoints,
            from: None,
            to: Some(state),
            via: Path::EMPTY,
            exact: born_here,
            ending: None,
            cookie,
        }
    }

    pub(crate) fn changed(endpoints: Endpoints, from: State, to: State, cookie: u64) -> Transition {
        // Every state reaches every other (through CLOSED if need be), so the `None`
        // arm is for a machine that someday is not strongly connected.
        let (via, exact) = match shortest_path(from, to) {
            Some(via) => (via, via.is_empty()),
            None => (Path::EMPTY, false),
        };
        Transition {
            kind: Kind::Changed,
            endpoints,
            from: Some(from),
            to: Some(to),
            via,
            exact,
            ending: None,
            cookie,
        }
    }

    /// A connection last seen in `last` that is gone, with the route and ending inferred
    /// from that state.
    pub(crate) fn closed(endpoints: Endpoints, last: State, cookie: u64) -> Transition {
        Transition::ended(
            endpoints,
            last,
            route_to_closed(last),
            Ending::after(last),
            cookie,
        )
    }

    pub(crate) fn ended(
        endpoints: Endpoints,
        last: State,
        via: Path,
        ending: Ending,
        cookie: u64,
    ) -> Transition {
        Transition {
            kind: Kind::Closed,
            endpoints,
            from: Some(last),
            to: None,
            via,
            exact: via.is_empty(),
            ending: Some(ending),
            cookie,
        }
    }
}
