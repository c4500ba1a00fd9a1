//! One test per kind of transition, on hand-built snapshots.

use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use super::*;
use crate::snapshot::Family;
use crate::tcp::State::*;

const CLIENT_PORT: u16 = 40_000;
const LISTEN_PORT: u16 = 443;

/// A socket of the connection 10.0.0.1:443 ↔ 10.0.0.2:`remote_port`.
fn socket(state: State, remote_port: u16, cookie: u64, inode: u32) -> SocketRecord {
    SocketRecord {
        family: Family::Ipv4,
        state,
        local_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        local_port: LISTEN_PORT,
        remote_addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        remote_port,
        uid: 1000,
        inode,
        cookie,
        ..SocketRecord::default()
    }
}

/// A socket owned by a file: what an application holds.
fn full(state: State, cookie: u64) -> SocketRecord {
    socket(state, CLIENT_PORT, cookie, 7000 + cookie as u32)
}

/// A SYN_RECV request socket: no file, so inode 0.
fn request(cookie: u64) -> SocketRecord {
    socket(SynRecv, CLIENT_PORT, cookie, 0)
}

/// A TIME_WAIT (or FIN_WAIT2) remnant: no file, so inode 0.
fn remnant(state: State, cookie: u64) -> SocketRecord {
    socket(state, CLIENT_PORT, cookie, 0)
}

fn listener(cookie: u64) -> SocketRecord {
    let mut record = socket(Listen, 0, cookie, 7000 + cookie as u32);
    record.remote_addr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    record
}

fn snapshot(sockets: &[SocketRecord]) -> Snapshot {
    Snapshot::new(SystemTime::UNIX_EPOCH, sockets.to_vec())
}

fn destroyed(record: &SocketRecord) -> DestroyedSocket {
    DestroyedSocket {
        endpoints: record.endpoints(),
        cookie: record.cookie,
        last_state: Closed,
    }
}

/// A differ whose baseline poll saw `sockets`.
fn watching(sockets: &[SocketRecord]) -> Differ {
    let mut differ = Differ::new();
    assert_eq!(differ.observe(&snapshot(sockets), &[]), []);
    differ
}

fn poll(differ: &mut Differ, sockets: &[SocketRecord]) -> Vec<Transition> {
    differ.observe(&snapshot(sockets), &[]).to_vec()
}

fn poll_with(
    differ: &mut Differ,
    sockets: &[SocketRecord],
    gone: &[DestroyedSocket],
) -> Vec<Transition> {
    differ.observe(&snapshot(sockets), gone).to_vec()
}

fn path(states: &[State]) -> Path {
    Path::of(states).unwrap_or_default()
}

/// The one transition of a poll, or a failure that shows them all.
fn only(transitions: Vec<Transition>) -> Transition {
    match transitions.as_slice() {
        [one] => *one,
        other => panic!("expected one transition, got {other:#?}"),
    }
}

#[test]
fn the_first_poll_is_a_baseline_and_reports_nothing() {
    let mut differ = Differ::new();
    let first = snapshot(&[full(Established, 1), listener(2)]);
    assert_eq!(differ.observe(&first, &[]), []);
    assert_eq!(differ.tracked(), 2);
}

#[test]
fn a_connection_only_in_the_next_poll_is_opened() {
    let mut differ = watching(&[]);
    let opened = only(poll(&mut differ, &[request(1)]));
    assert_eq!(opened.kind, Kind::Opened);
    assert_eq!((opened.from, opened.to), (None, Some(SynRecv)));
    assert!(
        opened.exact,
        "SYN_RECV is where a passive connection starts"
    );
    assert_eq!(opened.endpoints, request(1).endpoints());
}

#[test]
fn a_connection_first_seen_established_was_opened_between_polls() {
    let mut differ = watching(&[]);
    let opened = only(poll(&mut differ, &[full(Established, 1)]));
    assert_eq!(opened.kind, Kind::Opened);
    assert!(!opened.exact, "its handshake was not seen");
}

#[test]
fn a_state_one_edge_away_is_an_exact_change() {
    let mut differ = watching(&[full(Established, 1)]);
    let change = only(poll(&mut differ, &[full(CloseWait, 1)]));
    assert_eq!(change.kind, Kind::Changed);
    assert_eq!(
        (change.from, change.to),
        (Some(Established), Some(CloseWait))
    );
    assert!(change.via.is_empty());
    assert!(change.exact);
}

#[test]
fn an_unchanged_connection_reports_nothing() {
    let mut differ = watching(&[full(Established, 1), listener(2)]);
    assert_eq!(poll(&mut differ, &[listener(2), full(Established, 1)]), []);
}

