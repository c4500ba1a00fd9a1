//! Which process holds each socket, for `-p`: a walk over `/proc/<pid>/fd` that maps
//! socket inodes to the process that has them open.
//!
//! This is the expensive part of `ss -p`, so the walk is one `readlink` per open file
//! descriptor with no allocation per descriptor, and a process's name is read only if
//! it holds a socket. It must not look at anything but socket links, and it must not
//! fail because a process it may not inspect, or one that exited mid-walk, is there.
//!
//! Measured on Linux 6.18, 2 vCPUs, with five `python3` processes holding 19,900
//! `socket()`s each (99.5k socket descriptors, 75 processes), timing `scan()` in a
//! release build: 340 ms, 95% of it kernel time inside `readlinkat`, against 810 ms for
//! `ss -tanp`.
//!
//! Why not the `procfs` crate: its `Process` holds a `/proc/<pid>` handle as this code
//! does, and a walk written on it (`Process::fd()`, `FDTarget::Socket`,
//! `Process::stat()`, shared out over the cores the same way) passed every test below,
//! but it is too slow for `-p`'s budget of 1.2× this walk. `Process::fd()` opens,
//! reads the link of, stats and closes every descriptor, four system calls and a few
//! allocations where this walk makes one `readlinkat` into a reused buffer, and the
//! crate has no cheaper way to read only the link. Timed alternately in one run over
//! the 100k-socket crowd of `tests/bench_snapshot.rs` (six holder processes, release
//! build, medians of 15, on a 2-vCPU machine that others were building on):
//!
//! | run | this walk | on the crate | ratio |
//! |---|---|---|---|
//! | 1 | 476 ms | 832 ms | 1.75 |
//! | 2 | 655 ms | 1,046 ms | 1.60 |
//! | 3 | 321 ms | 552 ms | 1.72 |
//!
//! End to end, `cargo test --release --test bench_snapshot` put `--json -p` at 0.095×
//! `ss -tanp` with this walk and 0.152× (1.6 times as long, missing its 0.1× target)
//! with the crate's. So the crate was removed from the dependencies. The walk on the
//! crate and its benchmark are in the project's history, in the commit "bench_proc_scan
//! times -p's /proc walk against the same walk written on the procfs crate", to time
//! again against a newer crate.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::thread;

use anyhow::Context;

use super::stat::parse_stat;
use super::sys::{self, Directory, NumberName};

/// A process that holds sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    /// The command name from `/proc/<pid>/comm`: at most 15 bytes, as `ps` shows it.
    pub name: String,
}

/// Socket inode → the process holding it, from one walk over `/proc`.
///
/// The walk is not atomic: sockets opened during it may be missing, and those closed
/// during it may linger. Threads share their process's descriptor table, so only
/// processes are walked, not threads.
#[derive(Debug, Default)]
pub struct ProcessMap {
    holders: Vec<Holder>,
    /// Index into `holders`, so a process with 100k sockets stores its name once.
    by_inode: HashMap<u32, usize>,
    skipped: usize,
}

impl ProcessMap {
    /// Walks every process in `/proc`.
    ///
    /// Processes whose descriptors the caller may not read are skipped and counted (see
    /// [`ProcessMap::is_partial`]); processes that exit during the walk are skipped
    /// silently. Other failures are errors.
    pub fn scan() -> anyhow::Result<ProcessMap> {
        Self::scan_root(c"/proc")
    }

    /// Walks `root`, laid out like `/proc`: `<pid>/fd/<fd>` links and `<pid>/comm`.
    ///
    /// Nearly all the walk's time is the kernel answering `readlink`, one call per
    /// descriptor, so the processes are shared out over the machine's cores: at 100k
    /// sockets that halves `-p`'s cost on two.
    fn scan_root(root: &CStr) -> anyhow::Result<ProcessMap> {
        let root_name = root.to_string_lossy();
        let mut pids = Directory::open(root).with_context(|| format!("listing {root_name}"))?;
        let mut numbers = Vec::new();
        while let Some(number) = pids.next_number() {
            numbers.push(number.with_context(|| format!("listing {root_name}"))?);
        }
        let workers = thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_WALKERS);
        let proc = pids.as_fd();
        let found = thread::scope(|scope| {
            let walkers: Vec<_> = (0..workers)
                .map(|worker| {
                    let share = numbers.iter().copied().skip(worker).step_by(workers);
                    scope.spawn(move || walk_share(proc, share))
                })
                .collect();
            walkers
                .into_iter()
                .map(|walker| {
                    walker.join().unwrap_or_else(|_| {
                        Err((0, io::Error::other("a /proc walker thread panicked")))
                    })
                })
                .collect::<Vec<_>>()
        });

