//! What the differ remembers of each socket between polls, and the table that holds it:
//! one 48-byte entry a socket in a vector sorted by cookie, with no hash map entry and
//! no heap allocation of its own.
//!
//! A poll is matched against the table by walking the dump with a cursor. The kernel
//! gives a socket its cookie the first time a dump lists it (`sock_gen_cookie()`,
//! net/core/sock_diag.c), and dumps walk the socket tables in the same order every
//! time, so a dump mostly lists known sockets in increasing cookie order: most lookups
//! are the entry under the cursor or a few after it. A socket out of that order (its
//! cookie was given by something else, a BPF program for instance) costs a search of
//! the table, by interpolation first: `cargo test --release --test bench_diff` times
//! dumps in random order too (about 3× a poll in order).

use super::key::Key;
use crate::snapshot::{Family, SocketRecord};
use crate::tcp::State;

/// Which kind of kernel object a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Object {
    /// A SYN_RECV request socket (`TCP_NEW_SYN_RECV`): inode 0, owned by its listener.
    Request,
    /// A TIME_WAIT remnant, or a FIN_WAIT2 one (inode 0) left by an orphaned close.
    Remnant,
    Full,
}

impl Object {
    pub(super) fn of(record: &SocketRecord) -> Object {
        match record.state {
            State::SynRecv if record.inode == 0 => Object::Request,
            State::TimeWait => Object::Remnant,
            State::FinWait2 if record.inode == 0 => Object::Remnant,
            _ => Object::Full,
        }
    }
}

/// What this poll's destroy messages said about a tracked socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Destroyed {
    No,
    Yes,
    /// The socket was a request socket, and a full socket at its endpoints was
    /// destroyed: the handshake completed before the end.
    AfterHandshake,
}

/// Seen by a poll of odd number (else of even number); see [`Tracked::seen`].
const SEEN_ODD: u8 = 1;
/// Missing from the last poll that should have listed it.
const MISSED: u8 = 1 << 1;
/// The first socket seen at its endpoints, which speaks for the connection there.
const PRIMARY: u8 = 1 << 2;
/// Forgotten during this poll; dropped from the table at its end.
const DEAD: u8 = 1 << 3;
const DESTROYED: u8 = 1 << 4;
const AFTER_HANDSHAKE: u8 = 1 << 5;

/// One tracked socket: its cookie, its endpoints packed as in [`Key`] (laid out flat so
/// that the entry is 48 bytes, not the 56 a nested key would make it), and its state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tracked {
    pub(super) cookie: u64,
    local: [u64; 2],
    remote: [u64; 2],
    local_port: u16,
    remote_port: u16,
    family: Family,
    pub(super) state: State,
    pub(super) object: Object,
    flags: u8,
}

impl Tracked {
    pub(super) fn new(key: Key, record: &SocketRecord, poll: u32) -> Tracked {
        let mut tracked = Tracked {
            cookie: record.cookie,
            local: key.local,
            remote: key.remote,
            local_port: key.local_port,
            remote_port: key.remote_port,
            family: key.family,
            state: record.state,
            object: Object::of(record),
            flags: 0,
        };
        tracked.mark_seen(poll);
        tracked
    }

    pub(super) fn key(&self) -> Key {
        Key {
            local: self.local,
            remote: self.remote,
            local_port: self.local_port,
            remote_port: self.remote_port,
            family: self.family,
        }
    }

    /// [`Key::port_bits`] of its endpoints.
    pub(super) fn port_bits(&self) -> usize {
        usize::from(self.local_port ^ self.remote_port.rotate_left(8))
    }

    /// Whether this poll listed the socket. One bit is enough: every socket a poll
    /// did not list is either dropped or marked seen by the sweep at the end of that
    /// poll ([`Tracked::carry_over`]), so a bit of the wrong parity always means "not
    /// by this poll".
    pub(super) fn seen(&self, poll: u32) -> bool {
        (self.flags & SEEN_ODD != 0) == (poll & 1 == 1)
    }

    fn mark_seen(&mut self, poll: u32) {
        self.flags &= !SEEN_ODD;
        if poll & 1 == 1 {
            self.flags |= SEEN_ODD;
        }
    }

    /// The socket as this poll listed it, still speaking for its endpoints if it did.
    pub(super) fn listed(&mut self, record: &SocketRecord, poll: u32) {
        self.state = record.state;
        self.object = Object::of(record);
        self.flags &= PRIMARY;
        self.mark_seen(poll);
    }

    /// The kernel object handed the connection to a remnant that kept its cookie (a
    /// lane's lookup found it): the entry is the remnant now, seen or not as before.
    pub(super) fn became(&mut self, remnant: &SocketRecord) {
        self.state = remnant.state;
        self.object = Object::of(remnant);
    }

