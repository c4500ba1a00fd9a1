//! Snapshot × snapshot → transitions: which connections opened, changed state or closed
//! since the last poll. Pure: it reads the snapshots and the kernel's destroy messages
//! the caller hands it, and never talks to the kernel itself.
//!
//! # What a connection is
//!
//! A connection is its endpoints (family, local, remote). The socket cookie tells
//! kernel objects apart (sock_diag gives every socket one, unique until reboot), and
//! Linux swaps the object under one connection twice:
//!
//! - When a handshake completes, the SYN_RECV *request socket* (inode 0) gives way to a
//!   new *full socket*. The child is cloned from the listener with its cookie cleared
//!   (`sk_clone_lock()`, net/core/sock.c), so it gets a cookie of its own.
//! - When an active close reaches TIME_WAIT, the full socket gives way to a *TIME_WAIT
//!   remnant* (inode 0); an orphaned FIN_WAIT2 may give way to a FIN_WAIT2 remnant the
//!   same way (`tcp_time_wait()`, net/ipv4/tcp_minisocks.c). The remnant copies the
//!   cookie if the full socket had one (`inet_twsk_alloc()`,
//!   net/ipv4/inet_timewait_sock.c), which it has once a dump listed it; otherwise it
//!   gets a new one.
//!
//! So a new cookie where the earlier object was a request socket or the later one is a
//! remnant is the same connection moving on, reported `Changed`. A new cookie between
//! two full sockets is the endpoints being reused: the old connection `Closed`, a new
//! one `Opened`. So is any new cookie whose likeliest path passes through CLOSED (a
//! TIME_WAIT followed by a SYN_RECV is a new connection).
//!
//! # Endpoints that several sockets share
//!
//! Listeners have no remote end (`0.0.0.0:0` or `[::]:0`), and with `SO_REUSEPORT` several
//! listen on the same local end; unconnected sockets can share endpoints too. Every
//! socket is tracked by its cookie, and the first socket seen at some endpoints speaks
//! for the connection there: only it can be carried on or replaced by a new object as
//! above. Further sockets at the same endpoints are matched by cookie alone, so
//! replacing one reads as a close and an open, which for a restarted `SO_REUSEPORT`
//! listener is what happened.
//!
//! A dump that resumes inside a hash bucket after sockets came or went there can list
//! one socket twice; the second listing is ignored.
//!
//! # Cost
//!
//! The differ keeps one 48-byte entry a socket, in a vector sorted by cookie
//! ([`tracked`]): no hash map entry a socket. Each poll walks the dump once against it,
//! by cookie. Only the few sockets that are new objects are looked up by endpoints: in
//! a small map of the tracked sockets this poll did not list, and, to tell whether a
//! listed socket speaks for their endpoints already, in one pass over the table that
//! reads two bytes of ports of each entry before it hashes any endpoints. The maps of
//! a poll are O(churn); a poll with much churn gives their memory back after it. The
//! first poll builds the table by sorting the dump. The table is swept only when some
//! sockets are missing. `cargo test --release --test bench_diff` (100k sockets, 1%
//! churn) times a poll.
//!
//! # Missing sockets and destroy messages
//!
//! A sock_diag dump is not atomic: a socket that moves while the dump runs can be missed
//! once. So a socket missing from one poll is only reported `Closed` when it is missing
//! from the next poll too, or when a destroy message says it is gone.
//!
//! The kernel multicasts a destroy message when a full socket is freed (`__sk_free()`,
//! net/core/sock.c); request sockets and remnants have none. A destroy message says the
//! object died, not the connection: the connection may live on as a TIME_WAIT remnant.
//! So messages are only read at the next poll, which shows what was left behind:
//!
//! - the socket's connection is in a remnant now: it is a change to TIME_WAIT (or
//!   FIN_WAIT2), never a close;
//! - the socket is gone from the poll: `Closed` at once, without waiting for a second
//!   miss;
//! - the poll still lists the socket alive (the message came while the dump ran): the
//!   message is held over to the following poll, once;
//! - no poll ever saw the socket (it opened and closed between polls): `Closed`, `from`
//!   its last state, `exact`, with ending [`Ending::BetweenPolls`] when that state is
//!   CLOSED. No `Opened` is reported before it: it was never seen open. If its
//!   connection left a TIME_WAIT remnant, the poll shows that instead and it is reported
//!   `Opened` in TIME_WAIT; its close comes when the remnant goes.
//!
//! # Between full polls
//!
//! A poller that spaces full dumps out need not wait for the next one to show what is
//! left behind a destroyed socket: it can ask the kernel (an exact lookup of the
//! endpoints) and hand the answers to [`Differ::observe_destroyed`], which applies the
//! rules above to them at once: no remnant, `Closed`; a remnant, `Changed` to its
//! state, or `Opened` in it for a socket no poll saw. The table is updated so that the
//! next full poll agrees: what a lane closed is forgotten (dropped from the table at
//! the start of that poll, the only cost the full poll pays, and only after a lane
//! closed something), and the remnants it found are tracked as if a poll had listed
//! them. A lane never holds a message over: the lookup is what the kernel holds now.
//!
//! # What the caller must do
//!
//! Call [`Differ::observe`] once per successful poll, in order, with the destroy
//! messages received since the previous call (drain the multicast socket just before
//! starting the dump; messages that arrive during the dump can go with this poll or the
//! next). Never pass a failed or partial dump: every connection it lacks would count as
//! missed once. The first call sets the baseline and reports nothing. Between two
//! calls, [`Differ::observe_destroyed`] may take any of those messages instead, each
//! with the kernel's answer for its endpoints; the rest go with the next `observe`.

