//! How long the differ takes on a busy host: 100k sockets, 1% of them changing between
//! polls (a third closing, with their destroy messages, a third opening, a third
//! changing state).
//!
//! Run: `cargo test --release --test bench_diff`. In a release build it fails if the
//! median poll takes 5 ms or more (measured: 2.2 ms on the 2-core development machine
//! when it was idle; on a busy day the same run took 4.0–5.6 ms with the hash maps the
//! differ had before its sorted table, and 3.5–4.7 ms with the table, run alternately).
//! A debug build, as plain `cargo test` makes, is about 15× slower and says little about
//! what users run, so there it only fails past 250 ms: enough to catch an accidentally
//! quadratic pass, not a lost constant factor.
//!
//! The differ's table expects a dump to list known sockets mostly in cookie order, as
//! the kernel's do. The same polls with every dump shuffled (cookies that something
//! else gave out, a BPF program for instance) are timed too, and only printed: about
//! 10 ms against 3.5 ms in order, in the same runs.
// Test code: it may unwrap, and the lab calls unshare and setns.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use tcpscope::diff::{DestroyedSocket, Differ};
use tcpscope::snapshot::{Family, Snapshot, SocketRecord};
use tcpscope::tcp::State;

const SOCKETS: usize = 100_000;
const CHURN_PERCENT: usize = 1;
const TIMED_POLLS: usize = 9;
const TARGET: Duration = Duration::from_millis(5);
const DEBUG_LIMIT: Duration = Duration::from_millis(250);

fn main() -> ExitCode {
    let mut world = World::new(SOCKETS);
    let baseline = world.snapshot(0);
    let polls: Vec<(Snapshot, Vec<DestroyedSocket>)> = (1..=TIMED_POLLS)
        .map(|i| {
            let destroyed = world.churn(SOCKETS * CHURN_PERCENT / 100);
            (world.snapshot(i), destroyed)
        })
        .collect();

    let mut differ = Differ::new();
    differ.observe(&baseline, &[]);
    let mut times = Vec::with_capacity(TIMED_POLLS);
    let mut transitions = 0;
    for (poll, destroyed) in &polls {
        let start = Instant::now();
        transitions += differ.observe(poll, destroyed).len();
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];

    let shuffled = shuffled_median(&baseline, &polls, &mut world);

    let (build, limit) = if cfg!(debug_assertions) {
        ("debug build, limit 250 ms", DEBUG_LIMIT)
    } else {
        ("release", TARGET)
    };
    println!(
        "diff {}k sockets, {CHURN_PERCENT}% churn: {:.2} ms median of {TIMED_POLLS} polls \
         (min {:.2}, max {:.2}; {} transitions/poll; target < {} ms, {build})",
        SOCKETS / 1000,
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        transitions / TIMED_POLLS,
        TARGET.as_millis(),
    );
    println!(
        "  the same polls, each dump in random order: {:.2} ms median",
        shuffled.as_secs_f64() * 1e3
    );
    if median < limit {
        println!("bench_diff: 1 passed, 0 failed");
        ExitCode::SUCCESS
    } else {
        println!("bench_diff: 0 passed, 1 failed");
        ExitCode::FAILURE
    }
}

/// The median time of the same polls with each dump's sockets in random order.
fn shuffled_median(
    baseline: &Snapshot,
    polls: &[(Snapshot, Vec<DestroyedSocket>)],
    world: &mut World,
) -> Duration {
    let mut shuffle = |snapshot: &Snapshot| {
        let mut sockets = snapshot.sockets.clone();
        for i in (1..sockets.len()).rev() {
            sockets.swap(i, world.below(i + 1));
        }
        Snapshot::new(snapshot.taken_at, sockets)
    };
    let baseline = shuffle(baseline);
    let polls: Vec<_> = polls
        .iter()
        .map(|(snapshot, destroyed)| (shuffle(snapshot), destroyed))
        .collect();
    let mut differ = Differ::new();
    differ.observe(&baseline, &[]);
    let mut times: Vec<Duration> = polls
        .iter()
        .map(|(poll, destroyed)| {
            let start = Instant::now();
            differ.observe(poll, destroyed);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// A host's sockets, changed a little between polls.
struct World {
    sockets: Vec<SocketRecord>,
    next_cookie: u64,
    random: u64,
}

impl World {
    fn new(count: usize) -> World {
        let mut world = World {
            sockets: Vec::with_capacity(count),
            next_cookie: 1,
            random: 0x9e37_79b9_7f4a_7c15,
        };
        for _ in 0..count {
            let socket = world.new_socket();
            world.sockets.push(socket);
        }
        world
    }

    fn snapshot(&self, poll: usize) -> Snapshot {
        let taken_at = SystemTime::UNIX_EPOCH + Duration::from_secs(poll as u64);
        Snapshot::new(taken_at, self.sockets.clone())
    }

    /// Closes, opens and moves on `count` connections in all; returns the destroy
    /// messages of the closed ones.
    fn churn(&mut self, count: usize) -> Vec<DestroyedSocket> {
        let mut destroyed = Vec::new();
        for i in 0..count {
            let at = self.below(self.sockets.len());
            match i % 3 {
                0 => {
                    let gone = self.sockets.swap_remove(at);
                    destroyed.push(DestroyedSocket::from_record(&gone));
                }
                1 => {
                    let socket = self.new_socket();
                    self.sockets.push(socket);
                }
                _ => {
                    let socket = &mut self.sockets[at];
                    socket.state = match socket.state {
                        State::Established => State::CloseWait,
                        State::CloseWait => State::LastAck,
                        State::SynSent => State::Established,
                        other => other,
                    };
                }
            }
        }
        destroyed
    }

    fn new_socket(&mut self) -> SocketRecord {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let roll = self.below(100);
        let state = match roll {
            0..70 => State::Established,
            70..88 => State::TimeWait,
            88..93 => State::CloseWait,
            93..97 => State::SynSent,
            _ => State::FinWait2,
        };
        let v6 = roll.is_multiple_of(5);
        let remote = self.next() as u32;
        let (family, local_addr, remote_addr) = if v6 {
            let local = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
            let remote = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, remote as u16, 7);
            (Family::Ipv6, IpAddr::V6(local), IpAddr::V6(remote))
        } else {
            let local = Ipv4Addr::new(10, 0, 0, 1);
            (
                Family::Ipv4,
                IpAddr::V4(local),
                IpAddr::V4(Ipv4Addr::from(remote)),
            )
        };
        SocketRecord {
            family,
            state,
            local_addr,
            local_port: 443,
            remote_addr,
            remote_port: self.next() as u16,
            inode: if state == State::TimeWait {
                0
            } else {
                cookie as u32
            },
            cookie,
            ..SocketRecord::default()
        }
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    /// xorshift64*: reproducible runs without a dependency.
    fn next(&mut self) -> u64 {
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        self.random.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
