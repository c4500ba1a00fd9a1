//! Everything that talks to Linux, and nothing else: netlink sock_diag dumps, the
//! destroy-event multicast, `SOCK_DESTROY`, and the files under `/proc`.

pub mod bytecode;
pub mod destroy;
pub mod diag_msg;
pub mod events;
pub mod procfs;
pub mod sockdiag;
