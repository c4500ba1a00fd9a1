//! Other network namespaces: naming one (`--netns NAME|PATH|PID`), finding all of them
//! (`--all-netns`), and moving the calling thread into one, the way `ip netns exec` and
//! `nsenter --net` do.
//!
//! A netlink socket belongs to the namespace it was created in, and `/proc/thread-self/net`
//! and `/proc/sys/net` follow the namespace of the thread that opens them. So the one
//! thing that makes tcpscope read another namespace is [`NetnsHandle::enter`] on the
//! thread that will open those, before it opens them; threads it spawns afterwards
//! (the poller's) start in that namespace too. Nothing here dumps sockets or reads
//! counters: that stays in [`super::sockdiag`] and [`super::procfs`].
//!
//! `/proc/<pid>/ns/net` is opened with std, not read through the `procfs` crate's
//! `Process::namespaces()`: that stats all of a process's namespaces where one is
//! wanted, and keeps only their inode numbers, while entering a namespace later needs
//! the file held open from the moment it was found.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use super::procfs::Container;
use super::procfs::container_of;

/// Where `ip netns add NAME` keeps its namespaces.
const NAMED_NAMESPACES: &str = "/run/netns";

/// A network namespace as the outputs label it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNamespace {
    /// The namespace's inode number (what `ls -L -i /proc/<pid>/ns/net` and `lsns`
    /// show): its identity for as long as it exists.
    pub inode: u64,
    /// A process in it, the lowest pid seen (a container's first process); 0 when the
    /// namespace was named by a path or name and no process was looked up.
    pub pid: u32,
    /// The container that process runs in, when its cgroup path names one.
    pub container: Option<Container>,
    /// Its name in `/run/netns` (`ip netns add NAME`, `ip netns attach NAME PID`).
    pub name: Option<String>,
    /// Whether it is the initial namespace, the host's: that of pid 1 (or of the
    /// kernel's threads, when pid 1 refuses to be inspected).
    pub host: bool,
}

/// How the user named a namespace on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsSpec {
    /// A name from `/run/netns` (`ip netns add`).
    Name(String),
    /// A namespace file, such as `/proc/1234/ns/net` or `/run/netns/blue`.
    Path(PathBuf),
    /// A process whose namespace to use.
    Pid(u32),
}

impl NetnsSpec {
    /// Reads `--netns`'s value: digits are a pid, anything with a `/` a path, and the
    /// rest a name from `/run/netns`.
    pub fn parse(text: &str) -> Result<NetnsSpec, String> {
        if text.is_empty() {
            return Err("an empty namespace name; give a name, a path or a pid".to_owned());
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(NetnsSpec::Pid)
                .map_err(|_| format!("'{text}' is not a process id"));
        }
        if text.contains('/') {
            return Ok(NetnsSpec::Path(PathBuf::from(text)));
        }
        if text == "." || text == ".." {
            return Err(format!("'{text}' is not a namespace name"));
        }
        Ok(NetnsSpec::Name(text.to_owned()))
    }

    /// The namespace file this names.
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsSpec::Name(name) => Path::new(NAMED_NAMESPACES).join(name),
            NetnsSpec::Path(path) => path.clone(),
            NetnsSpec::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }
}

/// Why a namespace could not be opened or entered.
#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("no network namespace at {path}{hint}", hint = not_found_hint(.path))]
    NotFound { path: String },
    #[error(
        "reading other network namespaces needs privilege (run as root, or with CAP_SYS_ADMIN and CAP_SYS_PTRACE): {what}"
    )]
    Denied {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a network namespace")]
    NotNetwork { path: String },
    #[error("cannot open the network namespace at {path}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot enter the network namespace at {path}")]
    Enter {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn not_found_hint(path: &str) -> &'static str {
    if path.starts_with(NAMED_NAMESPACES) {
        " (`ip netns list` shows the names)"
    } else if path.starts_with("/proc/") {
        " (no such process)"
    } else {
        ""
    }
}

fn denied(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// An open network namespace: holding the file keeps the namespace alive, so it can
/// be entered later even if its last process has exited.
#[derive(Debug)]
pub struct NetnsHandle {
    pub namespace: NetNamespace,
    file: File,
    path: String,
}

impl NetnsHandle {
    /// Opens the namespace `spec` names.
    pub fn open(spec: &NetnsSpec) -> Result<NetnsHandle, NetnsError> {
        let path = spec.path();
        let shown = path.display().to_string();
        let file = File::open(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => NetnsError::NotFound {
                path: shown.clone(),
            },
            _ if denied(&source) => NetnsError::Denied {
                what: format!("opening {shown}"),
                source,
            },
            _ => NetnsError::Open {
                path: shown.clone(),
                source,
            },
        })?;
        let metadata = file.metadata().map_err(|source| NetnsError::Open {
            path: shown.clone(),
            source,
        })?;
        let (pid, container) = match spec {
            NetnsSpec::Pid(pid) => (*pid, read_container(*pid)),
            _ => (0, None),
        };
        let name = match spec {
            NetnsSpec::Name(name) => Some(name.clone()),
            _ => named_namespaces().remove(&(metadata.dev(), metadata.ino())),
        };
        Ok(NetnsHandle {
            namespace: NetNamespace {
                inode: metadata.ino(),
                pid,
                container,
                name,
                host: host_inode() == Some(metadata.ino()),
            },
            file,
            path: shown,
        })
    }

    /// Moves the calling thread, and only it, into this namespace. Threads it spawns
    /// from then on start there too; sockets it opened before stay where they were.
    pub fn enter(&self) -> Result<(), NetnsError> {
        // setns needs CAP_SYS_ADMIN even into the namespace the thread is already in:
        // an unprivileged `--netns /proc/self/ns/net` has nothing to do.
        if current_inode().ok() == Some(self.namespace.inode) {
            return Ok(());
        }
        // SAFETY: setns only reads its two integer arguments; the file is open.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
            return Ok(());
        }
        let source = io::Error::last_os_error();
        Err(match source.raw_os_error() {
            Some(libc::EINVAL) => NetnsError::NotNetwork {
                path: self.path.clone(),
            },
            _ if denied(&source) => NetnsError::Denied {
                what: format!("entering {}", self.path),
                source,
            },
            _ => NetnsError::Enter {
                path: self.path.clone(),
                source,
            },
        })
    }
}

