//! Descriptors: tcpscope raises its soft limit on open files to the hard one at start,
//! and `--all-netns` under a limit too low for every namespace follows as many as fit
//! beside what it keeps for itself, saying once which it left out.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::support::pty;
use crate::support::stream::Stream;
use crate::support::tcpscope_command;

const STARTUP: Duration = Duration::from_secs(10);

/// Processes each alone in a new network namespace, killed when dropped.
struct Namespaces(Vec<Child>);

impl Namespaces {
    fn start(count: usize) -> Result<Namespaces> {
        let mut children = Namespaces(Vec::new());
        for _ in 0..count {
            children.0.push(
                Command::new("unshare")
                    .args(["-n", "sleep", "60"])
                    .stdin(Stdio::null())
                    .spawn()
                    .context("starting unshare -n sleep")?,
            );
        }
        Ok(children)
    }

    /// The namespaces' inodes, once every child is in its own.
    fn inodes(&self) -> Result<HashSet<u64>> {
        let own = std::fs::metadata("/proc/self/ns/net")?.ino();
        for _ in 0..100 {
            let inodes: Vec<u64> = self
                .0
                .iter()
                .filter_map(|child| std::fs::metadata(format!("/proc/{}/ns/net", child.id())).ok())
                .map(|metadata| metadata.ino())
                .filter(|inode| *inode != own)
                .collect();
            if inodes.len() == self.0.len() {
                return Ok(inodes.into_iter().collect());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("the children did not all enter namespaces of their own")
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `tcpscope --watch --json ARGS…` started with the open-files limit `soft:hard`.
fn watch_with_limit(soft: u64, hard: u64, args: &[&str]) -> Result<Stream> {
    let mut command = tcpscope_command(&["--watch", "--json"]);
    command.args(args).stderr(Stdio::piped());
    limit_open_files(&mut command, soft, hard);
    Stream::start(&mut command)
}

/// Starts `command` with the open-files limit `soft:hard`.
fn limit_open_files(command: &mut Command, soft: u64, hard: u64) {
    // SAFETY: setrlimit is async-signal-safe and only reads its argument.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn a_soft_limit_on_open_files_below_the_hard_one_is_raised_at_start() -> Result<()> {
    let mut stream = watch_with_limit(64, 4096, &["--interval", "100ms"])?;
    stream.wait_for("a counts line", STARTUP, |line| line["type"] == "counts")?;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", stream.pid()))?;
    let open_files: Vec<&str> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .context("no open-files line")?
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect();
    ensure!(
        open_files == ["4096", "4096"],
        "soft and hard limits {open_files:?}, not raised:\n{limits}"
    );
    Ok(())
}

#[test]
fn namespaces_beyond_the_descriptor_limit_are_left_out_once_and_the_rest_are_reported() -> Result<()>
{
    // Each followed namespace holds a handle and a poller's sockets: 60 of them and
    // whatever the host has do not fit in 64 descriptors.
    let children = Namespaces::start(60)?;
    let ours = children.inodes()?;
    let mut stream = watch_with_limit(64, 64, &["--all-netns", "--interval", "100ms"])?;
    stream.collect(Duration::from_secs(4))?;
    let status = stream.stop(libc::SIGTERM)?;
    let stderr = stream.stderr();
    ensure!(status.success(), "{status}: {stderr}");
    let lines: Vec<_> = stream.seen().iter().map(|line| &line.value).collect();

    let errors = lines.iter().filter(|line| line["type"] == "error").count();
    ensure!(
        errors == 0,
        "polls failed instead of namespaces being left out: {errors} error lines"
    );
    let reported: HashSet<u64> = lines
        .iter()
        .filter(|line| line["type"] == "counts")
        .filter_map(|line| line["netns"].as_u64())
        .collect();
    ensure!(!reported.is_empty(), "no namespace was reported: {stderr}");
    // Said once, with how many and the first few by name.
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("too few descriptors"))
        .collect();
    ensure!(notes.len() == 1, "{stderr}");
    ensure!(
        notes[0].contains("network namespaces") && notes[0].contains(" more"),
        "{stderr}"
    );
    let counted: usize = notes[0]
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .context("no count in the note")?;
    // Which are followed goes by pid (other tests' namespaces may come first): each
    // of the lab's was either reported or counted among those left out.
    let polled = reported.intersection(&ours).count();
    ensure!(
        polled + counted >= ours.len(),
        "{polled} of the lab's {} reported and {counted} said left out: {stderr}",
        ours.len()
    );
    drop(children);
    Ok(())
}

#[test]
fn the_view_says_on_its_status_line_which_namespaces_the_descriptors_left_out() -> Result<()> {
    let children = Namespaces::start(60)?;
    children.inodes()?;
    let mut command = tcpscope_command(&["--all-netns", "--interval", "200ms"]);
    limit_open_files(&mut command, 64, 64);
    let mut terminal = pty::Terminal::spawn(command, 240, 30)?;
    terminal.wait_for(STARTUP, "the note on the status line", |screen| {
        screen.contains("not shown ") && screen.contains("network namespaces: too few descriptors")
    })?;
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "q exited with {status}");
    drop(children);
    Ok(())
}

#[test]
fn a_one_shot_document_reads_every_namespace_under_a_limit_below_their_number() -> Result<()> {
    let children = Namespaces::start(60)?;
    let ours = children.inodes()?;
    let mut command = tcpscope_command(&["--json", "--all-netns"]);
    limit_open_files(&mut command, 32, 32);
    let output = command.output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "{}: {stderr}", output.status);
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let listed: HashSet<u64> = document["namespaces"]
        .as_array()
        .context("no namespaces array")?
        .iter()
        .filter_map(|namespace| namespace["netns"].as_u64())
        .collect();
    let missing = ours.difference(&listed).count();
    ensure!(
        missing == 0,
        "{missing} of the lab's 60 namespaces missing: {stderr}"
    );
    drop(children);
    Ok(())
}
