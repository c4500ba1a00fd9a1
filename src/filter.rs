//! Which sockets a user asked for: states, families, and conditions on ports and
//! addresses, written as flags or in `ss`'s filter language.
//!
//! ```text
//! state syn-recv and ( dport = :443 or sport = :8080 ) and dst 10.0.0.0/8
//! ```
//!
//! [`parse`] turns an expression into a [`Filter`]; `--grep`, `-4`/`-6` and the port
//! flags make one too, and [`Filter::and`] combines them. A filter is split between the
//! kernel and user space: the states it can match become the dump request's state
//! mask, its port and address tests are compiled by [`crate::kernel::bytecode`] so that
//! the kernel skips non-matching sockets before copying them out, and the whole filter
//! is evaluated again here on every record, for the state tests the kernel cannot do
//! (a state under `or` or `not`) and as a check. The lab tests check that kernel and
//! user space agree.
//!
//! - [`lexer`] and [`parser`]: text to a [`Condition`], errors with byte positions;
//! - [`condition`]: what a condition means, evaluated on a socket;
//! - [`network`]: address prefixes and the kernel's rules for matching them;
//! - [`simplify`]: which states a condition can match, and the kernel's share of it.

pub(crate) mod condition;
pub(crate) mod error;
pub(crate) mod lexer;
pub(crate) mod network;
pub(crate) mod parser;
pub(crate) mod simplify;

pub use condition::{Comparison, Condition, Side};
pub use error::FilterError;
pub use network::Network;
pub use parser::{Expression, parse_expression};

use crate::snapshot::{Endpoints, Family, SocketRecord};
use crate::tcp::{State, StateSet};
use simplify::Folded;

/// Parses a filter expression into the filter it describes, for every mode that takes
/// one (`--filter`, `--kill`, the live view's `/` line).
///
/// ```
/// let filter = tcpscope::filter::parse("state syn-recv and dport = :443").unwrap();
/// assert_eq!(filter.states.iter().count(), 1);
///
/// let error = tcpscope::filter::parse("state bogus").unwrap_err();
/// assert_eq!((error.position, error.length), (6, 5));
/// ```
pub fn parse(expression: &str) -> Result<Filter, FilterError> {
    Ok(parse_expression(expression)?.filter())
}

impl Expression {
    /// The filter this expression describes, over both families.
    pub fn filter(&self) -> Filter {
        Filter::narrowed(StateSet::all(), true, true, Some(self.condition.clone()))
    }
}

/// Everything a user can narrow the socket list by.
///
/// `states` is what the kernel's state mask can carry; `condition` is the rest, and may
/// still test states (under `or` or `not`). Build one with [`parse`], [`Filter::and`]
/// or a literal; [`Filter::matches`] is right either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub states: StateSet,
    pub ipv4: bool,
    pub ipv6: bool,
    pub condition: Option<Condition>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            states: StateSet::all(),
            ipv4: true,
            ipv6: true,
            condition: None,
        }
    }
}

impl Filter {
    /// A filter with its state tests moved into the mask where they can be: the mask
    /// shrinks to the states the condition can hold in, and state tests the mask
    /// decides are folded out of the condition.
    fn narrowed(states: StateSet, ipv4: bool, ipv6: bool, condition: Option<Condition>) -> Filter {
        let Some(condition) = condition else {
            return Filter {
                states,
                ipv4,
                ipv6,
                condition: None,
            };
        };
        let states = states.intersection(simplify::possible_states(&condition));
        let (states, condition) = match simplify::within(&condition, states) {
            Folded::Always => (states, None),
            Folded::Never => (StateSet::EMPTY, None),
            Folded::Sometimes(condition) => (states, Some(condition)),
        };
        Filter {
            states,
            ipv4,
            ipv6,
            condition,
        }
    }

    /// The sockets both filters match.
    pub fn and(self, other: Filter) -> Filter {
        let condition = match (self.condition, other.condition) {
            (Some(a), Some(b)) => Some(a.and(b)),
            (a, b) => a.or(b),
        };
        Filter::narrowed(
            self.states.intersection(other.states),
            self.ipv4 && other.ipv4,
            self.ipv6 && other.ipv6,
            condition,
        )
    }

    pub fn matches(&self, socket: &SocketRecord) -> bool {
        self.matches_endpoints(&socket.endpoints(), socket.state)
    }

    /// Whether a connection with these endpoints, in `state`, matches: for a
    /// transition, which has endpoints and states but no record.
    pub fn matches_endpoints(&self, endpoints: &Endpoints, state: State) -> bool {
        self.states.contains(state)
            && self.wants_family(endpoints.family)
            && self
                .condition
                .as_ref()
                .is_none_or(|condition| condition.holds(endpoints, Some(state)))
    }

    /// Family, port and address conditions only, state tests taken as passing: for a
    /// socket whose state says nothing, such as one the kernel reports destroyed
    /// (always in CLOSED).
    pub fn matches_ignoring_state(&self, socket: &SocketRecord) -> bool {
        let endpoints = socket.endpoints();
        self.wants_family(socket.family)
            && self
                .condition
                .as_ref()
                .is_none_or(|condition| condition.holds(&endpoints, None))
    }

