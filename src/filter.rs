//! Which sockets a user asked for: states, families and port conditions.
//!
//! A filter is evaluated here, in user space, on every record; the kernel module
//! [`crate::kernel::bytecode`] also compiles its port conditions so that the kernel
//! skips non-matching sockets before they are copied out. Both must agree, and the
//! lab tests check that they do.

use crate::snapshot::{Family, SocketRecord};
use crate::tcp::StateSet;

/// Which end of a connection a port condition looks at, in `ss` terms: the source is
/// the local end, the destination the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Equal,
    AtLeast,
    AtMost,
}

/// A condition on a socket's ports, combinable with `and`, `or` and `not`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Port {
        side: Side,
        comparison: Comparison,
        port: u16,
    },
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

impl Condition {
    pub fn port(side: Side, comparison: Comparison, port: u16) -> Condition {
        Condition::Port {
            side,
            comparison,
            port,
        }
    }

    /// `--port N`: either end uses port N.
    pub fn either_port(port: u16) -> Condition {
        Condition::Or(
            Box::new(Condition::port(Side::Source, Comparison::Equal, port)),
            Box::new(Condition::port(Side::Destination, Comparison::Equal, port)),
        )
    }

    pub fn and(self, other: Condition) -> Condition {
        Condition::And(Box::new(self), Box::new(other))
    }

    pub fn matches(&self, socket: &SocketRecord) -> bool {
        match self {
            Condition::Port {
                side,
                comparison,
                port,
            } => {
                let actual = match side {
                    Side::Source => socket.local_port,
                    Side::Destination => socket.remote_port,
                };
                match comparison {
                    Comparison::Equal => actual == *port,
                    Comparison::AtLeast => actual >= *port,
                    Comparison::AtMost => actual <= *port,
                }
            }
            Condition::And(a, b) => a.matches(socket) && b.matches(socket),
            Condition::Or(a, b) => a.matches(socket) || b.matches(socket),
            Condition::Not(a) => !a.matches(socket),
        }
    }
}

/// Everything a user can narrow the socket list by.
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
    pub fn matches(&self, socket: &SocketRecord) -> bool {
        self.states.contains(socket.state) && self.matches_ignoring_state(socket)
    }

    /// Family and port conditions only: for a socket whose state says nothing, such
    /// as one the kernel reports destroyed (always in CLOSED).
    pub fn matches_ignoring_state(&self, socket: &SocketRecord) -> bool {
        let family_wanted = match socket.family {
            Family::Ipv4 => self.ipv4,
            Family::Ipv6 => self.ipv6,
        };
        family_wanted
            && self
                .condition
                .as_ref()
                .is_none_or(|condition| condition.matches(socket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures;
    use crate::tcp::State;

    fn socket(family: Family, state: State, local_port: u16, remote_port: u16) -> SocketRecord {
        match family {
            Family::Ipv4 => {
                fixtures::socket(state, "127.0.0.1", local_port, "127.0.0.2", remote_port)
            }
            Family::Ipv6 => fixtures::socket(state, "::1", local_port, "::1", remote_port),
        }
    }

    #[test]
    fn either_port_matches_the_local_or_the_peer_port() {
        let condition = Condition::either_port(80);
        assert!(condition.matches(&socket(Family::Ipv4, State::Established, 80, 5000)));
        assert!(condition.matches(&socket(Family::Ipv4, State::Established, 5000, 80)));
        assert!(!condition.matches(&socket(Family::Ipv4, State::Established, 81, 5000)));
    }

    #[test]
    fn ranges_and_negation_compose() {
        let ephemeral = Condition::port(Side::Source, Comparison::AtLeast, 32768)
            .and(Condition::port(Side::Source, Comparison::AtMost, 60999));
        assert!(ephemeral.matches(&socket(Family::Ipv4, State::Established, 40000, 1)));
        assert!(!ephemeral.matches(&socket(Family::Ipv4, State::Established, 61000, 1)));
        let not = Condition::Not(Box::new(ephemeral));
        assert!(not.matches(&socket(Family::Ipv4, State::Established, 80, 1)));
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
}