#[test]
fn skipped_states_are_filled_in_with_the_likeliest_path() {
    let mut differ = watching(&[full(Established, 1)]);
    let change = only(poll(&mut differ, &[remnant(TimeWait, 1)]));
    assert_eq!(change.kind, Kind::Changed);
    assert_eq!(
        (change.from, change.to),
        (Some(Established), Some(TimeWait))
    );
    assert_eq!(change.via, path(&[FinWait1, FinWait2]));
    assert!(!change.exact);
}

#[test]
fn syn_recv_that_reappears_established_is_one_handshake() {
    let mut differ = watching(&[request(1)]);
    let handshake = only(poll(&mut differ, &[full(Established, 2)]));
    assert_eq!(handshake.kind, Kind::Changed);
    assert_eq!(
        (handshake.from, handshake.to),
        (Some(SynRecv), Some(Established))
    );
    assert!(handshake.exact);
    assert_eq!(handshake.cookie, 2, "the transition names the new object");
}

#[test]
fn a_time_wait_remnant_with_a_new_cookie_is_an_active_close() {
    let mut differ = watching(&[full(Established, 1)]);
    let close = only(poll(&mut differ, &[remnant(TimeWait, 2)]));
    assert_eq!(close.kind, Kind::Changed);
    assert_eq!((close.from, close.to), (Some(Established), Some(TimeWait)));
    assert_eq!(close.via, path(&[FinWait1, FinWait2]));
}

#[test]
fn an_orphaned_fin_wait2_handed_to_a_remnant_is_no_change() {
    let mut differ = watching(&[full(FinWait2, 1)]);
    assert_eq!(poll(&mut differ, &[remnant(FinWait2, 2)]), []);
}

#[test]
fn a_new_full_socket_at_the_same_endpoints_is_port_reuse() {
    let mut differ = watching(&[full(Established, 1)]);
    let transitions = poll(&mut differ, &[full(Established, 2)]);
    let [closed, opened] = transitions.as_slice() else {
        panic!("expected a close and an open, got {transitions:#?}");
    };
    assert_eq!((closed.kind, closed.cookie), (Kind::Closed, 1));
    assert_eq!(closed.from, Some(Established));
    assert_eq!((opened.kind, opened.cookie), (Kind::Opened, 2));
    assert_eq!(opened.to, Some(Established));
}

#[test]
fn a_new_syn_for_endpoints_in_time_wait_is_a_new_connection() {
    let mut differ = watching(&[remnant(TimeWait, 1)]);
    let transitions = poll(&mut differ, &[request(2)]);
    let kinds: Vec<_> = transitions.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [Kind::Closed, Kind::Opened]);
    assert_eq!(transitions[0].ending, Some(Ending::TimeWaitExpired));
}

#[test]
fn a_socket_missed_by_one_dump_and_back_in_the_next_reports_nothing() {
    let mut differ = watching(&[full(Established, 1)]);
    assert_eq!(poll(&mut differ, &[]), []);
    assert_eq!(poll(&mut differ, &[full(Established, 1)]), []);
    assert_eq!(poll(&mut differ, &[full(Established, 1)]), []);
}

#[test]
fn a_socket_missing_from_two_polls_in_a_row_is_closed() {
    let mut differ = watching(&[full(Established, 1)]);
    assert_eq!(poll(&mut differ, &[]), []);
    let closed = only(poll(&mut differ, &[]));
    assert_eq!(closed.kind, Kind::Closed);
    assert_eq!((closed.from, closed.to), (Some(Established), None));
    assert_eq!(closed.ending, Some(Ending::PeerClosedOrReset));
    assert_eq!(closed.via, path(&[CloseWait, LastAck]));
    assert!(!closed.exact);
    assert_eq!(differ.tracked(), 0);
}

#[test]
fn a_missed_socket_that_moved_on_is_compared_with_its_last_state() {
    let mut differ = watching(&[full(Established, 1)]);
    assert_eq!(poll(&mut differ, &[]), []);
    let change = only(poll(&mut differ, &[full(LastAck, 1)]));
    assert_eq!((change.from, change.to), (Some(Established), Some(LastAck)));
    assert_eq!(change.via, path(&[CloseWait]));
}

#[test]
fn time_wait_that_runs_out_ends_as_expired() {
    let mut differ = watching(&[remnant(TimeWait, 1)]);
    assert_eq!(poll(&mut differ, &[]), []);
    let closed = only(poll(&mut differ, &[]));
    assert_eq!(closed.ending, Some(Ending::TimeWaitExpired));
    assert!(closed.exact, "TIME_WAIT goes straight to CLOSED");
}

