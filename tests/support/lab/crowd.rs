//! Crowds: tens of thousands of sockets for benchmarks and scale tests.
//!
//! [`Lab::crowd`] holds N ESTABLISHED sockets (both ends of N/2 connections) in forked child
//! processes, because one process may hold at most `RLIMIT_NOFILE` descriptors (20,000 on
//! the project's machines). The children live until the lab is dropped.
//! [`Lab::time_wait_crowd`] leaves N TIME_WAIT sockets, which need no descriptors at all.
//!
//! Addresses: every crowd connects to its own listeners on 127.0.0.1 from explicitly bound
//! sources in 127.1.0.0/16 (ESTABLISHED) or 127.2.0.0/16 (TIME_WAIT), ports 10000 and up, so
//! that the 4-tuples are known in advance and never compete with the kernel's ephemeral
//! ports (32768–60999). Tests must leave those two /16s to the crowds.

use std::cell::{Cell, RefCell};
use std::io::{self, ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::Socket;

use super::ss::{Entry, TcpState};
use super::states::{settle, tcp_socket};
use super::{LISTEN_BACKLOG, Lab, SETTLE};

/// The first source port of every shard.
const FIRST_PORT: u16 = 10_000;

/// Descriptors a holder keeps for other things than its connections: stdin/out/err, its
/// listener, its report pipe, and a margin.
const RESERVED_DESCRIPTORS: u64 = 64;

/// How long all holders together may take to build their connections.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// How many connections a holder opens before accepting them. Below the accept backlog, so
/// that no handshake is dropped for want of room in the accept queue.
const ACCEPT_BATCH: u32 = 1024;

/// ESTABLISHED sockets held by child processes of the lab.
pub struct Crowd {
    shards: Vec<Shard>,
    holders: Vec<libc::pid_t>,
}

/// The connections of one holder: from `source`, ports `FIRST_PORT..FIRST_PORT + count`, to
/// `listener`.
#[derive(Clone, Copy, Debug)]
struct Shard {
    listener: SocketAddrV4,
    source: Ipv4Addr,
    count: u16,
}

impl Shard {
    fn clients(self) -> impl Iterator<Item = SocketAddrV4> {
        (0..self.count).map(move |offset| SocketAddrV4::new(self.source, FIRST_PORT + offset))
    }
}

impl Crowd {
    /// How many ESTABLISHED sockets it holds (twice its connections).
    pub fn sockets(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| 2 * usize::from(shard.count))
            .sum()
    }

    /// The process ids of the children that hold them.
    pub fn holders(&self) -> &[libc::pid_t] {
        &self.holders
    }

    /// The listeners' addresses. The listeners themselves are held by the children too, so
    /// `ss` lists each as LISTEN.
    pub fn listeners(&self) -> Vec<SocketAddrV4> {
        self.shards.iter().map(|shard| shard.listener).collect()
    }

    /// What `ss` lists for it: both ends of every connection, ESTABLISHED, and each listener.
    pub fn entries(&self) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(self.sockets() + self.shards.len());
        for shard in &self.shards {
            let server = SocketAddr::V4(shard.listener);
            entries.push(Entry {
                state: TcpState::Listen,
                local: server,
                peer: None,
            });
            for client in shard.clients().map(SocketAddr::V4) {
                entries.push(Entry::connected(TcpState::Established, client, server));
                entries.push(Entry::connected(TcpState::Established, server, client));
            }
        }
        entries
    }
}

/// TIME_WAIT sockets left by connections closed actively from their client side.
pub struct TimeWaitCrowd {
    shards: Vec<Shard>,
}

impl TimeWaitCrowd {
    pub fn sockets(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| usize::from(shard.count))
            .sum()
    }

    /// What `ss` lists for it: one TIME-WAIT entry per connection, on the client side.
    pub fn entries(&self) -> Vec<Entry> {
        self.shards
            .iter()
            .flat_map(|shard| {
                let server = SocketAddr::V4(shard.listener);
                shard.clients().map(move |client| {
                    Entry::connected(TcpState::TimeWait, SocketAddr::V4(client), server)
                })
            })
            .collect()
    }
}

/// The lab's child processes, killed and reaped when the lab is dropped, and the count of
/// source addresses handed out so far.
#[derive(Default)]
pub struct Holders {
    children: RefCell<Vec<libc::pid_t>>,
    sources_used: Cell<u32>,
}

