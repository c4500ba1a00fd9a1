//! Feeds arbitrary text to the filter-expression parser (`--filter`, the view's `/`
//! line), then checks what tcpscope relies on for every expression it accepts: it
//! prints back to an expression that parses to the same tree; its kernel program fits
//! what the kernel takes; and the filter tcpscope builds from it (states folded into
//! the request, the rest left to the kernel program and to user space) keeps exactly
//! the sockets the expression itself matches. A refused expression gets a message with
//! a caret, never a panic.
//!
//! The input's first line is the expression; the bytes after it describe sockets.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use tcpscope::filter::parse_expression;
use tcpscope::kernel::bytecode;
use tcpscope::snapshot::{Family, SocketRecord, Timer};
use tcpscope::tcp::State;

/// One socket from 8 bytes: state, family, and addresses and ports near the ones an
/// expression is likely to name.
fn socket(bytes: &[u8]) -> SocketRecord {
    let state = State::ALL[usize::from(bytes[0]) % State::ALL.len()];
    let v6 = bytes[1] & 1 == 1;
    let address = |octet: u8, flavour: u8| -> IpAddr {
        let v4 = Ipv4Addr::new(
            [127, 10, 192, 0][usize::from(flavour % 4)],
            0,
            flavour,
            octet,
        );
        if v6 {
            match flavour % 3 {
                0 => IpAddr::V6(v4.to_ipv6_mapped()),
                1 => IpAddr::V6(Ipv6Addr::LOCALHOST),
                _ => IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    u16::from(octet),
                )),
            }
        } else {
            IpAddr::V4(v4)
        }
    };
    SocketRecord {
        family: if v6 { Family::Ipv6 } else { Family::Ipv4 },
        state,
        local_addr: address(bytes[2], bytes[1] >> 1),
        local_port: u16::from_le_bytes([bytes[3], bytes[4] & 0x1f]),
        remote_addr: address(bytes[5], bytes[1] >> 4),
        remote_port: u16::from_le_bytes([bytes[6], bytes[7] & 0x1f]),
        recv_q: 0,
        send_q: 0,
        timer: Timer::Off,
        expires_ms: 0,
        retransmits: 0,
        uid: 0,
        inode: 0,
        cookie: 1,
        interface: 0,
        drops: 0,
    }
}

fuzz_target!(|bytes: &[u8]| {
    let split = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let text = String::from_utf8_lossy(&bytes[..split]);
    let expression = match parse_expression(&text) {
        Ok(expression) => expression,
        Err(error) => {
            assert!(error.position <= text.len());
            let (line, caret) = error.pointer();
            assert!(caret.contains('^'), "{line}\n{caret}");
            let _ = error.to_string();
            return;
        }
    };
    let condition = &expression.condition;

    // Fully parenthesised, the printed form can nest deeper than the original: past
    // the limit it is refused for that, and otherwise it parses to the same tree.
    let printed = condition.to_string();
    match parse_expression(&printed) {
        Ok(again) => assert_eq!(&again.condition, condition, "{text} printed as {printed}"),
        Err(error) => assert!(
            error.message.contains("nested too deeply") || error.message.contains("too long"),
            "{text} printed as {printed}: {error}"
        ),
    }

    let program = bytecode::compile(condition);
    assert!(
        program.len() <= usize::from(u16::MAX) - 4,
        "{} bytes",
        program.len()
    );

    let filter = expression.filter();
    let kernel = filter.kernel_condition();
    for chunk in bytes[(split + 1).min(bytes.len())..].chunks_exact(8) {
        let socket = socket(chunk);
        let wanted = condition.matches(&socket);
        assert_eq!(filter.matches(&socket), wanted, "{text}: {socket:?}");
        if wanted && let Some(kernel) = &kernel {
            assert!(
                kernel.matches(&socket),
                "the kernel would drop {socket:?} for {text}"
            );
        }
    }
});
