//! Cgroup v2 groups for a test, and worker processes placed in them that open, accept
//! and close sockets on command.
//!
//! A socket belongs to the cgroup of the task that created it (accepted sockets to
//! their listener's), so the sockets must come from processes inside the groups: each
//! [`Worker`] is forked from the lab's thread (so it is in the lab's network
//! namespace), waits until the test has moved it into its cgroup (`cgroup.procs`),
//! then obeys commands over a pipe with raw system calls only (it was forked from a
//! multithreaded process). [`Cgroups`] removes its groups, after killing the workers,
//! when dropped.

use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::crowd::close_all_but;
use super::{LISTEN_BACKLOG, Lab};

/// Sockets one worker can hold.
const SLOTS: usize = 32;

/// Where cgroup2 is mounted, from `/proc/self/mountinfo`. Panics, loudly, when there is
/// none: a test of cgroup grouping must not pass without cgroups.
pub fn cgroup2_mount() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let found = mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(before.split(' ').nth(4)?))
    });
    match found {
        Some(mount) => mount,
        None => panic!(
            "SKIPPED, NOT PASSED: this host has no cgroup2 mount in /proc/self/mountinfo, \
             so cgroup grouping cannot be tested here"
        ),
    }
}

/// Test cgroups under the cgroup2 mount, removed (with their workers killed) on drop.
pub struct Cgroups {
    mount: PathBuf,
    /// Paths under the mount: `/tcpscope-lab-<pid>-<n>-<name>`.
    paths: Vec<String>,
    workers: Vec<libc::pid_t>,
}

