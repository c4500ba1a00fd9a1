//! The sockets of the last poll, kept so that the next poll can be written as what
//! changed, and rebuilt from those changes on replay. Sockets are named by cookie: the
//! kernel gives every socket object its own, for as long as the machine runs.

use std::collections::HashMap;

use super::codec::{Changes, Dynamic};
use crate::snapshot::SocketRecord;

/// Sockets in the order they were first seen, with an index by cookie.
#[derive(Debug, Default)]
pub struct SocketTable {
    sockets: Vec<SocketRecord>,
    by_cookie: HashMap<u64, usize>,
}

impl SocketTable {
    pub fn of(sockets: &[SocketRecord]) -> SocketTable {
        let mut table = SocketTable::default();
        table.replace(sockets);
        table
    }

    pub fn sockets(&self) -> &[SocketRecord] {
        &self.sockets
    }

    /// Makes the table hold exactly `sockets`.
    pub fn replace(&mut self, sockets: &[SocketRecord]) {
        self.sockets.clear();
        self.sockets.extend_from_slice(sockets);
        self.reindex();
    }

    fn reindex(&mut self) {
        self.by_cookie.clear();
        for (index, socket) in self.sockets.iter().enumerate() {
            self.by_cookie.insert(socket.cookie, index);
        }
    }

    /// What turns this table into `now`: sockets that are new (or whose endpoints,
    /// owner or family changed, which a socket's do not), sockets whose state, queues
    /// or timer moved, and sockets that are gone.
    pub fn changes_to(&self, now: &[SocketRecord]) -> Changes {
        let mut changes = Changes::default();
        let mut seen = HashMap::with_capacity(now.len());
        for socket in now {
            seen.insert(socket.cookie, ());
            match self
                .by_cookie
                .get(&socket.cookie)
                .map(|&i| &self.sockets[i])
            {
                None => changes.added.push(*socket),
                Some(before) if before == socket => {}
                Some(before) => {
                    let mut moved = *before;
                    Dynamic::of(socket).apply_to(&mut moved);
                    if moved == *socket {
                        changes.updated.push(Dynamic::of(socket));
                    } else {
                        changes.added.push(*socket);
                    }
                }
            }
        }
        changes.removed = self
            .sockets
            .iter()
            .map(|socket| socket.cookie)
            .filter(|cookie| !seen.contains_key(cookie))
            .collect();
        changes
    }

    /// Applies changes written by [`SocketTable::changes_to`]. An update or removal of
    /// a socket the table does not hold is an error: the recording is inconsistent.
    pub fn apply(&mut self, changes: &Changes) -> Result<(), String> {
        for update in &changes.updated {
            let index = *self
                .by_cookie
                .get(&update.cookie)
                .ok_or_else(|| format!("an update of unknown socket {}", update.cookie))?;
            update.apply_to(&mut self.sockets[index]);
        }
        for cookie in &changes.removed {
            if !self.by_cookie.contains_key(cookie) {
                return Err(format!("the removal of unknown socket {cookie}"));
            }
        }
        if !changes.removed.is_empty() {
            let removed: HashMap<u64, ()> = changes.removed.iter().map(|c| (*c, ())).collect();
            self.sockets
                .retain(|socket| !removed.contains_key(&socket.cookie));
            self.reindex();
        }
        for socket in &changes.added {
            match self.by_cookie.get(&socket.cookie) {
                Some(&index) => self.sockets[index] = *socket,
                None => {
                    self.by_cookie.insert(socket.cookie, self.sockets.len());
                    self.sockets.push(*socket);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures;
    use crate::tcp::State;

    fn socket(cookie: u64, state: State, port: u16) -> SocketRecord {
        let mut socket = fixtures::socket(state, "10.0.0.1", port, "10.0.0.2", 5000);
        socket.cookie = cookie;
        socket
    }

    fn sorted(sockets: &[SocketRecord]) -> Vec<SocketRecord> {
        let mut sockets = sockets.to_vec();
        sockets.sort_by_key(|s| s.cookie);
        sockets
    }

    #[test]
    fn changes_rebuild_the_next_poll_exactly() {
        let before = vec![
            socket(1, State::Established, 80),
            socket(2, State::SynRecv, 81),
            socket(3, State::Listen, 82),
        ];
        let mut moved = socket(1, State::FinWait1, 80);
        moved.send_q = 10;
        let mut replaced = socket(3, State::Listen, 82);
        replaced.inode = 99;
        let now = vec![moved, replaced, socket(4, State::SynSent, 83)];

        let table = SocketTable::of(&before);
        let changes = table.changes_to(&now);
        assert_eq!(changes.updated, [Dynamic::of(&moved)]);
        assert_eq!(changes.added, [replaced, socket(4, State::SynSent, 83)]);
        assert_eq!(changes.removed, [2]);

        let mut rebuilt = SocketTable::of(&before);
        rebuilt.apply(&changes).unwrap();
        assert_eq!(sorted(rebuilt.sockets()), sorted(&now));
    }

    #[test]
    fn an_unchanged_poll_has_no_changes() {
        let sockets = vec![socket(1, State::Established, 80)];
        assert_eq!(
            SocketTable::of(&sockets).changes_to(&sockets),
            Changes::default()
        );
    }

    #[test]
    fn changes_to_sockets_the_table_never_had_are_refused() {
        let mut table = SocketTable::of(&[socket(1, State::Established, 80)]);
        let removal = Changes {
            removed: vec![7],
            ..Changes::default()
        };
        assert!(table.apply(&removal).is_err());
        let update = Changes {
            updated: vec![Dynamic::of(&socket(8, State::Closed, 1))],
            ..Changes::default()
        };
        assert!(table.apply(&update).is_err());
    }
}
