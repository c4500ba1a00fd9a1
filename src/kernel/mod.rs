//! Everything that talks to Linux, and nothing else: netlink sock_diag dumps and the
//! files under `/proc`.

pub mod procfs;
pub mod sockdiag;