mod ending;
mod key;
#[cfg(test)]
mod tests;
mod tracked;
mod transition;

use std::collections::HashMap;

use foldhash::fast::RandomState;

pub use ending::Ending;
pub use transition::{Kind, Transition};

use crate::snapshot::{Endpoints, Snapshot, SocketRecord};
use crate::tcp::{Path, State, shortest_path};
use ending::route_after_handshake;
use key::Key;
use tracked::{Destroyed, Object, Table, Tracked};

/// The differ's small maps, of this poll's new objects and missing sockets. The hasher
/// is foldhash, not std's SipHash, seeded at random per process, because the remote end
/// of a SYN is the sender's choice and a fixed seed would let a flood aim for
/// collisions.
type Map<K, V> = HashMap<K, V, RandomState>;

/// The most room the buffers of one poll keep for the next: a poll with more churn
/// than this (the baseline, a flood) gives back what it took, so that memory follows
/// the socket count, not the busiest poll ever seen.
const SCRATCH_KEEP: usize = 4096;

/// Bits in the filter of endpoints' ports ([`Key::port_bits`]).
const PORT_FILTER_BITS: usize = 1 << 16;

/// The kernel's word that a full socket was freed: the final `inet_diag_msg` of the
/// sock_diag destroy multicast (`SKNLGRP_INET_TCP_DESTROY`, `SKNLGRP_INET6_TCP_DESTROY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestroyedSocket {
    pub endpoints: Endpoints,
    pub cookie: u64,
    /// The state in the message. Linux frees a socket only once it is CLOSED
    /// (`inet_csk_destroy_sock()`, net/ipv4/inet_connection_sock.c), so this is usually
    /// CLOSED; the state the polls last saw says more.
    pub last_state: State,
}

impl DestroyedSocket {
    /// The destroy message as the event parser decodes it, a record like any other.
    pub fn from_record(record: &SocketRecord) -> DestroyedSocket {
        DestroyedSocket {
            endpoints: record.endpoints(),
            cookie: record.cookie,
            last_state: record.state,
        }
    }
}

