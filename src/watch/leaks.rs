//! CLOSE_WAIT leaks: an application that does not close the sockets its peers have
//! closed. Each such socket stays in CLOSE_WAIT until the application calls `close()`,
//! holding a descriptor and kernel memory; a process whose CLOSE_WAIT count keeps
//! growing runs out of descriptors in the end.
//!
//! Per process (through the caller's inode → owner lookup) and per local port, a
//! [`LeakWatcher`] counts CLOSE_WAIT sockets, says how long the oldest has been seen in
//! that state, and flags the ones that keep growing. The kernel gives no creation time
//! for a socket, so "how long" is measured from the first poll that saw each socket
//! (by cookie) in CLOSE_WAIT: a lower bound, 0 on a first reading.
//!
//! A group is **growing** when, over the last `window` polls, its count never fell and
//! rose, while its oldest socket stayed there all along: old sockets are not being
//! closed and new ones join them. A healthy server that closes its sockets late but
//! steadily does not qualify, since its oldest socket keeps changing. The flag then
//! stays up until the count falls, so that a slow leak (one socket a minute) does not
//! blink on and off between rises.
//!
//! Pure: snapshots, owners and the time of each poll come in as values.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime};

use crate::snapshot::SocketRecord;
use crate::tcp::State;

/// Polls over which a count must rise, never falling, to be flagged as growing.
pub const DEFAULT_WINDOW: usize = 5;

/// The process that holds a socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub pid: i32,
    /// The command name, as `ps` shows it.
    pub name: String,
}

/// One process's CLOSE_WAIT sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLeak {
    /// `None` for sockets no process holds (accepted by the kernel but not yet by the
    /// application, which is a slow `accept()`, not a leak) or whose owner could not
    /// be read.
    pub owner: Option<Owner>,
    pub close_wait: u32,
    /// How long the oldest of them has been seen in CLOSE_WAIT.
    pub oldest: Duration,
    pub growing: bool,
    /// The distinct local ports they are on, ascending.
    pub local_ports: Vec<u16>,
}

/// One local port's CLOSE_WAIT sockets, whoever holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLeak {
    pub local_port: u16,
    pub close_wait: u32,
    pub oldest: Duration,
    pub growing: bool,
}

/// One poll's reading: every process and port with CLOSE_WAIT sockets, growing ones
/// first, then the largest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloseWaitLeaks {
    pub processes: Vec<ProcessLeak>,
    pub ports: Vec<PortLeak>,
}

impl CloseWaitLeaks {
    /// The processes flagged as not closing their sockets.
    pub fn growing_processes(&self) -> impl Iterator<Item = &ProcessLeak> {
        self.processes.iter().filter(|leak| leak.growing)
    }

    /// One reading with no history, as a one-shot `--json` has: counts per process and
    /// port, every age 0, nothing growing.
    pub fn single_reading(
        sockets: &[SocketRecord],
        owner: impl FnMut(u32) -> Option<Owner>,
    ) -> CloseWaitLeaks {
        LeakWatcher::new(DEFAULT_WINDOW).observe(SystemTime::UNIX_EPOCH, sockets, owner)
    }
}

/// Whether some CLOSE_WAIT socket among `sockets` has an owner `known` does not know:
/// a front end then scans processes again (at its own pace) to name it. Inode 0 has no
/// owner to find (a connection not accepted yet).
pub fn owners_unknown(sockets: &[SocketRecord], mut known: impl FnMut(u32) -> bool) -> bool {
    sockets
        .iter()
        .filter(|socket| socket.state == State::CloseWait && socket.inode != 0)
        .any(|socket| !known(socket.inode))
}

/// Follows CLOSE_WAIT counts across polls. Keep one per live view or stream, and feed
/// it every poll's snapshot.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tcpscope::watch::{LeakWatcher, Owner};
///
/// let mut watcher = LeakWatcher::new(3);
/// let start = SystemTime::UNIX_EPOCH;
/// // Each poll: the snapshot's sockets, and who owns an inode (from a ProcessMap).
/// let leaks = watcher.observe(start, &[], |_inode| None::<Owner>);
/// assert!(leaks.processes.is_empty());
/// ```
#[derive(Debug)]
pub struct LeakWatcher {
    window: usize,
    /// Every socket in CLOSE_WAIT at the last poll, by cookie: when it was first seen.
    first_seen: HashMap<u64, SystemTime>,
    processes: HashMap<Option<Owner>, Trend>,
    ports: HashMap<u16, Trend>,
}