impl Holders {
    /// The next unused source address in 127.`second`.0.0/16: 127.`second`.0.1 … .250, then
    /// 127.`second`.1.1, ….
    fn next_source(&self, second: u8) -> Result<Ipv4Addr> {
        let index = self.sources_used.get();
        self.sources_used.set(index + 1);
        let third =
            u8::try_from(index / 250).context("the crowds used up 64,000 source addresses")?;
        let fourth = (index % 250) as u8 + 1;
        Ok(Ipv4Addr::new(127, second, third, fourth))
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        let children = self.children.take();
        for &pid in &children {
            // SAFETY: kill only reads its arguments; `pid` is our own unreaped child, so the
            // number cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for pid in children {
            let mut status = 0;
            // SAFETY: waitpid writes one int, which lives for the whole call.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
    }
}

impl Lab {
    /// `sockets` ESTABLISHED sockets (an even number: both ends of `sockets / 2` connections)
    /// held by child processes until the lab is dropped, plus one listener per child.
    ///
    /// Raises this process's soft descriptor limit to the hard limit (children inherit it)
    /// and gives each child as many connections as that allows. Every socket is set to
    /// linger 0, so that killing a child resets its connections instead of leaving tens of
    /// thousands of TIME_WAIT behind. On the project's 2-core machine, 100,000 sockets take
    /// about a second or two.
    pub fn crowd(&self, sockets: usize) -> Result<Crowd> {
        if !sockets.is_multiple_of(2) {
            bail!("a crowd holds both ends of each connection: {sockets} is odd");
        }
        let connections = sockets / 2;
        let limit = raise_descriptor_limit()?;
        let per_holder =
            (limit.saturating_sub(RESERVED_DESCRIPTORS) / 2).min(u64::from(u16::MAX - FIRST_PORT));
        let per_holder = usize::try_from(per_holder).context("descriptor limit")?;
        if per_holder == 0 {
            bail!("a descriptor limit of {limit} leaves no room for connections");
        }
        let holder_count = connections.div_ceil(per_holder);
        let mut shards = Vec::with_capacity(holder_count);
        let mut reports = Vec::with_capacity(holder_count);
        let mut holders = Vec::with_capacity(holder_count);
        for index in 0..holder_count {
            // Spread evenly: the first `connections % holder_count` holders take one more.
            let count =
                connections / holder_count + usize::from(index < connections % holder_count);
            let count = u16::try_from(count).context("too many connections for one holder")?;
            let source = self.holders.next_source(1)?;
            let (shard, report, pid) = self.fork_holder(source, count)?;
            shards.push(shard);
            holders.push(pid);
            reports.push((shard, report));
        }
        let deadline = Instant::now() + BUILD_TIMEOUT;
        for (shard, report) in reports {
            await_report(report, deadline).with_context(|| {
                format!(
                    "holder of {} connections from {} to {}",
                    shard.count, shard.source, shard.listener
                )
            })?;
        }
        Ok(Crowd { shards, holders })
    }

    /// Forks a child that connects `count` clients from `source` to a new listener, accepts
    /// them, and holds everything until it is killed. Returns at once; the child writes to
    /// the returned pipe when it is done.
    fn fork_holder(&self, source: Ipv4Addr, count: u16) -> Result<(Shard, OwnedFd, libc::pid_t)> {
        let listener = tcp_socket(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        let listener_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        listener
            .bind(&listener_addr.into())
            .context("binding a crowd listener")?;
        listener
            .listen(LISTEN_BACKLOG as i32)
            .context("listening for a crowd")?;
        let listener_addr = match listener.local_addr()?.as_socket() {
            Some(SocketAddr::V4(addr)) => addr,
            other => bail!("crowd listener has address {other:?}"),
        };
        let (report_read, report_write) = pipe()?;
        let plan = HolderPlan {
            listener_fd: listener.as_raw_fd(),
            report_fd: report_write.as_raw_fd(),
            listener: sockaddr_in(listener_addr),
            source: u32::from(source).to_be(),
            count: u32::from(count),
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
        };
        // SAFETY: the child runs only `hold_connections`, which makes raw system calls on
        // values computed before the fork, without allocating or locking, and ends in _exit:
        // safe after fork in a multithreaded process.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()).context("forking a crowd holder"),
            0 => hold_connections(&plan),
            pid => {
                self.holders.children.borrow_mut().push(pid);
                // The parent's copies: the child holds the listener and the write end now.
                drop(listener);
                drop(report_write);
                let shard = Shard {
                    listener: listener_addr,
                    source,
                    count,
                };
                Ok((shard, report_read, pid))
            }
        }
    }

