//! The CLOSE_WAIT leak detector against real processes in a lab namespace: a server
//! that never closes the connections its clients closed is flagged as growing, and one
//! that closes them is not: by the watcher itself, in `--serve`'s metrics, and in the
//! interactive view (through a pseudo-terminal).
//!
//! The servers are small `perl` programs (perl-base is essential on Debian and
//! Ubuntu) so that each is its own process, as a leaking service would be. The test
//! enters its own lab and fails, never skips, without root.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};
use tcpscope::filter::Filter;
use tcpscope::kernel::procfs::ProcessMap;
use tcpscope::kernel::sockdiag::SockDiag;
use tcpscope::watch::{LeakWatcher, Owner};

use crate::support::lab::{Lab, SETTLE, TcpState};
use crate::support::tcpscope_command;
use crate::support::{lab, pty, scrape};

/// Accepts connections, greets each with one byte, and keeps them all open forever:
/// every connection its client closes stays in CLOSE_WAIT.
const LEAKY: &str = r#"
use IO::Socket::INET;
my $l = IO::Socket::INET->new(LocalAddr => $ARGV[0], Listen => 128, ReuseAddr => 1) or die "listen: $!";
my @kept;
while (my $c = $l->accept) { syswrite($c, "a"); push @kept, $c; }
"#;