/// One group's recent readings, oldest first: when, how many, and when its oldest
/// socket was first seen.
#[derive(Debug, Default)]
struct Trend {
    readings: VecDeque<Reading>,
    flagged: bool,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: SystemTime,
    count: u32,
    oldest_since: Option<SystemTime>,
}

impl Trend {
    /// Adds a reading and says whether the group is growing.
    fn push(&mut self, reading: Reading, window: usize) -> bool {
        let fell = self
            .readings
            .back()
            .is_some_and(|last| reading.count < last.count);
        self.readings.push_back(reading);
        while self.readings.len() > window + 1 {
            self.readings.pop_front();
        }
        if fell {
            self.flagged = false;
        } else if !self.flagged {
            self.flagged = self.rose_and_kept_its_oldest(window);
        }
        self.flagged
    }

    fn rose_and_kept_its_oldest(&self, window: usize) -> bool {
        let (Some(first), Some(last)) = (self.readings.front(), self.readings.back()) else {
            return false;
        };
        self.readings.len() > window
            && last.count > first.count
            && self
                .readings
                .iter()
                .zip(self.readings.iter().skip(1))
                .all(|(a, b)| b.count >= a.count)
            && last.oldest_since.is_some_and(|since| since <= first.at)
    }

    fn idle(&self) -> bool {
        self.readings.iter().all(|reading| reading.count == 0)
    }
}

/// What one poll found for one group.
#[derive(Debug, Default)]
struct Tally {
    count: u32,
    oldest_since: Option<SystemTime>,
    ports: Vec<u16>,
}

impl Tally {
    fn add(&mut self, since: SystemTime, port: u16) {
        self.count += 1;
        self.oldest_since = Some(self.oldest_since.map_or(since, |s| s.min(since)));
        self.ports.push(port);
    }
}

impl LeakWatcher {
    /// A watcher that flags a count rising over `window` polls (at least 1).
    pub fn new(window: usize) -> LeakWatcher {
        LeakWatcher {
            window: window.max(1),
            first_seen: HashMap::new(),
            processes: HashMap::new(),
            ports: HashMap::new(),
        }
    }

    /// Reads one poll: `sockets` is the poll's snapshot (any states; only CLOSE_WAIT
    /// is looked at), `at` when it was taken, and `owner` names the process holding a
    /// socket inode (inode 0 means none). Returns the reading for this poll.
    pub fn observe(
        &mut self,
        at: SystemTime,
        sockets: &[SocketRecord],
        mut owner: impl FnMut(u32) -> Option<Owner>,
    ) -> CloseWaitLeaks {
        let mut by_process: HashMap<Option<Owner>, Tally> = HashMap::new();
        let mut by_port: HashMap<u16, Tally> = HashMap::new();
        let mut still_there = HashSet::new();
        for socket in sockets.iter().filter(|s| s.state == State::CloseWait) {
            let since = *self.first_seen.entry(socket.cookie).or_insert(at);
            still_there.insert(socket.cookie);
            let holder = if socket.inode == 0 {
                None
            } else {
                owner(socket.inode)
            };
            by_process
                .entry(holder)
                .or_default()
                .add(since, socket.local_port);
            by_port
                .entry(socket.local_port)
                .or_default()
                .add(since, socket.local_port);
        }
        self.first_seen
            .retain(|cookie, _| still_there.contains(cookie));

        let window = self.window;
        let age = |since: Option<SystemTime>| {
            since
                .and_then(|since| at.duration_since(since).ok())
                .unwrap_or_default()
        };
        let mut processes: Vec<ProcessLeak> = update(&mut self.processes, by_process, at, window)
            .into_iter()
            .map(|(owner, mut tally, growing)| {
                tally.ports.sort_unstable();
                tally.ports.dedup();
                ProcessLeak {
                    owner,
                    close_wait: tally.count,
                    oldest: age(tally.oldest_since),
                    growing,
                    local_ports: tally.ports,
                }
            })
            .collect();
        let mut ports: Vec<PortLeak> = update(&mut self.ports, by_port, at, window)
            .into_iter()
            .map(|(local_port, tally, growing)| PortLeak {
                local_port,
                close_wait: tally.count,
                oldest: age(tally.oldest_since),
                growing,
            })
            .collect();
        processes.sort_by(|a, b| {
            (!a.growing, std::cmp::Reverse(a.close_wait), &a.owner).cmp(&(
                !b.growing,
                std::cmp::Reverse(b.close_wait),
                &b.owner,
            ))
        });
        ports.sort_by_key(|p| (!p.growing, std::cmp::Reverse(p.close_wait), p.local_port));
        CloseWaitLeaks { processes, ports }
    }
}

