//! The test lab: real TCP sockets in every state that can be held, inside a private network
//! namespace, with `ss` as the oracle.
//!
//! A test says `use crate::support::lab::Lab;`, calls [`Lab::enter`] on its own thread, builds the
//! states it needs and compares what tcpscope sees with what [`Lab::ss_entries`] lists.
//! Linux keeps the network namespace per thread, so everything the entering thread does
//! afterwards happens inside the lab: the sockets it opens, the sysctls it writes under
//! `/proc/sys/net`, the processes it spawns or forks (`ip`, `ss`, the crowd holders) and the
//! threads it spawns. Other tests' threads are untouched.
//!
//! The lab must never touch the host's network: it only uses 127.0.0.0/8 and `::1`, and it
//! only writes sysctls of its own namespace.
//!
//! - [`netns`] enters the namespace and writes its sysctls;
//! - [`tun`] is the sink that swallows everything routed to 127.64.0.0/10;
//! - [`states`] builds one connection state at a time (LISTEN … TIME_WAIT, SYN_SENT);
//! - [`syn`] forges SYNs so that a listener holds SYN_RECV request sockets;
//! - [`crowd`] holds tens of thousands of connections for benchmarks;
//! - [`ss`] runs and parses `ss -tanH`, the oracle, and waits for it to agree;
//! - [`child`] waits for a program a test started, with a deadline.
//!
//! ```ignore
//! use crate::support::lab;
//!
//! #[test]
//! fn half_closed_connections_show_close_wait() -> anyhow::Result<()> {
//!     let lab = lab::Lab::enter()?; // fails, never skips, without root
//!     let connection = lab.fin_wait2_close_wait("127.0.0.1".parse()?)?;
//!     lab.wait_for_exactly(&connection.entries(), lab::SETTLE)?;
//!     // … run tcpscope's code on this thread and compare with connection.entries()
//!     Ok(())
//! }
//! ```
//!
//! Addresses inside a lab:
//!
//! | range            | used for                                                       |
//! |------------------|----------------------------------------------------------------|
//! | 127.0.0.1, ::1   | listeners and clients of the single-state builders            |
//! | 127.1.0.0/16     | clients of [`Lab::crowd`] (ESTABLISHED), ports 10000 and up    |
//! | 127.2.0.0/16     | clients of [`Lab::time_wait_crowd`], ports 10000 and up        |
//! | 127.64.0.0/10    | the sink: SYN_SENT peers (127.64.x.y:80), forged SYN sources   |
//!
//! Measured on the project's 2-core machine (`cargo test --test lab selftest::`, debug build):
//! entering a lab takes a few milliseconds (two `ip` processes); 1,000 forged SYNs about
//! 10 ms; a crowd of 100,000 ESTABLISHED sockets 0.9 s in 6 holders (and `ss -tanH state
//! established` over them 0.2 s); 50,000 TIME_WAIT 2.9 s; the whole self-test about 3 s.

pub mod cgroups;
pub mod child;
pub mod crowd;
pub mod netns;
pub mod random;
pub mod sockets;
pub mod ss;
pub mod states;
pub mod syn;
pub mod tun;

use std::marker::PhantomData;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

// The types tests name most, at the top. Like the rest of the lab, each binary uses only some.
#[allow(unused_imports)]
pub use crowd::{Crowd, TimeWaitCrowd};
#[allow(unused_imports)]
pub use ss::{Entry, SsLine, TcpState};
#[allow(unused_imports)]
pub use states::{Connection, Listener, SynSent, TimeWait};
#[allow(unused_imports)]
pub use syn::HalfOpen;

/// How long a test should wait for the kernel to reach a state it has been driven to.
/// Transitions on loopback take microseconds to milliseconds; this is generous so that a
/// loaded CI machine does not make the lab flaky.
pub const SETTLE: Duration = Duration::from_secs(5);

