//! `tcpscope --serve` as a process in a lab namespace with known sockets, scraped by a
//! real HTTP client and read with a Prometheus text parser: the gauges must equal the
//! lab's counts, follow the sockets as they change, and keep coming while idle clients
//! hold connections open. Fails, never skips, without root.
//!
//! The server listens on `[::1]` and polls IPv4 only (`-4`), so that its own socket and
//! the scrapes' connections never show up in the counts under test.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tcpscope::tcp::State;

use crate::support::entries::state_of;
use crate::support::lab::{Entry, LISTEN_BACKLOG, Lab, SETTLE};
use crate::support::scrape::{Metrics, Server};
use crate::support::tcpscope_command;

/// The server of these tests: loopback IPv6, any free port, IPv4 sockets only.
fn serve(extra: &[&str]) -> Result<Server> {
    let mut args = vec!["-4", "--interval", "200ms"];
    args.extend_from_slice(extra);
    Server::start("[::1]:0", &args)
}

/// tcpscope's spelling of a lab state.
/// Sockets per state, all 11 states present.
fn counts_of(entries: &[Entry]) -> BTreeMap<&'static str, f64> {
    let mut counts: BTreeMap<&'static str, f64> =
        State::ALL.iter().map(|state| (state.name(), 0.0)).collect();
    for entry in entries {
        *counts.entry(state_of(entry.state).name()).or_default() += 1.0;
    }
    counts
}

/// What the scrape says, per state, for one family.
fn gauges(metrics: &Metrics, family: &str) -> BTreeMap<&'static str, f64> {
    State::ALL
        .iter()
        .map(|state| {
            let value = metrics
                .value(
                    "tcpscope_connections",
                    &[("state", state.name()), ("family", family)],
                )
                .unwrap_or(f64::NAN);
            (state.name(), value)
        })
        .collect()
}

fn zeros() -> BTreeMap<&'static str, f64> {
    counts_of(&[])
}

#[test]
fn the_connection_gauges_equal_the_labs_counts_and_follow_its_changes() -> Result<()> {
    let lab = Lab::enter()?;
    let v4: IpAddr = "127.0.0.1".parse()?;
    let listener = lab.listener_v4()?;
    let half_open = lab.syn_flood(listener.addr_v4()?, 25, 3)?;
    let established = lab.established(v4)?;
    let half_closed = lab.fin_wait2_close_wait(v4)?;
    let time_wait = lab.time_wait(v4)?;
    let syn_sent = lab.syn_sent(3)?;
    let mut entries = Vec::new();
    entries.extend(listener.entries());
    entries.extend(half_open.entries());
    entries.extend(established.entries());
    entries.extend(half_closed.entries());
    entries.extend(time_wait.entries());
    let steady = entries.clone();
    entries.extend(syn_sent.entries());
    lab.wait_for_exactly(&entries, SETTLE)?;

    let server = serve(&[])?;
    let expected = counts_of(&entries);
    let metrics = server.wait_for("the lab's counts", |m| gauges(m, "ipv4") == expected)?;
    assert_eq!(gauges(&metrics, "ipv6"), zeros(), "-4 keeps IPv6 out");

    let port = listener.addr.port().to_string();
    let labels = [("local_addr", "127.0.0.1"), ("local_port", port.as_str())];
    let listener_value = |name| metrics.value(name, &labels);
    assert_eq!(listener_value("tcpscope_listener_half_open"), Some(25.0));
    assert_eq!(
        listener_value("tcpscope_listener_backlog"),
        Some(f64::from(LISTEN_BACKLOG))
    );
    assert_eq!(listener_value("tcpscope_listener_accept_queue"), Some(0.0));
    let sources: HashSet<_> = half_open
        .sources
        .iter()
        .map(|source| *source.ip())
        .collect();
    assert_eq!(
        listener_value("tcpscope_listener_distinct_sources"),
        Some(sources.len() as f64)
    );
    assert_eq!(
        listener_value("tcpscope_listener_suspected_flood"),
        Some(0.0)
    );
    assert_eq!(
        metrics.samples("tcpscope_finding", &[]).count(),
        0,
        "25 half-open connections raise no finding:\n{}",
        metrics.text
    );
    assert!(
        metrics
            .value("tcpscope_poll_duration_seconds", &[])
            .is_some_and(|s| s > 0.0)
    );
    assert_eq!(metrics.value("tcpscope_poll_errors_total", &[]), Some(0.0));
    for counter in [
        "tcpscope_tcpext_syncookies_sent_total",
        "tcpscope_tcpext_listen_overflows_total",
        "tcpscope_tcpext_req_q_full_drop_total",
    ] {
        assert!(metrics.value(counter, &[]).is_some(), "{counter} missing");
    }

    // Change the lab: the SYN_SENT sockets go, a connection comes.
    drop(syn_sent);
    let another = lab.established(v4)?;
    let mut changed = steady;
    changed.extend(another.entries());
    let expected = counts_of(&changed);
    let metrics = server.wait_for("the changed counts", |m| gauges(m, "ipv4") == expected)?;
    let gone = metrics
        .value(
            "tcpscope_transitions_total",
            &[("from", "SYN_SENT"), ("to", "GONE")],
        )
        .unwrap_or(0.0);
    assert_eq!(gone, 3.0, "each closed SYN_SENT socket is one transition");

    let (status, took) = server.terminate()?;
    assert!(status.success(), "SIGTERM ended it with {status}");
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
    Ok(())
}