        let mut map = ProcessMap::default();
        for share in found {
            let share = share.map_err(|(pid, error)| {
                anyhow::Error::new(error).context(format!("reading {root_name}/{pid}"))
            })?;
            for found in share {
                match found {
                    Found::Holder(holder, sockets) => map.insert(holder, &sockets),
                    Found::Forbidden => map.skipped += 1,
                }
            }
        }
        Ok(map)
    }

    /// The process holding the socket with this inode.
    ///
    /// When several processes share a socket (a listener inherited across `fork`, a
    /// descriptor passed over a Unix socket), this is the one that started first,
    /// usually the parent, so the answer does not depend on the order of the walk, and
    /// a child caught between `fork` and `exec` holding its parent's descriptors does
    /// not take the parent's sockets.
    pub fn lookup(&self, inode: u32) -> Option<&Process> {
        self.by_inode
            .get(&inode)
            .and_then(|&index| self.holders.get(index))
            .map(|holder| &holder.process)
    }

    /// The process `pid`, if it holds a socket.
    pub fn process(&self, pid: i32) -> Option<&Process> {
        self.holders
            .iter()
            .map(|holder| &holder.process)
            .find(|process| process.pid == pid)
    }

    /// Whether some processes could not be inspected, so sockets may be missing. An
    /// unprivileged user sees only their own processes' sockets.
    ///
    /// With `/proc` mounted `hidepid=invisible`, other users' processes are not even
    /// listed, and this cannot tell.
    pub fn is_partial(&self) -> bool {
        self.skipped > 0
    }

    /// How many processes could not be inspected.
    pub fn skipped_processes(&self) -> usize {
        self.skipped
    }

    /// Says how many processes could not be inspected and what would help, for a note:
    /// `3 processes could not be read (run as root to see all)`. Root may be refused
    /// too, by a security module or for a process of another user namespace; then
    /// there is nothing to suggest.
    pub fn partial_summary(&self) -> String {
        let processes = count_of_processes(self.skipped);
        format!("{processes} could not be read ({})", Self::partial_hint())
    }

    /// The same in a few words, for a status line: `3 unreadable (run as root to see
    /// all)`.
    pub fn partial_brief(&self) -> String {
        format!("{} unreadable ({})", self.skipped, Self::partial_hint())
    }

    /// What would help when processes could not be read: root, unless this is root.
    fn partial_hint() -> &'static str {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            "refused even to root"
        } else {
            "run as root to see all"
        }
    }

    /// How many socket inodes have a process.
    pub fn len(&self) -> usize {
        self.by_inode.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }

    /// A map of the given processes and the socket inodes each holds, for unit tests
    /// of what consumes a map.
    #[cfg(test)]
    pub(crate) fn of(processes: &[(i32, &str, &[u32])]) -> ProcessMap {
        let mut map = ProcessMap::default();
        for &(pid, name, sockets) in processes {
            let process = Process {
                pid,
                name: name.to_owned(),
            };
            map.insert(
                Holder {
                    process,
                    started: 0,
                },
                sockets,
            );
        }
        map
    }

    fn insert(&mut self, holder: Holder, sockets: &[u32]) {
        let index = self.holders.len();
        for &inode in sockets {
            match self.by_inode.entry(inode) {
                Entry::Vacant(slot) => {
                    slot.insert(index);
                }
                Entry::Occupied(mut slot) => {
                    let earlier = self.holders.get(*slot.get());
                    if earlier.is_none_or(|earlier| holder.came_before(earlier)) {
                        slot.insert(index);
                    }
                }
            }
        }
        self.holders.push(holder);
    }
}

/// `1 process`, `7 processes`: how notes about processes count them.
pub fn count_of_processes(count: usize) -> String {
    match count {
        1 => "1 process".to_owned(),
        count => format!("{count} processes"),
    }
}