#[test]
fn syn_recv_that_vanishes_is_a_half_open_connection_abandoned() {
    let mut differ = watching(&[request(1)]);
    assert_eq!(poll(&mut differ, &[]), []);
    let closed = only(poll(&mut differ, &[]));
    assert_eq!(closed.from, Some(SynRecv));
    assert_eq!(closed.ending, Some(Ending::HalfOpenAbandoned));
    assert_eq!(
        closed.ending.map(Ending::describe),
        Some("half-open, abandoned or reset")
    );
    assert!(closed.via.is_empty());
}

#[test]
fn a_destroy_message_closes_a_missing_socket_without_waiting_for_a_second_poll() {
    let mut differ = watching(&[full(LastAck, 1)]);
    let closed = only(poll_with(&mut differ, &[], &[destroyed(&full(LastAck, 1))]));
    assert_eq!(closed.kind, Kind::Closed);
    assert_eq!(closed.from, Some(LastAck));
    assert_eq!(closed.ending, Some(Ending::LastAckCompleted));
    assert!(closed.exact);
}

#[test]
fn a_destroyed_socket_no_poll_saw_is_closed_exactly() {
    let mut differ = watching(&[]);
    let ghost = full(Established, 9);
    let closed = only(poll_with(&mut differ, &[], &[destroyed(&ghost)]));
    assert_eq!(closed.kind, Kind::Closed);
    assert_eq!(closed.endpoints, ghost.endpoints());
    assert_eq!((closed.from, closed.to), (Some(Closed), None));
    assert!(closed.exact);
    assert_eq!(closed.ending, Some(Ending::BetweenPolls));
    assert_eq!(differ.tracked(), 0, "nothing is left to close again");
}

#[test]
fn a_destroyed_socket_that_left_a_time_wait_remnant_changed_to_time_wait() {
    let mut differ = watching(&[full(FinWait2, 1)]);
    let gone = [destroyed(&full(FinWait2, 1))];
    let change = only(poll_with(&mut differ, &[remnant(TimeWait, 2)], &gone));
    assert_eq!(change.kind, Kind::Changed);
    assert_eq!((change.from, change.to), (Some(FinWait2), Some(TimeWait)));
    assert!(change.exact);
    assert_eq!(poll(&mut differ, &[remnant(TimeWait, 2)]), []);
}

#[test]
fn a_remnant_that_kept_the_cookie_absorbs_the_destroy_message() {
    let mut differ = watching(&[full(FinWait1, 1)]);
    let gone = [destroyed(&full(FinWait1, 1))];
    let change = only(poll_with(&mut differ, &[remnant(TimeWait, 1)], &gone));
    assert_eq!((change.from, change.to), (Some(FinWait1), Some(TimeWait)));
    // Missed once later by a dump, the remnant is not closed early by the old message.
    assert_eq!(poll(&mut differ, &[]), []);
}

#[test]
fn a_destroy_message_for_a_socket_the_dump_still_listed_waits_for_the_next_poll() {
    let mut differ = watching(&[full(Established, 1)]);
    let gone = [destroyed(&full(Established, 1))];
    // The message arrived while the dump ran, after the dump had listed the socket.
    assert_eq!(poll_with(&mut differ, &[full(Established, 1)], &gone), []);
    // The next poll shows what it left: a TIME_WAIT remnant, so an active close.
    let change = only(poll(&mut differ, &[remnant(TimeWait, 2)]));
    assert_eq!(
        (change.from, change.to),
        (Some(Established), Some(TimeWait))
    );
}

#[test]
fn a_held_destroy_message_closes_the_socket_if_the_next_poll_lacks_it() {
    let mut differ = watching(&[full(CloseWait, 1)]);
    let gone = [destroyed(&full(CloseWait, 1))];
    assert_eq!(poll_with(&mut differ, &[full(CloseWait, 1)], &gone), []);
    let closed = only(poll(&mut differ, &[]));
    assert_eq!(closed.kind, Kind::Closed);
    assert_eq!(closed.ending, Some(Ending::PeerClosedOrReset));
    assert_eq!(closed.via, path(&[LastAck]));
}

#[test]
fn a_connection_opened_and_actively_closed_between_polls_shows_as_its_remnant() {
    let mut differ = watching(&[]);
    let gone = [destroyed(&full(FinWait2, 5))];
    let opened = only(poll_with(&mut differ, &[remnant(TimeWait, 6)], &gone));
    assert_eq!(opened.kind, Kind::Opened);
    assert_eq!(opened.to, Some(TimeWait));
}