    /// Kept after a poll that did not list it: missed once, and unseen by the next poll
    /// until that lists it.
    pub(super) fn carry_over(&mut self, poll: u32) {
        self.flags |= MISSED;
        self.flags &= !(DESTROYED | AFTER_HANDSHAKE);
        self.mark_seen(poll);
    }

    pub(super) fn missed(&self) -> bool {
        self.flags & MISSED != 0
    }

    pub(super) fn primary(&self) -> bool {
        self.flags & PRIMARY != 0
    }

    pub(super) fn make_primary(&mut self) {
        self.flags |= PRIMARY;
    }

    pub(super) fn dead(&self) -> bool {
        self.flags & DEAD != 0
    }

    pub(super) fn forget(&mut self) {
        self.flags |= DEAD;
    }

    pub(super) fn destroyed(&self) -> Destroyed {
        if self.flags & AFTER_HANDSHAKE != 0 {
            Destroyed::AfterHandshake
        } else if self.flags & DESTROYED != 0 {
            Destroyed::Yes
        } else {
            Destroyed::No
        }
    }

    pub(super) fn set_destroyed(&mut self, destroyed: Destroyed) {
        self.flags &= !(DESTROYED | AFTER_HANDSHAKE);
        self.flags |= match destroyed {
            Destroyed::No => 0,
            Destroyed::Yes => DESTROYED,
            Destroyed::AfterHandshake => AFTER_HANDSHAKE,
        };
    }
}

/// How many guesses by interpolation [`Table::find`] makes before a binary search.
const INTERPOLATIONS: usize = 4;

/// How many entries from the cursor on a lookup reads before it searches the table.
const LOOK_AHEAD: usize = 8;

/// The tracked sockets, sorted by cookie, each cookie once.
#[derive(Debug, Clone, Default)]
pub(super) struct Table {
    entries: Vec<Tracked>,
}

impl Table {
    pub(super) fn with_capacity(sockets: usize) -> Table {
        Table {
            entries: Vec::with_capacity(sockets),
        }
    }