/// Accepts connections, greets each with one byte, reads until the client closes, and
/// closes too.
const TIDY: &str = r#"
use IO::Socket::INET;
my $l = IO::Socket::INET->new(LocalAddr => $ARGV[0], Listen => 128, ReuseAddr => 1) or die "listen: $!";
while (my $c = $l->accept) { syswrite($c, "a"); my $b; while (sysread($c, $b, 4096)) {} close $c; }
"#;

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(lab: &Lab, program: &str, addr: &str) -> Result<Server> {
        let addr: SocketAddr = addr.parse()?;
        let child = Command::new("perl")
            .args(["-e", program, &addr.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .context("starting a perl server")?;
        let server = Server { child, addr };
        lab::ss::wait_until(SETTLE, &format!("a listener on {addr}"), || {
            let listening = lab
                .ss_entries()?
                .iter()
                .any(|e| e.state == TcpState::Listen && e.local == addr);
            Ok(if listening {
                lab::ss::Probe::Done(())
            } else {
                lab::ss::Probe::NotYet("no listener yet".into())
            })
        })?;
        Ok(server)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Opens a connection, waits until the server has accepted it (its greeting
    /// arrives), and closes it from the client's side.
    fn connect_and_close(&self) -> Result<()> {
        let mut client = TcpStream::connect(self.addr)?;
        client.set_read_timeout(Some(SETTLE))?;
        let mut greeting = [0u8; 1];
        client
            .read_exact(&mut greeting)
            .context("waiting for the server to accept")?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_process_accumulating_close_wait_is_flagged_and_one_closing_its_sockets_is_not() -> Result<()> {
    let lab = Lab::enter()?;
    let leaky = Server::start(&lab, LEAKY, "127.0.0.1:7301")?;
    let tidy = Server::start(&lab, TIDY, "127.0.0.1:7302")?;
    let mut diag = SockDiag::open()?;
    let mut watcher = LeakWatcher::new(3);
    let mut last = None;
    for poll in 1..=5 {
        leaky.connect_and_close()?;
        tidy.connect_and_close()?;
        // Only the leaky server's connections stay in CLOSE_WAIT; the tidy one's
        // leave it as soon as the server reads the end of the stream.
        lab.wait_for_count(TcpState::CloseWait, poll, SETTLE)?;
        let snapshot = diag.snapshot(&Filter::default())?;
        let processes = ProcessMap::scan()?;
        last = Some(
            watcher.observe(SystemTime::now(), &snapshot.sockets, |inode| {
                processes.lookup(inode).map(|process| Owner {
                    pid: process.pid,
                    name: process.name.clone(),
                })
            }),
        );
        thread::sleep(Duration::from_millis(20));
    }
    let leaks = last.context("no poll")?;

    let flagged: Vec<_> = leaks.growing_processes().collect();
    ensure!(
        flagged.len() == 1,
        "exactly one process flagged: {leaks:#?}"
    );
    let row = flagged[0];
    let owner = row.owner.as_ref().context("the leaky server is known")?;
    ensure!(owner.pid == leaky.pid() && owner.name == "perl", "{row:?}");
    ensure!(row.close_wait == 5 && row.local_ports == [7301], "{row:?}");
    ensure!(
        row.oldest >= Duration::from_millis(60),
        "the first CLOSE_WAIT was seen four polls ago: {row:?}"
    );
    ensure!(
        !leaks
            .processes
            .iter()
            .any(|p| p.owner.as_ref().is_some_and(|o| o.pid == tidy.pid())),
        "the tidy server holds no CLOSE_WAIT: {leaks:#?}"
    );
    let port = &leaks.ports[0];
    ensure!(
        port.local_port == 7301 && port.close_wait == 5 && port.growing,
        "{port:?}"
    );

    // The one-shot JSON carries the same counts (a single reading: nothing growing).
    let output = tcpscope_command(&["--json", "-p"]).output()?;
    ensure!(output.status.success(), "{output:?}");
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let section = &document["close_wait_leaks"];
    let processes = section["processes"].as_array().context("processes")?;
    ensure!(processes.len() == 1, "{section}");
    ensure!(
        processes[0]["pid"] == leaky.pid() && processes[0]["close_wait"] == 5,
        "{section}"
    );
    ensure!(processes[0]["growing"] == false, "{section}");
    ensure!(section["ports"][0]["local_port"] == 7301, "{section}");
    Ok(())
}

/// How long a test keeps the leaky server leaking before it gives up on seeing it
/// flagged: the process is named by a process scan, which tcpscope repeats at most every
/// 10 s while CLOSE_WAIT sockets have unknown owners, so the second scan (the first that
/// sees the count grow) comes 10 s after the first CLOSE_WAIT socket.
const LEAK_DEADLINE: Duration = Duration::from_secs(40);

/// Both servers in a lab, each given a connection that its client closes about every
/// 300 ms, until `flagged` says so or [`LEAK_DEADLINE`] passes. Returns how many
/// connections each server was given.
fn leak_until(
    leaky: &Server,
    tidy: &Server,
    mut flagged: impl FnMut() -> Result<bool>,
) -> Result<usize> {
    let started = Instant::now();
    let mut given = 0;
    while started.elapsed() < LEAK_DEADLINE {
        leaky.connect_and_close()?;
        tidy.connect_and_close()?;
        given += 1;
        if flagged()? {
            return Ok(given);
        }
        thread::sleep(Duration::from_millis(300));
    }
    anyhow::bail!("not flagged within {LEAK_DEADLINE:?} ({given} connections each)")
}

#[test]
fn serve_flags_the_process_accumulating_close_wait_in_its_metrics_and_not_the_tidy_one()
-> Result<()> {
    let lab = Lab::enter()?;
    let leaky = Server::start(&lab, LEAKY, "127.0.0.1:7311")?;
    let tidy = Server::start(&lab, TIDY, "127.0.0.1:7312")?;
    let server = scrape::Server::start("[::1]:0", &["-4", "-p", "--interval", "200ms"])?;
    let leaky_pid = leaky.pid().to_string();
    let tidy_pid = tidy.pid().to_string();
    let process = [("pid", leaky_pid.as_str()), ("process", "perl")];
    let given = leak_until(&leaky, &tidy, || {
        let metrics = server.scrape()?;
        Ok(metrics.value("tcpscope_process_close_wait_growing", &process) == Some(1.0))
    })?;
    lab.wait_for_count(TcpState::CloseWait, given, SETTLE)?;
    let port = [("local_port", "7311")];
    let metrics = server.wait_for("every CLOSE_WAIT socket on :7311", |m| {
        m.value("tcpscope_close_wait_sockets", &port) == Some(given as f64)
    })?;
    ensure!(
        metrics.value("tcpscope_close_wait_growing", &port) == Some(1.0),
        "{}",
        metrics.text
    );
    ensure!(
        metrics
            .value("tcpscope_close_wait_oldest_seconds", &port)
            .is_some_and(|age| age >= 5.0),
        "the first CLOSE_WAIT socket is seconds old:\n{}",
        metrics.text
    );
    ensure!(
        metrics
            .value("tcpscope_process_close_wait_sockets", &process)
            .is_some_and(|count| count >= 2.0),
        "{}",
        metrics.text
    );
    // The tidy server's sockets leave CLOSE_WAIT at once: no series, nothing growing.
    ensure!(
        metrics
            .value("tcpscope_close_wait_sockets", &[("local_port", "7312")])
            .is_none(),
        "{}",
        metrics.text
    );
    ensure!(
        metrics
            .value("tcpscope_process_close_wait_sockets", &[("pid", &tidy_pid)])
            .is_none(),
        "{}",
        metrics.text
    );
    let (status, _) = server.terminate()?;
    ensure!(status.success(), "{status}");
    Ok(())
}

#[test]
fn the_view_flags_the_process_accumulating_close_wait_and_not_the_tidy_one() -> Result<()> {
    let lab = Lab::enter()?;
    let leaky = Server::start(&lab, LEAKY, "127.0.0.1:7321")?;
    let tidy = Server::start(&lab, TIDY, "127.0.0.1:7322")?;
    let mut command = tcpscope_command(&[]);
    command.args(["-4", "--interval", "200ms"]);
    let mut terminal = pty::Terminal::spawn(command, 120, 40)?;
    terminal.wait_for(SETTLE * 3, "the view", |screen| screen.contains("q quit"))?;
    let leaky_holder = format!("{}/perl", leaky.pid());
    let flagged = |screen: &str| {
        screen
            .lines()
            .next()
            .is_some_and(|tabs| tabs.contains("close_wait_leak"))
            && screen.contains(&leaky_holder)
            && screen.contains("application not closing sockets")
    };
    leak_until(&leaky, &tidy, || Ok(flagged(&terminal.contents())))?;
    let screen = terminal.contents();
    let line = screen
        .lines()
        .find(|line| line.contains(&leaky_holder))
        .unwrap_or_default();
    ensure!(line.contains("on :7321"), "{screen}");
    ensure!(
        !screen.contains(&format!("{}/perl", tidy.pid())) && !screen.contains(":7322"),
        "the tidy server shows in the CLOSE_WAIT panel:\n{screen}"
    );
    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}
