//! `tcpscope --watch --json` as a process in a lab namespace while the test drives real
//! connections through their states: every transition must show up in the stream, and
//! connections that open and close entirely between two polls must still appear.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::support::lab::Lab;
use crate::support::lab::child::{exit_within, in_write};
use crate::support::schema;
use crate::support::stream::Stream;
use crate::support::tcpscope_command;

/// How long to wait for an expected line: a few poll intervals, with room for a
/// loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

/// A running `tcpscope --watch --json`, read as these tests read it: every line must
/// carry a type.
struct Watch(Stream);

impl Watch {
    /// Starts the stream inside the lab (children of the lab's thread inherit its
    /// namespace) and waits for its first poll.
    fn start(interval: &str) -> Result<Watch> {
        let mut watch = Watch(Stream::watch(&["--interval", interval])?);
        watch.wait_for("the first counts line", |line| line["type"] == "counts")?;
        Ok(watch)
    }

    /// The first line of the stream, read already or still to come, that satisfies
    /// `wanted`.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Result<Value> {
        let found = self.0.find(what, PATIENCE, wanted);
        if let Some(untyped) = self
            .0
            .seen()
            .iter()
            .find(|line| !line.value["type"].is_string())
        {
            bail!("a line without a type: {}", untyped.text);
        }
        found
    }

    /// Waits for a transition of the connection from `local` to `remote`.
    fn transition(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        self.wait_for(&format!("transition of {local} → {remote}"), |line| {
            line["type"] == "transition" && endpoints(line) == (local, remote) && wanted(line)
        })
    }

    /// Ends the stream as a user would, with Ctrl-C, and checks it ends cleanly.
    fn interrupt(self) -> Result<()> {
        self.stop_with(libc::SIGINT)
    }

    /// Sends `signal` and checks the stream ends with exit status 0.
    fn stop_with(mut self, signal: libc::c_int) -> Result<()> {
        let status = self.0.stop(signal)?;
        ensure!(
            status.success(),
            "tcpscope --watch ended with {status} on signal {signal}"
        );
        Ok(())
    }
}

fn endpoints(line: &Value) -> (SocketAddr, SocketAddr) {
    let address = |addr: &str, port: &str| -> SocketAddr {
        let ip = line[addr]
            .as_str()
            .unwrap_or("0.0.0.0")
            .parse()
            .expect("an address");
        SocketAddr::new(ip, line[port].as_u64().unwrap_or(0) as u16)
    };
    (
        address("local_addr", "local_port"),
        address("remote_addr", "remote_port"),
    )
}

fn connect(listener: &TcpListener) -> Result<(TcpStream, TcpStream)> {
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((client, server))
}

#[test]
fn new_connections_are_reported_opened_on_both_ends() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = TcpListener::bind("127.0.0.1:7001")?;
    let mut watch = Watch::start("200ms")?;
    let (client, server) = connect(&listener)?;
    let (c, s) = (client.local_addr()?, server.local_addr()?);

    for (local, remote) in [(c, s), (s, c)] {
        let line = watch.transition(local, remote, |l| l["kind"] == "opened")?;
        assert_eq!(line["from"], Value::Null);
        assert_eq!(line["to"], "ESTABLISHED");
        assert_eq!(line["family"], "ipv4");
    }
    watch.interrupt()
}

#[test]
fn a_half_close_moves_one_end_to_fin_wait2_and_the_other_to_close_wait() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = TcpListener::bind("127.0.0.1:7002")?;
    let (client, server) = connect(&listener)?;
    let (c, s) = (client.local_addr()?, server.local_addr()?);
    let mut watch = Watch::start("200ms")?;

    client.shutdown(Shutdown::Write)?;
    let active = watch.transition(c, s, |l| l["to"] == "FIN_WAIT2")?;
    assert_eq!(active["kind"], "changed");
    assert_eq!(active["from"], "ESTABLISHED");
    let passive = watch.transition(s, c, |l| l["to"] == "CLOSE_WAIT")?;
    assert_eq!(passive["from"], "ESTABLISHED");
    assert_eq!(passive["via"], serde_json::json!([]));
    assert_eq!(passive["exact"], true);
    watch.interrupt()
}