#[test]
fn a_syn_flood_is_a_finding_series_with_its_evidence_and_a_calm_listener_has_none() -> Result<()> {
    let lab = Lab::enter()?;
    let listener = lab.listener_v4()?;
    let calm = lab.listener_v4()?;
    let flood = lab.syn_flood(listener.addr_v4()?, 300, 23)?;
    lab.wait_for_exactly(
        &[listener.entries(), calm.entries(), flood.entries()].concat(),
        SETTLE,
    )?;

    let server = serve(&[])?;
    let subject = listener.addr.to_string();
    let finding = [
        ("kind", "syn_flood"),
        ("severity", "critical"),
        ("subject", subject.as_str()),
    ];
    let metrics = server.wait_for("the syn_flood finding", |m| {
        m.value("tcpscope_finding", &finding) == Some(1.0)
    })?;
    let evidence = |name| {
        metrics.value(
            "tcpscope_finding_evidence",
            &[
                ("kind", "syn_flood"),
                ("subject", subject.as_str()),
                ("name", name),
            ],
        )
    };
    assert_eq!(evidence("half_open"), Some(300.0), "{}", metrics.text);
    assert_eq!(evidence("held_by_syn_cookies"), Some(0.0));
    assert!(
        metrics
            .value(
                "tcpscope_finding_since_timestamp_seconds",
                &[("kind", "syn_flood"), ("subject", subject.as_str())]
            )
            .is_some_and(|since| since > 1.6e9)
    );
    let calm_subject = calm.addr.to_string();
    assert_eq!(
        metrics
            .samples("tcpscope_finding", &[("subject", calm_subject.as_str())])
            .count(),
        0,
        "the calm listener beside it has no finding:\n{}",
        metrics.text
    );
    assert_eq!(metrics.samples("tcpscope_finding", &[]).count(), 1);

    assert!(metrics.text.contains("# TYPE tcpscope_finding gauge"));
    Ok(())
}

#[test]
fn two_hundred_idle_connections_neither_block_scrapes_nor_stop_polls() -> Result<()> {
    let lab = Lab::enter()?;
    let _listener = lab.listener_v4()?;
    let server = serve(&[])?;
    let address = server
        .base()
        .trim_start_matches("http://")
        .parse::<std::net::SocketAddr>()
        .context("the server's address")?;

    // Half of them say nothing, half start a request and never finish it.
    let mut idle = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(address)?;
        if i % 2 == 1 {
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")?;
        }
        idle.push(stream);
    }

    let polls_before = server
        .scrape()?
        .value("tcpscope_polls_total", &[])
        .context("no poll counter")?;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let metrics = server.scrape()?;
        slowest = slowest.max(started.elapsed());
        ensure!(
            metrics.value(
                "tcpscope_connections",
                &[("state", "LISTEN"), ("family", "ipv4")]
            ) == Some(1.0),
            "a scrape without the listener:\n{}",
            metrics.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let polls_after = server
        .scrape()?
        .value("tcpscope_polls_total", &[])
        .context("no poll counter")?;
    assert!(
        polls_after >= polls_before + 3.0,
        "polls went from {polls_before} to {polls_after} in a second at 200ms"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "slowest scrape {slowest:?}"
    );

    // The idle connections are still held open, not dropped to make room.
    let mut still_open = 0;
    for stream in &mut idle {
        stream.set_nonblocking(true)?;
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => still_open += 1,
            _ => {}
        }
    }
    assert_eq!(still_open, 200, "the server dropped idle connections early");

    let (status, _) = server.terminate()?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[test]
