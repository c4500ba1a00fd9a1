//! What a filter expression means: a [`Condition`] tree over a socket's state, ports
//! and addresses, evaluated here in user space.
//!
//! The kernel evaluates the same tree (compiled by [`crate::kernel::bytecode`]) except
//! for its state tests, which a bytecode program cannot express. So that the kernel
//! never drops a socket the user asked for, a state test it cannot see is taken as
//! whatever makes the program accept more ([`Condition::holds`] with no state), and the
//! exact answer is computed here.

use std::fmt;

use super::network::Network;
use crate::snapshot::{Endpoints, SocketRecord};
use crate::tcp::{State, StateSet};

/// Which end of a connection a condition looks at, in `ss` terms: the source is the
/// local end, the destination the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

impl Side {
    /// The `ss` keyword for this side's port.
    pub fn port_keyword(self) -> &'static str {
        match self {
            Side::Source => "sport",
            Side::Destination => "dport",
        }
    }

    /// The `ss` keyword for this side's address.
    pub fn host_keyword(self) -> &'static str {
        match self {
            Side::Source => "src",
            Side::Destination => "dst",
        }
    }
}

/// How a port is compared with the one in a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Equal,
    NotEqual,
    Less,
    AtMost,
    Greater,
    AtLeast,
}

impl Comparison {
    /// Whether `actual` compares so with `wanted`.
    pub fn holds(self, actual: u16, wanted: u16) -> bool {
        match self {
            Comparison::Equal => actual == wanted,
            Comparison::NotEqual => actual != wanted,
            Comparison::Less => actual < wanted,
            Comparison::AtMost => actual <= wanted,
            Comparison::Greater => actual > wanted,
            Comparison::AtLeast => actual >= wanted,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Equal => "=",
            Comparison::NotEqual => "!=",
            Comparison::Less => "<",
            Comparison::AtMost => "<=",
            Comparison::Greater => ">",
            Comparison::AtLeast => ">=",
        }
    }
}

/// A condition on a socket, combinable with `and`, `or` and `not`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The socket is in one of these states.
    State(StateSet),
    Port {
        side: Side,
        comparison: Comparison,
        port: u16,
    },
    /// The side's address lies in `network` (see [`Network::contains`] for IPv4
    /// prefixes against IPv6 sockets).
    Address {
        side: Side,
        network: Network,
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

    pub fn address(side: Side, network: Network) -> Condition {
        Condition::Address { side, network }
    }

    /// `--port N`: either end uses port N.
    pub fn either_port(port: u16) -> Condition {
        Condition::port(Side::Source, Comparison::Equal, port).or(Condition::port(
            Side::Destination,
            Comparison::Equal,
            port,
        ))
    }

    pub fn and(self, other: Condition) -> Condition {
        Condition::And(Box::new(self), Box::new(other))
    }

    pub fn or(self, other: Condition) -> Condition {
        Condition::Or(Box::new(self), Box::new(other))
    }

    /// Whether the socket satisfies the condition, its state included.
    pub fn matches(&self, socket: &SocketRecord) -> bool {
        self.holds(&socket.endpoints(), Some(socket.state))
    }

    /// Whether a connection with these endpoints, in `state`, satisfies the condition.
    ///
    /// With no state (a socket the kernel reports destroyed, or the kernel's own view,
    /// which cannot test states), every state test is taken as whatever lets more
    /// sockets through: true where it counts for the socket, false under a `not`. The
    /// answer is then "might match", never a false "no".
    pub fn holds(&self, endpoints: &Endpoints, state: Option<State>) -> bool {
        self.evaluate(endpoints, state, true)
    }

    /// `positive` is false under an odd number of `not`s.
    fn evaluate(&self, endpoints: &Endpoints, state: Option<State>, positive: bool) -> bool {
        match self {
            Condition::State(states) => state.map_or(positive, |state| states.contains(state)),
            Condition::Port {
                side,
                comparison,
                port,
            } => {
                let actual = match side {
                    Side::Source => endpoints.local.1,
                    Side::Destination => endpoints.remote.1,
                };
                comparison.holds(actual, *port)
            }
            Condition::Address { side, network } => network.contains(match side {
                Side::Source => endpoints.local.0,
                Side::Destination => endpoints.remote.0,
            }),
            Condition::And(a, b) => {
                a.evaluate(endpoints, state, positive) && b.evaluate(endpoints, state, positive)
            }
            Condition::Or(a, b) => {
                a.evaluate(endpoints, state, positive) || b.evaluate(endpoints, state, positive)
            }
            Condition::Not(a) => !a.evaluate(endpoints, state, !positive),
        }
    }

    /// Whether any state test appears in the condition.
    pub fn tests_states(&self) -> bool {
        match self {
            Condition::State(_) => true,
            Condition::Port { .. } | Condition::Address { .. } => false,
            Condition::And(a, b) | Condition::Or(a, b) => a.tests_states() || b.tests_states(),
            Condition::Not(a) => a.tests_states(),
        }
    }
}