/// Turns each poll's snapshot into the transitions since the poll before.
///
/// It remembers one small entry per socket across calls, and reuses its buffers, so
/// that a steady stream of polls allocates nothing once they have grown to the largest
/// snapshot seen. See the module documentation for the rules.
#[derive(Debug, Clone, Default)]
pub struct Differ {
    /// Every tracked socket, by cookie. Cookies are unique while the kernel runs
    /// (`sock_gen_cookie()`, net/core/sock_diag.c).
    tracked: Table,
    /// Counts calls to `observe`; a tracked socket knows whether the latest saw it.
    poll: u32,
    primed: bool,
    /// How many tracked sockets this poll has seen, to skip the sweep for the missing.
    seen_now: usize,
    /// Indexes into this poll's sockets that matched no tracked kernel object.
    unmatched: Vec<usize>,
    /// The same, by cookie, while destroy messages are matched.
    fresh: Map<u64, usize>,
    /// Tracked sockets this poll did not list that speak for their endpoints, by
    /// endpoints: the connections a new object may carry on or replace.
    vacant: Map<Key, usize>,
    /// Endpoints of new objects for which a socket this poll listed speaks already:
    /// new objects there share them.
    spoken: Map<Key, ()>,
    /// A filter of the ports of new objects' endpoints, to skip most tracked sockets
    /// without hashing their endpoints while `spoken` is filled.
    port_filter: Vec<u64>,
    /// The new objects of this poll, added to `tracked` at its end, and where each is
    /// by cookie.
    added: Vec<Tracked>,
    added_at: Map<u64, usize>,
    /// Destroy messages held over from the last poll, which still listed their socket.
    held: Vec<DestroyedSocket>,
    /// The messages this poll holds over; swapped with `held` at the end of the pass.
    holding: Vec<DestroyedSocket>,
    /// Destroy messages of sockets no poll saw, and where to find them by endpoints.
    strangers: Vec<Stranger>,
    stranger_keys: Map<Key, usize>,
    transitions: Vec<Transition>,
    /// Tracked sockets a lane closed or replaced since the last full poll: forgotten in
    /// place (so that indexes hold between full polls) and dropped at the next one.
    lane_forgotten: usize,
    /// Remnants a lane found, tracked from the next full poll on, and their cookies.
    lane_added: Vec<Tracked>,
    lane_added_at: Map<u64, usize>,
    /// The tracked request sockets that speak for their endpoints, by endpoints: made
    /// at the first lane that needs them after a full poll, and kept until the next.
    requests: Option<Map<Key, usize>>,
}

#[derive(Debug, Clone, Copy)]
struct Stranger {
    socket: DestroyedSocket,
    /// Its connection showed up as a remnant in this poll.
    accounted: bool,
}

/// Where a tracked socket is while a poll is taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Tracked(usize),
    Added(usize),
}

impl Differ {
    pub fn new() -> Differ {
        Differ::default()
    }

    /// A differ with room for `sockets` sockets before its table grows.
    pub fn with_capacity(sockets: usize) -> Differ {
        Differ {
            tracked: Table::with_capacity(sockets),
            ..Differ::default()
        }
    }

    /// Compares `next` with what earlier polls saw, takes in the destroy messages
    /// received since the last call, and returns this poll's transitions.
    ///
    /// The transitions come in groups (changes of known sockets, then replacements and
    /// openings, then closes) with no order inside a group. They stay valid until the
    /// next call; copy the ones to keep. The first call returns none.
    pub fn observe(&mut self, next: &Snapshot, destroyed: &[DestroyedSocket]) -> &[Transition] {
        self.transitions.clear();
        self.transitions.shrink_to(SCRATCH_KEEP);
        self.unmatched.clear();
        self.strangers.clear();
        clear(&mut self.stranger_keys);
        clear(&mut self.vacant);
        clear(&mut self.spoken);
        clear(&mut self.added_at);
        self.added.clear();
        self.seen_now = 0;
        self.poll = self.poll.wrapping_add(1);
        self.take_in_lanes();

        if !self.primed {
            // The baseline: everything in it is "opened", which says nothing.
            self.baseline(&next.sockets, destroyed);
            self.primed = true;
            return &self.transitions;
        }
        self.match_known_objects(&next.sockets);
        self.survey(&next.sockets);
        self.take_destroyed(&next.sockets, destroyed);
        self.place_new_objects(&next.sockets);
        self.close_missing();
        self.close_strangers();
        let mut added = std::mem::take(&mut self.added);
        self.tracked.merge(&mut added);
        added.clear();
        self.added = added;
        self.tracked.fit();
        self.give_back_scratch();
        &self.transitions
    }

