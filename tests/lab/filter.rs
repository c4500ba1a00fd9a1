//! The filter language against the kernel and against `ss`, over a varied set of real
//! sockets in a lab namespace: several addresses in 127.0.0.0/10, `::1`, v4-mapped
//! IPv6 sockets, forged half-open connections from 127.64.0.0/10, and a socket in
//! most states.
//!
//! Each test enters its own lab and fails, never skips, without root.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use socket2::{Domain, Socket, Type};
use tcpscope::filter::{self, Filter};
use tcpscope::kernel::sockdiag::{DumpRequest, SockDiag};
use tcpscope::snapshot::SocketRecord;

use crate::support::lab;
use crate::support::lab::random::SplitMix64;
use crate::support::lab::{Entry, Lab, SETTLE, TcpState};
use crate::support::stream::Stream;
use crate::support::{entries, json, tcpscope};

/// The sockets the tests filter, kept open for as long as a test needs them.
struct Varied {
    /// The port of the IPv4 listener that holds the half-open connections.
    flooded_port: u16,
    /// The port of the dual-stack listener whose connection is v4-mapped.
    dual_stack_port: u16,
    /// Every port in use, for the random expressions.
    ports: Vec<u16>,
    _held: Vec<Box<dyn std::any::Any>>,
}

/// A listener on `[::]` that takes IPv4 clients too, and one IPv4 client connected to
/// it: the accepted end is an IPv6 socket with v4-mapped addresses
/// (`::ffff:127.0.0.1`), which the kernel matches against IPv4 prefixes.
fn v4_mapped_connection() -> Result<(Socket, Socket, Socket, u16)> {
    let listener = Socket::new(Domain::IPV6, Type::STREAM, None)?;
    listener.set_only_v6(false)?;
    listener.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).into())?;
    listener.listen(16)?;
    let port = listener
        .local_addr()?
        .as_socket()
        .context("listener address")?
        .port();
    let client = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    client.connect(&SocketAddr::new("127.0.0.1".parse()?, port).into())?;
    let (server, _) = listener.accept()?;
    Ok((listener, client, server, port))
}

fn varied(lab: &Lab) -> Result<Varied> {
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
    let mut expected: Vec<Entry> = Vec::new();

    let flooded = lab.listener_v4()?;
    let flooded_port = flooded.addr.port();
    let half_open = lab.syn_flood(flooded.addr_v4()?, 20, 11)?;
    expected.extend(flooded.entries());
    expected.extend(half_open.entries());
    held.push(Box::new(flooded));
    for ip in ["127.0.0.2", "127.1.2.3", "::1"] {
        let listener = lab.listener(ip.parse()?)?;
        expected.extend(listener.entries());
        held.push(Box::new(listener));
    }
    for ip in [
        "127.0.0.1",
        "127.0.0.2",
        "127.3.0.1",
        "127.63.255.254",
        "::1",
        "::1",
    ] {
        let connection = lab.established(ip.parse()?)?;
        expected.extend(connection.entries());
        held.push(Box::new(connection));
    }
    let half_closed = lab.fin_wait2_close_wait("127.0.0.5".parse()?)?;
    expected.extend(half_closed.entries());
    held.push(Box::new(half_closed));
    let time_wait = lab.time_wait("127.0.0.6".parse()?)?;
    expected.extend(time_wait.entries());
    held.push(Box::new(time_wait));
    let syn_sent = lab.syn_sent(3)?;
    expected.extend(syn_sent.entries());
    held.push(Box::new(syn_sent));
    let (listener, client, server, dual_stack_port) = v4_mapped_connection()?;
    held.push(Box::new((listener, client, server)));

    // The dual-stack sockets are not in `expected`; count them instead.
    let shown = lab::ss::wait_until(SETTLE, "the varied sockets", || {
        let shown = lab.ss_entries()?;
        Ok(if shown.len() == expected.len() + 3 {
            lab::ss::Probe::Done(shown)
        } else {
            lab::ss::Probe::NotYet(format!("{} of {}", shown.len(), expected.len() + 3))
        })
    })?;
    let mut ports: BTreeSet<u16> = BTreeSet::new();
    for entry in &shown {
        ports.insert(entry.local.port());
        if let Some(peer) = entry.peer {
            ports.insert(peer.port());
        }
    }
    Ok(Varied {
        flooded_port,
        dual_stack_port,
        ports: ports.into_iter().collect(),
        _held: held,
    })
}