/// Records this poll's tallies in the groups' trends (a group seen before but not now
/// reads 0), forgets groups that have been empty for a whole window, and returns the
/// groups with CLOSE_WAIT sockets now, with whether each is growing.
fn update<K: Clone + Eq + std::hash::Hash>(
    trends: &mut HashMap<K, Trend>,
    mut tallies: HashMap<K, Tally>,
    at: SystemTime,
    window: usize,
) -> Vec<(K, Tally, bool)> {
    for key in tallies.keys() {
        trends.entry(key.clone()).or_default();
    }
    let mut now = Vec::with_capacity(tallies.len());
    for (key, trend) in trends.iter_mut() {
        let tally = tallies.remove(key).unwrap_or_default();
        let growing = trend.push(
            Reading {
                at,
                count: tally.count,
                oldest_since: tally.oldest_since,
            },
            window,
        );
        if tally.count > 0 {
            now.push((key.clone(), tally, growing));
        }
    }
    trends.retain(|_, trend| !trend.idle());
    now
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures;

    const LEAKY: i32 = 100;
    const TIDY: i32 = 200;

    fn second(n: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + n)
    }

    /// A CLOSE_WAIT socket held by `pid` on `port`, identified by `cookie` (which is
    /// also its inode).
    fn close_wait(pid: i32, port: u16, cookie: u64) -> SocketRecord {
        let mut socket = fixtures::socket(
            State::CloseWait,
            "10.0.0.1",
            port,
            "10.0.0.2",
            cookie as u16,
        );
        socket.cookie = cookie;
        socket.inode = (cookie as u32) | ((pid as u32) << 20);
        socket
    }

    fn owner(inode: u32) -> Option<Owner> {
        let pid = (inode >> 20) as i32;
        (pid != 0).then(|| Owner {
            pid,
            name: format!("p{pid}"),
        })
    }

    fn process(leaks: &CloseWaitLeaks, pid: i32) -> Option<&ProcessLeak> {
        leaks
            .processes
            .iter()
            .find(|p| p.owner.as_ref().is_some_and(|o| o.pid == pid))
    }

    #[test]
    fn a_process_that_keeps_its_close_wait_sockets_while_more_arrive_is_flagged() {
        let mut watcher = LeakWatcher::new(3);
        let mut sockets = Vec::new();
        let mut last = CloseWaitLeaks::default();
        for poll in 0..5u64 {
            // The leaky process gains a socket every poll and closes none; the tidy
            // one has one CLOSE_WAIT socket each poll, a different one every time.
            sockets.push(close_wait(LEAKY, 8080, poll + 1));
            let mut now = sockets.clone();
            now.push(close_wait(TIDY, 9090, 1000 + poll));
            last = watcher.observe(second(poll), &now, owner);
            let leaky = process(&last, LEAKY).unwrap();
            assert_eq!(leaky.close_wait as u64, poll + 1);
            assert_eq!(leaky.oldest, Duration::from_secs(poll));
            assert_eq!(leaky.growing, poll >= 3, "poll {poll}");
        }
        let tidy = process(&last, TIDY).unwrap();
        assert!(!tidy.growing);
        assert_eq!(tidy.oldest, Duration::ZERO);
        assert_eq!(last.growing_processes().count(), 1);
        assert_eq!(last.processes[0].owner.as_ref().unwrap().pid, LEAKY);
        assert_eq!(last.ports[0].local_port, 8080);
        assert!(last.ports[0].growing);
        assert!(!last.ports[1].growing);
    }

    #[test]
    fn a_steady_count_is_not_growing() {
        let mut watcher = LeakWatcher::new(2);
        let sockets = vec![close_wait(LEAKY, 80, 1), close_wait(LEAKY, 80, 2)];
        for poll in 0..6 {
            let leaks = watcher.observe(second(poll), &sockets, owner);
            assert!(!leaks.processes[0].growing);
            assert_eq!(leaks.processes[0].oldest, Duration::from_secs(poll));
        }
    }

    #[test]
    fn rising_load_on_a_server_that_closes_its_sockets_is_not_a_leak() {
        // More CLOSE_WAIT sockets every poll, but never the same ones: the process
        // closes each before the next poll.
        let mut watcher = LeakWatcher::new(2);
        let mut cookie = 0;
        for poll in 0..6u64 {
            let sockets: Vec<_> = (0..=poll)
                .map(|_| {
                    cookie += 1;
                    close_wait(TIDY, 80, cookie)
                })
                .collect();
            let leaks = watcher.observe(second(poll), &sockets, owner);
            assert!(!leaks.processes[0].growing, "poll {poll}");
        }
    }

    #[test]
    fn the_flag_stays_up_between_slow_rises_and_drops_when_the_count_falls() {
        let mut watcher = LeakWatcher::new(2);
        let mut sockets = vec![close_wait(LEAKY, 80, 1)];
        let mut growing = Vec::new();
        for poll in 0..8u64 {
            if poll == 2 {
                sockets.push(close_wait(LEAKY, 80, 2));
            }
            if poll == 7 {
                sockets.remove(0);
            }
            let leaks = watcher.observe(second(poll), &sockets, owner);
            growing.push(leaks.processes[0].growing);
        }
        assert_eq!(
            growing,
            [false, false, true, true, true, true, true, false],
            "flagged on the rise, kept through the quiet polls, dropped on the fall"
        );
    }

    #[test]
    fn sockets_without_an_owner_are_grouped_apart_and_ports_are_listed() {
        let mut unaccepted = close_wait(0, 443, 5);
        unaccepted.inode = 0;
        let sockets = vec![
            unaccepted,
            close_wait(LEAKY, 8080, 1),
            close_wait(LEAKY, 8081, 2),
            close_wait(LEAKY, 8080, 3),
        ];
        let leaks = CloseWaitLeaks::single_reading(&sockets, owner);
        assert_eq!(leaks.processes.len(), 2);
        assert_eq!(leaks.processes[0].close_wait, 3);
        assert_eq!(leaks.processes[0].local_ports, [8080, 8081]);
        assert_eq!(leaks.processes[1].owner, None);
        assert_eq!(
            leaks
                .ports
                .iter()
                .map(|p| (p.local_port, p.close_wait))
                .collect::<Vec<_>>(),
            [(8080, 2), (443, 1), (8081, 1)]
        );
        assert!(
            leaks
                .processes
                .iter()
                .all(|p| !p.growing && p.oldest.is_zero())
        );
    }

    #[test]
    fn other_states_are_ignored_and_departed_sockets_are_forgotten() {
        let mut watcher = LeakWatcher::new(2);
        let mut established = close_wait(LEAKY, 80, 9);
        established.state = State::Established;
        let leaks = watcher.observe(second(0), &[established, close_wait(LEAKY, 80, 1)], owner);
        assert_eq!(leaks.processes[0].close_wait, 1);
        for poll in 1..5 {
            let leaks = watcher.observe(second(poll), &[], owner);
            assert!(leaks.processes.is_empty());
        }
        assert!(watcher.first_seen.is_empty());
        assert!(watcher.processes.is_empty(), "idle groups are dropped");
        // Seen again later, the same cookie starts a new age.
        let leaks = watcher.observe(second(9), &[close_wait(LEAKY, 80, 1)], owner);
        assert_eq!(leaks.processes[0].oldest, Duration::ZERO);
    }

    #[test]
    fn only_close_wait_sockets_with_an_inode_nobody_knows_call_for_a_scan() {
        let mut unaccepted = close_wait(0, 443, 5);
        unaccepted.inode = 0;
        let mut established = close_wait(LEAKY, 80, 9);
        established.state = State::Established;
        assert!(!owners_unknown(&[unaccepted, established], |_| false));
        let known = close_wait(LEAKY, 80, 1);
        assert!(!owners_unknown(&[known], |inode| owner(inode).is_some()));
        assert!(owners_unknown(&[known], |_| false));
    }

    #[test]
    fn a_clock_that_went_back_reads_as_age_zero() {
        let mut watcher = LeakWatcher::new(2);
        watcher.observe(second(10), &[close_wait(LEAKY, 80, 1)], owner);
        let leaks = watcher.observe(second(5), &[close_wait(LEAKY, 80, 1)], owner);
        assert_eq!(leaks.processes[0].oldest, Duration::ZERO);
    }
}
