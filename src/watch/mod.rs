//! The analyses built on snapshots: is a SYN flood under way, and what happened
//! lately.
//!
//! [`listeners`] groups half-open (SYN_RECV) connections under their listener and
//! counts them; [`verdict`] says what one listener's numbers mean; [`tracker`] keeps a
//! flood verdict up across polls while SYN cookies hide the evidence; [`counters`]
//! turns two readings of the kernel's TcpExt counters into rates; [`syn_watch`] runs
//! one poll of all that and holds the result the outputs show. [`history`] keeps the
//! bounded per-poll counts and transitions the live view draws, in [`ring`]s.
//! [`leaks`] counts CLOSE_WAIT sockets per process and port across polls and flags the
//! processes that are not closing them. [`findings`] names incidents over all of that
//! (a SYN flood, a listener dropping, ports or TIME_WAIT buckets running out, a leak)
//! with their evidence and what to do, raised and cleared with hysteresis.
//!
//! [`census`] is the one pass over a poll's whole table that the SYN watch, the
//! CLOSE_WAIT watch and the counts share.
//!
//! Everything here is pure: no kernel, no clock, no terminal. Snapshots, counter
//! readings, transitions and the time between polls come in as values.

pub(crate) mod census;
pub(crate) mod counters;
pub mod findings;
pub(crate) mod half_open_age;
pub(crate) mod history;
pub(crate) mod leaks;
pub(crate) mod listeners;
pub(crate) mod ring;
pub(crate) mod syn_watch;
pub(crate) mod tracker;
pub(crate) mod verdict;

pub use census::{Census, Families};
pub use counters::{CounterRates, Counters, HostNote};
pub use history::{Event, History, Poll};
pub use leaks::{CloseWaitLeaks, LeakWatcher, Owner, PortLeak, ProcessLeak};
pub use listeners::{Listener, ListenerTable, SourceCount};
pub use ring::Ring;
pub use syn_watch::{ListenerWatch, SynWatch, SynWatcher};
pub use tracker::FloodTracker;
pub use verdict::{Thresholds, Verdict};