#[test]
fn a_request_socket_whose_full_socket_was_destroyed_completed_its_handshake() {
    let mut differ = watching(&[request(1)]);
    let gone = [destroyed(&full(Established, 2))];
    let closed = only(poll_with(&mut differ, &[], &gone));
    assert_eq!(closed.from, Some(SynRecv));
    assert_eq!(closed.ending, Some(Ending::PeerClosedOrReset));
    assert_eq!(closed.via, path(&[Established, CloseWait, LastAck]));
}

#[test]
fn reuseport_listeners_on_one_port_are_tracked_apart() {
    let mut differ = watching(&[listener(1), listener(2)]);
    assert_eq!(differ.tracked(), 2);
    // Dump order changes nothing.
    assert_eq!(poll(&mut differ, &[listener(2), listener(1)]), []);
    // A third listener joins.
    let opened = only(poll(&mut differ, &[listener(3), listener(2), listener(1)]));
    assert_eq!((opened.kind, opened.cookie), (Kind::Opened, 3));
    // The first goes; it is closed once missed twice, and the others stay.
    assert_eq!(poll(&mut differ, &[listener(3), listener(2)]), []);
    let closed = only(poll(&mut differ, &[listener(2), listener(3)]));
    assert_eq!((closed.kind, closed.cookie), (Kind::Closed, 1));
    assert_eq!(closed.ending, Some(Ending::ListenerClosed));
    assert_eq!(differ.tracked(), 2);
}

#[test]
fn a_socket_listed_twice_by_one_dump_counts_once() {
    let mut differ = watching(&[full(Established, 1)]);
    let twice = [full(CloseWait, 1), full(CloseWait, 1)];
    let change = only(poll(&mut differ, &twice));
    assert_eq!(change.to, Some(CloseWait));
    let fresh = socket(SynSent, 2000, 8, 18);
    let kinds: Vec<_> = poll(&mut differ, &[fresh, full(CloseWait, 1), fresh])
        .iter()
        .map(|t| t.kind)
        .collect();
    assert_eq!(kinds, [Kind::Opened]);
}

#[test]
fn connections_on_other_ports_do_not_disturb_each_other() {
    let a = socket(Established, 1001, 1, 11);
    let b = socket(Established, 1002, 2, 12);
    let mut differ = watching(&[a, b]);
    let b_closing = socket(FinWait1, 1002, 2, 12);
    let change = only(poll(&mut differ, &[a, b_closing]));
    assert_eq!(change.endpoints, b.endpoints());
}

#[test]
fn a_destroy_message_for_a_socket_new_in_the_same_dump_is_opened_then_settled_next_poll() {
    let mut differ = watching(&[]);
    let brief = full(Established, 3);
    // The dump listed the new socket, then it died and its message came with the dump.
    let opened = only(poll_with(&mut differ, &[brief], &[destroyed(&brief)]));
    assert_eq!(opened.kind, Kind::Opened);
    // Gone from the next poll: closed at once, and only once.
    let closed = only(poll(&mut differ, &[]));
    assert_eq!((closed.kind, closed.cookie), (Kind::Closed, 3));
    assert_eq!(poll(&mut differ, &[]), []);
}

// Lanes: destroy messages resolved between full polls by an exact lookup of what the
// kernel holds at their endpoints ([`Differ::observe_destroyed`]).

fn lane(differ: &mut Differ, gone: &[DestroyedSocket], found: &[SocketRecord]) -> Vec<Transition> {
    differ.observe_destroyed(gone, found).to_vec()
}

#[test]
fn a_destroyed_socket_with_no_remnant_closes_at_the_lane_and_only_there() {
    let mut differ = watching(&[full(CloseWait, 1), listener(2)]);
    let closed = only(lane(&mut differ, &[destroyed(&full(CloseWait, 1))], &[]));
    assert_eq!((closed.kind, closed.cookie), (Kind::Closed, 1));
    assert_eq!(closed.from, Some(CloseWait));
    assert_eq!(closed.ending, Some(Ending::PeerClosedOrReset));
    // The next full poll lacks it and says nothing more, nor the one after.
    assert_eq!(poll(&mut differ, &[listener(2)]), []);
    assert_eq!(poll(&mut differ, &[listener(2)]), []);
    assert_eq!(differ.tracked(), 1);
}

#[test]
fn a_lookup_that_finds_only_the_listener_is_no_remnant() {
    let mut differ = watching(&[full(Established, 1), listener(2)]);
    let closed = only(lane(
        &mut differ,
        &[destroyed(&full(Established, 1))],
        &[listener(2)],
    ));
    assert_eq!(closed.kind, Kind::Closed);
}