/// What identifies a socket across two dumps: its kernel object and where it is.
type Key = (u64, u8, SocketAddr, SocketAddr);

fn key(record: &SocketRecord) -> Key {
    (
        record.cookie,
        record.state.kernel_number(),
        SocketAddr::new(record.local_addr, record.local_port),
        SocketAddr::new(record.remote_addr, record.remote_port),
    )
}

fn keys<'a>(records: impl IntoIterator<Item = &'a SocketRecord>) -> BTreeSet<Key> {
    records.into_iter().map(key).collect()
}

fn dump(diag: &mut SockDiag, request: &DumpRequest) -> Result<Vec<SocketRecord>> {
    let mut records = Vec::new();
    diag.dump_into(request, &mut records)?;
    Ok(records)
}

/// A random expression in the filter language, written with the spellings users type.
fn random_expression(random: &mut SplitMix64, ports: &[u16], depth: u32) -> String {
    let kind = if depth == 0 {
        random.below(3)
    } else {
        random.below(7)
    };
    match kind {
        0 => {
            let keyword = random.pick(&["sport", "dport"]);
            let comparison = random.pick(&[
                "=", "==", "eq", "!=", "ne", "<", "lt", "<=", "le", ">", "gt", ">=", "ge", "",
            ]);
            let base = ports[random.below(ports.len())];
            // Also the neighbours of ports in use, to catch off-by-one comparisons.
            let port = match random.below(4) {
                0 => base.saturating_add(1),
                1 => base.saturating_sub(1),
                _ => base,
            };
            let spelled = if random.below(2) == 0 {
                format!(":{port}")
            } else {
                port.to_string()
            };
            format!("{keyword} {comparison} {spelled}")
        }
        1 => {
            let keyword = random.pick(&["src", "dst"]);
            let operator = random.pick(&["", "= ", "!= "]);
            let host = random.pick(&[
                "127.0.0.1",
                "127.0.0.2",
                "127.0.0.0/8",
                "127.0.0.0/10",
                "127.0.0.0/24",
                "127.1.0.0/16",
                "127.64.0.0/10",
                "127.63.255.254/31",
                "0.0.0.0/0",
                "10.0.0.0/8",
                "::1",
                "[::1]",
                "::/0",
                "::ffff:0:0/96",
                "::ffff:127.0.0.1",
                "[::ffff:127.0.0.0]/104",
                "2001:db8::/32",
            ]);
            let with_port = match random.below(4) {
                0 => format!(":{}", ports[random.below(ports.len())]),
                _ => String::new(),
            };
            // A port after an IPv6 address needs brackets.
            let host =
                if !with_port.is_empty() && host.matches(':').count() > 1 && !host.starts_with('[')
                {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
            format!("{keyword} {operator}{host}{with_port}")
        }
        2 => {
            let states = random.pick(&[
                "listen",
                "syn-recv",
                "established",
                "ESTABLISHED",
                "time-wait",
                "close-wait",
                "fin-wait-2",
                "syn-sent",
                "connected",
                "synchronized",
                "bucket",
                "big",
                "listen,syn-recv",
                "SYN_SENT,TIME_WAIT",
            ]);
            format!("state {states}")
        }
        3 | 4 => format!(
            "{} {} {}",
            random_expression(random, ports, depth - 1),
            random.pick(&["and", "&&", "&", "or", "||", "|", ""]),
            random_expression(random, ports, depth - 1)
        ),
        5 => format!(
            "{} {}",
            random.pick(&["not", "!"]),
            random_expression(random, ports, depth - 1)
        ),
        _ => format!("( {} )", random_expression(random, ports, depth - 1)),
    }
}

#[test]
fn for_random_expressions_the_kernels_filtering_equals_user_space_evaluation() -> Result<()> {
    let lab = Lab::enter()?;
    let varied = varied(&lab)?;
    let mut diag = SockDiag::open()?;
    let mut random = SplitMix64(0x6b65_726e_656c);
    let mut exact = 0;
    let mut checked = 0;
    while checked < 300 {
        let text = random_expression(&mut random, &varied.ports, 3);
        let mut filter = filter::parse(&text).with_context(|| format!("parsing {text}"))?;
        match random.below(6) {
            0 => filter.ipv6 = false,
            1 => filter.ipv4 = false,
            _ => {}
        }
        // The sockets must not change between the three dumps; if one expired, the
        // comparison is moot and the expression is tried again on fresh dumps.
        let before = dump(&mut diag, &DumpRequest::everything())?;
        let kernel = dump(&mut diag, &DumpRequest::for_filter(&filter))?;
        let after = dump(&mut diag, &DumpRequest::everything())?;
        if keys(&before) != keys(&after) {
            continue;
        }
        checked += 1;

        let kernel = keys(&kernel);
        let user_space = keys(before.iter().filter(|s| filter.matches(s)));
        // What the kernel can do: the state mask, the families and every test but the
        // state tests under `or` and `not`.
        let kernel_view = filter.ignoring_states();
        let predicted = keys(
            before
                .iter()
                .filter(|s| filter.states.contains(s.state) && kernel_view.matches(s)),
        );
        ensure!(
            kernel == predicted,
            "{text}\nfilter: {filter:?}\nkernel only: {:?}\nuser space only: {:?}",
            kernel.difference(&predicted).collect::<Vec<_>>(),
            predicted.difference(&kernel).collect::<Vec<_>>()
        );
        ensure!(
            user_space.is_subset(&kernel),
            "{text}: the kernel dropped sockets the filter matches"
        );
        if !filter.condition.as_ref().is_some_and(|c| c.tests_states()) {
            ensure!(kernel == user_space, "{text}: kernel and user space differ");
            exact += 1;
        }
    }
    // Most expressions leave no state test to user space; those compare exactly.
    ensure!(
        exact > 150,
        "only {exact} of 300 expressions compared exactly"
    );
    Ok(())
}

/// The sockets `tcpscope --json --filter EXPR` lists, as the lab's entries.
fn tcpscope_entries(expression: &str) -> Result<Vec<Entry>> {
    entries::of_json(&json(&["--json", "--filter", expression])?)
}

/// What `ss -tanH [state S] EXPR` lists.
fn ss_entries(lab: &Lab, state: Option<TcpState>, expression: &str) -> Result<Vec<Entry>> {
    let mut args = vec!["-tanH"];
    if let Some(state) = state {
        args.extend(["state", state.ss_filter()]);
    }
    args.push(expression);
    let output = lab.run("ss", &args)?;
    let mut entries = output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| lab::SsLine::parse(line, state)?.entry())
        .collect::<Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

#[test]
fn fixed_expressions_list_what_ss_lists_for_the_same_expression() -> Result<()> {
    let lab = Lab::enter()?;
    let varied = varied(&lab)?;
    let flooded = varied.flooded_port;
    let dual = varied.dual_stack_port;
    // (tcpscope's expression, the state ss is given separately, ss's expression)
    let cases: Vec<(String, Option<TcpState>, String)> = vec![
        ("dport = :80".into(), None, "dport = :80".into()),
        ("dst 127.64.0.0/10".into(), None, "dst 127.64.0.0/10".into()),
        (
            format!("( sport = :{flooded} or dport = :{flooded} ) and not dst 127.64.0.0/10"),
            None,
            format!("( sport = :{flooded} or dport = :{flooded} ) and not dst 127.64.0.0/10"),
        ),
        ("src [::1]".into(), None, "src [::1]".into()),
        (
            "src 127.0.0.0/24 and sport > :1024".into(),
            None,
            "src 127.0.0.0/24 and sport > :1024".into(),
        ),
        (
            "state syn-recv and dport >= :32768".into(),
            Some(TcpState::SynRecv),
            "dport >= :32768".into(),
        ),
        (
            "state established and ( dst 127.0.0.2 or src [::1] )".into(),
            Some(TcpState::Established),
            "( dst 127.0.0.2 or src [::1] )".into(),
        ),
        (
            format!("sport = :{dual} or dport = :{dual}"),
            None,
            format!("sport = :{dual} or dport = :{dual}"),
        ),
        (
            format!("dst 127.0.0.1 and ( sport = :{dual} or dport = :{dual} )"),
            None,
            format!("dst 127.0.0.1 and ( sport = :{dual} or dport = :{dual} )"),
        ),
        (
            "sport != :80 and dport < :1024 and not src 127.0.0.6".into(),
            None,
            "sport != :80 and dport < :1024 and not src 127.0.0.6".into(),
        ),
        (
            "dst 127.0.0.5 or src 127.0.0.5".into(),
            None,
            "dst 127.0.0.5 or src 127.0.0.5".into(),
        ),
    ];
    for (ours, state, theirs) in &cases {
        let tcpscope = tcpscope_entries(ours)?;
        let ss = ss_entries(&lab, *state, theirs)?;
        ensure!(
            tcpscope == ss,
            "{ours}: tcpscope and ss disagree\ntcpscope: {tcpscope:#?}\nss: {ss:#?}"
        );
        ensure!(
            !ss.is_empty() || ours.starts_with("sport != :80"),
            "{ours} matched nothing: a weak case"
        );
    }
    Ok(())
}

#[test]
fn an_ipv4_prefix_matches_v4_mapped_sockets_in_the_kernel_and_here() -> Result<()> {
    let lab = Lab::enter()?;
    let varied = varied(&lab)?;
    let dual = varied.dual_stack_port;
    let filter: Filter = filter::parse(&format!(
        "src 127.0.0.1 and sport = :{dual} and state established"
    ))?;
    let mut records = Vec::new();
    SockDiag::open()?.dump_into(&DumpRequest::for_filter(&filter), &mut records)?;
    ensure!(records.len() == 1, "one accepted socket: {records:?}");
    let accepted = records[0];
    ensure!(
        accepted.local_addr == "::ffff:127.0.0.1".parse::<IpAddr>()?,
        "an IPv6 socket with a v4-mapped address: {accepted:?}"
    );
    ensure!(filter.matches(&accepted));
    let v6_prefix = filter::parse(&format!("src ::/0 and sport = :{dual}"))?;
    let mut records = Vec::new();
    SockDiag::open()?.dump_into(&DumpRequest::for_filter(&v6_prefix), &mut records)?;
    ensure!(
        records.len() == 2,
        "::/0 holds the dual-stack listener and the accepted socket: {records:?}"
    );
    Ok(())
}

#[test]
fn filter_alone_prints_a_table_and_exits_1_when_nothing_matches() -> Result<()> {
    let lab = Lab::enter()?;
    let varied = varied(&lab)?;
    let output = tcpscope(&[
        "--filter",
        &format!("state listen and sport = :{}", varied.flooded_port),
    ])?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    let text = String::from_utf8(output.stdout)?;
    let rows: Vec<&str> = text.lines().skip(1).collect();
    ensure!(rows.len() == 1 && rows[0].starts_with("LISTEN"), "{text}");

    let none = tcpscope(&["--filter", "dst 10.0.0.0/8"])?;
    ensure!(
        none.status.code() == Some(1) && none.stdout.is_empty(),
        "{none:?}"
    );

    let combined = tcpscope(&["--grep", "syn-recv", "--filter", "dst 127.64.0.0/10"])?;
    let text = String::from_utf8(combined.stdout)?;
    ensure!(
        text.lines().count() == 21,
        "a header and 20 half-open: {text}"
    );
    if text
        .lines()
        .skip(1)
        .any(|line| !line.starts_with("SYN_RECV"))
    {
        bail!("--grep and --filter combine with and: {text}");
    }
    Ok(())
}

/// `tcpscope --watch --json --filter EXPR` as a child of the lab's thread.
struct Watch(Stream);

impl Watch {
    fn start(expression: &str) -> Result<Watch> {
        let mut watch = Watch(Stream::watch(&[
            "--interval",
            "100ms",
            "--filter",
            expression,
        ])?);
        watch.wait_for("the first counts line", |line| line["type"] == "counts")?;
        Ok(watch)
    }

    /// The first line of the stream, read already or still to come, that satisfies
    /// `wanted`.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Result<Value> {
        self.0.find(what, SETTLE * 2, wanted)
    }

    /// Reads until `polls` more polls have been reported, so that everything built
    /// before the call has been seen by a whole poll.
    fn wait_for_polls(&mut self, polls: usize) -> Result<()> {
        for _ in 0..polls {
            self.0
                .wait_for("another poll", SETTLE, |line| line["type"] == "counts")?;
        }
        Ok(())
    }

    /// Every line read so far.
    fn seen(&self) -> impl Iterator<Item = &Value> {
        self.0.seen().iter().map(|line| &line.value)
    }
}