fn the_index_page_points_to_the_metrics_and_other_paths_are_not_found() -> Result<()> {
    let _lab = Lab::enter()?;
    let server = serve(&[])?;
    let (status, page) = server.get("/")?;
    assert_eq!(status, 200);
    assert!(page.contains("/metrics"), "{page}");
    assert_eq!(page.lines().count(), 1, "{page}");
    let (status, _) = server.get("/nothing-here")?;
    assert_eq!(status, 404);
    let (status, text) = server.get("/metrics?name[]=tcpscope_connections")?;
    assert_eq!(status, 200);
    assert!(text.contains("tcpscope_connections{"), "{text}");
    Ok(())
}

#[test]
fn an_address_already_in_use_is_an_error_with_exit_status_2() -> Result<()> {
    let _lab = Lab::enter()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = taken.local_addr()?.to_string();
    let output = tcpscope_command(&["--serve", &address]).output()?;
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&address) && stderr.contains("in use"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn without_an_address_it_listens_on_loopback_only() -> Result<()> {
    let _lab = Lab::enter()?;
    let mut child = tcpscope_command(&[])
        .arg("--serve")
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut banner = String::new();
    if let Some(stderr) = child.stderr.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut banner)?;
    }
    let listening = std::process::Command::new("ss").args(["-tlnH"]).output()?;
    child.kill()?;
    child.wait()?;
    assert!(banner.contains("http://127.0.0.1:9464/metrics"), "{banner}");
    let listening = String::from_utf8_lossy(&listening.stdout);
    let local: Vec<&str> = listening
        .lines()
        .filter_map(|line| line.split_whitespace().nth(3))
        .collect();
    assert_eq!(local, ["127.0.0.1:9464"], "{listening}");
    Ok(())
}

/// `count` listeners on 127.0.0.1 (kept open by the caller) with a backlog of 16 each.
fn listeners(count: usize) -> Result<Vec<std::net::TcpListener>> {
    (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("binding a listener"))
        .collect()
}

#[test]
fn clients_that_ask_and_never_read_cannot_lock_a_scraper_out() -> Result<()> {
    let lab = Lab::enter()?;
    // An Ethernet-sized MTU: on loopback's 64 KiB one the kernel sizes a send buffer
    // for ten 64 KiB segments, and the whole page would be sent to clients that never
    // read, freeing their slots.
    lab.run("ip", &["link", "set", "dev", "lo", "mtu", "1500"])?;
    let _listener = lab.listener_v4()?;
    // Listeners make the page large (about 100 KB), as a busy host's is.
    let _more = listeners(300)?;
    let server = serve(&[])?;
    let address: std::net::SocketAddr = server
        .base()
        .trim_start_matches("http://")
        .parse()
        .context("the server's address")?;
    server.wait_for("the listeners", |m| {
        m.value(
            "tcpscope_connections",
            &[("state", "LISTEN"), ("family", "ipv4")],
        ) == Some(301.0)
    })?;

    // More than the server's 512 slots, each asking for the page and reading none of
    // it, with a receive buffer so small that the answer is left half written.
    let mut stalled = Vec::new();
    for _ in 0..520 {
        let socket = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
        socket.set_recv_buffer_size(2048)?;
        socket.connect(&address.into())?;
        let mut stream: TcpStream = socket.into();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
        stalled.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));

    // Round after round, a scraper gets the whole page, at once.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let metrics = server.scrape()?;
        slowest = slowest.max(started.elapsed());
        ensure!(
            metrics.value("tcpscope_polls_total", &[]).is_some(),
            "a page without its poll counter"
        );
        // More non-readers keep coming between scrapes.
        for _ in 0..20 {
            let mut stream = TcpStream::connect(address)?;
            stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")?;
            stalled.push(stream);
        }
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest scrape {slowest:?}"
    );
    let (status, _) = server.terminate()?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[test]