    /// The first poll: every socket is tracked, and the first listed at some endpoints
    /// speaks for them, as if each had been placed in turn as a new object, but without
    /// a map entry for each: the table is built, and its duplicates and endpoints found,
    /// by sorting.
    fn baseline(&mut self, sockets: &[SocketRecord], destroyed: &[DestroyedSocket]) {
        let poll = self.poll;
        let mut entries = Vec::with_capacity(sockets.len() + sockets.len() / 16);
        entries.extend(
            sockets
                .iter()
                .map(|record| Tracked::new(Key::of(record), record, poll)),
        );
        // A cookie listed twice counts once, as first listed.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_unstable_by_key(|&at| (entries.get(at).map(|t| t.cookie), at));
        let mut last = None;
        for &at in &order {
            let Some(tracked) = entries.get_mut(at) else {
                continue;
            };
            if last == Some(tracked.cookie) {
                tracked.forget();
            }
            last = Some(tracked.cookie);
        }
        // The first socket listed at some endpoints speaks for them.
        order.retain(|&at| entries.get(at).is_some_and(|t| !t.dead()));
        order.sort_unstable_by_key(|&at| (entries.get(at).map(Tracked::key), at));
        let mut last = None;
        for &at in &order {
            let Some(tracked) = entries.get_mut(at) else {
                continue;
            };
            let key = tracked.key();
            if last != Some(key) {
                tracked.make_primary();
            }
            last = Some(key);
        }
        drop(order);
        entries.retain(|tracked| !tracked.dead());
        entries.sort_unstable_by_key(|tracked| tracked.cookie);
        self.tracked = Table::of_sorted(entries);

        // A destroy message for a socket this dump listed waits for the next poll,
        // unless the socket is the remnant that lives on with its cookie.
        self.holding.clear();
        for socket in destroyed {
            let key = Key::of_endpoints(&socket.endpoints);
            let listed = self
                .tracked
                .find(socket.cookie)
                .and_then(|at| self.tracked.get(at))
                .filter(|tracked| tracked.key() == key);
            if listed.is_some_and(|tracked| tracked.object != Object::Remnant) {
                self.holding.push(*socket);
            }
        }
        std::mem::swap(&mut self.held, &mut self.holding);
    }

    /// Takes the destroy messages a lane of the poller resolved between full polls,
    /// each with what the kernel holds at its endpoints now (`remnants`: the answers to
    /// exact lookups; only TIME_WAIT and FIN_WAIT2 remnants among them count), and
    /// returns the transitions they make: so that a close is reported at the tick after
    /// it, not at the next full poll. The table is updated so that the next full poll
    /// agrees: nothing it sees is reported twice.
    ///
    /// - a tracked socket with no remnant left: `Closed` now;
    /// - a tracked socket whose connection is in a remnant now: `Changed` to its state,
    ///   and the remnant is tracked in its place;
    /// - a tracked request socket whose full socket died: the handshake completed, and
    ///   it closed (or changed to the remnant's state);
    /// - no poll saw it: `Closed` as between polls, or, with a remnant, `Opened` in the
    ///   remnant's state, which is tracked from then on.
    ///
    /// A message whose remnant the table holds already is the full socket's late word
    /// and says nothing. Messages not passed here go with the next full poll, as ever.
    /// Before the first full poll this does nothing: a lane never comes before it. The
    /// transitions stay valid until the next call of either kind.
    pub fn observe_destroyed(
        &mut self,
        destroyed: &[DestroyedSocket],
        remnants: &[SocketRecord],
    ) -> &[Transition] {
        self.transitions.clear();
        if !self.primed {
            return &self.transitions;
        }
        for socket in destroyed {
            let key = Key::of_endpoints(&socket.endpoints);
            let remnant = remnants
                .iter()
                .find(|record| Object::of(record) == Object::Remnant && Key::of(record) == key);
            if let Some(remnant) = remnant
                && (self.lane_added_at.contains_key(&remnant.cookie)
                    || self
                        .alive_at(remnant.cookie, key)
                        .and_then(|at| self.tracked.get(at))
                        .is_some_and(|tracked| tracked.object == Object::Remnant))
            {
                // The remnant is tracked already: what this message says is known.
                continue;
            }
            if let Some(at) = self.alive_at(socket.cookie, key) {
                self.lane_destroyed(at, remnant, None);
            } else if let Some(at) = self.tracked_request(key) {
                let route = route_after_handshake();
                self.lane_destroyed(at, remnant, Some(route));
            } else {
                match remnant {
                    Some(remnant) => {
                        self.transitions.push(opening(remnant));
                        self.lane_track(remnant, true);
                    }
                    None => self.transitions.push(between_polls(socket)),
                }
            }
        }
        &self.transitions
    }