/// A process that holds sockets, and when it started.
#[derive(Debug)]
struct Holder {
    process: Process,
    /// Clock ticks after boot, from `/proc/<pid>/stat`.
    started: u64,
}

impl Holder {
    /// Whether this process has held a socket they share longer than `other`: it started
    /// first (pids wrap around, so a child may have the lower pid), or, in the same
    /// tick, has the lower pid.
    fn came_before(&self, other: &Holder) -> bool {
        (self.started, self.process.pid) < (other.started, other.process.pid)
    }
}

/// At most this many threads walk `/proc` at once.
const MAX_WALKERS: usize = 4;

/// What the walk learned about one process it could not skip silently.
enum Found {
    Holder(Holder, Vec<u32>),
    Forbidden,
}

/// Walks one worker's share of the pids. A process that exited is left out; an error
/// other than exit or refusal stops the share, with the pid it happened at.
fn walk_share(
    proc: BorrowedFd<'_>,
    pids: impl Iterator<Item = u32>,
) -> Result<Vec<Found>, (u32, io::Error)> {
    let mut walk = Walk::new();
    let mut found = Vec::new();
    for number in pids {
        // Pids fit an i32 (pid_max is at most 2^22); a name that does not is no pid.
        let Ok(pid) = i32::try_from(number) else {
            continue;
        };
        match walk.process(proc, number) {
            Ok(None) => {}
            Ok(Some((name, started))) => found.push(Found::Holder(
                Holder {
                    process: Process { pid, name },
                    started,
                },
                std::mem::take(&mut walk.sockets),
            )),
            Err(error) if exited(&error) => {}
            Err(error) if forbidden(&error) => found.push(Found::Forbidden),
            Err(error) => return Err((number, error)),
        }
    }
    Ok(found)
}

/// The buffers reused from one process and descriptor to the next.
struct Walk {
    /// The socket inodes of the process being walked.
    sockets: Vec<u32>,
    /// Holds one link target. Socket links (`socket:[4294967295]` at most) are short;
    /// longer targets are cut, and are not sockets anyway.
    link: [u8; 64],
}

impl Walk {
    fn new() -> Walk {
        Walk {
            sockets: Vec::new(),
            link: [0; 64],
        }
    }

    /// Collects the socket inodes of process `pid` into `self.sockets`, and returns the
    /// process's name and start time if it has any.
    fn process(&mut self, proc: BorrowedFd<'_>, pid: u32) -> io::Result<Option<(String, u64)>> {
        self.sockets.clear();
        // Every later step goes through this handle: if the pid is reused mid-walk, the
        // handle still names the old process and fails, rather than read the new one.
        let process = sys::open_handle_at(proc, NumberName::new(pid).as_c_str())?;
        let mut fds = Directory::open_at(process.as_fd(), c"fd")?;

        // readlink, not stat: stat through the link asks the file's filesystem (a hung
        // NFS server would hang the scan), while readlink answers from the descriptor.
        while let Some(fd) = fds.next_number() {
            let fd_name = NumberName::new(fd?);
            match sys::read_link_at(fds.as_fd(), fd_name.as_c_str(), &mut self.link) {
                Ok(target) => self.sockets.extend(socket_inode(target)),
                // Closed between the listing and the readlink.
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {}
                Err(error) => return Err(error),
            }
        }
        if self.sockets.is_empty() {
            return Ok(None);
        }
        read_stat(process.as_fd()).map(Some)
    }
}

/// The inode of a socket descriptor's link target, `socket:[<inode>]`, read from
/// `/proc/<pid>/fd/<fd>`; `None` for any other target.
///
/// Socket inodes come from the kernel's `get_next_ino()`, an unsigned int, which is why
/// sock_diag reports them as u32.
pub fn socket_inode(target: &[u8]) -> Option<u32> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    sys::parse_decimal(digits)
}

/// A process's command name and start time, read through its `/proc/<pid>` handle.
fn read_stat(process: BorrowedFd<'_>) -> io::Result<(String, u64)> {
    // A stat line is about 300 bytes: one read.
    let mut line = Vec::with_capacity(512);
    sys::open_file_at(process, c"stat")?.read_to_end(&mut line)?;
    let stat = parse_stat(&line).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stat is not a proc_pid_stat(5) line",
        )
    })?;
    // Any bytes but NUL may be in a command name; show odd ones as U+FFFD.
    let name = String::from_utf8_lossy(stat.name).into_owned();
    Ok((name, stat.started))
}