fn line_endpoints(line: &Value) -> Option<(SocketAddr, SocketAddr)> {
    let address = |addr: &str, port: &str| -> Option<SocketAddr> {
        Some(SocketAddr::new(
            line[addr].as_str()?.parse().ok()?,
            u16::try_from(line[port].as_u64()?).ok()?,
        ))
    };
    Some((
        address("local_addr", "local_port")?,
        address("remote_addr", "remote_port")?,
    ))
}

#[test]
fn watch_with_a_filter_streams_only_the_matching_connections_and_counts() -> Result<()> {
    let lab = Lab::enter()?;
    // A state under `or`: the kernel cannot test it, so the poller dumps every
    // socket and the stream decides.
    let mut watch = Watch::start("dst 127.0.0.2 or state close-wait")?;
    // Clients on loopback connect from 127.0.0.1, so of each connection only the
    // client's end has the server's address as its destination.
    let wanted = lab.established("127.0.0.2".parse()?)?;
    let half_closed = lab.fin_wait2_close_wait("127.0.0.3".parse()?)?;
    let _unwanted = lab.established("127.0.0.4".parse()?)?;

    let close_wait = (half_closed.server_addr, half_closed.client_addr);
    watch.wait_for("the server end entering CLOSE_WAIT", |line| {
        line["type"] == "transition"
            && line_endpoints(line) == Some(close_wait)
            && line["to"] == "CLOSE_WAIT"
    })?;
    let client_end = (wanted.client_addr, wanted.server_addr);
    watch.wait_for("the client end of the wanted connection", |line| {
        line["type"] == "transition" && line_endpoints(line) == Some(client_end)
    })?;
    watch.wait_for("counts of the matching sockets", |line| {
        line["type"] == "counts"
            && line["counts"]["ESTABLISHED"] == 1
            && line["counts"]["CLOSE_WAIT"] == 1
    })?;

    // Two more polls: every connection built above has been seen by a whole poll.
    watch.wait_for_polls(2)?;
    let wanted_ip: IpAddr = "127.0.0.2".parse()?;
    let shown_but_unwanted: Vec<_> = watch
        .seen()
        .filter(|line| line["type"] == "transition")
        .filter(|line| match line_endpoints(line) {
            Some((local, remote)) => remote.ip() != wanted_ip && (local, remote) != close_wait,
            None => true,
        })
        .collect();
    ensure!(
        shown_but_unwanted.is_empty(),
        "transitions that do not match the filter: {shown_but_unwanted:#?}"
    );
    for line in watch.seen().filter(|line| line["type"] == "counts") {
        ensure!(
            line["counts"]["ESTABLISHED"].as_u64() <= Some(1) && line["counts"]["FIN_WAIT2"] == 0,
            "only the matching sockets are counted: {line}"
        );
    }
    Ok(())
}