    /// Where the live tracked socket `cookie` at `key` is in the table.
    fn alive_at(&self, cookie: u64, key: Key) -> Option<usize> {
        let at = self.tracked.find(cookie)?;
        let tracked = self.tracked.get(at)?;
        (!tracked.dead() && tracked.key() == key).then_some(at)
    }

    /// The tracked request socket that speaks for `key`, if any. The map of them is
    /// made by one pass over the table, at most once between two full polls.
    fn tracked_request(&mut self, key: Key) -> Option<usize> {
        let tracked = &self.tracked;
        let requests = self.requests.get_or_insert_with(|| {
            tracked
                .iter()
                .filter(|(_, t)| t.object == Object::Request && t.primary() && !t.dead())
                .map(|(at, t)| (t.key(), at))
                .collect()
        });
        let at = *requests.get(&key)?;
        self.tracked.get(at).filter(|t| !t.dead()).map(|_| at)
    }

    /// A lane's word on the tracked socket at `at`: its kernel object died, leaving
    /// `remnant` or nothing. `handshake` is the route of a request socket whose full
    /// socket it was.
    fn lane_destroyed(
        &mut self,
        at: usize,
        remnant: Option<&SocketRecord>,
        handshake: Option<Path>,
    ) {
        let Some(tracked) = self.tracked.get(at).copied() else {
            return;
        };
        if tracked.object == Object::Remnant {
            return; // the remnant lives on with the full socket's cookie
        }
        match remnant {
            Some(remnant) => {
                self.transitions.extend(change(tracked.state, remnant));
                if remnant.cookie == tracked.cookie {
                    if let Some(entry) = self.tracked.get_mut(at) {
                        entry.became(remnant);
                    }
                    return;
                }
                self.lane_track(remnant, tracked.primary());
            }
            None => self.transitions.push(match handshake {
                Some(route) => Transition::ended(
                    tracked.key().endpoints(),
                    State::SynRecv,
                    route,
                    Ending::PeerClosedOrReset,
                    tracked.cookie,
                ),
                None => closing(&tracked),
            }),
        }
        if let Some(entry) = self.tracked.get_mut(at) {
            entry.forget();
            self.lane_forgotten += 1;
        }
    }

    /// Tracks a remnant a lane found, from the next full poll on.
    fn lane_track(&mut self, remnant: &SocketRecord, primary: bool) {
        let mut entry = Tracked::new(Key::of(remnant), remnant, self.poll);
        if primary {
            entry.make_primary();
        }
        self.lane_added_at
            .insert(remnant.cookie, self.lane_added.len());
        self.lane_added.push(entry);
    }

    /// Before a full poll: drops what lanes forgot and adds the remnants they found,
    /// which that poll then finds (or misses) like any tracked socket.
    fn take_in_lanes(&mut self) {
        self.requests = None;
        if self.lane_forgotten > 0 {
            self.tracked.retain(|tracked| !tracked.dead());
            self.lane_forgotten = 0;
        }
        if !self.lane_added.is_empty() {
            let mut added = std::mem::take(&mut self.lane_added);
            self.tracked.merge(&mut added);
            added.clear();
            added.shrink_to(SCRATCH_KEEP);
            self.lane_added = added;
            clear(&mut self.lane_added_at);
            self.lane_added_at.shrink_to(SCRATCH_KEEP);
        }
    }

    /// Gives back the memory a poll with much churn took (see [`SCRATCH_KEEP`]).
    fn give_back_scratch(&mut self) {
        self.unmatched.shrink_to(SCRATCH_KEEP);
        self.added.shrink_to(SCRATCH_KEEP);
        self.strangers.shrink_to(SCRATCH_KEEP);
        self.fresh.shrink_to(SCRATCH_KEEP);
        self.added_at.shrink_to(SCRATCH_KEEP);
        self.vacant.shrink_to(SCRATCH_KEEP);
        self.spoken.shrink_to(SCRATCH_KEEP);
        self.stranger_keys.shrink_to(SCRATCH_KEEP);
    }

    /// How many sockets the differ remembers, including those missed once.
    pub fn tracked(&self) -> usize {
        self.tracked.len() + self.added.len()
    }

