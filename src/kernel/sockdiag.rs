//! Netlink sock_diag dumps of TCP sockets.
