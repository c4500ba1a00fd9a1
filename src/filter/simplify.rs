//! Splits a condition between what the kernel request can carry and what is left: the
//! states it can possibly match become the request's state mask, state tests that the
//! mask already decides are folded away, and the rest stays a condition.
//!
//! `state syn-recv and dport = :443` becomes the mask {SYN_RECV} and `dport = :443`;
//! `state listen or sport = :80` keeps every state in the mask and the whole condition,
//! since either side may hold. Pure and exact: the result matches the same sockets.

use super::condition::Condition;
use crate::tcp::{State, StateSet};

/// The outcome of folding constants out of a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folded {
    /// Every socket matches.
    Always,
    /// No socket matches.
    Never,
    Sometimes(Condition),
}

/// The states in which `condition` can hold for some socket: a state is left out only
/// when its state tests alone make the condition false.
pub fn possible_states(condition: &Condition) -> StateSet {
    State::ALL
        .into_iter()
        .filter(|state| could_hold(condition, *state) != Some(false))
        .collect()
}

/// Three-valued evaluation in `state`, with every port and address test unknown (`None`).
fn could_hold(condition: &Condition, state: State) -> Option<bool> {
    match condition {
        Condition::State(states) => Some(states.contains(state)),
        Condition::Port { .. } | Condition::Address { .. } => None,
        Condition::And(a, b) => match (could_hold(a, state), could_hold(b, state)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Condition::Or(a, b) => match (could_hold(a, state), could_hold(b, state)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Condition::Not(a) => could_hold(a, state).map(|holds| !holds),
    }
}

/// `condition` for sockets already known to be in one of `mask`'s states: state tests
/// the mask decides become constants, and constants are folded away.
pub fn within(condition: &Condition, mask: StateSet) -> Folded {
    fold(condition, &|states| {
        let common = states.intersection(mask);
        if common == mask {
            Folded::Always
        } else if common.is_empty() {
            Folded::Never
        } else {
            Folded::Sometimes(Condition::State(common))
        }
    })
}

/// `condition` with every state test replaced by whichever constant lets more sockets
/// through (true, or false under a `not`): a condition the kernel can evaluate, which
/// holds for at least every socket the original holds for. `None` when it would hold
/// for every socket.
pub fn without_states(condition: &Condition) -> Option<Condition> {
    match relax(condition, true) {
        Folded::Sometimes(condition) => Some(condition),
        // Relaxing upwards cannot reach `Never` at the top; if it somehow did, asking
        // the kernel for everything is still correct, only slower.
        Folded::Always | Folded::Never => None,
    }
}

fn relax(condition: &Condition, positive: bool) -> Folded {
    match condition {
        Condition::State(_) if positive => Folded::Always,
        Condition::State(_) => Folded::Never,
        Condition::Port { .. } | Condition::Address { .. } => Folded::Sometimes(condition.clone()),
        Condition::And(a, b) => and(relax(a, positive), relax(b, positive)),
        Condition::Or(a, b) => or(relax(a, positive), relax(b, positive)),
        Condition::Not(a) => not(relax(a, !positive)),
    }
}

fn fold(condition: &Condition, state: &dyn Fn(StateSet) -> Folded) -> Folded {
    match condition {
        Condition::State(states) => state(*states),
        Condition::Port { .. } | Condition::Address { .. } => Folded::Sometimes(condition.clone()),
        Condition::And(a, b) => and(fold(a, state), fold(b, state)),
        Condition::Or(a, b) => or(fold(a, state), fold(b, state)),
        Condition::Not(a) => not(fold(a, state)),
    }
}

fn and(a: Folded, b: Folded) -> Folded {
    match (a, b) {
        (Folded::Never, _) | (_, Folded::Never) => Folded::Never,
        (Folded::Always, other) | (other, Folded::Always) => other,
        (Folded::Sometimes(a), Folded::Sometimes(b)) => Folded::Sometimes(a.and(b)),
    }
}

fn or(a: Folded, b: Folded) -> Folded {
    match (a, b) {
        (Folded::Always, _) | (_, Folded::Always) => Folded::Always,
        (Folded::Never, other) | (other, Folded::Never) => other,
        (Folded::Sometimes(a), Folded::Sometimes(b)) => Folded::Sometimes(a.or(b)),
    }
}

fn not(a: Folded) -> Folded {
    match a {
        Folded::Always => Folded::Never,
        Folded::Never => Folded::Always,
        Folded::Sometimes(a) => Folded::Sometimes(!a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::condition::{Comparison, Side};

    fn states(list: &str) -> StateSet {
        StateSet::parse_list(list).unwrap()
    }

    fn state(list: &str) -> Condition {
        Condition::State(states(list))
    }

    fn dport(port: u16) -> Condition {
        Condition::port(Side::Destination, Comparison::Equal, port)
    }

    #[test]
    fn a_top_level_state_test_narrows_the_possible_states() {
        let condition = state("syn-recv").and(dport(443).or(dport(80)));
        assert_eq!(possible_states(&condition), states("syn-recv"));
        assert_eq!(
            within(&condition, states("syn-recv")),
            Folded::Sometimes(dport(443).or(dport(80)))
        );
    }

    #[test]
    fn a_state_test_under_or_keeps_every_state_possible() {
        let condition = state("listen").or(dport(80));
        assert_eq!(possible_states(&condition), StateSet::all());
        assert_eq!(
            within(&condition, StateSet::all()),
            Folded::Sometimes(condition.clone())
        );
    }

    #[test]
    fn a_negated_state_test_removes_that_state() {
        let condition = !state("listen");
        assert_eq!(
            possible_states(&condition),
            StateSet::all()
                .iter()
                .filter(|s| *s != State::Listen)
                .collect()
        );
        assert_eq!(
            within(&condition, possible_states(&condition)),
            Folded::Always
        );
    }

    #[test]
    fn contradictory_states_match_nothing() {
        let condition = state("listen").and(state("estab"));
        assert!(possible_states(&condition).is_empty());
    }

    #[test]
    fn a_state_test_partly_decided_by_the_mask_keeps_only_the_undecided_states() {
        let condition = state("listen,estab").or(dport(80));
        assert_eq!(
            within(&condition, states("estab,time-wait")),
            Folded::Sometimes(state("estab").or(dport(80)))
        );
    }

    #[test]
    fn the_kernels_view_drops_state_tests_by_letting_more_through() {
        assert_eq!(without_states(&state("listen").or(dport(80))), None);
        assert_eq!(
            without_states(&state("listen").and(dport(80))),
            Some(dport(80))
        );
        assert_eq!(without_states(&!state("listen")), None);
        assert_eq!(
            without_states(&!(state("listen").or(dport(80)))),
            Some(!dport(80))
        );
        assert_eq!(
            without_states(&!(state("listen").and(dport(80)))),
            None,
            "not (false and x) lets everything through"
        );
    }
}
