//! Feeds arbitrary text to the parser of the listen-queue sysctls
//! (`tcp_max_syn_backlog`, `somaxconn`, `tcp_syncookies`), as if read from
//! `/proc/sys/net`. The input holds the three files' texts separated by NUL bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpscope::kernel::procfs::{Syncookies, parse_listen_limits};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let mut files = text.splitn(3, '\0');
    let backlog = files.next().unwrap_or_default();
    let somaxconn = files.next().unwrap_or_default();
    let syncookies = files.next().unwrap_or_default();
    if let Ok(limits) = parse_listen_limits(backlog, somaxconn, syncookies) {
        // Whatever the number, the mode is one of the three the kernel knows.
        let mode = limits.syncookies.sysctl_value();
        assert_eq!(Syncookies::from_sysctl(u32::from(mode)), limits.syncookies);
    }
});
