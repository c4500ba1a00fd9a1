//! Compiles a [`Condition`] to the kernel's `INET_DIAG_REQ_BYTECODE` program, so that
//! the kernel drops non-matching sockets before copying them out.
//!
//! The program is a list of 4-byte `inet_diag_bc_op { code, yes, no }`; a port test
//! carries the port in a second op, an address test an `inet_diag_hostcond` and the
//! address. The kernel (`inet_diag_bc_run` in `net/ipv4/inet_diag.c`) starts at the
//! first op, jumps `yes` bytes forward when a test holds and `no` bytes when it fails,
//! and accepts the socket when it lands exactly on the end. Every fragment compiled
//! here keeps one invariant, the one `ss` uses: success falls through to the fragment's
//! end, failure jumps 4 bytes past it. The kernel audits programs
//! (`inet_diag_bc_audit`) by walking the `yes` jumps, so every op's `yes` is its own
//! size, data included.
//!
//! The kernel has no state test. A state test in the condition compiles to whichever
//! constant lets more sockets through (true, or false under a `not`), so that the
//! program accepts a superset of what the condition matches and user space decides the
//! rest; [`crate::filter::Filter::kernel_condition`] drops such tests beforehand.

use std::net::IpAddr;

use crate::filter::{Comparison, Condition, Network, Side};

const OP_BYTES: u16 = 4;
const BC_JMP: u8 = 1;
const BC_S_GE: u8 = 2;
const BC_S_LE: u8 = 3;
const BC_D_GE: u8 = 4;
const BC_D_LE: u8 = 5;
const BC_S_COND: u8 = 7;
const BC_D_COND: u8 = 8;
const BC_S_EQ: u8 = 11;
const BC_D_EQ: u8 = 12;
/// `struct inet_diag_hostcond { u8 family; u8 prefix_len; int port; __be32 addr[]; }`,
/// without the address.
const HOSTCOND_BYTES: u16 = 8;
/// `inet_diag_hostcond.port` for "any port".
const ANY_PORT: i32 = -1;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// The program for `condition`.
pub fn compile(condition: &Condition) -> Vec<u8> {
    let mut program = Vec::new();
    emit(condition, true, &mut program);
    program
}

/// `positive` is false under an odd number of `not`s.
fn emit(condition: &Condition, positive: bool, program: &mut Vec<u8>) {
    match condition {
        // True: an empty fragment, which falls through to its end.
        Condition::State(_) if positive => {}
        // False: a jump (never "holds") straight to the failure point.
        Condition::State(_) => push_op(program, BC_JMP, OP_BYTES, 2 * OP_BYTES),
        Condition::Port {
            side,
            comparison,
            port,
        } => emit_port(*side, *comparison, *port, program),
        Condition::Address { side, network } => emit_address(*side, network, program),
        Condition::And(a, b) => {
            let start = program.len();
            emit(a, positive, program);
            let a_end = program.len();
            emit(b, positive, program);
            // a's failures jumped just past a; move them just past b.
            let b_length = (program.len() - a_end) as u16;
            relocate_failures(&mut program[start..a_end], b_length);
        }
        Condition::Or(a, b) => {
            // a's failure lands just past the jump, on b; a's success reaches the
            // jump, which (a JMP always takes `no`) skips b to the end.
            let mut second = Vec::new();
            emit(b, positive, &mut second);
            emit(a, positive, program);
            push_op(program, BC_JMP, OP_BYTES, second.len() as u16 + OP_BYTES);
            program.extend_from_slice(&second);
        }
        Condition::Not(a) => emit_not(program, |program| emit(a, !positive, program)),
    }
}

