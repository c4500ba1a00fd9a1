//! Everything that talks to Linux, and nothing else: netlink sock_diag dumps, the
//! destroy-event multicast, and the files under `/proc`.

pub mod bytecode;
pub mod diag_msg;
pub mod events;
pub mod procfs;
pub mod sockdiag;
pub mod tcp_info;
