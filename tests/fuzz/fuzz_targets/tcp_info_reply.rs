//! Feeds arbitrary bytes to the parser of the kernel's reply to a one-socket sock_diag
//! request with `INET_DIAG_INFO` (the detail pane's `tcp_info`), and to the
//! `struct tcp_info` parser itself. Both must return a value or an error, never panic
//! or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpscope::kernel::tcp_info::{parse_reply, parse_tcp_info};

fuzz_target!(|bytes: &[u8]| {
    let _ = parse_reply(bytes);
    if let Some(info) = parse_tcp_info(bytes) {
        // The byte counts are there exactly when the struct is long enough for them.
        assert_eq!(info.bytes_received.is_some(), bytes.len() >= 136);
    }
});