    /// A table of `entries`, which must be sorted by cookie, each cookie once.
    pub(super) fn of_sorted(entries: Vec<Tracked>) -> Table {
        Table { entries }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn get(&self, at: usize) -> Option<&Tracked> {
        self.entries.get(at)
    }

    pub(super) fn get_mut(&mut self, at: usize) -> Option<&mut Tracked> {
        self.entries.get_mut(at)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Tracked)> {
        self.entries.iter().enumerate()
    }

    /// Where `cookie` is, looking at `cursor` and the few entries after it first (the
    /// entry after the last one found, and those of sockets gone since), then searching
    /// the whole table.
    pub(super) fn find_near(&self, cookie: u64, cursor: usize) -> Option<usize> {
        let ahead = self.entries.get(cursor..).unwrap_or_default();
        for (step, entry) in ahead.iter().take(LOOK_AHEAD).enumerate() {
            if entry.cookie == cookie {
                return Some(cursor + step);
            }
            if entry.cookie > cookie {
                break;
            }
        }
        self.find(cookie)
    }

    /// Where `cookie` is in `entries[from..to]`.
    fn find_in(&self, cookie: u64, from: usize, to: usize) -> Option<usize> {
        let range = self.entries.get(from..to)?;
        let at = range.partition_point(|entry| entry.cookie < cookie);
        range
            .get(at)
            .filter(|entry| entry.cookie == cookie)
            .map(|_| from + at)
    }

    /// Where `cookie` is. The kernel hands cookies out from a counter, so they spread
    /// evenly enough that a guess by interpolation lands near: a few guesses narrow
    /// the range (each one read, where a binary search reads its way down from the
    /// middle, most of it out of cache), then a binary search finishes.
    pub(super) fn find(&self, cookie: u64) -> Option<usize> {
        let entries = &self.entries;
        let (mut low, mut high) = (0, entries.len());
        for _ in 0..INTERPOLATIONS {
            let (Some(first), Some(last)) = (
                entries.get(low),
                high.checked_sub(1).and_then(|at| entries.get(at)),
            ) else {
                return None;
            };
            if cookie < first.cookie || cookie > last.cookie {
                return None;
            }
            if high - low <= 16 || last.cookie == first.cookie {
                break;
            }
            let span = u128::from(last.cookie - first.cookie);
            let offset = u128::from(cookie - first.cookie) * (high - 1 - low) as u128 / span;
            let guess = low + usize::try_from(offset).unwrap_or(0);
            match entries.get(guess) {
                Some(entry) if entry.cookie == cookie => return Some(guess),
                Some(entry) if entry.cookie < cookie => low = guess + 1,
                Some(_) => high = guess,
                None => break,
            }
        }
        self.find_in(cookie, low, high)
    }

    /// Drops the entries `keep` says no to, in place.
    pub(super) fn retain(&mut self, keep: impl FnMut(&mut Tracked) -> bool) {
        self.entries.retain_mut(keep);
    }

    /// Adds `added` (new cookies, sorted here) to the table, keeping it sorted: the
    /// table grows by their number and is merged from the back, in place, so that new
    /// cookies (larger than the rest, most of them) cost a copy each and nothing more.
    pub(super) fn merge(&mut self, added: &mut [Tracked]) {
        if added.is_empty() {
            return;
        }
        added.sort_unstable_by_key(|entry| entry.cookie);
        let old = self.entries.len();
        let needed = old + added.len();
        if self.entries.capacity() < needed {
            // A sixteenth to spare, not the doubling of `reserve`: at a million sockets
            // that is 3 MB, not up to 48.
            self.entries.reserve_exact(needed - old + needed / 16);
        }
        self.entries.extend_from_slice(added);
        let entries = &mut self.entries;
        let (mut i, mut j, mut k) = (old, added.len(), needed);
        while j > 0 {
            k -= 1;
            match (
                i.checked_sub(1).and_then(|at| entries.get(at)),
                added.get(j - 1),
            ) {
                (Some(kept), Some(new)) if kept.cookie > new.cookie => {
                    entries[k] = *kept;
                    i -= 1;
                }
                (_, Some(new)) => {
                    entries[k] = *new;
                    j -= 1;
                }
                (_, None) => break,
            }
        }
    }

    /// Gives back memory once the table is much smaller than it was (a flood that
    /// ended), keeping a sixteenth to spare.
    pub(super) fn fit(&mut self) {
        let len = self.entries.len();
        if self.entries.capacity() > 2 * len + 1024 {
            self.entries.shrink_to(len + len / 16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::SocketRecord;

    fn entry(cookie: u64) -> Tracked {
        let record = SocketRecord {
            cookie,
            ..SocketRecord::default()
        };
        Tracked::new(Key::of(&record), &record, 1)
    }

    fn table(cookies: &[u64]) -> Table {
        let mut table = Table::default();
        let mut added: Vec<Tracked> = cookies.iter().map(|&c| entry(c)).collect();
        table.merge(&mut added);
        table
    }

    fn cookies(table: &Table) -> Vec<u64> {
        table.iter().map(|(_, entry)| entry.cookie).collect()
    }

    #[test]
    fn an_entry_is_48_bytes() {
        assert_eq!(std::mem::size_of::<Tracked>(), 48);
    }

    #[test]
    fn merged_cookies_stay_sorted_wherever_they_fall() {
        let mut table = table(&[10, 30, 20]);
        table.merge(&mut [entry(5), entry(40), entry(25)]);
        assert_eq!(cookies(&table), [5, 10, 20, 25, 30, 40]);
    }

    #[test]
    fn a_cookie_is_found_ahead_of_the_cursor_behind_it_or_not_at_all() {
        let table = table(&(1..=100).map(|c| c * 2).collect::<Vec<_>>());
        for cursor in [0, 1, 37, 99, 100, 150] {
            for cookie in [2, 4, 74, 76, 120, 198, 200] {
                assert_eq!(
                    table.find_near(cookie, cursor),
                    Some(usize::try_from(cookie / 2 - 1).unwrap()),
                    "cookie {cookie} from {cursor}"
                );
            }
            for cookie in [0, 1, 75, 201, u64::MAX] {
                assert_eq!(table.find_near(cookie, cursor), None, "{cookie}");
            }
        }
    }

    #[test]
    fn cookies_in_far_apart_clusters_are_all_found() {
        let clusters: Vec<u64> = (1..=40)
            .chain((0..40).map(|i| 1_000_000_000_000 + i * 3))
            .chain((0..40).map(|i| u64::MAX - 100 + i))
            .collect();
        let table = table(&clusters);
        for (at, &cookie) in clusters.iter().enumerate() {
            assert_eq!(table.find(cookie), Some(at), "{cookie}");
            assert_eq!(
                table.find(cookie + 1).is_some(),
                clusters.contains(&(cookie + 1))
            );
        }
        assert_eq!(table.find(0), None);
        assert_eq!(table.find(500_000), None);
    }

    #[test]
    fn the_seen_bit_reads_for_the_poll_that_set_it_only() {
        let mut tracked = entry(1);
        assert!(tracked.seen(1) && !tracked.seen(2));
        tracked.carry_over(2);
        assert!(tracked.missed() && !tracked.seen(3));
        tracked.set_destroyed(Destroyed::AfterHandshake);
        assert_eq!(tracked.destroyed(), Destroyed::AfterHandshake);
    }
}