impl std::ops::Not for Condition {
    type Output = Condition;

    fn not(self) -> Condition {
        Condition::Not(Box::new(self))
    }
}

/// Prints the condition in the filter language, fully parenthesised, so that it parses
/// back to the same tree.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::State(states) => {
                let names: Vec<&str> = states.iter().map(State::ss_name).collect();
                write!(f, "state {}", names.join(","))
            }
            Condition::Port {
                side,
                comparison,
                port,
            } => write!(f, "{} {} :{port}", side.port_keyword(), comparison.symbol()),
            Condition::Address { side, network } => match network.addr() {
                std::net::IpAddr::V4(_) => write!(f, "{} {network}", side.host_keyword()),
                std::net::IpAddr::V6(_) => write!(
                    f,
                    "{} [{}]/{}",
                    side.host_keyword(),
                    network.addr(),
                    network.prefix_len()
                ),
            },
            Condition::And(a, b) => write!(f, "( {a} and {b} )"),
            Condition::Or(a, b) => write!(f, "( {a} or {b} )"),
            Condition::Not(a) => write!(f, "not {a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures;

    fn socket(state: State, local_port: u16, remote_port: u16) -> SocketRecord {
        fixtures::socket(state, "127.0.0.1", local_port, "10.1.2.3", remote_port)
    }

    fn port(side: Side, comparison: Comparison, port: u16) -> Condition {
        Condition::port(side, comparison, port)
    }

    #[test]
    fn either_port_matches_the_local_or_the_peer_port() {
        let condition = Condition::either_port(80);
        assert!(condition.matches(&socket(State::Established, 80, 5000)));
        assert!(condition.matches(&socket(State::Established, 5000, 80)));
        assert!(!condition.matches(&socket(State::Established, 81, 5000)));
    }

    #[test]
    fn all_six_comparisons_compare_as_their_symbols_say() {
        use Comparison::*;
        let at = |comparison, actual| {
            port(Side::Source, comparison, 80).matches(&socket(State::Established, actual, 1))
        };
        assert_eq!([79, 80, 81].map(|p| at(Equal, p)), [false, true, false]);
        assert_eq!([79, 80, 81].map(|p| at(NotEqual, p)), [true, false, true]);
        assert_eq!([79, 80, 81].map(|p| at(Less, p)), [true, false, false]);
        assert_eq!([79, 80, 81].map(|p| at(AtMost, p)), [true, true, false]);
        assert_eq!([79, 80, 81].map(|p| at(Greater, p)), [false, false, true]);
        assert_eq!([79, 80, 81].map(|p| at(AtLeast, p)), [false, true, true]);
    }

    #[test]
    fn ranges_and_negation_compose() {
        let ephemeral = port(Side::Source, Comparison::AtLeast, 32768).and(port(
            Side::Source,
            Comparison::AtMost,
            60999,
        ));
        assert!(ephemeral.matches(&socket(State::Established, 40000, 1)));
        assert!(!ephemeral.matches(&socket(State::Established, 61000, 1)));
        assert!((!ephemeral).matches(&socket(State::Established, 80, 1)));
    }

    #[test]
    fn address_conditions_look_at_the_side_they_name() {
        let network = Network::parse("10.0.0.0/8").unwrap();
        let to_ten = Condition::address(Side::Destination, network);
        let from_ten = Condition::address(Side::Source, network);
        assert!(to_ten.matches(&socket(State::Established, 1, 2)));
        assert!(!from_ten.matches(&socket(State::Established, 1, 2)));
    }

    #[test]
    fn state_tests_use_the_sockets_state() {
        let listening = Condition::State([State::Listen].into_iter().collect());
        assert!(listening.matches(&socket(State::Listen, 80, 0)));
        assert!(!listening.matches(&socket(State::Established, 80, 0)));
    }

    #[test]
    fn without_a_state_a_state_test_never_excludes_a_socket() {
        let endpoints = socket(State::Closed, 80, 1).endpoints();
        let listening = Condition::State([State::Listen].into_iter().collect());
        assert!(listening.holds(&endpoints, None));
        assert!((!listening.clone()).holds(&endpoints, None));
        assert!((!!listening.clone()).holds(&endpoints, None));
        let on_81 = port(Side::Source, Comparison::Equal, 81);
        assert!(!listening.clone().and(on_81.clone()).holds(&endpoints, None));
        assert!((!listening).or(on_81).holds(&endpoints, None));
    }

    #[test]
    fn a_condition_prints_as_an_expression() {
        let condition = Condition::State([State::SynRecv].into_iter().collect())
            .and(!Condition::either_port(443))
            .and(Condition::address(
                Side::Destination,
                Network::parse("::1").unwrap(),
            ));
        assert_eq!(
            condition.to_string(),
            "( ( state syn-recv and not ( sport = :443 or dport = :443 ) ) and dst [::1]/128 )"
        );
    }
}
