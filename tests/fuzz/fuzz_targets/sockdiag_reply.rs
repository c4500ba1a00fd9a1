//! Feeds arbitrary bytes to the sock_diag reply parser, as if the kernel had sent them.
//! The parser must return records or an error, never panic or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpscope::kernel::diag_msg::parse_batch;

fuzz_target!(|bytes: &[u8]| {
    let sequence = bytes
        .get(8..12)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
    let mut count = 0usize;
    let _ = parse_batch(bytes, sequence, |record| {
        count += usize::from(record.local_port > 0);
    });
});