/// The kernel compares ports with `=`, `>=` and `<=` only; the other three are
/// negations of those, as `ss` compiles them.
fn emit_port(side: Side, comparison: Comparison, port: u16, program: &mut Vec<u8>) {
    let (equal, at_least, at_most) = match side {
        Side::Source => (BC_S_EQ, BC_S_GE, BC_S_LE),
        Side::Destination => (BC_D_EQ, BC_D_GE, BC_D_LE),
    };
    let test = |code: u8| {
        move |program: &mut Vec<u8>| {
            push_op(program, code, 2 * OP_BYTES, 3 * OP_BYTES);
            push_op(program, 0, 0, port);
        }
    };
    match comparison {
        Comparison::Equal => test(equal)(program),
        Comparison::AtLeast => test(at_least)(program),
        Comparison::AtMost => test(at_most)(program),
        Comparison::NotEqual => emit_not(program, test(equal)),
        Comparison::Less => emit_not(program, test(at_least)),
        Comparison::Greater => emit_not(program, test(at_most)),
    }
}

/// An `INET_DIAG_BC_S_COND`/`D_COND` op with any port. The kernel matches an IPv4
/// prefix against IPv6 sockets' v4-mapped addresses and never matches an IPv6 prefix
/// against an IPv4 socket, as [`Network::contains`] does.
fn emit_address(side: Side, network: &Network, program: &mut Vec<u8>) {
    let code = match side {
        Side::Source => BC_S_COND,
        Side::Destination => BC_D_COND,
    };
    let (family, octets): (u8, Vec<u8>) = match network.addr() {
        IpAddr::V4(v4) => (AF_INET, v4.octets().to_vec()),
        IpAddr::V6(v6) => (AF_INET6, v6.octets().to_vec()),
    };
    let length = OP_BYTES + HOSTCOND_BYTES + octets.len() as u16;
    push_op(program, code, length, length + OP_BYTES);
    program.push(family);
    program.push(network.prefix_len());
    program.extend_from_slice(&[0, 0]);
    program.extend_from_slice(&ANY_PORT.to_ne_bytes());
    program.extend_from_slice(&octets);
}

/// `inner`'s success reaches a jump, which leaps to failure; `inner`'s failure lands on
/// the end, which is success.
fn emit_not(program: &mut Vec<u8>, inner: impl FnOnce(&mut Vec<u8>)) {
    inner(program);
    push_op(program, BC_JMP, OP_BYTES, 2 * OP_BYTES);
}

fn push_op(program: &mut Vec<u8>, code: u8, yes: u16, no: u16) {
    program.push(code);
    program.push(yes as u8);
    program.extend_from_slice(&no.to_ne_bytes());
}