/// A private network namespace entered by the current thread, set up for holding sockets in
/// every TCP state.
///
/// Dropping it kills the crowd holders, removes the sink and moves the thread back to the
/// namespace it came from. Sockets still open elsewhere keep the lab's namespace alive.
pub struct Lab {
    // Fields drop in this order: holders first (they hold sockets in the namespace), then the
    // sink, and the thread goes home last.
    holders: crowd::Holders,
    sink: tun::Sink,
    namespace: netns::Namespace,
    // The namespace belongs to the thread that entered it: a `Lab` used from another thread
    // would build sockets in the wrong namespace, so it is neither `Send` nor `Sync`.
    _one_thread: PhantomData<*const ()>,
}

/// `net.ipv4.tcp_syncookies`: what a listener does when its SYN queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syncookies {
    /// Never send cookies: a SYN beyond the queue is dropped. The lab's default, because every
    /// SYN the lab sends then either becomes a visible SYN_RECV request socket or is lost, never
    /// answered by a cookie that `ss` cannot show.
    Off = 0,
    /// Send cookies only once the SYN queue overflows (the kernel's default).
    OnOverflow = 1,
    /// Always send cookies: no SYN_RECV request sockets at all.
    Always = 2,
}

/// The namespace's `net.core.somaxconn`, and the backlog every lab listener asks for. The
/// kernel caps `listen()`'s backlog at somaxconn; this caps both the accept queue and the SYN
/// queue of a listener.
pub const LISTEN_BACKLOG: u32 = 65535;

impl Lab {
    /// Moves the calling thread into a new network namespace and prepares it: `lo` up, large
    /// listen and SYN backlogs, syncookies off, and the sink for 127.64.0.0/10.
    ///
    /// Fails, never skips, when the process is not root or the kernel has no network
    /// namespaces: the error says so, and a test that propagates it fails loudly.
    pub fn enter() -> Result<Lab> {
        let namespace = netns::Namespace::enter()?;
        netns::ip(&["link set lo up"]).context("bringing up lo in the lab")?;
        // A listener's accept and SYN queues are capped by somaxconn; the SYN queue is also cut
        // off at three quarters of tcp_max_syn_backlog when syncookies are off (see
        // tcp_conn_request() in net/ipv4/tcp_input.c). 65535 for both lets one listener hold
        // tens of thousands of half-open connections.
        netns::set_sysctl("net.core.somaxconn", LISTEN_BACKLOG)?;
        netns::set_sysctl("net.ipv4.tcp_max_syn_backlog", LISTEN_BACKLOG)?;
        netns::set_sysctl("net.ipv4.tcp_syncookies", Syncookies::Off as u8)?;
        let sink = tun::Sink::install().context("installing the lab's sink for 127.64.0.0/10")?;
        Ok(Lab {
            holders: crowd::Holders::default(),
            sink,
            namespace,
            _one_thread: PhantomData,
        })
    }

    /// Sets a sysctl of the lab's namespace, e.g. `("net.ipv4.tcp_synack_retries", 7)`.
    ///
    /// Only per-namespace sysctls exist inside the lab; a host-wide one (such as
    /// `net.core.rmem_max`) is not there, so this fails instead of changing the host.
    pub fn set_sysctl(&self, name: &str, value: impl std::fmt::Display) -> Result<()> {
        netns::set_sysctl(name, value)
    }

    /// Reads a sysctl of the lab's namespace, trimmed.
    pub fn sysctl(&self, name: &str) -> Result<String> {
        netns::sysctl(name)
    }

    /// Chooses what listeners in the lab do when their SYN queue is full.
    pub fn set_syncookies(&self, mode: Syncookies) -> Result<()> {
        netns::set_sysctl("net.ipv4.tcp_syncookies", mode as u8)
    }

    /// Runs a program inside the lab and returns its standard output; fails, with the
    /// program's standard error, if it does not exit with status 0.
    ///
    /// Any `std::process::Command` spawned from the lab's thread runs inside the lab, since a
    /// child inherits the namespaces of the thread that created it; this is a shorthand.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let shown = format!("{program} {}", args.join(" "));
        let output = Command::new(program)
            .args(args)
            .output()
            .with_context(|| format!("running `{shown}` in the lab"))?;
        if !output.status.success() {
            bail!(
                "`{shown}` in the lab exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8(output.stdout).with_context(|| format!("reading `{shown}`'s output"))
    }
}
