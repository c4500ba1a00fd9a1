//! Feeds arbitrary text to the `/proc/net/netstat` parser, as if the kernel (or a
//! damaged procfs) had written it. It must return counters or an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpscope::kernel::procfs::parse_netstat;

fuzz_target!(|bytes: &[u8]| {
    // tcpscope reads the file with `read_to_string`, which refuses invalid UTF-8 before
    // the parser sees it; lossy conversion lets every input reach the parser anyway.
    let text = String::from_utf8_lossy(bytes);
    if let Ok(counters) = parse_netstat(&text) {
        // Parsing the same text twice gives the same counters.
        assert_eq!(parse_netstat(&text), Ok(counters));
    }
});