    /// `sockets` TIME_WAIT sockets, each the client end of a connection closed by its client
    /// first. Built in this process in batches that fit the descriptor limit, then all
    /// descriptors are closed; returns once every one of them is TIME_WAIT. Raises
    /// `net.ipv4.tcp_max_tw_buckets` if needed (above it the kernel destroys sockets instead
    /// of keeping them in TIME_WAIT). They last 60 s. About 60 µs per socket: 50,000 took
    /// 2.9 s on the project's 2-core machine.
    pub fn time_wait_crowd(&self, sockets: usize) -> Result<TimeWaitCrowd> {
        let buckets: usize = self
            .sysctl("net.ipv4.tcp_max_tw_buckets")?
            .parse()
            .context("parsing net.ipv4.tcp_max_tw_buckets")?;
        let wanted = self.ss_count(TcpState::TimeWait)? + sockets + 1024;
        if buckets < wanted {
            self.set_sysctl("net.ipv4.tcp_max_tw_buckets", wanted)?;
        }
        let limit = raise_descriptor_limit()?;
        let per_batch = (limit.saturating_sub(RESERVED_DESCRIPTORS + 1024) / 2).min(8192);
        let per_batch = usize::try_from(per_batch).context("descriptor limit")?;
        if per_batch == 0 {
            bail!("a descriptor limit of {limit} leaves no room for connections");
        }
        let listener = tcp_socket(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        listener
            .bind(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into())
            .context("binding the TIME_WAIT crowd's listener")?;
        listener
            .listen(LISTEN_BACKLOG as i32)
            .context("listening for the TIME_WAIT crowd")?;
        let listener_addr = match listener.local_addr()?.as_socket() {
            Some(SocketAddr::V4(addr)) => addr,
            other => bail!("TIME_WAIT crowd listener has address {other:?}"),
        };
        let mut shards = Vec::new();
        let mut left = sockets;
        while left > 0 {
            let count = left.min(per_batch);
            let shard = Shard {
                listener: listener_addr,
                source: self.holders.next_source(2)?,
                count: u16::try_from(count).context("batch size")?,
            };
            close_actively(&listener, shard)?;
            shards.push(shard);
            left -= count;
        }
        Ok(TimeWaitCrowd { shards })
    }
}

/// Connects one batch of clients, accepts them, closes the clients first and then the
/// servers; returns once each server has had its FIN acknowledged, which the client does on
/// entering TIME_WAIT.
fn close_actively(listener: &Socket, shard: Shard) -> Result<()> {
    let mut clients = Vec::with_capacity(usize::from(shard.count));
    for client_addr in shard.clients() {
        let client = tcp_socket(IpAddr::V4(*client_addr.ip()))?;
        client
            .bind(&client_addr.into())
            .with_context(|| format!("binding a client to {client_addr}"))?;
        client
            .connect(&shard.listener.into())
            .with_context(|| format!("connecting {client_addr} to {}", shard.listener))?;
        clients.push(client);
    }
    let mut servers = Vec::with_capacity(clients.len());
    for _ in 0..clients.len() {
        let (server, _) = listener
            .accept()
            .context("accepting a TIME_WAIT crowd client")?;
        servers.push(server);
    }
    drop(clients);
    for server in &servers {
        server
            .set_read_timeout(Some(SETTLE))
            .context("setting a read timeout")?;
        let mut buffer = [0u8; 64];
        loop {
            match (&*server).read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error).context("waiting for a client's FIN"),
            }
        }
        server
            .shutdown(std::net::Shutdown::Write)
            .context("closing a server's side")?;
    }
    for server in &servers {
        settle(server, TcpState::Close, "server")?;
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns it.
fn raise_descriptor_limit() -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write one rlimit, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error()).context("reading RLIMIT_NOFILE");
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error())
                .context("raising RLIMIT_NOFILE to its hard limit");
        }
    }
    Ok(limit.rlim_cur)
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `ends`.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error()).context("creating a report pipe");
    }
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) })
}

fn sockaddr_in(address: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*address.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Waits for a holder's report: the first step that failed and its errno, or success.
fn await_report(report: OwnedFd, deadline: Instant) -> Result<()> {
    let mut poll = libc::pollfd {
        fd: report.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: poll reads and writes one pollfd, which lives for the whole call.
        match unsafe { libc::poll(&mut poll, 1, millis) } {
            0 => bail!("it did not finish within {BUILD_TIMEOUT:?}"),
            ready if ready > 0 => break,
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != ErrorKind::Interrupted {
                    return Err(error).context("waiting for a holder");
                }
            }
        }
    }
    let mut bytes = [0u8; 8];
    std::fs::File::from(report)
        .read_exact(&mut bytes)
        .context("it died before reporting")?;
    let (step, errno) = bytes.split_at(4);
    let step = u32::from_ne_bytes(step.try_into().context("report size")?);
    let errno = i32::from_ne_bytes(errno.try_into().context("report size")?);
    if step == 0 {
        return Ok(());
    }
    let step =
        Step::from_number(step).with_context(|| format!("it reported unknown step {step}"))?;
    Err(io::Error::from_raw_os_error(errno)).with_context(|| format!("its step {step:?} failed"))
}