fn thousands_of_listeners_give_200_listener_series_and_one_row_for_the_rest() -> Result<()> {
    let lab = Lab::enter()?;
    let held = listeners(3000)?;
    let server = serve(&[])?;
    let metrics = server.wait_for("the listeners", |m| {
        m.value(
            "tcpscope_connections",
            &[("state", "LISTEN"), ("family", "ipv4")],
        ) == Some(3000.0)
    })?;
    let rows = metrics
        .text
        .lines()
        .filter(|line| line.starts_with("tcpscope_listener_backlog{"))
        .count();
    assert_eq!(rows, 201, "series of tcpscope_listener_backlog");
    let other = [("local_addr", "other"), ("local_port", "other")];
    // std binds with a backlog of 128; the 2,800 folded listeners' backlogs are summed.
    assert_eq!(
        metrics.value("tcpscope_listener_backlog", &other),
        Some(128.0 * 2800.0)
    );
    assert!(
        metrics.text.len() < 256 * 1024,
        "a page of {} bytes",
        metrics.text.len()
    );
    drop(held);
    drop(lab);
    Ok(())
}

/// A folder of its own under the system's temporary one, removed when dropped.
struct Folder(std::path::PathBuf);

impl Folder {
    fn new(name: &str) -> Result<Folder> {
        let path = std::env::temp_dir().join(format!("tcpscope-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Folder(path))
    }

    fn write(&self, name: &str, text: &str) -> Result<String> {
        let path = self.0.join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `tcpscope --serve --web-config` child, killed when dropped, and where it listens.
struct Guarded {
    child: std::process::Child,
    address: std::net::SocketAddr,
}

impl Guarded {
    /// Starts it and reads the address from the line it prints, which must say https.
    fn start(web_config: &str) -> Result<Guarded> {
        let mut child =
            tcpscope_command(&["-4", "--interval", "200ms", "--web-config", web_config])
                .args(["--serve", "[::1]:0"])
                .stderr(std::process::Stdio::piped())
                .spawn()?;
        let mut banner = String::new();
        if let Some(stderr) = child.stderr.take() {
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut banner)?;
        }
        let guarded = |address: std::net::SocketAddr| Guarded { child, address };
        let address = banner
            .trim()
            .strip_prefix("tcpscope: serving Prometheus metrics at https://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .with_context(|| format!("the banner was {banner:?}"))?
            .parse()?;
        Ok(guarded(address))
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `/metrics` over TLS, trusting only `ca`, with basic authentication when
/// `credentials` are given; returns the whole answer, head and body.
fn tls_get(
    address: std::net::SocketAddr,
    ca: &rcgen::Certificate,
    credentials: Option<(&str, &str)>,
) -> Result<String> {
    use base64::Engine;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let session = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost")?,
    )?;
    let socket = TcpStream::connect(address)?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut stream = rustls::StreamOwned::new(session, socket);
    let mut request = String::from("GET /metrics HTTP/1.1\r\nHost: localhost\r\n");
    if let Some((user, password)) = credentials {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn over_tls_only_the_right_password_gets_the_metrics_and_plain_http_gets_nothing() -> Result<()> {
    let _lab = Lab::enter()?;
    let folder = Folder::new("tls")?;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    folder.write("server.crt", &certified.cert.pem())?;
    folder.write("server.key", &certified.signing_key.serialize_pem())?;
    let hash = bcrypt::hash("s3cret", 6)?;
    let web_config = folder.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )?;
    let server = Guarded::start(&web_config)?;
    let ca = &certified.cert;

    // Until the first poll the answer is 503; then the page.
    let deadline = Instant::now() + Duration::from_secs(15);
    let page = loop {
        let answer = tls_get(server.address, ca, Some(("prometheus", "s3cret")))?;
        if answer.starts_with("HTTP/1.1 200 ") || Instant::now() >= deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("tcpscope_connections{"), "{page}");

    for credentials in [
        None,
        Some(("prometheus", "wrong")),
        Some(("nobody", "s3cret")),
    ] {
        let refused = tls_get(server.address, ca, credentials)?;
        let (head, body) = refused.split_once("\r\n\r\n").context("no head")?;
        let head = format!("{head}\r\n");
        assert!(
            head.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{credentials:?}: {refused}"
        );
        assert!(
            head.contains("WWW-Authenticate: Basic realm=\"tcpscope\"\r\n"),
            "{refused}"
        );
        assert!(head.contains("Content-Length: 0\r\n"), "{refused}");
        assert_eq!(body, "", "{credentials:?}");
    }

    // Plain HTTP to the TLS port: no page, no HTTP answer at all.
    let mut plain = TcpStream::connect(server.address)?;
    plain.set_read_timeout(Some(Duration::from_secs(5)))?;
    plain.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(!answer.contains("HTTP/1.1"), "{answer}");
    assert!(!answer.contains("tcpscope_"), "{answer}");

    // The one who knows the password is still served after all that.
    let again = tls_get(server.address, ca, Some(("prometheus", "s3cret")))?;
    assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again}");
    Ok(())
}

#[test]
fn a_web_config_with_a_plain_password_or_a_missing_certificate_exits_2_naming_it() -> Result<()> {
    let _lab = Lab::enter()?;
    let folder = Folder::new("bad-web-config")?;
    let plain = folder.write("plain.yml", "basic_auth_users:\n  prometheus: hunter2\n")?;
    let missing = folder.write(
        "missing.yml",
        "tls_server_config:\n  cert_file: gone.crt\n  key_file: gone.key\n",
    )?;
    for (config, named) in [(&plain, "not a bcrypt hash"), (&missing, "gone.crt")] {
        let output = tcpscope_command(&["--serve", "[::1]:0", "--web-config", config]).output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(!stderr.contains("serving"), "{stderr}");
    }
    Ok(())
}

/// GETs `/metrics` from `address` over plain HTTP/1.1 and returns the status line and
/// body.
fn plain_get(address: &str) -> Result<(String, String)> {
    let mut stream =
        TcpStream::connect(address).with_context(|| format!("connecting {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: tcpscope\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

#[test]
fn colon_port_listens_on_every_interface_and_reminds_that_it_has_no_authentication() -> Result<()> {
    let _lab = Lab::enter()?;
    let server = serve_at(":0")?;
    let port = server
        .url
        .strip_prefix("http://[::]:")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .with_context(|| format!("not every interface: {}", server.url))?
        .to_owned();
    // 127.0.0.2 answers only a socket bound to every interface (or to it), not one on
    // 127.0.0.1: IPv4 reaches the IPv6 wildcard as well.
    for host in ["127.0.0.1", "127.0.0.2", "[::1]"] {
        let (status, body) = plain_get(&format!("{host}:{port}"))?;
        assert!(status.contains(" 200 "), "{host}: {status}");
        let build = format!(
            "tcpscope_build_info{{version=\"{}\",",
            env!("CARGO_PKG_VERSION")
        );
        assert!(
            body.lines()
                .any(|line| line.starts_with(&build) && line.ends_with(" 1")),
            "{host}: no build_info in\n{body:.2000}"
        );
    }
    let said = server.stderr();
    let reminders: Vec<&String> = said
        .iter()
        .filter(|line| line.contains("no authentication"))
        .collect();
    assert_eq!(reminders.len(), 1, "{said:?}");
    assert!(reminders[0].starts_with("tcpscope: "), "{said:?}");

    let loopback = serve_at("127.0.0.1:0")?;
    let said = loopback.stderr();
    assert!(
        !said.iter().any(|line| line.contains("authentication")),
        "loopback needs no reminder: {said:?}"
    );
    Ok(())
}

/// A server of IPv4 sockets listening at `listen`.
fn serve_at(listen: &str) -> Result<Server> {
    Server::start(listen, &["-4", "--interval", "200ms"])
}

#[test]
fn colon_port_takes_ipv4_even_where_ipv6_sockets_default_to_ipv6_only() -> Result<()> {
    let lab = Lab::enter()?;
    // Some hosts set this so that `[::]` means IPv6 alone; `:PORT` still means every
    // interface, IPv4 included.
    lab.set_sysctl("net.ipv6.bindv6only", 1)?;
    let server = serve_at(":0")?;
    let port = server
        .url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.strip_suffix("/metrics"))
        .with_context(|| format!("no port in {}", server.url))?
        .to_owned();
    for host in ["127.0.0.1", "[::1]"] {
        let (status, _) = plain_get(&format!("{host}:{port}"))?;
        assert!(status.contains(" 200 "), "{host}: {status}");
    }
    Ok(())
}
