//! Feeds arbitrary bytes to the parser of `/proc/<pid>/fd/<fd>` link targets, as
//! `readlink` returns them: only `socket:[<inode>]` with an inode that fits a u32 is a
//! socket, and nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpscope::kernel::procfs::socket_inode;

fuzz_target!(|bytes: &[u8]| {
    if let Some(inode) = socket_inode(bytes) {
        let digits = &bytes[b"socket:[".len()..bytes.len() - 1];
        assert!(digits.iter().all(u8::is_ascii_digit), "{bytes:?}");
        // The same inode written back parses to itself (leading zeros aside).
        let written = format!("socket:[{inode}]");
        assert_eq!(socket_inode(written.as_bytes()), Some(inode));
    }
});