    /// The tracked socket `cookie` is, if any: in the table (unless forgotten during
    /// this poll) or among this poll's new objects.
    fn slot(&self, cookie: u64) -> Option<Slot> {
        if let Some(&at) = self.added_at.get(&cookie) {
            return Some(Slot::Added(at));
        }
        let at = self.tracked.find(cookie)?;
        let alive = self.tracked.get(at).is_some_and(|tracked| !tracked.dead());
        alive.then_some(Slot::Tracked(at))
    }

    fn entry(&self, slot: Slot) -> Option<&Tracked> {
        match slot {
            Slot::Tracked(at) => self.tracked.get(at),
            Slot::Added(at) => self.added.get(at),
        }
    }

    fn entry_mut(&mut self, slot: Slot) -> Option<&mut Tracked> {
        match slot {
            Slot::Tracked(at) => self.tracked.get_mut(at),
            Slot::Added(at) => self.added.get_mut(at),
        }
    }

    /// First pass: sockets whose kernel object is already tracked (same cookie, same
    /// endpoints). Most sockets of a poll end here.
    fn match_known_objects(&mut self, sockets: &[SocketRecord]) {
        let poll = self.poll;
        let mut cursor = 0;
        for (index, record) in sockets.iter().enumerate() {
            let key = Key::of(record);
            let found = self.tracked.find_near(record.cookie, cursor);
            let Some((at, tracked)) = found
                .and_then(|at| Some((at, self.tracked.get_mut(at)?)))
                .filter(|(_, tracked)| tracked.key() == key)
            else {
                self.unmatched.push(index);
                continue;
            };
            // The next socket of the dump is most likely the next one tracked.
            cursor = at + 1;
            if tracked.seen(poll) {
                continue; // listed twice by one dump
            }
            self.transitions.extend(change(tracked.state, record));
            tracked.listed(record, poll);
            self.seen_now += 1;
        }
    }

    /// One pass over the table after the first: the sockets this poll did not list
    /// that speak for their endpoints (`vacant`), and the endpoints of this poll's new
    /// objects for which a listed socket speaks already (`spoken`). It reads two bytes
    /// of ports of each listed socket, and hashes the endpoints of few.
    fn survey(&mut self, sockets: &[SocketRecord]) {
        let missing = self.seen_now < self.tracked.len();
        let new_objects = !self.unmatched.is_empty();
        if !missing && !new_objects {
            return;
        }
        if new_objects {
            self.port_filter.clear();
            self.port_filter.resize(PORT_FILTER_BITS / 64, 0);
            for record in self
                .unmatched
                .iter()
                .filter_map(|&index| sockets.get(index))
            {
                let key = Key::of(record);
                let bit = key.port_bits();
                if let Some(word) = self.port_filter.get_mut(bit / 64) {
                    *word |= 1 << (bit % 64);
                }
                self.spoken.insert(key, ());
            }
        }
        let poll = self.poll;
        let mut found = Vec::new();
        for (at, tracked) in self.tracked.iter() {
            if !tracked.primary() {
                continue;
            }
            if !tracked.seen(poll) {
                self.vacant.insert(tracked.key(), at);
                continue;
            }
            if !new_objects {
                continue;
            }
            let bit = tracked.port_bits();
            let maybe = self
                .port_filter
                .get(bit / 64)
                .is_some_and(|word| word & (1 << (bit % 64)) != 0);
            if maybe && self.spoken.contains_key(&tracked.key()) {
                found.push(tracked.key());
            }
        }
        // `spoken` held every new object's endpoints as a set to look in; keep those
        // a listed socket speaks for.
        clear(&mut self.spoken);
        for key in found {
            self.spoken.insert(key, ());
        }
    }

    /// The vacant socket speaking for `key`, if any (not seen, not forgotten).
    fn vacant(&self, key: &Key) -> Option<(usize, Tracked)> {
        let at = *self.vacant.get(key)?;
        let tracked = *self.tracked.get(at)?;
        (!tracked.dead()).then_some((at, tracked))
    }

