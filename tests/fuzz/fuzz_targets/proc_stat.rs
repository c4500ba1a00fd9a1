//! Feeds arbitrary bytes to the parser of `/proc/<pid>/stat` lines: the command name is
//! what lies between the first `(` and the last `)`, the start time a decimal u64 in its
//! field, and nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpscope::kernel::procfs::parse_stat;

fuzz_target!(|bytes: &[u8]| {
    if let Some(stat) = parse_stat(bytes) {
        assert!(!stat.name.contains(&b'\n') || bytes.contains(&b'\n'));
        let open = bytes.iter().position(|&b| b == b'(').unwrap_or(0);
        assert_eq!(stat.name.as_ptr(), bytes[open + 1..].as_ptr(), "{bytes:?}");
        // The same line written back with its name and start time reads the same.
        let fields = "S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0";
        let mut line = b"1 (".to_vec();
        line.extend_from_slice(stat.name);
        line.extend_from_slice(format!(") {fields} {} 0\n", stat.started).as_bytes());
        assert_eq!(parse_stat(&line), Some(stat));
    }
});
