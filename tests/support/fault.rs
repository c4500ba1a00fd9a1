//! Faults made at the system-call boundary, for tests of the real binary.
//!
//! [`refuse`] makes the kernel refuse chosen system calls to a child process: a seccomp
//! filter, installed between `fork` and `exec`, that answers them with an errno.
//! Everything else the child does reaches the real kernel, so a test sees how tcpscope
//! meets a kernel that lacks a feature or forbids it, with no change to tcpscope.
//! [`set_descriptor_limit`] takes a running process's file descriptors away (and gives
//! them back), so that whatever it opens next fails with EMFILE.
//!
//! ```ignore
//! let mut command = tcpscope_command(&[]);
//! fault::refuse(&mut command, &[Refusal::sock_diag_socket(libc::EPROTONOSUPPORT)]);
//! ```

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result};

/// One system call to refuse: its number, the argument values that must all match
/// (index, low 32 bits), and the errno to answer with.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub syscall: i64,
    pub arguments: Vec<(usize, u32)>,
    pub errno: i32,
}

impl Refusal {
    /// `socket(AF_NETLINK, *, NETLINK_SOCK_DIAG)`: what a kernel without sock_diag says
    /// (`netlink_create` answers EPROTONOSUPPORT for an unregistered protocol).
    pub fn sock_diag_socket(errno: i32) -> Refusal {
        Refusal {
            syscall: libc::SYS_socket,
            arguments: vec![
                (0, libc::AF_NETLINK as u32),
                (2, libc::NETLINK_SOCK_DIAG as u32),
            ],
            errno,
        }
    }

    /// `setsockopt(*, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP)`: joining any netlink
    /// multicast group, which is how the destroy-event subscription is made.
    pub fn netlink_membership(errno: i32) -> Refusal {
        Refusal {
            syscall: libc::SYS_setsockopt,
            arguments: vec![
                (1, libc::SOL_NETLINK as u32),
                (2, libc::NETLINK_ADD_MEMBERSHIP as u32),
            ],
            errno,
        }
    }
}

// Classic BPF, as seccomp runs it over `struct seccomp_data` (include/uapi/linux/seccomp.h).
const LOAD_WORD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RETURN: u16 = 0x06; // BPF_RET | BPF_K
const NUMBER_AT: u32 = 0;
const ARCH_AT: u32 = 4;
const ARGUMENTS_AT: u32 = 16;
/// `AUDIT_ARCH_X86_64`: the filter checks the architecture before it trusts numbers.
#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xc000_00b7;

fn statement(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump_unless_equal(k: u32, skip: usize) -> libc::sock_filter {
    libc::sock_filter {
        code: JUMP_IF_EQUAL,
        jt: 0,
        jf: u8::try_from(skip).unwrap_or(u8::MAX),
        k,
    }
}

/// The filter program for `refusals`: each refusal is a block that falls through to
/// the next one as soon as the call or an argument does not match.
pub fn program(refusals: &[Refusal]) -> Vec<libc::sock_filter> {
    let mut program = vec![
        statement(LOAD_WORD, ARCH_AT),
        // Another architecture's numbers mean other calls: refuse it everything.
        libc::sock_filter {
            code: JUMP_IF_EQUAL,
            jt: 1,
            jf: 0,
            k: ARCH,
        },
        statement(RETURN, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ];
    for refusal in refusals {
        // Instructions after each jump: the argument loads and jumps, and the return.
        let mut left = 2 * refusal.arguments.len() + 1;
        program.push(statement(LOAD_WORD, NUMBER_AT));
        program.push(jump_unless_equal(refusal.syscall as u32, left));
        for &(index, value) in &refusal.arguments {
            program.push(statement(LOAD_WORD, ARGUMENTS_AT + 8 * index as u32));
            left -= 2;
            program.push(jump_unless_equal(value, left));
        }
        program.push(statement(
            RETURN,
            libc::SECCOMP_RET_ERRNO | (refusal.errno as u32 & 0xffff),
        ));
    }
    program.push(statement(RETURN, libc::SECCOMP_RET_ALLOW));
    program
}

/// Makes `command`'s process meet `refusals` from its first instruction on.
pub fn refuse(command: &mut Command, refusals: &[Refusal]) {
    let mut filter = program(refusals);
    // SAFETY: between fork and exec the closure makes two prctl calls on memory
    // allocated before the fork; prctl is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as libc::c_ushort,
                filter: filter.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sets the soft limit on open descriptors of a running process; returns the old one.
pub fn set_descriptor_limit(pid: libc::pid_t, soft: u64) -> Result<libc::rlimit> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads and writes the two structs given.
    if unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading the descriptor limit");
    }
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("lowering the descriptor limit");
    }
    Ok(old)
}