    /// Second pass: match the held-over and new destroy messages to tracked sockets.
    fn take_destroyed(&mut self, sockets: &[SocketRecord], destroyed: &[DestroyedSocket]) {
        if self.held.is_empty() && destroyed.is_empty() {
            return;
        }
        let poll = self.poll;
        // The new objects of this poll by cookie: a message can name one of them when
        // it arrived while the dump ran.
        self.fresh.clear();
        for &index in &self.unmatched {
            if let Some(record) = sockets.get(index) {
                self.fresh.insert(record.cookie, index);
            }
        }
        let held = std::mem::take(&mut self.held);
        self.holding.clear();
        let messages = held
            .iter()
            .map(|socket| (socket, false))
            .chain(destroyed.iter().map(|socket| (socket, true)));
        for (socket, may_hold) in messages {
            let key = Key::of_endpoints(&socket.endpoints);
            let tracked = self
                .slot(socket.cookie)
                .filter(|&slot| self.entry(slot).is_some_and(|t| t.key() == key));
            let listed = match tracked.and_then(|slot| self.entry(slot)) {
                Some(tracked) if tracked.seen(poll) => Some(tracked.object),
                Some(_) => None,
                None => self
                    .fresh
                    .get(&socket.cookie)
                    .and_then(|&index| sockets.get(index))
                    .filter(|record| Key::of(record) == key)
                    .map(Object::of),
            };
            match (listed, tracked) {
                // The full socket lives on as this remnant, which kept its cookie.
                (Some(Object::Remnant), _) => {}
                // The dump listed it before it died: the next poll shows what it left.
                (Some(_), _) => {
                    if may_hold {
                        self.holding.push(*socket);
                    }
                }
                (None, Some(slot)) => {
                    if let Some(tracked) = self.entry_mut(slot) {
                        tracked.set_destroyed(Destroyed::Yes);
                    }
                }
                (None, None) => self.unseen_destroyed(key, socket),
            }
        }
        // Keep both buffers' allocations: `held` gets this poll's holdings, and the
        // emptied vector of last poll's becomes next poll's `holding`.
        self.held = std::mem::replace(&mut self.holding, held);
    }

    /// A destroyed socket that no poll listed: either the full socket a tracked request
    /// socket became, or a connection that opened and closed between polls.
    fn unseen_destroyed(&mut self, key: Key, socket: &DestroyedSocket) {
        let request = self
            .vacant(&key)
            .filter(|(_, tracked)| tracked.object == Object::Request);
        if let Some(tracked) = request.and_then(|(at, _)| self.tracked.get_mut(at)) {
            // Only full sockets are announced, so this request socket's handshake
            // completed, and the full socket made of it is what died.
            tracked.set_destroyed(Destroyed::AfterHandshake);
        } else {
            self.stranger_keys
                .entry(key)
                .or_insert(self.strangers.len());
            self.strangers.push(Stranger {
                socket: *socket,
                accounted: false,
            });
        }
    }

    /// Third pass: sockets whose kernel object is new. Each either carries on the
    /// connection at its endpoints, replaces it, joins others at shared endpoints, or
    /// opens a connection.
    fn place_new_objects(&mut self, sockets: &[SocketRecord]) {
        let poll = self.poll;
        let unmatched = std::mem::take(&mut self.unmatched);
        for record in unmatched.iter().filter_map(|&index| sockets.get(index)) {
            let key = Key::of(record);
            // Where the new entry goes: over a tracked socket of the same cookie, or
            // among the added ones.
            let mut reuse = None;
            if let Some(slot) = self.slot(record.cookie)
                && let Some(other) = self.entry(slot).copied()
            {
                if other.seen(poll) {
                    continue; // a second object with one cookie: not from a kernel
                }
                // The object moved to other endpoints (a bound socket that connected).
                self.transitions.push(closing(&other));
                self.forget(slot);
                reuse = Some(slot);
            } else if let Some(at) = self.tracked.find(record.cookie) {
                // Forgotten earlier in this poll: its place is free.
                reuse = Some(Slot::Tracked(at));
            }
            let mut entry = Tracked::new(key, record, poll);
            match self.vacant(&key) {
                Some((old_at, old)) => {
                    if same_connection(&old, record) {
                        self.transitions.extend(change(old.state, record));
                    } else {
                        self.transitions.push(closing(&old));
                        self.transitions.push(opening(record));
                    }
                    self.forget(Slot::Tracked(old_at));
                    entry.make_primary();
                    self.spoken.insert(key, ());
                }
                // These endpoints already have a socket in this poll: they are shared.
                None if self.spoken.contains_key(&key) => {
                    self.transitions.push(opening(record));
                }
                None => {
                    entry.make_primary();
                    self.spoken.insert(key, ());
                    if Object::of(record) == Object::Remnant
                        && let Some(&stranger) = self.stranger_keys.get(&key)
                        && let Some(stranger) = self.strangers.get_mut(stranger)
                    {
                        // Opened and actively closed between polls: the remnant is the
                        // destroyed socket's connection, still here.
                        stranger.accounted = true;
                    }
                    self.transitions.push(opening(record));
                }
            }
            match reuse {
                Some(Slot::Tracked(at)) => {
                    if let Some(tracked) = self.tracked.get_mut(at) {
                        *tracked = entry;
                        self.seen_now += 1;
                    }
                }
                Some(Slot::Added(_)) | None => {
                    self.added_at.insert(record.cookie, self.added.len());
                    self.added.push(entry);
                }
            }
        }
        self.unmatched = unmatched;
    }