/// The process exited during the walk (or its pid was reused).
fn exited(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// The caller may not look at the process's descriptors.
fn forbidden(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::fs::{self, File};
    use std::net::TcpListener;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{MetadataExt, symlink};
    use std::path::{Path, PathBuf};

    use super::*;

    /// The inode of a socket, as `fstat` on its descriptor reports it.
    fn inode_of(socket: &impl AsFd) -> u32 {
        let file = socket
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .and_then(|file| file.metadata());
        match file.map(|metadata| u32::try_from(metadata.ino())) {
            Ok(Ok(inode)) => inode,
            other => panic!("fstat on the socket: {other:?}"),
        }
    }

    /// What the kernel puts in this process's comm: the executable's name, cut to 15
    /// bytes.
    fn own_command_name() -> String {
        let exe = std::env::current_exe().unwrap_or_default();
        let name = exe.file_name().unwrap_or_default().as_bytes();
        String::from_utf8_lossy(&name[..name.len().min(15)]).into_owned()
    }

    #[test]
    fn a_listener_this_process_opened_is_attributed_to_this_process() {
        let listener = TcpListener::bind("127.0.0.1:0");
        let listener = listener.as_ref().map_err(|e| e.to_string());
        let inode = listener.map(inode_of);

        let map = ProcessMap::scan().map_err(|e| format!("{e:#}"));
        let found = inode
            .as_ref()
            .map(|&inode| map.as_ref().ok().and_then(|map| map.lookup(inode).cloned()));

        assert_eq!(
            found,
            Ok(Some(Process {
                pid: i32::try_from(std::process::id()).unwrap_or(0),
                name: own_command_name(),
            }))
        );
    }

    /// What a scan from an unprivileged thread saw.
    #[derive(Debug, PartialEq, Eq)]
    struct UnprivilegedScan {
        partial: bool,
        skipped_some: bool,
        own_listener: Option<i32>,
    }

    /// Runs a scan on a thread whose user ids are `nobody`'s, as `-p` run by a user.
    /// `None` when this test process is not root and so cannot switch.
    fn scan_as_nobody(inode: u32) -> Result<Option<UnprivilegedScan>, String> {
        const NOBODY: libc::uid_t = 65534;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let scan = std::thread::spawn(move || {
            // The raw syscall changes this thread's credentials only (glibc's wrapper
            // would change every thread's). Keeping saved uid 0 lets it switch back.
            // SAFETY: setresuid takes no pointers.
            if unsafe { libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, 0) } != 0 {
                return Err(format!("setresuid: {}", io::Error::last_os_error()));
            }
            let map = ProcessMap::scan().map_err(|e| format!("{e:#}"));
            // SAFETY: as above; then undo the process-wide "not dumpable" mark the
            // kernel sets when an effective uid changes.
            unsafe {
                libc::syscall(libc::SYS_setresuid, 0, 0, 0);
                libc::prctl(libc::PR_SET_DUMPABLE, 1);
            }
            map.map(|map| UnprivilegedScan {
                partial: map.is_partial(),
                skipped_some: map.skipped_processes() > 0,
                own_listener: pid_of(&map, inode),
            })
        });
        match scan.join() {
            Ok(scan) => scan.map(Some),
            Err(_) => Err("the unprivileged thread panicked".to_owned()),
        }
    }

    #[test]
    fn an_unprivileged_scan_says_it_is_partial_and_still_finds_its_own_sockets() {
        let listener = TcpListener::bind("127.0.0.1:0");
        let inode = listener.as_ref().map(inode_of).map_err(|e| e.to_string());

        let scan = inode.and_then(scan_as_nobody);

        // pid 1 and the kernel's threads belong to root, so nobody cannot see them all.
        match scan {
            Ok(None) => eprintln!("skipped: needs root to switch a thread to nobody"),
            scan => assert_eq!(
                scan,
                Ok(Some(UnprivilegedScan {
                    partial: true,
                    skipped_some: true,
                    own_listener: i32::try_from(std::process::id()).ok(),
                }))
            ),
        }
    }

    #[test]
    fn a_partial_scan_is_summed_up_in_words_suggesting_root_only_to_others() {
        let one = ProcessMap {
            skipped: 1,
            ..ProcessMap::default()
        };
        let many = ProcessMap {
            skipped: 7,
            ..ProcessMap::default()
        };
        // SAFETY: geteuid has no preconditions.
        let hint = if unsafe { libc::geteuid() } == 0 {
            "refused even to root"
        } else {
            "run as root to see all"
        };

        assert_eq!(
            (one.partial_summary(), many.partial_summary()),
            (
                format!("1 process could not be read ({hint})"),
                format!("7 processes could not be read ({hint})")
            )
        );
    }

    #[test]
    fn an_inode_no_process_holds_is_not_found() {
        let map = ProcessMap::scan().map_err(|e| format!("{e:#}"));

        // Socket inodes are never 0.
        assert_eq!(map.map(|map| map.lookup(0).cloned()), Ok(None));
    }

    #[test]
    fn only_socket_links_are_socket_inodes() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"socket:[4294967295]"), Some(u32::MAX));
        assert_eq!(socket_inode(b"socket:[4294967296]"), None);
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[12"), None);
        assert_eq!(socket_inode(b"pipe:[12345]"), None);
        assert_eq!(socket_inode(b"anon_inode:[eventpoll]"), None);
        assert_eq!(socket_inode(b"/tmp/socket:[1]"), None);
    }

    /// A directory laid out like `/proc`, removed when dropped.
    struct FakeProc {
        root: PathBuf,
    }

    impl FakeProc {
        fn new(test: &str) -> FakeProc {
            let root = std::env::temp_dir()
                .join(format!("tcpscope-fake-proc-{}-{test}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {root:?}: {e}"));
            FakeProc { root }
        }

        /// A process with these `(fd, link target)` pairs, and a `stat` with this command
        /// name unless `None`. It started `pid` ticks after boot.
        fn process(&self, pid: i32, comm: Option<&str>, fds: &[(u32, &str)]) {
            self.process_started(pid, comm, pid.unsigned_abs().into(), fds);
        }

        /// As [`FakeProc::process`], started `started` ticks after boot.
        fn process_started(&self, pid: i32, comm: Option<&str>, started: u64, fds: &[(u32, &str)]) {
            let dir = self.root.join(pid.to_string());
            let fd_dir = dir.join("fd");
            fs::create_dir_all(&fd_dir).unwrap_or_else(|e| panic!("creating {fd_dir:?}: {e}"));
            for (fd, target) in fds {
                let link = fd_dir.join(fd.to_string());
                symlink(target, &link).unwrap_or_else(|e| panic!("linking {link:?}: {e}"));
            }
            if let Some(comm) = comm {
                let path = dir.join("stat");
                let line = format!(
                    "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 \
                     {started} 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0\n"
                );
                fs::write(&path, line).unwrap_or_else(|e| panic!("writing {path:?}: {e}"));
            }
        }

        /// An empty directory at `relative`.
        fn dir(&self, relative: &str) {
            let path = self.root.join(relative);
            fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {path:?}: {e}"));
        }

        fn scan(&self) -> anyhow::Result<ProcessMap> {
            let root = CString::new(self.root.as_os_str().as_bytes())?;
            ProcessMap::scan_root(&root)
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    fn pid_of(map: &ProcessMap, inode: u32) -> Option<i32> {
        map.lookup(inode).map(|process| process.pid)
    }

    #[test]
    fn a_shared_socket_belongs_to_the_process_that_started_first_whatever_the_order() {
        let proc = FakeProc::new("shared");
        proc.process(300, Some("worker"), &[(3, "socket:[77]")]);
        proc.process(
            20,
            Some("parent"),
            &[(3, "socket:[77]"), (4, "socket:[78]")],
        );
        proc.process(4000, Some("child"), &[(5, "socket:[77]")]);

        let map = proc.scan().map_err(|e| format!("{e:#}"));

        let map = map.as_ref();
        assert_eq!(map.map(|map| pid_of(map, 77)), Ok(Some(20)));
        assert_eq!(map.map(|map| pid_of(map, 78)), Ok(Some(20)));
        assert_eq!(
            map.map(|map| map.lookup(77).map(|p| p.name.clone())),
            Ok(Some("parent".to_owned()))
        );
    }

    #[test]
    fn a_child_forked_after_pids_wrapped_around_does_not_take_its_parents_socket() {
        let proc = FakeProc::new("wrapped");
        proc.process_started(32_000, Some("server"), 500, &[(3, "socket:[40]")]);
        // Forked long after, between fork and exec: it still has the parent's descriptors.
        proc.process_started(301, Some("server"), 90_000, &[(3, "socket:[40]")]);
        // Started in the same tick: then the lower pid.
        proc.process_started(302, Some("twin"), 500, &[(3, "socket:[41]")]);
        proc.process_started(303, Some("twin"), 500, &[(3, "socket:[41]")]);

        let map = proc.scan().map_err(|e| format!("{e:#}"));

        let map = map.as_ref();
        assert_eq!(map.map(|map| pid_of(map, 40)), Ok(Some(32_000)));
        assert_eq!(map.map(|map| pid_of(map, 41)), Ok(Some(302)));
    }

    #[test]
    fn a_process_whose_stat_is_garbled_fails_the_scan_naming_it() {
        let proc = FakeProc::new("garbled");
        proc.process(10, None, &[(3, "socket:[50]")]);
        let path = proc.root.join("10/stat");
        fs::write(&path, "10 (cut").unwrap_or_else(|e| panic!("writing {path:?}: {e}"));

        let error = proc.scan().map(|_| ()).map_err(|e| format!("{e:#}"));

        let error = error.expect_err("a garbled stat was read");
        assert!(error.contains("/10") && error.contains("stat"), "{error}");
    }

    #[test]
    fn descriptors_that_are_not_sockets_are_left_out() {
        let proc = FakeProc::new("kinds");
        proc.process(
            10,
            Some("mixed"),
            &[
                (0, "/dev/null"),
                (1, "pipe:[55]"),
                (2, "anon_inode:[eventpoll]"),
                (3, "socket:[56]"),
            ],
        );

        let map = proc.scan().map_err(|e| format!("{e:#}"));

        let map = map.as_ref();
        assert_eq!(map.map(|map| map.len()), Ok(1));
        assert_eq!(map.map(|map| pid_of(map, 56)), Ok(Some(10)));
        assert_eq!(map.map(|map| pid_of(map, 55)), Ok(None));
    }

    #[test]
    fn a_process_without_sockets_never_has_its_name_read() {
        let proc = FakeProc::new("comm");
        proc.process(10, None, &[(0, "/dev/null")]);
        // A stat that cannot be read as a file: reading it would fail the scan.
        proc.dir("10/stat");

        let map = proc.scan().map_err(|e| format!("{e:#}"));

        assert_eq!(map.map(|map| map.is_empty()), Ok(true));
    }

    #[test]
    fn a_process_that_exited_mid_scan_is_skipped_without_making_the_map_partial() {
        let proc = FakeProc::new("exited");
        proc.process(10, Some("alive"), &[(3, "socket:[90]")]);
        // Listed in /proc, but gone by the time its fds are read.
        proc.dir("11");
        // Its fds were read, but it exited before its name was.
        proc.process(12, None, &[(3, "socket:[91]")]);

        let map = proc.scan().map_err(|e| format!("{e:#}"));

        let map = map.as_ref();
        assert_eq!(map.map(|map| pid_of(map, 90)), Ok(Some(10)));
        assert_eq!(map.map(|map| pid_of(map, 91)), Ok(None));
        assert_eq!(map.map(|map| map.is_partial()), Ok(false));
    }

    #[test]
    fn entries_of_proc_that_are_not_pids_are_ignored() {
        let proc = FakeProc::new("names");
        proc.process(10, Some("server"), &[(3, "socket:[5]")]);
        for name in ["self", "net", "sys"] {
            proc.dir(name);
        }

        let map = proc.scan().map_err(|e| format!("{e:#}"));

        assert_eq!(map.map(|map| pid_of(&map, 5)), Ok(Some(10)));
    }

    /// Starts a process that sleeps until killed.
    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap_or_else(|e| panic!("starting sleep: {e}"))
    }

    fn end(mut child: std::process::Child) {
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn scans_while_processes_come_and_go_all_succeed_and_find_what_stays() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

        let listener = TcpListener::bind("127.0.0.1:0");
        let inode = listener.as_ref().map(inode_of).map_err(|e| e.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicU32::new(0));
        // Real processes appear in /proc and vanish from it while the scans list it,
        // open their directories and read their links.
        let churn = std::thread::spawn({
            let (stop, started) = (Arc::clone(&stop), Arc::clone(&started));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut child) = std::process::Command::new("true").spawn() {
                        let _ = child.wait();
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });

        // A scan takes a few milliseconds and so may starting a process, but a scan
        // reads every descriptor of every process, and on a machine where other
        // processes hold 100k sockets one takes seconds. So scan until both have
        // happened often enough, not a fixed number of times or for a fixed time, so
        // that the churn really overlaps the scans.
        const ENOUGH_SCANS: usize = 5;
        const ENOUGH_PROCESSES: u32 = 30;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        let mut scans = Vec::new();
        while (scans.len() < ENOUGH_SCANS || started.load(Ordering::Relaxed) < ENOUGH_PROCESSES)
            && std::time::Instant::now() < deadline
        {
            scans.push(
                ProcessMap::scan()
                    .map(|map| inode.as_ref().ok().and_then(|&inode| pid_of(&map, inode)))
                    .map_err(|e| format!("{e:#}")),
            );
        }
        stop.store(true, Ordering::Relaxed);
        let _ = churn.join();
        let started = started.load(Ordering::Relaxed);

        let own = i32::try_from(std::process::id()).ok();
        assert_eq!(scans, vec![Ok(own); scans.len()]);
        assert!(scans.len() >= ENOUGH_SCANS, "only {} scans", scans.len());
        assert!(
            started >= ENOUGH_PROCESSES,
            "only {started} processes came and went"
        );
    }

    /// Makes the kernel hand out `pid` to the next process it starts, if it is free.
    fn next_pid_is(pid: i32) -> io::Result<()> {
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
    }

    #[test]
    fn a_handle_to_a_process_whose_pid_was_reused_fails_instead_of_reading_the_new_one() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to choose the next pid");
            return;
        }
        let proc = Directory::open(c"/proc").unwrap_or_else(|e| panic!("opening /proc: {e}"));
        let first = sleeper();
        let pid = i32::try_from(first.id()).unwrap_or(0);
        let name = NumberName::new(first.id());
        let handle = sys::open_handle_at(proc.as_fd(), name.as_c_str())
            .unwrap_or_else(|e| panic!("opening /proc/{pid}: {e}"));
        end(first);
        // Another process gets the same pid. Anything on the machine may take it
        // first, so try a few times.
        let successor = (0..50).find_map(|_| {
            next_pid_is(pid).ok()?;
            let child = sleeper();
            if i32::try_from(child.id()) == Ok(pid) {
                Some(child)
            } else {
                end(child);
                None
            }
        });
        let Some(successor) = successor else {
            panic!("pid {pid} was not handed out again in 50 tries");
        };

        let through_old = Directory::open_at(handle.as_fd(), c"fd").map(|_| ());
        let through_new =
            Directory::open(&CString::new(format!("/proc/{pid}/fd")).unwrap_or_default())
                .map(|_| ());
        let mut walk = Walk::new();
        let old_stat = read_stat(handle.as_fd());
        let walked = walk.process(proc.as_fd(), pid as u32).map(|_| ());
        end(successor);

        let error = through_old.expect_err("the old handle read the new process");
        assert!(exited(&error), "{error}");
        assert!(old_stat.is_err_and(|e| exited(&e)));
        assert!(
            through_new.is_ok() && walked.is_ok(),
            "the new process is readable"
        );
    }

    #[test]
    fn a_missing_proc_is_an_error_that_names_it() {
        let missing = Path::new("/nonexistent-tcpscope-proc");
        let root = CString::new(missing.as_os_str().as_bytes()).unwrap_or_default();

        let error = ProcessMap::scan_root(&root).map(|_| ());

        assert_eq!(
            error.map_err(|e| e.to_string()),
            Err("listing /nonexistent-tcpscope-proc".to_owned())
        );
    }
}
