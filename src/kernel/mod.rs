//! Everything that talks to Linux, and nothing else: netlink sock_diag dumps, the
//! destroy-event multicast, `SOCK_DESTROY`, the files under `/proc`, entering other
//! network namespaces, the scheduling priority of a thread, and locking the one file
//! tcpscope writes.

//!
//! `unsafe` is denied in the crate but for the modules below that call libc where no
//! safe wrapper exists; every such block says why it is sound (`// SAFETY:`).

pub mod bytecode;
pub mod cgroups;
pub(crate) mod destroy;
pub mod diag_msg;
#[allow(unsafe_code)] // poll on the multicast socket
pub mod events;
#[allow(unsafe_code)] // flock, geteuid
pub(crate) mod files;
#[allow(unsafe_code)] // setns, unshare
pub(crate) mod netns;
#[allow(unsafe_code)] // mallopt, poll on stdout, _exit
pub mod process;
#[allow(unsafe_code)] // openat, readdir and readlinkat under /proc
pub mod procfs;
#[allow(unsafe_code)] // gettid, setpriority, clock_gettime
pub mod sched;
pub mod sockdiag;
pub mod tcp_info;