/// Everything a holder needs, computed before the fork so that the child allocates nothing.
#[derive(Clone, Copy)]
struct HolderPlan {
    listener_fd: RawFd,
    report_fd: RawFd,
    listener: libc::sockaddr_in,
    /// In network byte order.
    source: u32,
    count: u32,
    parent: libc::pid_t,
}

/// The holder's steps, as reported to the parent when one fails.
#[derive(Clone, Copy, Debug)]
#[repr(u32)]
enum Step {
    Prepare = 1,
    Socket,
    Bind,
    Linger,
    Connect,
    Accept,
}

impl Step {
    /// The step numbered `number`; none for 0, which reports success.
    fn from_number(number: u32) -> Option<Step> {
        [
            Step::Prepare,
            Step::Socket,
            Step::Bind,
            Step::Linger,
            Step::Connect,
            Step::Accept,
        ]
        .into_iter()
        .find(|step| *step as u32 == number)
    }
}

/// The body of a forked holder; never returns.
///
/// Only raw system calls on the plan's plain values: the child of a multithreaded process
/// may find the allocator or any other lock held by a thread that does not exist in it.
fn hold_connections(plan: &HolderPlan) -> ! {
    let (step, errno) = match build(plan) {
        Ok(()) => (0, 0),
        Err((step, errno)) => (step as u32, errno),
    };
    let mut report = [0u8; 8];
    report[..4].copy_from_slice(&step.to_ne_bytes());
    report[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: raw system calls on plain values; _exit ends the child without running the
    // parent's exit handlers or destructors.
    unsafe {
        libc::write(plan.report_fd, report.as_ptr().cast(), report.len());
        libc::close(plan.report_fd);
        if step != 0 {
            libc::_exit(1);
        }
        loop {
            libc::pause();
        }
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Connects and accepts the plan's connections; on failure, which step failed and errno.
fn build(plan: &HolderPlan) -> Result<(), (Step, i32)> {
    // SAFETY: raw system calls on plain values and descriptors this child owns; every
    // pointer passed points at a local that outlives the call.
    unsafe {
        // Die with the thread that forked us: if the test process dies, so do its holders.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != plan.parent
        {
            return Err((Step::Prepare, errno()));
        }
        // Close every descriptor inherited from the parent but the two we need: other tests'
        // sockets would otherwise stay open here (close() on them would not close them).
        close_all_but(plan.listener_fd, plan.report_fd).map_err(|errno| (Step::Prepare, errno))?;

        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let set_linger = |fd: RawFd| {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        let mut connected = 0u32;
        let mut accepted = 0u32;
        while accepted < plan.count {
            let batch_end = plan.count.min(connected + ACCEPT_BATCH);
            while connected < batch_end {
                let client = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                if client < 0 {
                    return Err((Step::Socket, errno()));
                }
                if set_linger(client) != 0 {
                    return Err((Step::Linger, errno()));
                }
                // `count` was checked to fit below u16::MAX - FIRST_PORT.
                let port = (u32::from(FIRST_PORT) + connected) as u16;
                let source = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: port.to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: plan.source,
                    },
                    sin_zero: [0; 8],
                };
                let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                if libc::bind(client, (&raw const source).cast(), length) != 0 {
                    return Err((Step::Bind, errno()));
                }
                // Blocking: on loopback it returns once the handshake is done.
                if libc::connect(client, (&raw const plan.listener).cast(), length) != 0 {
                    return Err((Step::Connect, errno()));
                }
                connected += 1;
            }
            while accepted < connected {
                let server = libc::accept4(
                    plan.listener_fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                );
                if server < 0 {
                    if errno() == libc::EINTR {
                        continue;
                    }
                    return Err((Step::Accept, errno()));
                }
                if set_linger(server) != 0 {
                    return Err((Step::Linger, errno()));
                }
                accepted += 1;
            }
        }
    }
    Ok(())
}

/// Closes every descriptor from 3 up except `keep_a` and `keep_b`; errno on failure.
///
/// # Safety
/// Closes descriptors behind the back of whoever owns them: only for a freshly forked child.
pub(super) unsafe fn close_all_but(keep_a: RawFd, keep_b: RawFd) -> Result<(), i32> {
    let mut keep = [keep_a, keep_b].map(|fd| u32::try_from(fd).unwrap_or(0));
    keep.sort_unstable();
    let mut first = 3u32;
    for kept in keep {
        if kept > first {
            // SAFETY: see the function's contract.
            if unsafe { libc::close_range(first, kept - 1, 0) } != 0 {
                return Err(errno());
            }
        }
        first = first.max(kept.saturating_add(1));
    }
    // SAFETY: see the function's contract.
    if unsafe { libc::close_range(first, u32::MAX, 0) } != 0 {
        return Err(errno());
    }
    Ok(())
}
