//! `tcpscope --kill` against real connections in a lab namespace: it closes exactly
//! the sockets its expression matches (their peers see a reset), leaves every other
//! socket alone, lists without closing unless told `--yes`, and spares listeners
//! unless the expression names LISTEN. In the interactive view (through a
//! pseudo-terminal), `K` then `y` in a connection's detail pane closes it, and any
//! other answer leaves it alone.
//!
//! Each test enters its own lab and fails, never skips, without root.

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use socket2::Socket;

use crate::support::lab::{Connection, Entry, Lab, Listener, SETTLE, TcpState};
use crate::support::pty;
use crate::support::{TCPSCOPE, tcpscope, tcpscope_command};

/// A listener with one accepted connection, and two more connections elsewhere.
struct Scene {
    listener: Listener,
    client: Socket,
    server: Socket,
    client_addr: SocketAddr,
    others: Vec<Connection>,
}

impl Scene {
    fn build(lab: &Lab) -> Result<Scene> {
        let listener = lab.listener_v4()?;
        let client = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        client.connect(&listener.addr.into())?;
        let client_addr = client.local_addr()?.as_socket().context("client address")?;
        let (server, _) = listener.socket.accept()?;
        let others = vec![
            lab.established("127.0.0.1".parse()?)?,
            lab.fin_wait2_close_wait("::1".parse()?)?,
        ];
        let scene = Scene {
            listener,
            client,
            server,
            client_addr,
            others,
        };
        lab.wait_for_exactly(&scene.entries(), SETTLE)?;
        Ok(scene)
    }

    fn accepted_entries(&self) -> Vec<Entry> {
        vec![
            Entry::connected(TcpState::Established, self.client_addr, self.listener.addr),
            Entry::connected(TcpState::Established, self.listener.addr, self.client_addr),
        ]
    }

    fn other_entries(&self) -> Vec<Entry> {
        self.others.iter().flat_map(Connection::entries).collect()
    }

    fn entries(&self) -> Vec<Entry> {
        let mut entries = self.listener.entries();
        entries.extend(self.accepted_entries());
        entries.extend(self.other_entries());
        entries
    }
}

/// The rows of a `--grep`-style table: (state, local, peer).
fn rows(stdout: &[u8]) -> Result<Vec<(String, String, String)>> {
    let text = String::from_utf8(stdout.to_vec())?;
    let mut lines = text.lines();
    ensure!(
        lines
            .next()
            .is_some_and(|header| header.starts_with("State")),
        "no table header: {text}"
    );
    Ok(lines
        .map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            (
                columns[0].to_string(),
                columns[1].to_string(),
                columns[2].to_string(),
            )
        })
        .collect())
}

#[test]
fn without_yes_kill_lists_what_it_would_close_and_closes_nothing() -> Result<()> {
    let lab = Lab::enter()?;
    let scene = Scene::build(&lab)?;
    let port = scene.listener.addr.port();
    let output = tcpscope(&["--kill", &format!("sport = :{port}")])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("dry run") && stderr.contains("--yes"),
        "{stderr}"
    );
    ensure!(
        stderr.contains("1 listening socket matched"),
        "the listener is named as spared: {stderr}"
    );
    let rows = rows(&output.stdout)?;
    ensure!(
        rows == [(
            "ESTABLISHED".to_string(),
            scene.listener.addr.to_string(),
            scene.client_addr.to_string()
        )],
        "only the accepted socket, not the listener: {rows:?}"
    );
    // Nothing changed.
    lab.wait_for_exactly(&scene.entries(), Duration::ZERO)?;
    Ok(())
}

#[test]
fn kill_yes_closes_exactly_the_matching_sockets_and_the_peer_sees_a_reset() -> Result<()> {
    let lab = Lab::enter()?;
    let mut scene = Scene::build(&lab)?;
    let port = scene.listener.addr.port();
    let output = tcpscope(&[
        "--kill",
        &format!("sport = :{port} and state established"),
        "--yes",
    ])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    ensure!(rows(&output.stdout)?.len() == 1, "{output:?}");
    ensure!(
        String::from_utf8_lossy(&output.stderr).contains("closed 1 socket"),
        "{output:?}"
    );

    // The peer of the closed socket gets a reset; the closed socket itself is aborted.
    scene.client.set_read_timeout(Some(SETTLE))?;
    let mut buffer = [0u8; 16];
    let read = scene.client.read(&mut buffer);
    ensure!(
        matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the peer should see ECONNRESET, got {read:?}"
    );
    let error = scene.server.take_error()?;
    ensure!(
        error
            .as_ref()
            .is_some_and(|e| e.raw_os_error() == Some(libc::ECONNABORTED)),
        "the closed socket reports ECONNABORTED, got {error:?}"
    );

    // Both ends are gone; the listener and the other connections stay, as ss shows.
    let mut remaining = scene.listener.entries();
    remaining.extend(scene.other_entries());
    lab.wait_for_exactly(&remaining, SETTLE)?;
    Ok(())
}

#[test]
fn a_listener_is_closed_only_when_the_expression_names_listen() -> Result<()> {
    let lab = Lab::enter()?;
    let scene = Scene::build(&lab)?;
    let port = scene.listener.addr.port();

    let all_states = tcpscope(&["--kill", &format!("state all and sport = :{port}"), "--yes"])?;
    ensure!(all_states.status.code() == Some(0), "{all_states:?}");
    let mut remaining = scene.listener.entries();
    remaining.extend(scene.other_entries());
    lab.wait_for_exactly(&remaining, SETTLE)?;

    let named = tcpscope(&[
        "--kill",
        &format!("state listen and sport = :{port}"),
        "--yes",
    ])?;
    ensure!(named.status.code() == Some(0), "{named:?}");
    let rows = rows(&named.stdout)?;
    ensure!(rows.len() == 1 && rows[0].0 == "LISTEN", "{rows:?}");
    lab.wait_for_exactly(&scene.other_entries(), SETTLE)?;
    Ok(())
}

