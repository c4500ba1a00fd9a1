//! Feeds arbitrary text to the parsers of the sysctls tcpscope reads, as if read from
//! `/proc/sys/net`: the listen-queue ones (`tcp_max_syn_backlog`, `somaxconn`,
//! `tcp_syncookies`) and the connection ones (`ip_local_port_range`,
//! `ip_local_reserved_ports`, `tcp_tw_reuse`, `tcp_max_tw_buckets`). The input holds
//! the files' texts separated by NUL bytes; the first three go to one parser, the first
//! four to the other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpscope::kernel::procfs::{Syncookies, TwReuse, parse_connection_limits, parse_listen_limits};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let mut files = text.splitn(4, '\0');
    let first = files.next().unwrap_or_default();
    let second = files.next().unwrap_or_default();
    let third = files.next().unwrap_or_default();
    let fourth = files.next().unwrap_or_default();
    if let Ok(limits) = parse_listen_limits(first, second, third) {
        // Whatever the number, the mode is one of the three the kernel knows.
        let mode = limits.syncookies.sysctl_value();
        assert_eq!(Syncookies::from_sysctl(u32::from(mode)), limits.syncookies);
    }
    if let Ok(limits) = parse_connection_limits(first, second, third, fourth) {
        // Every range the parser accepts is in order, so its size cannot underflow.
        let (low, high) = limits.local_port_range;
        assert!(low <= high);
        assert!(limits.reserved_ports.iter().all(|(a, b)| a <= b));
        let mode = limits.tw_reuse.sysctl_value();
        assert_eq!(TwReuse::from_sysctl(u32::from(mode)), limits.tw_reuse);
    }
});