/// The distinct network namespaces of all processes and of `/run/netns`, found but
/// not held open: a namespace costs a descriptor only once [`Found::open`] is called,
/// so that a caller short of descriptors can choose which to keep.
#[derive(Debug, Default)]
pub struct Discovery {
    /// One per namespace: those of processes in the order of their lowest pid, then
    /// the named ones no process is in.
    pub namespaces: Vec<Found>,
    /// Processes whose namespace tcpscope was not allowed to see.
    pub forbidden: usize,
}

/// A namespace [`discover`] found.
#[derive(Debug, Clone)]
pub struct Found {
    pub namespace: NetNamespace,
    path: String,
}

impl Found {
    /// Opens the namespace, which holds it alive from then on. Fails if it went (its
    /// process exited and nothing else held it) or is not the one found any more.
    pub fn open(&self) -> Result<NetnsHandle, NetnsError> {
        let file = File::open(&self.path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => NetnsError::NotFound {
                path: self.path.clone(),
            },
            _ if denied(&source) => NetnsError::Denied {
                what: format!("opening {}", self.path),
                source,
            },
            _ => NetnsError::Open {
                path: self.path.clone(),
                source,
            },
        })?;
        // The pid may have been reused by a process in another namespace.
        if file.metadata().map(|m| m.ino()).ok() != Some(self.namespace.inode) {
            return Err(NetnsError::NotFound {
                path: self.path.clone(),
            });
        }
        Ok(NetnsHandle {
            namespace: self.namespace.clone(),
            file,
            path: self.path.clone(),
        })
    }
}

/// Walks `/proc/<pid>/ns/net` for every process and `/run/netns` for the named
/// namespaces, one entry per namespace (deduplicated by inode), labelled with its
/// lowest pid, that process's container, its `ip netns` name and whether it is the
/// host's.
///
/// Processes that exit during the walk are skipped; those tcpscope may not inspect are
/// counted in [`Discovery::forbidden`]. Nothing is kept open.
pub fn discover() -> io::Result<Discovery> {
    let mut pids: Vec<u32> = fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();

    let mut names = named_namespaces();
    let host = host_inode();
    let mut seen = HashSet::new();
    let mut discovery = Discovery::default();
    for pid in pids {
        let path = format!("/proc/{pid}/ns/net");
        // Stat-ing the link needs the same permission as opening it (ptrace read
        // access to the process).
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if denied(&error) => {
                discovery.forbidden += 1;
                continue;
            }
            // Exited, or a kernel thread in the middle of it: nothing to see.
            Err(_) => continue,
        };
        if !seen.insert(metadata.ino()) {
            continue;
        }
        discovery.namespaces.push(Found {
            namespace: NetNamespace {
                inode: metadata.ino(),
                pid,
                container: read_container(pid),
                name: names.remove(&(metadata.dev(), metadata.ino())),
                host: host == Some(metadata.ino()),
            },
            path,
        });
    }
    // `ip netns add` makes namespaces no process needs to be in.
    let mut unpeopled: Vec<((u64, u64), String)> = names.into_iter().collect();
    unpeopled.sort_by(|a, b| a.1.cmp(&b.1));
    for ((_, inode), name) in unpeopled {
        if !seen.insert(inode) {
            continue;
        }
        discovery.namespaces.push(Found {
            path: Path::new(NAMED_NAMESPACES)
                .join(&name)
                .display()
                .to_string(),
            namespace: NetNamespace {
                inode,
                pid: 0,
                container: None,
                name: Some(name),
                host: host == Some(inode),
            },
        });
    }
    Ok(discovery)
}

