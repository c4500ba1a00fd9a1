//! What tcpscope reads from `/proc`: the TcpExt counters, the sysctls that bound listen
//! queues, local ports and TIME_WAIT remnants, which process holds each socket inode (for `-p`), and which container a
//! process runs in (for `--all-netns`).
//!
//! Each job lives in its own submodule, with the text parsing split from the file
//! reading so that the parsers are testable on recorded and corrupted input. This module
//! only reads: it never writes a sysctl, and it knows nothing about netlink or output.
//!
//! It does not use the `procfs` crate: the process walk for `-p` takes 1.6 to 1.75 times
//! as long on it (figures in `processes.rs`), and the rest is a few small files read
//! whole.
//!
//! The counters and sysctls are those of the calling thread's network namespace, so a
//! thread that has `unshare(CLONE_NEWNET)`ed sees its own namespace's. The process map
//! covers the processes of the pid namespace `/proc` was mounted for.

mod cgroup;
mod netstat;
mod processes;
mod sockstat;
mod stat;
mod sys;
mod sysctl;

pub use cgroup::{Container, container_in_path, container_of};
pub use netstat::{COUNTERS, Counter, NetstatError, TcpExt, parse_netstat, read_tcpext};
pub use processes::{Process, ProcessMap, count_of_processes, socket_inode};
pub use sockstat::{SockStat, SockStatError, parse_sockstat, read_sockstat};
pub use stat::{ProcessStat, parse_stat};
pub use sysctl::{
    ConnectionLimits, ListenLimits, Syncookies, SysctlError, TwReuse, parse_connection_limits,
    parse_listen_limits, read_connection_limits, read_listen_limits,
};
