//! Entering a private network namespace on the calling thread, and configuring it through
//! sysctls and `ip`.
//!
//! Everything here acts on the namespace of the *calling thread*, so it must only be called
//! from the thread that entered the lab. Nothing here may reach the host's namespace.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The calling thread's stay in a new network namespace; dropping it sends the thread home.
pub struct Namespace {
    home: File,
}

impl Namespace {
    /// Moves the calling thread, and only it, into a new, empty network namespace.
    ///
    /// `unshare(CLONE_NEWNET)` is allowed in a multithreaded process (unlike a new user or
    /// mount namespace) and changes the namespace of the calling task, which in Linux is a
    /// thread.
    pub fn enter() -> Result<Namespace> {
        // /proc/thread-self, not /proc/self: the latter is the thread group leader, which may
        // be another test's thread or already somewhere else.
        let home = File::open("/proc/thread-self/ns/net")
            .context("the lab needs root and network namespaces, and could not open this thread's namespace (/proc/thread-self/ns/net)")?;
        // SAFETY: unshare only reads its flags argument.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let error = io::Error::last_os_error();
            bail!(
                "the lab needs root and network namespaces: unshare(CLONE_NEWNET) failed: {error}. \
                 Run the tests as root (for example `sudo -E cargo test`) on a kernel with \
                 CONFIG_NET_NS, outside a sandbox that forbids unshare."
            );
        }
        Ok(Namespace { home })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Go back, so that a thread that outlives its lab (a benchmark's main thread, a harness
        // that reuses threads) does not keep building sockets in a namespace nobody sets up.
        // SAFETY: `home` is an open namespace file; setns only reads its arguments.
        if unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            eprintln!(
                "lab: could not return the thread to its network namespace: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Where a sysctl lives: `net.ipv4.conf.all.rp_filter` → `/proc/sys/net/ipv4/conf/all/rp_filter`.
fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// Sets a sysctl in the calling thread's network namespace.
///
/// A `/proc/sys/net/...` file is resolved against the namespace of the thread that opens it,
/// so a plain write from the lab thread changes the lab's copy only. (`/proc/net/...` is
/// different: it follows the process's namespace, use `/proc/thread-self/net/...`.) Host-wide
/// sysctls are not registered in a new namespace, so writing one fails here.
pub fn set_sysctl(name: &str, value: impl std::fmt::Display) -> Result<()> {
    let path = sysctl_path(name);
    std::fs::write(&path, value.to_string())
        .with_context(|| format!("setting sysctl {name} = {value} in the lab ({path})"))
}

/// Reads a sysctl in the calling thread's network namespace, trimmed.
pub fn sysctl(name: &str) -> Result<String> {
    let path = sysctl_path(name);
    let value = std::fs::read_to_string(&path)
        .with_context(|| format!("reading sysctl {name} in the lab ({path})"))?;
    Ok(value.trim().to_owned())
}

/// Runs `ip` commands (each without the leading `ip`) in the calling thread's namespace, as
/// one `ip -batch -` process; fails with `ip`'s message if any of them fails.
///
/// `ip` is spawned from this thread, so it starts in this thread's namespace.
pub fn ip(commands: &[&str]) -> Result<()> {
    let script = commands.join("\n") + "\n";
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning `ip -batch -` (is iproute2 installed?)")?;
    child
        .stdin
        .take()
        .context("ip's standard input was not piped")?
        .write_all(script.as_bytes())
        .context("writing commands to `ip -batch -`")?;
    let output = child
        .wait_with_output()
        .context("waiting for `ip -batch -`")?;
    if !output.status.success() {
        bail!(
            "`ip -batch -` failed ({}) on:\n{script}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