/// The namespaces `ip netns` named, by the device and inode of their namespace file:
/// the entries of `/run/netns` that are namespace bind mounts (a name whose mount went
/// is an empty file on the tmpfs, and is left out).
fn named_namespaces() -> HashMap<(u64, u64), String> {
    let Ok(own) = fs::metadata("/proc/thread-self/ns/net") else {
        return HashMap::new();
    };
    let Ok(entries) = fs::read_dir(NAMED_NAMESPACES) else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let metadata = fs::metadata(entry.path()).ok()?;
            // Every namespace file lives on the one nsfs.
            (metadata.dev() == own.dev()).then_some(())?;
            let name = entry.file_name().into_string().ok()?;
            Some(((metadata.dev(), metadata.ino()), name))
        })
        .collect()
}

/// The inode of the initial network namespace: pid 1's, or else that of pid 2 when it
/// is `kthreadd`, since the kernel's threads never leave the initial namespaces. None
/// when neither may be inspected (unprivileged).
fn host_inode() -> Option<u64> {
    if let Ok(metadata) = fs::metadata("/proc/1/ns/net") {
        return Some(metadata.ino());
    }
    let stat = fs::read_to_string("/proc/2/stat").ok()?;
    is_kthreadd(&stat).then_some(())?;
    Some(fs::metadata("/proc/2/ns/net").ok()?.ino())
}

/// Whether a `/proc/<pid>/stat` line is the kernel's thread daemon: named `kthreadd`,
/// with no parent. (A process `docker exec` put in a container has no parent in the
/// container's pid namespace either, but another name.)
fn is_kthreadd(stat: &str) -> bool {
    // The command name is in parentheses and may hold anything, a `)` included.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let name = stat.get(open + 1..close);
    let parent = stat
        .get(close + 1..)
        .and_then(|after| after.split_whitespace().nth(1));
    name == Some("kthreadd") && parent == Some("0")
}

/// The inode of the calling thread's network namespace.
pub fn current_inode() -> io::Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// The command name of process `pid` (`/proc/<pid>/comm`, as `ps` shows it), if it
/// still runs.
pub fn command_name(pid: u32) -> Option<String> {
    let comm = fs::read(format!("/proc/{pid}/comm")).ok()?;
    let name = comm.strip_suffix(b"\n").unwrap_or(&comm);
    Some(String::from_utf8_lossy(name).into_owned())
}

/// Runs `work` on a thread of its own that entered `netns` first, so that the sockets
/// it opens are that namespace's; the calling thread stays where it is.
pub fn run_in<T: Send>(
    netns: &NetnsHandle,
    work: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<T, NetnsError> {
                netns.enter()?;
                Ok(work())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn read_container(pid: u32) -> Option<Container> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    container_of(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_named_by_pid_path_or_name() {
        assert_eq!(NetnsSpec::parse("1234"), Ok(NetnsSpec::Pid(1234)));
        assert_eq!(
            NetnsSpec::parse("/proc/1/ns/net"),
            Ok(NetnsSpec::Path("/proc/1/ns/net".into()))
        );
        assert_eq!(NetnsSpec::parse("blue"), Ok(NetnsSpec::Name("blue".into())));
        assert_eq!(
            NetnsSpec::Name("blue".into()).path(),
            Path::new("/run/netns/blue")
        );
        assert_eq!(NetnsSpec::Pid(42).path(), Path::new("/proc/42/ns/net"));
    }

    #[test]
    fn names_that_would_leave_run_netns_are_refused() {
        assert!(NetnsSpec::parse("").is_err());
        assert!(NetnsSpec::parse("..").is_err());
        assert!(NetnsSpec::parse("99999999999999999999").is_err());
        // A name with a slash is a path, taken as the user wrote it.
        assert_eq!(NetnsSpec::parse("../x"), Ok(NetnsSpec::Path("../x".into())));
    }

    #[test]
    fn only_a_parentless_kthreadd_stands_for_the_kernels_threads() {
        assert!(is_kthreadd("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0"));
        assert!(
            !is_kthreadd("2 (bash) S 0 2 2 34816 2 4194560"),
            "docker exec"
        );
        assert!(
            !is_kthreadd("2 (kthreadd) S 1 2 2 0 -1 4194560"),
            "a namesake"
        );
        assert!(!is_kthreadd("2 (kthreadd"));
        assert!(!is_kthreadd(""));
    }

    #[test]
    fn a_missing_namespace_says_where_it_looked() {
        let error =
            NetnsHandle::open(&NetnsSpec::Name("tcpscope-no-such-namespace".into())).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("/run/netns/tcpscope-no-such-namespace"),
            "{message}"
        );
        assert!(message.contains("ip netns list"), "{message}");
    }

    #[test]
    fn a_file_that_is_no_namespace_cannot_be_entered() {
        let handle = NetnsHandle::open(&NetnsSpec::Path("/proc/self/stat".into())).unwrap();
        // Entering runs on a thread of its own, so that a success could not move the
        // test harness's thread anywhere.
        let result = std::thread::spawn(move || handle.enter().map_err(|e| e.to_string()))
            .join()
            .unwrap();
        let message = result.unwrap_err();
        assert!(
            message.contains("not a network namespace") || message.contains("privilege"),
            "{message}"
        );
    }
}
