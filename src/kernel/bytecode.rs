//! Compiles a port [`Condition`] to the kernel's `INET_DIAG_REQ_BYTECODE` program, so
//! that the kernel drops non-matching sockets before copying them out.
//!
//! The program is a list of 4-byte `inet_diag_bc_op { code, yes, no }`; a port test
//! carries the port in a second op. The kernel (`inet_diag_bc_run` in
//! `net/ipv4/inet_diag.c`) starts at the first op, jumps `yes` bytes forward when a
//! test holds and `no` bytes when it fails, and accepts the socket when it lands
//! exactly on the end. Every fragment compiled here keeps one invariant, the one `ss`
//! uses: success falls through to the fragment's end, failure jumps 4 bytes past it.
//! The kernel audits programs by walking the `yes` jumps, so every op's `yes` is its
//! own size.

use crate::filter::{Comparison, Condition, Side};

const OP_BYTES: u16 = 4;
const BC_JMP: u8 = 1;
const BC_S_GE: u8 = 2;
const BC_S_LE: u8 = 3;
const BC_D_GE: u8 = 4;
const BC_D_LE: u8 = 5;
const BC_S_EQ: u8 = 11;
const BC_D_EQ: u8 = 12;

/// The program for `condition`.
pub fn compile(condition: &Condition) -> Vec<u8> {
    let mut program = Vec::new();
    emit(condition, &mut program);
    program
}

fn emit(condition: &Condition, program: &mut Vec<u8>) {
    match condition {
        Condition::Port {
            side,
            comparison,
            port,
        } => {
            let code = match (side, comparison) {
                (Side::Source, Comparison::Equal) => BC_S_EQ,
                (Side::Source, Comparison::AtLeast) => BC_S_GE,
                (Side::Source, Comparison::AtMost) => BC_S_LE,
                (Side::Destination, Comparison::Equal) => BC_D_EQ,
                (Side::Destination, Comparison::AtLeast) => BC_D_GE,
                (Side::Destination, Comparison::AtMost) => BC_D_LE,
            };
            push_op(program, code, 2 * OP_BYTES, 3 * OP_BYTES);
            push_op(program, 0, 0, *port);
        }
        Condition::And(a, b) => {
            let start = program.len();
            emit(a, program);
            let a_end = program.len();
            emit(b, program);
            // a's failures jumped just past a; move them just past b.
            let b_length = (program.len() - a_end) as u16;
            relocate_failures(&mut program[start..a_end], b_length);
        }
        Condition::Or(a, b) => {
            // a's failure lands just past the jump, on b; a's success reaches the
            // jump, which (a JMP always takes `no`) skips b to the end.
            let mut second = Vec::new();
            emit(b, &mut second);
            emit(a, program);
            push_op(program, BC_JMP, OP_BYTES, second.len() as u16 + OP_BYTES);
            program.extend_from_slice(&second);
        }
        Condition::Not(a) => {
            // a's success reaches the jump, which leaps to failure; a's failure lands
            // on the end, which is success.
            emit(a, program);
            push_op(program, BC_JMP, OP_BYTES, 2 * OP_BYTES);
        }
    }
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
    use crate::snapshot::fixtures;
    use crate::tcp::State;

    /// The kernel's interpreter, restricted to the ops compiled here, to check that
    /// programs mean what the condition means.
    fn run(program: &[u8], local_port: u16, remote_port: u16) -> bool {
        let mut offset = 0usize;
        while offset < program.len() {
            let code = program[offset];
            let yes = usize::from(program[offset + 1]);
            let no = usize::from(u16::from_ne_bytes([
                program[offset + 2],
                program[offset + 3],
            ]));
            let port = || u16::from_ne_bytes([program[offset + 6], program[offset + 7]]);
            let holds = match code {
                BC_JMP => false,
                BC_S_EQ => local_port == port(),
                BC_D_EQ => remote_port == port(),
                BC_S_GE => local_port >= port(),
                BC_S_LE => local_port <= port(),
                BC_D_GE => remote_port >= port(),
                BC_D_LE => remote_port <= port(),
                other => panic!("unexpected op {other}"),
            };
            offset += if holds { yes } else { no };
        }
        offset == program.len()
    }

    fn agrees(condition: &Condition) {
        let program = compile(condition);
        for local in [0, 79, 80, 81, 443, 8080, 65535] {
            for remote in [0, 79, 80, 81, 443, 8080, 65535] {
                let socket =
                    fixtures::socket(State::Established, "127.0.0.1", local, "127.0.0.2", remote);
                assert_eq!(
                    run(&program, local, remote),
                    condition.matches(&socket),
                    "{condition:?} on {local}->{remote}"
                );
            }
        }
    }

    fn port(side: Side, comparison: Comparison, port: u16) -> Condition {
        Condition::port(side, comparison, port)
    }

    #[test]
    fn a_single_port_test_is_two_ops() {
        let program = compile(&port(Side::Source, Comparison::Equal, 80));
        assert_eq!(program.len(), 8);
        assert_eq!(program[0], BC_S_EQ);
    }

    #[test]
    fn compiled_programs_agree_with_user_space_evaluation() {
        use Comparison::*;
        use Side::*;
        let cases = [
            port(Source, Equal, 80),
            port(Destination, AtLeast, 443),
            Condition::either_port(80),
            port(Source, AtLeast, 80).and(port(Source, AtMost, 443)),
            Condition::Not(Box::new(Condition::either_port(8080))),
            Condition::either_port(80).and(Condition::either_port(443)),
            Condition::Or(
                Box::new(port(Source, Equal, 80).and(port(Destination, AtLeast, 443))),
                Box::new(Condition::Not(Box::new(port(Destination, AtMost, 80)))),
            ),
            Condition::Not(Box::new(
                port(Source, Equal, 443).and(Condition::Not(Box::new(port(Destination, Equal, 0)))),
            )),
        ];
        for condition in &cases {
            agrees(condition);
        }
    }
}