#[test]
fn a_destroyed_socket_that_left_a_remnant_changes_at_the_lane_and_the_next_poll_agrees() {
    let mut differ = watching(&[full(FinWait1, 1)]);
    let gone = [destroyed(&full(FinWait1, 1))];
    let change = only(lane(&mut differ, &gone, &[remnant(TimeWait, 1)]));
    assert_eq!(change.kind, Kind::Changed);
    assert_eq!((change.from, change.to), (Some(FinWait1), Some(TimeWait)));
    assert_eq!(poll(&mut differ, &[remnant(TimeWait, 1)]), []);
    // The remnant runs out: closed as a TIME_WAIT, once missed twice.
    assert_eq!(poll(&mut differ, &[]), []);
    let closed = only(poll(&mut differ, &[]));
    assert_eq!(closed.ending, Some(Ending::TimeWaitExpired));
}

#[test]
fn a_remnant_with_a_cookie_of_its_own_takes_the_sockets_place_at_the_lane() {
    let mut differ = watching(&[full(FinWait2, 1)]);
    let gone = [destroyed(&full(FinWait2, 1))];
    let change = only(lane(&mut differ, &gone, &[remnant(TimeWait, 2)]));
    assert_eq!(
        (change.from, change.to, change.cookie),
        (Some(FinWait2), Some(TimeWait), 2)
    );
    assert_eq!(poll(&mut differ, &[remnant(TimeWait, 2)]), []);
    assert_eq!(differ.tracked(), 1);
}

#[test]
fn a_stranger_with_no_remnant_closes_between_polls_at_the_lane() {
    let mut differ = watching(&[listener(1)]);
    let ghost = full(Established, 9);
    let closed = only(lane(&mut differ, &[destroyed(&ghost)], &[]));
    assert_eq!((closed.kind, closed.from), (Kind::Closed, Some(Closed)));
    assert_eq!(closed.ending, Some(Ending::BetweenPolls));
    assert_eq!(poll(&mut differ, &[listener(1)]), []);
    assert_eq!(differ.tracked(), 1);
}

#[test]
fn a_stranger_that_left_a_remnant_opens_in_time_wait_at_the_lane_once() {
    let mut differ = watching(&[]);
    let gone = [destroyed(&full(FinWait2, 5))];
    let opened = only(lane(&mut differ, &gone, &[remnant(TimeWait, 6)]));
    assert_eq!((opened.kind, opened.to), (Kind::Opened, Some(TimeWait)));
    // The full poll lists the remnant it tracks already.
    assert_eq!(poll(&mut differ, &[remnant(TimeWait, 6)]), []);
}

#[test]
fn a_stranger_whose_remnant_the_last_full_poll_listed_says_nothing_more() {
    // The dump listed the remnant (opened in TIME_WAIT); the full socket's message
    // came after the dump.
    let mut differ = watching(&[]);
    assert_eq!(poll(&mut differ, &[remnant(TimeWait, 6)]).len(), 1);
    let gone = [destroyed(&full(FinWait2, 5))];
    assert_eq!(lane(&mut differ, &gone, &[remnant(TimeWait, 6)]), []);
    assert_eq!(poll(&mut differ, &[remnant(TimeWait, 6)]), []);
}

#[test]
fn a_request_socket_whose_full_socket_died_closes_at_the_lane() {
    let mut differ = watching(&[request(1)]);
    let gone = [destroyed(&full(Established, 2))];
    let closed = only(lane(&mut differ, &gone, &[]));
    assert_eq!(closed.from, Some(SynRecv));
    assert_eq!(closed.via, path(&[Established, CloseWait, LastAck]));
    assert_eq!(poll(&mut differ, &[]), []);
    assert_eq!(differ.tracked(), 0);
}

#[test]
fn a_destroy_message_left_to_the_full_poll_that_still_lists_the_socket_is_held_over() {
    let mut differ = watching(&[full(Established, 1), full(Established, 3)]);
    // A lane resolves another socket's message; this one is left to the full poll
    // (over the lane's cap), whose dump still listed the socket.
    let other = [destroyed(&full(Established, 3))];
    assert_eq!(lane(&mut differ, &other, &[]).len(), 1);
    let gone = [destroyed(&full(Established, 1))];
    assert_eq!(poll_with(&mut differ, &[full(Established, 1)], &gone), []);
    let closed = only(poll(&mut differ, &[]));
    assert_eq!((closed.kind, closed.cookie), (Kind::Closed, 1));
}

#[test]
fn a_lane_before_the_first_full_poll_reports_nothing() {
    let mut differ = Differ::new();
    assert_eq!(
        lane(&mut differ, &[destroyed(&full(Established, 1))], &[]),
        []
    );
}
