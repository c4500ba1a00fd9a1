//! `--netns` and `--all-netns` against two lab namespaces holding different sockets,
//! each kept alive (and listed in `/proc`) by a `sleep` process inside it, while
//! tcpscope runs in the test's own namespace: the one-shot outputs, the stream, the
//! metrics, and the interactive view in a pseudo-terminal. Fails, never skips, without
//! root.

use std::any::Any;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::Value;

use crate::support::entries::counts_of;
use crate::support::lab::{Entry, Lab, SETTLE};
use crate::support::scrape::Server;
use crate::support::stream::Stream;
use crate::support::{json, tcpscope, tcpscope_command};
use crate::support::{lab, pty};

/// How long to wait for a line of the stream or a screen of the view: long enough for a
/// rescan (every 5 s) and the first poll after it, on a loaded machine.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(20);

/// A lab namespace on a thread of its own, with its sockets and a process in it, until
/// dropped.
struct Neighbour {
    /// The `sleep` process inside, which makes `/proc/<pid>/ns/net` name the namespace.
    pid: u32,
    inode: u64,
    entries: Vec<Entry>,
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

type Held = Vec<Box<dyn Any>>;

/// Builds a lab's sockets: what `ss` should list, and what keeps them open.
type Build = fn(&Lab) -> Result<(Vec<Entry>, Held)>;

impl Neighbour {
    /// Enters a new lab on a new thread and builds its sockets with `build`.
    fn start(build: Build) -> Result<Neighbour> {
        let (ready, started) = mpsc::channel();
        let (done, finish) = mpsc::channel::<()>();
        let thread = thread::spawn(move || -> Result<()> {
            let setup = || -> Result<(Lab, Vec<Entry>, Held, Child)> {
                let lab = Lab::enter()?;
                let (entries, held) = build(&lab)?;
                lab.wait_for_exactly(&entries, SETTLE)?;
                // Spawned from the lab's thread, so it lives in the lab.
                let sleeper = Command::new("sleep").arg("600").spawn()?;
                Ok((lab, entries, held, sleeper))
            };
            match setup() {
                Ok((lab, entries, held, mut sleeper)) => {
                    let _ = ready.send(Ok((sleeper.id(), entries)));
                    let _ = finish.recv();
                    let _ = sleeper.kill();
                    let _ = sleeper.wait();
                    drop(held);
                    drop(lab);
                    Ok(())
                }
                Err(error) => {
                    let _ = ready.send(Err(format!("{error:#}")));
                    Err(error)
                }
            }
        });
        let (pid, entries) = started
            .recv()
            .context("the lab thread ended early")?
            .map_err(|error| anyhow!(error))?;
        let inode = std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino();
        Ok(Neighbour {
            pid,
            inode,
            entries,
            done: Some(done),
            thread: Some(thread),
        })
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        counts_of(&self.entries)
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        self.done.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lab A: a listener and two connections.
fn lab_a(lab: &Lab) -> Result<(Vec<Entry>, Held)> {
    let v4: IpAddr = "127.0.0.1".parse()?;
    let listener = lab.listener_v4()?;
    let first = lab.established(v4)?;
    let second = lab.established(v4)?;
    let mut entries = listener.entries();
    entries.extend(first.entries());
    entries.extend(second.entries());
    Ok((
        entries,
        vec![Box::new(listener), Box::new(first), Box::new(second)],
    ))
}

/// Lab B: a listener with ten half-open connections, a half-closed connection and a
/// TIME_WAIT.
fn lab_b(lab: &Lab) -> Result<(Vec<Entry>, Held)> {
    let v4: IpAddr = "127.0.0.1".parse()?;
    let listener = lab.listener_v4()?;
    let half_open = lab.syn_flood(listener.addr_v4()?, 10, 5)?;
    let half_closed = lab.fin_wait2_close_wait(v4)?;
    let time_wait = lab.time_wait(v4)?;
    let mut entries = listener.entries();
    entries.extend(half_open.entries());
    entries.extend(half_closed.entries());
    entries.extend(time_wait.entries());
    Ok((
        entries,
        vec![
            Box::new(listener),
            Box::new(half_open),
            Box::new(half_closed),
            Box::new(time_wait),
        ],
    ))
}

fn counts_in(value: &Value) -> BTreeMap<String, u64> {
    value
        .as_object()
        .map(|counts| {
            counts
                .iter()
                .map(|(state, n)| (state.clone(), n.as_u64().unwrap_or(u64::MAX)))
                .collect()
        })
        .unwrap_or_default()
}

/// Gives a lab's namespace a name in /run/netns for as long as it lives.
struct NamedNetns(String);

impl NamedNetns {
    fn attach(pid: u32) -> Result<NamedNetns> {
        let name = format!("tcpscope-test-{}-{pid}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "attach", &name, &pid.to_string()])
            .status()?;
        ensure!(status.success(), "ip netns attach {name} {pid} failed");
        Ok(NamedNetns(name))
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

#[test]
fn a_namespace_named_by_pid_path_or_name_shows_exactly_its_own_sockets() -> Result<()> {
    let a = Neighbour::start(lab_a)?;
    let b = Neighbour::start(lab_b)?;

    let by_pid = json(&["--json", "--netns", &a.pid.to_string()])?;
    assert_eq!(counts_in(&by_pid["counts"]), a.counts());
    let path = format!("/proc/{}/ns/net", b.pid);
    let by_path = json(&["--json", "--netns", &path])?;
    assert_eq!(counts_in(&by_path["counts"]), b.counts());
    // The sysctls are the namespace's own too: the lab raises somaxconn.
    assert_eq!(by_path["kernel"]["somaxconn"], lab::LISTEN_BACKLOG);

    let named = NamedNetns::attach(b.pid)?;
    let by_name = json(&["--json", "--netns", &named.0])?;
    assert_eq!(counts_in(&by_name["counts"]), b.counts());

    let table = tcpscope(&["--grep", "ESTABLISHED", "--netns", &a.pid.to_string()])?;
    assert_eq!(table.status.code(), Some(0));
    let rows = String::from_utf8(table.stdout)?;
    assert_eq!(rows.lines().count(), 1 + 4, "{rows}");
    let none = tcpscope(&["--grep", "SYN_RECV", "--netns", &a.pid.to_string()])?;
    assert_eq!(none.status.code(), Some(1), "A has no half-open connection");
    Ok(())
}

#[test]
fn the_stream_and_the_metrics_read_the_namespace_they_are_given() -> Result<()> {
    let a = Neighbour::start(lab_a)?;
    let b = Neighbour::start(lab_b)?;

    let mut watch = Stream::watch(&["--interval", "100ms", "--netns", &a.pid.to_string()])?;
    let first_counts = watch.wait_for("the first counts line", FOLLOW_TIMEOUT, |line| {
        line["type"] == "counts"
    })?;
    drop(watch);
    assert_eq!(counts_in(&first_counts["counts"]), a.counts());

    // The server listens here, in the test's namespace, and polls B's.
    let server = Server::start(
        "127.0.0.1:0",
        &["--interval", "100ms", "--netns", &b.pid.to_string()],
    )?;
    let metrics = server.scrape()?;
    for (state, expected) in b.counts() {
        let total: f64 = ["ipv4", "ipv6"]
            .iter()
            .filter_map(|family| {
                metrics.value(
                    "tcpscope_connections",
                    &[("state", &state), ("family", family)],
                )
            })
            .sum();
        assert_eq!(total, expected as f64, "{state}:\n{}", metrics.text);
    }
    let (status, _) = server.terminate()?;
    assert!(status.success());
    Ok(())
}

#[test]
fn all_netns_finds_both_labs_labelled_alongside_the_tests_own() -> Result<()> {
    let a = Neighbour::start(lab_a)?;
    let b = Neighbour::start(lab_b)?;
    let own = std::fs::metadata("/proc/self/ns/net")?.ino();

    let document = json(&["--json", "--all-netns"])?;
    let schema: Value = serde_json::from_str(include_str!("../../assets/tcpscope.schema.json"))?;
    let validator = jsonschema::validator_for(&schema).context("compiling the schema")?;
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let namespaces = document["namespaces"]
        .as_array()
        .context("no namespaces array")?;
    let find = |inode: u64| {
        namespaces
            .iter()
            .find(|n| n["netns"] == inode)
            .with_context(|| format!("namespace {inode} not listed"))
    };
    assert!(find(own).is_ok(), "the test's own namespace is missing");
    for neighbour in [&a, &b] {
        let entry = find(neighbour.inode)?;
        assert_eq!(entry["pid"], neighbour.pid, "labelled with its process");
        assert_eq!(entry["container"], Value::Null);
        assert_eq!(counts_in(&entry["counts"]), neighbour.counts());
        let sockets = document["sockets"]
            .as_array()
            .context("no sockets")?
            .iter()
            .filter(|s| s["netns"] == neighbour.inode)
            .count();
        assert_eq!(sockets, neighbour.entries.len());
    }
    let half_open_rows: Vec<&Value> = document["syn_watch"]["listeners"]
        .as_array()
        .context("no listeners")?
        .iter()
        .filter(|row| row["netns"] == b.inode)
        .collect();
    assert_eq!(half_open_rows.len(), 1);
    assert_eq!(half_open_rows[0]["half_open"], 10);

    let table = tcpscope(&["--grep", "ESTABLISHED", "--all-netns"])?;
    let text = String::from_utf8(table.stdout)?;
    assert!(text.starts_with("Netns "), "{text}");
    let in_a = text
        .lines()
        .filter(|line| line.starts_with(&format!("{} ", a.inode)))
        .count();
    assert_eq!(in_a, 4, "{text}");

    let server = Server::start("127.0.0.1:0", &["--interval", "100ms", "--all-netns"])?;
    let inode = b.inode.to_string();
    let pid = b.pid.to_string();
    let metrics = server.wait_for("lab B's half-open connections", |m| {
        m.value(
            "tcpscope_connections",
            &[("netns", &inode), ("state", "SYN_RECV"), ("family", "ipv4")],
        ) == Some(10.0)
    })?;
    assert_eq!(
        metrics.value("tcpscope_netns_info", &[("netns", &inode), ("pid", &pid)]),
        Some(1.0),
        "{}",
        metrics.text
    );
    let (status, _) = server.terminate()?;
    assert!(status.success());
    Ok(())
}

/// `tcpscope ARGS` as user and group 65534 (nobody), with no capabilities.
fn unprivileged(args: &[&str]) -> Command {
    let mut command = tcpscope_command(args);
    command.uid(65534).gid(65534);
    command
}

#[test]
fn without_privilege_another_namespace_is_refused_with_a_clear_message_and_status_2() -> Result<()>
{
    let a = Neighbour::start(lab_a)?;
    let pid = a.pid.to_string();
    for args in [
        &["--json", "--netns", &pid][..],
        &["--grep", "all", "--netns", &pid],
    ] {
        let output = unprivileged(args).output()?;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("needs privilege"), "{args:?}: {stderr}");
    }
    Ok(())
}

#[test]
fn without_privilege_its_own_namespace_is_read_and_all_netns_shows_what_it_can() -> Result<()> {
    let a = Neighbour::start(lab_a)?;
    let own = std::fs::metadata("/proc/self/ns/net")?.ino();

    let output = unprivileged(&["--json", "--netns", "/proc/self/ns/net"]).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let document: Value = serde_json::from_slice(&output.stdout)?;
    assert!(document["counts"].is_object(), "{document}");

    let output = unprivileged(&["--json", "--all-netns"]).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let document: Value = serde_json::from_slice(&output.stdout)?;
    let listed: Vec<u64> = document["namespaces"]
        .as_array()
        .context("no namespaces array")?
        .iter()
        .filter_map(|n| n["netns"].as_u64())
        .collect();
    assert_eq!(listed, [own], "its own namespace, and only it");
    // Lab A's process belongs to root: its namespace is one of those it could not see.
    assert!(
        stderr.contains("could not be read (permission denied)"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "said once: {stderr}");

    let mut stream = Stream::start(
        unprivileged(&["--watch", "--json", "--all-netns", "--interval", "100ms"])
            .stderr(Stdio::piped()),
    )?;
    let counts = stream.wait_for("a counts line", FOLLOW_TIMEOUT, |line| {
        line["type"] == "counts"
    })?;
    assert_eq!(counts["netns"], own);
    let status = stream.stop(libc::SIGTERM)?;
    assert!(status.success(), "{status}: {}", stream.stderr());
    drop(a);
    Ok(())
}

/// Runs `script` under `sh` in a new mount and network namespace with a private
/// `/run/netns`, so that the names `ip netns add` makes there go with it.
fn with_private_run_netns(script: &str) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["-m", "-n", "sh", "-c"])
        .arg(format!(
            "mkdir -p /run/netns && mount -t tmpfs tcpscope-lab /run/netns && {script}"
        ))
        .env("TCPSCOPE", crate::support::TCPSCOPE)
        .stdin(Stdio::null());
    command
}

#[test]
fn all_netns_calls_a_namespace_by_its_ip_netns_name_and_the_initial_one_host() -> Result<()> {
    let output = with_private_run_netns(
        "ip netns add tcpscope-blue && exec \"$TCPSCOPE\" --json --all-netns",
    )
    .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let document: Value = serde_json::from_slice(&output.stdout)?;
    let namespaces = document["namespaces"]
        .as_array()
        .context("no namespaces array")?;
    let labelled = |label: &str| namespaces.iter().find(|n| n["label"] == label);
    // `ip netns add` made it: no process is in it, the name alone holds it.
    let blue =
        labelled("tcpscope-blue").with_context(|| format!("no tcpscope-blue: {document}"))?;
    assert_eq!(blue["pid"], 0);
    let host = labelled("host").with_context(|| format!("no host: {document}"))?;
    // tcpscope ran in a namespace of its own, which is not the host's.
    let own = namespaces
        .iter()
        .find(|n| {
            n["label"]
                .as_str()
                .is_some_and(|label| label.ends_with("/tcpscope"))
        })
        .with_context(|| format!("its own namespace is not pid/tcpscope: {document}"))?;
    assert_ne!(host["netns"], own["netns"]);
    assert!(
        namespaces.iter().all(|n| n["label"]
            .as_str()
            .is_some_and(|l| !l.ends_with("/kthreadd"))),
        "{document}"
    );
    Ok(())
}

#[test]
fn the_view_of_a_named_namespace_says_which_it_shows() -> Result<()> {
    let command = with_private_run_netns(
        "ip netns add tcpscope-green && exec \"$TCPSCOPE\" --netns tcpscope-green",
    );
    let mut terminal = pty::Terminal::spawn(command, 120, 30)?;
    terminal.wait_for(
        FOLLOW_TIMEOUT,
        "the namespace in the status line",
        |screen| screen.contains("netns tcpscope-green") && screen.contains("q quit"),
    )?;
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    assert!(status.success(), "q exited with {status}");
    Ok(())
}

#[test]
fn the_metrics_follow_namespaces_that_come_and_go() -> Result<()> {
    let server = Server::start("127.0.0.1:0", &["--interval", "100ms", "--all-netns"])?;
    let a = Neighbour::start(lab_a)?;
    let inode = a.inode.to_string();
    server.wait_for("the new namespace", |m| {
        m.value(
            "tcpscope_connections",
            &[
                ("netns", &inode),
                ("state", "ESTABLISHED"),
                ("family", "ipv4"),
            ],
        ) == Some(4.0)
    })?;
    drop(a);
    server.wait_for("the namespace to be gone", |m| {
        m.samples("tcpscope_netns_info", &[("netns", &inode)])
            .next()
            .is_none()
    })?;
    let (status, _) = server.terminate()?;
    assert!(status.success());
    Ok(())
}

#[test]
fn the_stream_of_all_namespaces_names_each_lines_namespace() -> Result<()> {
    let a = Neighbour::start(lab_a)?;
    let mut watch = Stream::watch(&["--interval", "100ms", "--all-netns"])?;
    let a_counts = watch.wait_for("a counts line for lab A", FOLLOW_TIMEOUT, |line| {
        line["type"] == "counts" && line["netns"] == a.inode
    })?;
    let unlabelled = watch
        .seen()
        .iter()
        .filter(|line| line.value["netns"].as_u64().is_none())
        .count();
    drop(watch);
    assert_eq!(unlabelled, 0, "every line names its namespace");
    assert_eq!(counts_in(&a_counts["counts"]), a.counts());
    Ok(())
}

/// `--watch --netns PID` holds the namespace it reads: when the process it was named
/// by exits and the namespace's sockets close, the stream reports the closes and goes
/// on, with no error, rather than losing its namespace or reading another.
#[test]
fn a_watched_namespace_whose_processes_all_leave_is_followed_to_its_end() -> Result<()> {
    let a = Neighbour::start(lab_a)?;
    let mut watch = Stream::start(
        tcpscope_command(&["--watch", "--json", "--interval", "100ms", "--netns"])
            .arg(a.pid.to_string())
            .stderr(Stdio::piped()),
    )?;
    // The lines up to and including the first counts line that `wanted` accepts.
    let lines_until = |watch: &mut Stream, wanted: &dyn Fn(&Value) -> bool, what: &str| {
        watch
            .read_until(
                &format!("a counts line {what}"),
                Duration::from_secs(10),
                |line| line["type"] == "counts" && wanted(line),
            )
            .map(|lines| {
                lines
                    .iter()
                    .map(|line| line.value.clone())
                    .collect::<Vec<_>>()
            })
    };
    lines_until(
        &mut watch,
        &|line| line["counts"]["ESTABLISHED"] == 4,
        "with the lab's 4 ESTABLISHED",
    )?;

    // The sleeper that named the namespace exits and every socket is closed.
    drop(a);
    let mut after = lines_until(
        &mut watch,
        &|line| line["counts"]["ESTABLISHED"] == 0 && line["counts"]["LISTEN"] == 0,
        "after the closes",
    )?;
    // A few more polls of the emptied namespace, then stop.
    let more = watch.collect(Duration::from_millis(300))?;
    after.extend(more.iter().map(|line| line.value.clone()));
    let status = watch.stop(libc::SIGTERM)?;
    ensure!(status.success(), "{status}: {}", watch.stderr());
    ensure!(
        !after.iter().any(|line| line["type"] == "error"),
        "errors after the namespace emptied: {after:?}"
    );
    let closed = after
        .iter()
        .filter(|line| line["type"] == "transition" && line["from"] == "ESTABLISHED")
        .count();
    ensure!(
        closed == 4,
        "{closed} ESTABLISHED sockets reported leaving, not 4: {after:?}"
    );
    Ok(())
}

#[test]
fn the_stream_of_all_namespaces_follows_namespaces_that_come_and_go() -> Result<()> {
    let mut stream = Stream::watch(&["--interval", "100ms", "--all-netns"])?;
    // The stream is running before the namespace exists: only a rescan can find it.
    let own = std::fs::metadata("/proc/self/ns/net")?.ino();
    stream.wait_for("the test's own namespace", FOLLOW_TIMEOUT, |line| {
        line["netns"] == own
    })?;
    let a = Neighbour::start(lab_a)?;
    let inode = a.inode;
    let counts = stream.wait_for("counts of the new namespace", FOLLOW_TIMEOUT, |line| {
        line["type"] == "counts" && line["netns"] == inode
    })?;
    assert_eq!(counts_in(&counts["counts"]), a.counts());

    drop(a);
    // Within a rescan period (5 s) and a poll, it is no longer polled; lines written
    // before that are read and passed over here.
    stream.collect(Duration::from_secs(7))?;
    assert!(
        !stream
            .collect(Duration::from_secs(2))?
            .iter()
            .any(|line| line.value["netns"] == inode),
        "lines about namespace {inode} went on after it was gone"
    );
    Ok(())
}

/// The interactive view's row for namespace `inode` in the namespaces tab, as cells:
/// label, inode, then the counts in the order of the header.
fn namespace_row(screen: &str, inode: u64) -> Option<Vec<String>> {
    let inode = inode.to_string();
    screen.lines().find_map(|line| {
        let cells: Vec<String> = line
            .trim_matches(|c: char| c == '│' || c.is_whitespace())
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        (cells.get(1) == Some(&inode)).then_some(cells)
    })
}

#[test]
fn the_view_of_all_namespaces_counts_each_lab_and_names_its_connections() -> Result<()> {
    let a = Neighbour::start(lab_a)?;
    let b = Neighbour::start(lab_b)?;
    let mut command = tcpscope_command(&[]);
    command.args(["--all-netns", "--interval", "200ms"]);
    // Wide enough for every state's column.
    let mut terminal = pty::Terminal::spawn(command, 170, 40)?;
    terminal.wait_for(FOLLOW_TIMEOUT, "the view", |screen| {
        screen.contains("4 Namespaces") && screen.contains("q quit")
    })?;

    terminal.send(b"4")?;
    let screen = terminal.wait_for(FOLLOW_TIMEOUT, "both labs' rows", |screen| {
        [&a, &b].iter().all(|lab| {
            namespace_row(screen, lab.inode).is_some_and(|cells| !cells.contains(&"…".into()))
        })
    })?;
    let header: Vec<&str> = screen
        .lines()
        .find(|line| line.contains("Namespace") && line.contains("Netns"))
        .context("no header")?
        .trim_matches(|c: char| c == '│' || c.is_whitespace())
        .split_whitespace()
        .collect();
    let mut labels = Vec::new();
    for lab in [&a, &b] {
        let cells = namespace_row(&screen, lab.inode).context("no row")?;
        let shown: BTreeMap<String, u64> = header[2..]
            .iter()
            .zip(&cells[2..])
            .map(|(state, count)| ((*state).to_owned(), count.parse().unwrap_or(u64::MAX)))
            .collect();
        let mut expected = lab.counts();
        expected.insert("All".into(), lab.entries.len() as u64);
        assert_eq!(shown, expected, "namespace {}:\n{screen}", lab.inode);
        labels.push(cells[0].clone());
    }

    // The connections tab names each row's namespace: lab A's local ports pick out
    // its sockets (each connection has a listener of its own).
    let ports: Vec<String> = a
        .entries
        .iter()
        .map(|entry| format!("sport = :{}", entry.local.port()))
        .collect();
    terminal.send(format!("2/{}\r", ports.join(" or ")).as_bytes())?;
    let label = &labels[0];
    let screen = terminal.wait_for(FOLLOW_TIMEOUT, "lab A's rows named", |screen| {
        screen
            .lines()
            .filter(|line| line.contains(label.as_str()))
            .count()
            == a.entries.len()
    })?;
    assert!(screen.contains("Netns"), "{screen}");

    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    assert!(status.success(), "q exited with {status}");
    Ok(())
}