    fn wants_family(&self, family: Family) -> bool {
        match family {
            Family::Ipv4 => self.ipv4,
            Family::Ipv6 => self.ipv6,
        }
    }

    /// The part of the condition the kernel can evaluate: state tests dropped so that
    /// it lets through at least every socket the filter matches. `None` when the kernel
    /// has nothing to test beyond the state mask.
    pub fn kernel_condition(&self) -> Option<Condition> {
        self.condition.as_ref().and_then(simplify::without_states)
    }

    /// This filter with every state allowed and state tests dropped: what a poller that
    /// follows connections through all their states dumps. Consumers then keep what
    /// [`Filter::matches_endpoints`] accepts.
    pub fn ignoring_states(&self) -> Filter {
        Filter {
            states: StateSet::all(),
            ipv4: self.ipv4,
            ipv6: self.ipv6,
            condition: self.kernel_condition(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures;

    fn socket(family: Family, state: State, local_port: u16, remote_port: u16) -> SocketRecord {
        match family {
            Family::Ipv4 => {
                fixtures::socket(state, "127.0.0.1", local_port, "127.0.0.2", remote_port)
            }
            Family::Ipv6 => fixtures::socket(state, "::1", local_port, "::1", remote_port),
        }
    }

    #[test]
    fn a_filter_checks_family_state_and_ports_together() {
        let filter = Filter {
            states: [State::SynRecv].into_iter().collect(),
            ipv4: true,
            ipv6: false,
            condition: Some(Condition::port(Side::Source, Comparison::Equal, 443)),
        };
        assert!(filter.matches(&socket(Family::Ipv4, State::SynRecv, 443, 1)));
        assert!(!filter.matches(&socket(Family::Ipv6, State::SynRecv, 443, 1)));
        assert!(!filter.matches(&socket(Family::Ipv4, State::Established, 443, 1)));
        assert!(!filter.matches(&socket(Family::Ipv4, State::SynRecv, 444, 1)));
    }

    #[test]
    fn a_top_level_state_in_an_expression_becomes_the_state_mask() {
        let filter = parse("state syn-recv and ( dport = :443 or sport = :8080 )").unwrap();
        assert_eq!(filter.states, [State::SynRecv].into_iter().collect());
        assert!(!filter.condition.as_ref().unwrap().tests_states());
        assert!(filter.matches(&socket(Family::Ipv4, State::SynRecv, 8080, 1)));
        assert!(!filter.matches(&socket(Family::Ipv4, State::Listen, 8080, 0)));
    }

    #[test]
    fn a_state_under_or_keeps_the_mask_wide_and_is_checked_here() {
        let filter = parse("state listen or dport = :443").unwrap();
        assert_eq!(filter.states, StateSet::all());
        assert!(filter.matches(&socket(Family::Ipv4, State::Listen, 80, 0)));
        assert!(filter.matches(&socket(Family::Ipv4, State::Established, 5000, 443)));
        assert!(!filter.matches(&socket(Family::Ipv4, State::Established, 5000, 80)));
        assert_eq!(
            filter.kernel_condition(),
            None,
            "the kernel cannot narrow it"
        );
    }

    #[test]
    fn grep_states_and_an_expression_combine_with_and() {
        let grep = Filter {
            states: StateSet::parse_list("listen,estab").unwrap(),
            ..Filter::default()
        };
        let filter = grep
            .clone()
            .and(parse("state listen or dport = :443").unwrap());
        assert_eq!(filter.states, StateSet::parse_list("listen,estab").unwrap());
        assert!(filter.matches(&socket(Family::Ipv4, State::Listen, 80, 0)));
        assert!(filter.matches(&socket(Family::Ipv4, State::Established, 1, 443)));
        assert!(!filter.matches(&socket(Family::Ipv4, State::Established, 1, 80)));
        assert!(!filter.matches(&socket(Family::Ipv4, State::TimeWait, 1, 443)));

        let only_listen = grep.and(parse("state listen").unwrap());
        assert_eq!(only_listen.states, [State::Listen].into_iter().collect());
        assert_eq!(only_listen.condition, None);
    }

    #[test]
    fn contradictory_states_leave_an_empty_mask() {
        let filter = parse("state listen and state estab").unwrap();
        assert!(filter.states.is_empty());
        assert!(!filter.matches(&socket(Family::Ipv4, State::Listen, 80, 0)));
    }

    #[test]
    fn ignoring_states_keeps_the_port_tests_for_a_poller() {
        let filter = parse("state estab and dport = :443").unwrap();
        let dump = filter.ignoring_states();
        assert_eq!(dump.states, StateSet::all());
        assert!(dump.matches(&socket(Family::Ipv4, State::TimeWait, 1, 443)));
        assert!(!dump.matches(&socket(Family::Ipv4, State::TimeWait, 1, 80)));
        let closed = socket(Family::Ipv4, State::Closed, 1, 443);
        assert!(filter.matches_ignoring_state(&closed));
        assert!(!filter.matches(&closed));
    }
}