/// Adds `distance` to every jump in `fragment` that targets the fragment's failure
/// point (4 bytes past its end).
fn relocate_failures(fragment: &mut [u8], distance: u16) {
    let length = fragment.len();
    let mut offset = 0;
    while offset < length {
        let yes = usize::from(fragment[offset + 1]);
        let no = u16::from_ne_bytes([fragment[offset + 2], fragment[offset + 3]]);
        if offset + usize::from(no) == length + usize::from(OP_BYTES) {
            let moved = (no + distance).to_ne_bytes();
            fragment[offset + 2..offset + 4].copy_from_slice(&moved);
        }
        offset += yes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse_expression;
    use crate::snapshot::{SocketRecord, fixtures};
    use crate::tcp::State;

    /// The kernel's interpreter (`inet_diag_bc_run`), restricted to the ops compiled
    /// here, to check that programs mean what the condition means. It also checks what
    /// the kernel's audit checks: every jump lands on an op or just past the end.
    fn run(program: &[u8], socket: &SocketRecord) -> bool {
        let mut offset = 0usize;
        while offset < program.len() {
            let code = program[offset];
            let yes = usize::from(program[offset + 1]);
            let no = usize::from(u16::from_ne_bytes([
                program[offset + 2],
                program[offset + 3],
            ]));
            assert!(yes >= 4 && yes % 4 == 0 && no % 4 == 0, "op at {offset}");
            let data = &program[offset + 4..];
            let port = || u16::from_ne_bytes([data[2], data[3]]);
            let holds = match code {
                BC_JMP => false,
                BC_S_EQ => socket.local_port == port(),
                BC_D_EQ => socket.remote_port == port(),
                BC_S_GE => socket.local_port >= port(),
                BC_S_LE => socket.local_port <= port(),
                BC_D_GE => socket.remote_port >= port(),
                BC_D_LE => socket.remote_port <= port(),
                BC_S_COND | BC_D_COND => {
                    let address = if code == BC_S_COND {
                        socket.local_addr
                    } else {
                        socket.remote_addr
                    };
                    hostcond_holds(data, address)
                }
                other => panic!("unexpected op {other}"),
            };
            offset += if holds { yes } else { no };
        }
        assert!(offset <= program.len() + 4, "jumped past the failure point");
        offset == program.len()
    }

    /// The S_COND/D_COND case of `inet_diag_bc_run`, written from the kernel's
    /// description rather than from `Network::contains`.
    fn hostcond_holds(data: &[u8], address: IpAddr) -> bool {
        let (family, prefix_len) = (data[0], usize::from(data[1]));
        let port = i32::from_ne_bytes([data[4], data[5], data[6], data[7]]);
        assert_eq!(port, ANY_PORT);
        let wanted = &data[8..];
        let bits_match = |actual: &[u8]| {
            (0..prefix_len).all(|bit| {
                let mask = 0x80u8 >> (bit % 8);
                actual[bit / 8] & mask == wanted[bit / 8] & mask
            })
        };
        match (family, address) {
            (AF_INET, IpAddr::V4(v4)) => bits_match(&v4.octets()),
            (AF_INET6, IpAddr::V6(v6)) => bits_match(&v6.octets()),
            (AF_INET, IpAddr::V6(v6)) => {
                let octets = v6.octets();
                octets[..10] == [0; 10]
                    && octets[10..12] == [0xff, 0xff]
                    && bits_match(&octets[12..])
            }
            _ => false,
        }
    }

    /// Sockets over a spread of ports, addresses and both families.
    fn sockets() -> Vec<SocketRecord> {
        let ports = [0, 79, 80, 81, 443, 8080, 65535];
        let pairs = [
            ("127.0.0.1", "127.0.0.2"),
            ("10.1.2.3", "192.168.0.1"),
            ("::1", "::1"),
            ("::ffff:10.1.2.3", "::ffff:127.0.0.1"),
            ("2001:db8::1", "fe80::2"),
        ];
        let mut sockets = Vec::new();
        for (local, remote) in pairs {
            for local_port in ports {
                for remote_port in ports {
                    sockets.push(fixtures::socket(
                        State::Established,
                        local,
                        local_port,
                        remote,
                        remote_port,
                    ));
                }
            }
        }
        sockets
    }

    fn agrees(text: &str) {
        let condition = parse_expression(text).unwrap().condition;
        let program = compile(&condition);
        for socket in sockets() {
            assert_eq!(
                run(&program, &socket),
                condition.matches(&socket),
                "{text} on {socket:?}"
            );
        }
    }

    #[test]
    fn a_single_port_test_is_two_ops() {
        let program = compile(&Condition::port(Side::Source, Comparison::Equal, 80));
        assert_eq!(program.len(), 8);
        assert_eq!(program[0], BC_S_EQ);
    }

    #[test]
    fn an_address_test_carries_its_hostcond_with_any_port() {
        let program = compile(&parse_expression("dst 10.0.0.0/8").unwrap().condition);
        assert_eq!(program.len(), 16);
        assert_eq!(&program[..4], &[BC_D_COND, 16, 20, 0]);
        assert_eq!(&program[4..8], &[AF_INET, 8, 0, 0]);
        assert_eq!(&program[8..12], &(-1i32).to_ne_bytes());
        assert_eq!(&program[12..], &[10, 0, 0, 0]);
        let v6 = compile(&parse_expression("src ::1").unwrap().condition);
        assert_eq!(v6.len(), 28);
        assert_eq!((v6[0], v6[1], v6[4], v6[5]), (BC_S_COND, 28, AF_INET6, 128));
    }

    #[test]
    fn compiled_programs_agree_with_user_space_evaluation() {
        for text in [
            "sport = :80",
            "dport >= :443",
            "sport = :80 or dport = :80",
            "sport >= :80 and sport <= :443",
            "not ( sport = :8080 or dport = :8080 )",
            "( sport = :80 or dport = :80 ) and ( sport = :443 or dport = :443 )",
            "( sport = :80 and dport >= :443 ) or not dport <= :80",
            "not ( sport = :443 and not dport = :0 )",
            "sport != :80",
            "sport < :80 or dport > :8080",
            "dport < :0 or sport > :65535",
            "src 127.0.0.0/8",
            "dst 127.0.0.2",
            "dst != 192.168.0.0/16 and src 10.0.0.0/8",
            "src ::1 or dst ::ffff:127.0.0.1",
            "src 0.0.0.0/0",
            "dst ::/0",
            "src ::ffff:0:0/96",
            "src 10.1.2.3:80 or dst [::1]:443",
            "src 2001:db8::/33 and not dst fe80::/10",
            "src 10.0.0.0/7 and ( dport > :80 or not src 10.1.2.0/23 )",
        ] {
            agrees(text);
        }
    }

    #[test]
    fn the_longest_filter_the_parser_takes_compiles_to_a_program_the_kernel_takes() {
        use crate::filter::parser::MAX_TERMS;
        // The costliest terms: IPv6 address conditions compared with !=, under `or`.
        let text = (0..MAX_TERMS)
            .map(|n| format!("dst != 2001:db8::{n:x}"))
            .collect::<Vec<_>>()
            .join(" or ");
        agrees(&text);
        let program = compile(&parse_expression(&text).unwrap().condition);
        // An `INET_DIAG_REQ_BYTECODE` attribute's payload; jumps are 16-bit.
        assert!(
            program.len() <= usize::from(u16::MAX) - 4,
            "{}",
            program.len()
        );
    }

    #[test]
    fn state_tests_compile_to_a_program_that_keeps_every_possible_match() {
        for text in [
            "state listen or sport = :80",
            "not state listen and sport = :80",
            "not ( state listen or sport = :80 )",
            "not ( state listen and sport = :80 )",
            "state estab and not ( dport = :443 or state time-wait )",
        ] {
            let condition = parse_expression(text).unwrap().condition;
            let program = compile(&condition);
            for socket in sockets() {
                for state in State::ALL {
                    let socket = SocketRecord { state, ..socket };
                    let kernel = run(&program, &socket);
                    assert!(
                        !condition.matches(&socket) || kernel,
                        "{text} on {socket:?}"
                    );
                    assert_eq!(kernel, condition.holds(&socket.endpoints(), None), "{text}");
                }
            }
        }
    }

    /// A small deterministic generator (SplitMix64), so that the random conditions
    /// are the same on every run.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_condition(random: &mut Random, depth: u32) -> Condition {
        const PORTS: [u16; 6] = [0, 80, 81, 443, 8080, 65535];
        const NETWORKS: [&str; 8] = [
            "127.0.0.0/8",
            "127.0.0.2",
            "10.0.0.0/8",
            "0.0.0.0/0",
            "::1",
            "::/0",
            "::ffff:0:0/96",
            "2001:db8::/32",
        ];
        let side = if random.below(2) == 0 {
            Side::Source
        } else {
            Side::Destination
        };
        match if depth == 0 {
            random.below(2)
        } else {
            random.below(5)
        } {
            0 => {
                use Comparison::*;
                let comparison = [Equal, NotEqual, Less, AtMost, Greater, AtLeast][random.below(6)];
                Condition::port(side, comparison, PORTS[random.below(PORTS.len())])
            }
            1 => Condition::address(
                side,
                Network::parse(NETWORKS[random.below(NETWORKS.len())]).unwrap(),
            ),
            2 => random_condition(random, depth - 1).and(random_condition(random, depth - 1)),
            3 => random_condition(random, depth - 1).or(random_condition(random, depth - 1)),
            _ => !random_condition(random, depth - 1),
        }
    }

    #[test]
    fn random_conditions_compile_to_programs_that_agree_with_user_space() {
        let mut random = Random(0x7463_7073);
        let sockets = sockets();
        for _ in 0..300 {
            let condition = random_condition(&mut random, 4);
            let program = compile(&condition);
            for socket in &sockets {
                assert_eq!(
                    run(&program, socket),
                    condition.matches(socket),
                    "{condition} on {socket:?}"
                );
            }
        }
    }
}