#[test]
fn a_full_close_leaves_the_active_closer_in_time_wait_and_closes_the_passive_side() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = TcpListener::bind("127.0.0.1:7003")?;
    let (client, server) = connect(&listener)?;
    let (c, s) = (client.local_addr()?, server.local_addr()?);
    let mut watch = Watch::start("200ms")?;

    drop(client);
    // The passive side closes too once it has seen the peer's FIN.
    watch.transition(s, c, |l| l["to"] == "CLOSE_WAIT")?;
    drop(server);

    let active = watch.transition(c, s, |l| l["to"] == "TIME_WAIT")?;
    assert_eq!(
        active["kind"], "changed",
        "a TIME_WAIT remnant is the same connection"
    );
    let passive = watch.transition(s, c, |l| l["kind"] == "closed")?;
    assert_eq!(passive["to"], Value::Null);
    assert_eq!(passive["from"], "CLOSE_WAIT");
    watch.interrupt()
}

#[test]
fn every_connection_of_a_burst_between_two_polls_is_reported_closed() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = TcpListener::bind("127.0.0.1:7004")?;
    // A long interval, so the whole burst fits between two polls.
    let mut watch = Watch::start("2s")?;
    watch.wait_for("a second poll", |line| line["type"] == "counts")?;

    let started = Instant::now();
    let mut burst = Vec::new();
    for _ in 0..48 {
        let (client, server) = connect(&listener)?;
        let pair = (client.local_addr()?, server.local_addr()?);
        // The server closes first and keeps the TIME_WAIT; the client's socket is
        // destroyed outright, which only a destroy event can tell.
        drop(server);
        let mut buffer = [0u8; 1];
        let _ = std::io::Read::read(&mut &client, &mut buffer);
        drop(client);
        burst.push(pair);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the burst took {:?}, longer than half an interval",
        started.elapsed()
    );

    let mut missing: HashSet<(SocketAddr, SocketAddr)> = burst.iter().copied().collect();
    let deadline = Instant::now() + PATIENCE;
    while !missing.is_empty() && Instant::now() < deadline {
        let line = watch.wait_for("closed transitions of the burst", |line| {
            line["type"] == "transition"
                && line["kind"] == "closed"
                && missing.contains(&endpoints(line))
        })?;
        assert_eq!(
            line["exact"], true,
            "a destroy event is an observation: {line}"
        );
        missing.remove(&endpoints(&line));
    }
    assert!(missing.is_empty(), "never reported closed: {missing:?}");
    watch.interrupt()
}

#[test]
fn the_stream_counts_every_state_after_each_poll() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = TcpListener::bind("127.0.0.1:7005")?;
    let _pair = connect(&listener)?;
    let mut watch = Watch::start("200ms")?;
    let counts = watch.wait_for("counts with the connection", |line| {
        line["type"] == "counts" && line["counts"]["ESTABLISHED"] == 2
    })?;
    assert_eq!(counts["counts"]["LISTEN"], 1);
    assert_eq!(counts["counts"].as_object().map(|o| o.len()), Some(11));
    watch.interrupt()
}

#[test]
fn sigterm_ends_the_stream_with_status_0() -> Result<()> {
    let _lab = Lab::enter()?;
    let watch = Watch::start("100ms")?;
    watch.stop_with(libc::SIGTERM)
}

