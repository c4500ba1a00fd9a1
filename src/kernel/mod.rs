//! Everything that talks to Linux, and nothing else: netlink sock_diag dumps, the
//! destroy-event multicast, `SOCK_DESTROY`, the files under `/proc`, entering other
//! network namespaces, and the scheduling priority of a thread.

pub mod bytecode;
pub mod destroy;
pub mod diag_msg;
pub mod events;
pub mod netns;
pub mod procfs;
pub mod sched;
pub mod sockdiag;
pub mod tcp_info;