#[test]
fn kill_with_nothing_matching_exits_1_and_prints_nothing() -> Result<()> {
    let lab = Lab::enter()?;
    let scene = Scene::build(&lab)?;
    for args in [
        &["--kill", "dport = :1"][..],
        &["--kill", "dport = :1", "--yes"],
    ] {
        let output = tcpscope(args)?;
        ensure!(output.status.code() == Some(1), "{args:?}: {output:?}");
        ensure!(output.stdout.is_empty(), "{args:?}: {output:?}");
    }
    lab.wait_for_exactly(&scene.entries(), Duration::ZERO)?;
    Ok(())
}

#[test]
fn without_cap_net_admin_kill_says_so_exits_2_and_closes_nothing() -> Result<()> {
    let lab = Lab::enter()?;
    let scene = Scene::build(&lab)?;
    let port = scene.listener.addr.port();
    // setpriv drops CAP_NET_ADMIN from the bounding set, so root's tcpscope runs
    // without it; sock_diag dumps need no capability, SOCK_DESTROY does.
    let output = Command::new("setpriv")
        .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"])
        .arg(TCPSCOPE)
        .args(["--kill", &format!("sport = :{port}"), "--yes"])
        .output()
        .context("running tcpscope under setpriv")?;
    ensure!(output.status.code() == Some(2), "{output:?}");
    ensure!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
    lab.wait_for_exactly(&scene.entries(), Duration::ZERO)?;
    Ok(())
}

/// Opens the interactive view in the lab, narrows it with `/` to the accepted socket,
/// and opens its detail pane.
fn view_on_the_accepted_socket(scene: &Scene) -> Result<pty::Terminal> {
    let mut command = tcpscope_command(&[]);
    command.args(["--interval", "200ms"]);
    let mut terminal = pty::Terminal::spawn(command, 120, 40)?;
    let timeout = SETTLE * 3;
    terminal.wait_for(timeout, "the view", |screen| screen.contains("q quit"))?;
    let port = scene.listener.addr.port();
    terminal.send(format!("/state established and sport = :{port}\r").as_bytes())?;
    let local = scene.listener.addr.to_string();
    let peer = scene.client_addr.to_string();
    terminal.wait_for(timeout, "the one connection in the table", |screen| {
        screen.contains(&local) && screen.contains(&peer) && !screen.contains("LISTEN  ")
    })?;
    terminal.send(b"\r")?;
    let title = format!("{local} ⇄ {peer}");
    terminal.wait_for(timeout, "its detail pane", |screen| {
        screen
            .lines()
            .any(|line| line.starts_with('┌') && line.contains(&title))
    })?;
    Ok(terminal)
}

/// Presses K in the detail pane and waits for the question naming the connection.
fn ask_to_close(terminal: &mut pty::Terminal, scene: &Scene) -> Result<()> {
    terminal.send(b"K")?;
    let question = format!("Close {} ⇄ {}? y/N", scene.listener.addr, scene.client_addr);
    terminal.wait_for(SETTLE, "the question", |screen| screen.contains(&question))?;
    Ok(())
}

#[test]
fn k_then_y_in_the_views_detail_pane_closes_the_connection_and_n_or_esc_keep_it() -> Result<()> {
    let lab = Lab::enter()?;
    let mut scene = Scene::build(&lab)?;
    let mut terminal = view_on_the_accepted_socket(&scene)?;

    for (answer, key) in [("n", &b"n"[..]), ("Esc", b"\x1b")] {
        ask_to_close(&mut terminal, &scene)?;
        terminal.send(key)?;
        terminal.wait_for(SETTLE, "the connection kept", |screen| {
            screen.contains(&format!(
                "kept {} ⇄ {}",
                scene.listener.addr, scene.client_addr
            ))
        })?;
        // Give a wrongly sent SOCK_DESTROY time to act before looking.
        std::thread::sleep(Duration::from_millis(300));
        lab.wait_for_exactly(&scene.entries(), Duration::ZERO)
            .with_context(|| format!("after answering {answer}"))?;
    }

    ask_to_close(&mut terminal, &scene)?;
    terminal.send(b"y")?;
    let closed = format!("closed {} ⇄ {}", scene.listener.addr, scene.client_addr);
    let started = Instant::now();
    terminal.wait_for(SETTLE, "the close reported", |screen| {
        screen.contains(&closed)
    })?;
    let reported_in = started.elapsed();

    // The peer of the closed socket sees a reset; both ends are gone from ss, the
    // listener and the other connections stay.
    scene.client.set_read_timeout(Some(SETTLE))?;
    let mut buffer = [0u8; 16];
    let read = scene.client.read(&mut buffer);
    ensure!(
        matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the peer should see ECONNRESET, got {read:?}"
    );
    let mut remaining = scene.listener.entries();
    remaining.extend(scene.other_entries());
    lab.wait_for_exactly(&remaining, SETTLE)?;
    ensure!(
        reported_in < SETTLE,
        "the close took {reported_in:?} to be reported"
    );

    terminal.send(b"q")?;
    ensure!(terminal.wait(Duration::from_secs(10))?.success());
    Ok(())
}