impl Cgroups {
    /// Creates one cgroup per name, directly under the mount's root.
    pub fn create(names: &[&str]) -> Result<Cgroups> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cgroups = Cgroups {
            mount: cgroup2_mount(),
            paths: Vec::new(),
            workers: Vec::new(),
        };
        for name in names {
            let path = format!("/tcpscope-lab-{}-{serial}-{name}", std::process::id());
            fs::create_dir(cgroups.full(&path))
                .with_context(|| format!("creating cgroup {path}"))?;
            cgroups.paths.push(path);
        }
        Ok(cgroups)
    }

    /// The path under the mount of the cgroup made for `names[index]`.
    pub fn path(&self, index: usize) -> &str {
        &self.paths[index]
    }

    fn full(&self, path: &str) -> PathBuf {
        self.mount.join(path.trim_start_matches('/'))
    }

    /// A worker in the lab's network namespace, inside cgroup `index`.
    pub fn worker(&mut self, _lab: &Lab, index: usize) -> Result<Worker> {
        let (command_read, command_write) = pipe()?;
        let (report_read, report_write) = pipe()?;
        let plan = (command_read.as_raw_fd(), report_write.as_raw_fd());
        // SAFETY: the child runs only `obey`, which makes raw system calls on values
        // computed before the fork, without allocating or locking, and ends in _exit.
        let pid = match unsafe { libc::fork() } {
            -1 => return Err(io::Error::last_os_error()).context("forking a worker"),
            0 => obey(plan.0, plan.1),
            pid => pid,
        };
        self.workers.push(pid);
        drop(command_read);
        drop(report_write);
        let procs = self.full(&self.paths[index]).join("cgroup.procs");
        fs::write(&procs, pid.to_string())
            .with_context(|| format!("moving worker {pid} into {}", procs.display()))?;
        let mut worker = Worker {
            pid,
            commands: fs::File::from(command_write),
            reports: fs::File::from(report_read),
        };
        worker.command(b'R', 0, 0).context("starting the worker")?;
        Ok(worker)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for pid in &self.workers {
            // SAFETY: plain system calls on our own children.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
                libc::waitpid(*pid, std::ptr::null_mut(), 0);
            }
        }
        for path in &self.paths {
            let full = self.full(path);
            // A cgroup empties a moment after its last process is reaped.
            for _ in 0..50 {
                if fs::remove_dir(&full).is_ok() || !full.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A process holding sockets in a test cgroup.
pub struct Worker {
    pub pid: libc::pid_t,
    commands: fs::File,
    reports: fs::File,
}

impl Worker {
    fn command(&mut self, op: u8, port: u16, slot: u8) -> Result<()> {
        let [high, low] = port.to_be_bytes();
        self.commands
            .write_all(&[op, high, low, slot])
            .context("sending a worker a command")?;
        let mut errno = [0u8; 4];
        self.reports
            .read_exact(&mut errno)
            .context("reading a worker's answer")?;
        let errno = i32::from_ne_bytes(errno);
        if errno != 0 {
            bail!(
                "worker {} failed command {:?}: {}",
                self.pid,
                op as char,
                io::Error::from_raw_os_error(errno)
            );
        }
        Ok(())
    }

    /// Listens on `address` (127.0.0.1 only), in slot 0.
    pub fn listen(&mut self, address: SocketAddrV4) -> Result<()> {
        self.command(b'L', address.port(), 0)
    }

    /// Connects to 127.0.0.1:`port` from an ephemeral port; the socket takes the next
    /// slot from 1 up.
    pub fn connect(&mut self, port: u16) -> Result<()> {
        self.command(b'C', port, 0)
    }

    /// Accepts one connection from the listener and closes it at once: the server
    /// closes first.
    pub fn accept_and_close(&mut self) -> Result<()> {
        self.command(b'A', 0, 0)
    }

    /// Shuts down the sending side of the socket in `slot`: it sends its FIN.
    pub fn shutdown(&mut self, slot: u8) -> Result<()> {
        self.command(b'S', 0, slot)
    }

    /// Closes the socket in `slot`.
    pub fn close(&mut self, slot: u8) -> Result<()> {
        self.command(b'X', 0, slot)
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `ends`.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error()).context("creating a worker pipe");
    }
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) })
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn loopback(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// The worker's life: read a command, do it, answer with 0 or an errno; then hold its
/// sockets until killed (by [`Cgroups`]' drop, or with the thread that forked it).
fn obey(commands: RawFd, reports: RawFd) -> ! {
    let mut slots = [-1 as RawFd; SLOTS];
    let mut next = 1usize;
    let address_length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: raw system calls on plain values and descriptors this child owns; every
    // pointer passed points at a local that outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
            || close_all_but(commands, reports).is_err()
        {
            libc::_exit(1);
        }
        loop {
            let mut command = [0u8; 4];
            if libc::read(commands, command.as_mut_ptr().cast(), 4) != 4 {
                // No more commands: hold the sockets until [`Cgroups`] kills us.
                loop {
                    libc::pause();
                }
            }
            let port = u16::from_be_bytes([command[1], command[2]]);
            let slot = usize::from(command[3]) % SLOTS;
            let ok = match command[0] {
                b'R' => true,
                b'L' => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                    let address = loopback(port);
                    slots[0] = fd;
                    fd >= 0
                        && libc::bind(fd, (&raw const address).cast(), address_length) == 0
                        && libc::listen(fd, LISTEN_BACKLOG as i32) == 0
                }
                b'C' => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                    let address = loopback(port);
                    if next < SLOTS {
                        slots[next] = fd;
                        next += 1;
                    }
                    fd >= 0 && libc::connect(fd, (&raw const address).cast(), address_length) == 0
                }
                b'A' => {
                    let fd = libc::accept4(slots[0], std::ptr::null_mut(), std::ptr::null_mut(), 0);
                    fd >= 0 && libc::close(fd) == 0
                }
                b'S' => libc::shutdown(slots[slot], libc::SHUT_WR) == 0,
                b'X' => libc::close(slots[slot]) == 0,
                _ => false,
            };
            let answer = if ok { 0i32 } else { errno().max(1) };
            if libc::write(reports, answer.to_ne_bytes().as_ptr().cast(), 4) != 4 {
                libc::_exit(1);
            }
        }
    }
}