    /// Drops a tracked socket (at the end of the poll), and with it its endpoints'
    /// connection if it spoke for one.
    fn forget(&mut self, slot: Slot) {
        let Some(tracked) = self.entry_mut(slot) else {
            return;
        };
        if tracked.dead() {
            return;
        }
        tracked.forget();
        let key = tracked.key();
        let primary = tracked.primary();
        if let Slot::Tracked(at) = slot
            && primary
            && self.vacant.get(&key) == Some(&at)
        {
            self.vacant.remove(&key);
        }
    }

    /// Fourth pass: tracked sockets this poll did not list. Gone for good if a destroy
    /// message said so or the last poll missed them too; otherwise missed once.
    fn close_missing(&mut self) {
        if self.seen_now == self.tracked.len() {
            return;
        }
        let poll = self.poll;
        let transitions = &mut self.transitions;
        self.tracked.retain(|tracked| {
            if tracked.seen(poll) {
                return true;
            }
            if tracked.dead() {
                return false;
            }
            match tracked.destroyed() {
                Destroyed::No if !tracked.missed() => {
                    tracked.carry_over(poll);
                    return true;
                }
                Destroyed::AfterHandshake => transitions.push(Transition::ended(
                    tracked.key().endpoints(),
                    State::SynRecv,
                    route_after_handshake(),
                    Ending::PeerClosedOrReset,
                    tracked.cookie,
                )),
                Destroyed::No | Destroyed::Yes => transitions.push(closing(tracked)),
            }
            false
        });
    }

    /// Last: destroyed sockets that no poll saw.
    fn close_strangers(&mut self) {
        for stranger in self.strangers.iter().filter(|s| !s.accounted) {
            self.transitions.push(between_polls(&stranger.socket));
        }
    }
}

/// The close of a destroyed socket no poll saw.
fn between_polls(socket: &DestroyedSocket) -> Transition {
    let ending = match socket.last_state {
        State::Closed => Ending::BetweenPolls,
        other => Ending::after(other),
    };
    Transition::ended(
        socket.endpoints,
        socket.last_state,
        Path::EMPTY,
        ending,
        socket.cookie,
    )
}

/// Empties a map without touching its memory when it is empty already: clearing a
/// grown map walks all its buckets.
fn clear<K, V>(map: &mut Map<K, V>) {
    if !map.is_empty() {
        map.clear();
    }
}

/// Whether a new kernel object at tracked endpoints carries on the same connection: it
/// does when Linux hands a connection over (request socket to full socket, full socket
/// to remnant) and the step does not need a new connection.
fn same_connection(old: &Tracked, new: &SocketRecord) -> bool {
    let handed_over = old.object == Object::Request || Object::of(new) == Object::Remnant;
    handed_over
        && shortest_path(old.state, new.state).is_some_and(|via| !via.contains(State::Closed))
}

fn closing(tracked: &Tracked) -> Transition {
    Transition::closed(tracked.key().endpoints(), tracked.state, tracked.cookie)
}

/// The transition of a connection listed again, in `record`'s state after `from`; none
/// when its state stayed.
fn change(from: State, record: &SocketRecord) -> Option<Transition> {
    (from != record.state)
        .then(|| Transition::changed(record.endpoints(), from, record.state, record.cookie))
}

fn opening(record: &SocketRecord) -> Transition {
    Transition::opened(record.endpoints(), record.state, record.cookie)
}