#[test]
fn sigterm_ends_the_stream_even_when_its_reader_stopped_reading() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = TcpListener::bind("127.0.0.1:7007")?;
    // Nobody reads the stream: once the pipe is full, every write blocks.
    let mut child = tcpscope_command(&["--watch", "--json", "--interval", "50ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = i32::try_from(child.id())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut blocked_samples = 0;
    while blocked_samples < 10 {
        ensure!(
            Instant::now() < deadline,
            "the stream's writes never blocked: the pipe did not fill"
        );
        // Each connection opened and closed is a few lines of the stream.
        for _ in 0..50 {
            let client = TcpStream::connect(listener.local_addr()?)?;
            let (server, _) = listener.accept()?;
            drop(client);
            drop(server);
        }
        std::thread::sleep(Duration::from_millis(60));
        blocked_samples = if in_write(pid) {
            blocked_samples + 1
        } else {
            0
        };
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = exit_within(&mut child, Duration::from_secs(10))
        .context("SIGTERM did not end a stream blocked on its pipe")?;
    ensure!(
        status.code() == Some(128 + 15),
        "SIGTERM exited with {status}"
    );
    Ok(())
}

#[test]
fn a_closed_pipe_ends_the_stream_quietly() -> Result<()> {
    let _lab = Lab::enter()?;
    let _listener = TcpListener::bind("127.0.0.1:7006")?;
    let mut child = tcpscope_command(&["--watch", "--json", "--interval", "50ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
    let mut first = String::new();
    stdout.read_line(&mut first)?;
    drop(stdout);
    let output = child.wait_with_output()?;
    assert!(output.status.success(), "{:?}", output.status);
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Checks every line against assets/tcpscope-stream.schema.json and returns the types
/// seen.
fn validate_stream<'a>(lines: impl IntoIterator<Item = &'a Value>) -> Result<HashSet<String>> {
    let validator = schema::validator(schema::STREAM)?;
    let mut types = HashSet::new();
    for line in lines {
        let errors = schema::errors(&validator, line);
        ensure!(errors.is_empty(), "{line}: {errors:#?}");
        types.insert(line["type"].as_str().unwrap_or_default().to_owned());
    }
    Ok(types)
}

#[test]
fn every_line_of_a_live_stream_and_of_a_replay_validates_against_the_stream_schema() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    let mut watch = Watch::start("100ms")?;
    let flood = lab.syn_flood(listener.addr_v4()?, 300, 11)?;
    let half_closed = lab.fin_wait2_close_wait("127.0.0.1".parse()?)?;
    watch.wait_for("the flood's finding", |line| line["type"] == "finding")?;
    drop(half_closed);
    drop(flood);
    watch.0.collect(Duration::from_millis(500))?;
    let live: Vec<&Value> = watch.0.seen().iter().map(|line| &line.value).collect();
    let types = validate_stream(live)?;
    for wanted in ["transition", "counts", "finding"] {
        ensure!(types.contains(wanted), "no {wanted} line: {types:?}");
    }
    watch.interrupt()?;

    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec");
    let output = tcpscope_command(&["--replay", demo, "--json"]).output()?;
    ensure!(output.status.success(), "{output:?}");
    let replayed: Vec<Value> = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let types = validate_stream(&replayed)?;
    ensure!(
        types.contains("finding") && types.contains("transition"),
        "{types:?}"
    );
    Ok(())
}

#[test]
fn the_stream_schema_refuses_an_unknown_field_or_type_and_knows_the_documents_findings()
-> Result<()> {
    let validator = schema::validator(schema::STREAM)?;
    let counts: Value = serde_json::json!({
        "type": "counts", "at": "2026-11-24T13:45:08.411Z",
        "counts": {"CLOSED": 0, "LISTEN": 1, "SYN_SENT": 0, "SYN_RECV": 0, "ESTABLISHED": 4,
            "FIN_WAIT1": 0, "FIN_WAIT2": 0, "CLOSE_WAIT": 1, "CLOSING": 0, "LAST_ACK": 0,
            "TIME_WAIT": 1}
    });
    ensure!(schema::errors(&validator, &counts).is_empty());
    let mut extra = counts.clone();
    extra["colour"] = "red".into();
    ensure!(
        !schema::errors(&validator, &extra).is_empty(),
        "an unknown field passed"
    );
    let mut unknown = counts.clone();
    unknown["type"] = "tally".into();
    ensure!(
        !schema::errors(&validator, &unknown).is_empty(),
        "an unknown type passed"
    );

    // A finding line carries the document's finding fields: the kinds must agree.
    let stream: Value = serde_json::from_str(schema::STREAM)?;
    let document: Value = serde_json::from_str(schema::DOCUMENT)?;
    ensure!(
        stream["$defs"]["finding"]["properties"]["kind"]
            == document["$defs"]["finding"]["properties"]["kind"],
        "the stream's finding kinds differ from the document's"
    );
    ensure!(stream["$defs"]["state"] == document["$defs"]["state"]);
    Ok(())
}

#[test]
fn the_text_stream_starts_with_one_line_of_counts_on_a_quiet_host() -> Result<()> {
    let _lab = Lab::enter()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let _connection = connect(&listener)?;
    let mut child = tcpscope_command(&["--watch", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
    let (sender, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let first = lines.recv_timeout(PATIENCE);
    // Nothing changes in the lab: a few more polls must add nothing.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child, not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = exit_within(&mut child, PATIENCE)?;
    let _ = reader.join();
    let first = first.context("no line within the patience: the stream said nothing")?;
    let rest: Vec<String> = lines.try_iter().collect();
    ensure!(status.success(), "{status}");
    ensure!(
        first.ends_with("counts   LISTEN 1  ESTABLISHED 2"),
        "{first}"
    );
    ensure!(rest.is_empty(), "more than one line: {rest:#?}");
    Ok(())
}
