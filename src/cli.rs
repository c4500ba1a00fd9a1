//! The command line: flags, their value parsers, and the mode they select.
//!
//! Parsing only: nothing here touches the kernel or the terminal. This one definition
//! is also the source of `--help`, the shell completions and the man page, so a flag's
//! first doc paragraph is its one-line `-h` summary and the rest is for `--help` and
//! `man tcpscope`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser};
use clap_complete::Shell;

use crate::filter::{self, Comparison, Condition, Expression, Filter, Side};
use crate::group::GroupKey;
use crate::kernel::netns::NetnsSpec;
use crate::poll::poller::MIN_INTERVAL;
use crate::tcp::StateSet;
use crate::watch::Thresholds;
use crate::watch::findings::FindingThresholds;

/// The headings `--help` groups the flags under, in the order they first appear.
const MODES: &str = "Modes (none: the interactive view)";
const SOCKETS: &str = "Which sockets";
const LIVE: &str = "Live modes (--watch, --serve, --check, the view)";
const OUTPUT: &str = "Output";
const THRESHOLDS: &str = "SYN watch and finding thresholds";

/// The examples that end `--help` and the man page: a command line and what it shows.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("tcpscope", "the live view (q quits, ? shows the keys)"),
    (
        "tcpscope --replay assets/synflood.rec",
        "a recorded SYN flood, in the view",
    ),
    (
        "tcpscope --grep SYN_RECV -p",
        "half-open connections and their processes",
    ),
    (
        "tcpscope --filter 'state estab and dport = :443' --json",
        "HTTPS clients, as JSON",
    ),
    (
        "tcpscope --watch --json --port 8080",
        "every transition on port 8080, as NDJSON",
    ),
    (
        "tcpscope --serve :9464 --all-netns",
        "Prometheus metrics, every container, on every interface",
    ),
    (
        "tcpscope --check --window 5s",
        "a monitoring plugin's status line",
    ),
    (
        "tcpscope --completions bash > /etc/bash_completion.d/tcpscope",
        "completions for bash",
    ),
];

/// How states are named, wherever a flag takes them.
pub const STATE_NAMES: &str = "State names: netstat (SYN_RECV, FIN_WAIT1), ss (syn-recv, \
    fin-wait-1, estab) or RFC (SYN-RECEIVED) spellings, case-insensitive, comma-separated; \
    ss groups: all, connected, synchronized, bucket, big.";

/// What ends `--help`: the examples, each command on its own line and what it shows
/// below it (so that no terminal width breaks a command), then the state names.
fn long_epilogue() -> String {
    let mut text = String::from("Examples:\n");
    for (command, shows) in EXAMPLES {
        text.push_str(&format!("  {command}\n      {shows}\n"));
    }
    text.push('\n');
    text.push_str(STATE_NAMES);
    text
}

#[derive(Debug, Parser)]
#[command(
    name = "tcpscope",
    version,
    about = "Live TCP connection states: counts, changes, and SYN flood detection",
    long_about = "Live TCP connection states: counts, changes, and SYN flood detection.\n\n\
        With no mode on a terminal, opens the interactive view. --grep prints matching \
        sockets as a table (exit 0 on a match, 1 on none, 2 on error); --json prints one \
        JSON document.",
    after_help = "State names: netstat (SYN_RECV), ss (syn-recv, estab) or RFC spellings, \
        comma-separated. --help shows more, with examples.",
    after_long_help = long_epilogue()
)]
pub struct Cli {
    /// Print the sockets in these states as a table.
    ///
    /// Like `netstat -nap | grep SYN_RECV`; exit 0 on a match, 1 on none. With --json:
    /// filter the JSON document.
    #[arg(long, value_name = "STATES", value_parser = parse_states, help_heading = MODES)]
    pub grep: Option<StateSet>,

    /// Print every state transition as it happens.
    ///
    /// One line each (with --json: one JSON object per line), until interrupted.
    #[arg(long, help_heading = MODES)]
    pub watch: bool,

    /// Serve Prometheus metrics at http://ADDRESS/metrics.
    ///
    /// Headless, until interrupted. ADDRESS is an address and port ([::]:9464,
    /// 10.0.0.5:9464), a port alone on loopback (9464), or :PORT for every interface,
    /// as node_exporter's --web.listen-address=:9100; without one, 127.0.0.1:9464.
    /// Without --web-config the endpoint has no authentication: beyond loopback,
    /// tcpscope says so on stderr when it starts.
    #[arg(
        long,
        value_name = "ADDRESS",
        num_args = 0..=1,
        default_missing_value = DEFAULT_SERVE_ADDRESS,
        value_parser = parse_serve_address,
        conflicts_with_all = ["watch", "json", "grep"],
        help_heading = MODES
    )]
    pub serve: Option<SocketAddr>,

    /// Check once, as a monitoring plugin (Nagios, Icinga, Sensu).
    ///
    /// Polls for --window, prints one status line with perfdata, and exits 0 OK,
    /// 1 WARNING, 2 CRITICAL or 3 UNKNOWN, the plugin convention; these differ from the
    /// other modes' codes.
    #[arg(
        long,
        conflicts_with_all = ["watch", "json", "grep", "filter", "serve", "kill", "replay", "record"],
        help_heading = MODES
    )]
    pub check: bool,

    /// Close the sockets an ss-style expression matches.
    ///
    /// SOCK_DESTROY, as `ss -K`. Without --yes, only prints what it would close. Never
    /// closes a LISTEN socket unless the expression names the state: 'state listen and
    /// sport = :8080'.
    #[arg(long, value_name = "EXPR", value_parser = parse_kill, conflicts_with_all = ["watch", "json", "serve", "all_netns"], help_heading = MODES)]
    pub kill: Option<Expression>,

    /// With --kill: really close the sockets.
    ///
    /// Needs CAP_NET_ADMIN.
    #[arg(long, requires = "kill", help_heading = MODES)]
    pub yes: bool,

    /// Replay a recording made with --record.
    ///
    /// On a terminal, in the interactive view; otherwise the stream --watch printed
    /// (NDJSON with --json), filtered by --filter, --grep and the port flags. Needs no
    /// privileges.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["watch", "serve", "kill", "netns", "all_netns"], help_heading = MODES)]
    pub replay: Option<PathBuf>,

    /// Print the completions for bash, zsh or fish.
    ///
    /// Also elvish and powershell. For bash: `tcpscope --completions bash > /etc/bash_completion.d/tcpscope`; for
    /// zsh, a file named _tcpscope in a folder of $fpath; for fish,
    /// ~/.config/fish/completions/tcpscope.fish.
    #[arg(long, value_name = "SHELL", exclusive = true, hide_possible_values = true, help_heading = MODES)]
    pub completions: Option<Shell>,

    /// Print the man page (roff).
    ///
    /// Read it with `tcpscope --man | man -l -`, or install it as
    /// /usr/local/share/man/man1/tcpscope.1.
    #[arg(long, exclusive = true, help_heading = MODES)]
    pub man: bool,

    /// Keep the sockets an ss-style expression matches.
    ///
    /// E.g. 'state syn-recv and ( dport = :443 or sport = :8080 ) and dst 10.0.0.0/8'.
    /// Alone, prints them as a table like --grep; combines with --grep, --json, --watch
    /// and the other filters.
    #[arg(long, value_name = "EXPR", value_parser = parse_filter, help_heading = SOCKETS)]
    pub filter: Option<Filter>,

    /// IPv4 sockets only.
    #[arg(short = '4', long = "ipv4", action = ArgAction::SetTrue, conflicts_with = "ipv6", help_heading = SOCKETS)]
    pub ipv4: bool,

    /// IPv6 sockets only.
    #[arg(short = '6', long = "ipv6", action = ArgAction::SetTrue, help_heading = SOCKETS)]
    pub ipv6: bool,

    /// Sockets whose local or peer port is PORT.
    #[arg(long, value_name = "PORT", help_heading = SOCKETS)]
    pub port: Option<u16>,

    /// Sockets whose local (source) port is PORT.
    #[arg(long, value_name = "PORT", help_heading = SOCKETS)]
    pub sport: Option<u16>,

    /// Sockets whose peer (destination) port is PORT.
    #[arg(long, value_name = "PORT", help_heading = SOCKETS)]
    pub dport: Option<u16>,

    /// Inspect another network namespace.
    ///
    /// A name from /run/netns, a path such as /proc/PID/ns/net, or a process id.
    #[arg(long, value_name = "NAME|PATH|PID", value_parser = NetnsSpec::parse, conflicts_with = "all_netns", help_heading = SOCKETS)]
    pub netns: Option<NetnsSpec>,

    /// Inspect the network namespaces of all processes.
    ///
    /// Containers included, each labelled (with --json, --grep, --watch, --serve or the
    /// interactive view).
    #[arg(long, help_heading = SOCKETS)]
    pub all_netns: bool,

    /// Time between polls.
    ///
    /// 250ms, 1s, 2.5s, 1m (at least 50ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval, help_heading = LIVE)]
    pub interval: Duration,

    /// CPU budget of the live modes, in % of one core.
    ///
    /// 0: none. When a full dump every --interval would cost more, full dumps are
    /// spaced out to fit, and listeners, SYN_RECV and the counters are still read every
    /// --interval.
    #[arg(long, value_name = "PERCENT", default_value = "20", value_parser = parse_max_cpu, allow_negative_numbers = true, help_heading = LIVE)]
    pub max_cpu: f64,

    /// Also append every poll to FILE.
    ///
    /// With --watch, --serve or the interactive view: a recording that --replay shows
    /// again. Appends to an existing recording; a file that is not one is refused
    /// (unless --force), and so is a symbolic link.
    #[arg(long, value_name = "FILE", conflicts_with = "all_netns", help_heading = LIVE)]
    pub record: Option<PathBuf>,

    /// Rotate the recording past this size.
    ///
    /// Past it, FILE moves to FILE.1 (replacing it) and FILE starts anew: 64M, 500K,
    /// 1G, or bytes.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size, requires = "record", help_heading = LIVE)]
    pub record_max_size: u64,

    /// With --record: start FILE afresh.
    ///
    /// Replaces whatever it holds (and FILE.1 when it rotates), instead of appending to
    /// a recording and refusing anything else.
    #[arg(long, requires = "record", help_heading = LIVE)]
    pub force: bool,

    /// With --serve: TLS and basic authentication from FILE.
    ///
    /// In the Prometheus exporters' web config shape (tls_server_config: cert_file,
    /// key_file; basic_auth_users: NAME: BCRYPT-HASH). A bad file is an error (exit 2).
    #[arg(long, value_name = "FILE", requires = "serve", help_heading = LIVE)]
    pub web_config: Option<PathBuf>,

    /// With --check: how long to poll before answering.
    ///
    /// At least 200ms. Polls come every quarter of it (or every --interval, if
    /// shorter), so a finding has the two polls in a row it needs to be raised.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_window, requires = "check", help_heading = LIVE)]
    pub window: Duration,

    /// Print one JSON document.
    ///
    /// Counts for all states, every socket, kernel counters (with --watch: one JSON
    /// object per line).
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,

    /// Show the process that owns each socket.
    ///
    /// Reads /proc/*/fd; slower.
    #[arg(short = 'p', long, help_heading = OUTPUT)]
    pub processes: bool,

    /// Count the sockets of each group in each state.
    ///
    /// With --grep or --json. KEY is port (the local listening port of server-side
    /// connections, the remote port of outgoing ones), peer, peer/24 (a /64 for IPv6),
    /// process (needs -p) or cgroup (the socket's cgroup v2: systemd unit, container or
    /// pod).
    #[arg(long, value_name = "KEY", value_parser = parse_group_key, help_heading = OUTPUT)]
    pub group_by: Option<GroupKey>,

    /// Show tcp_info per socket, as ss -i.
    ///
    /// With --json or --grep: RTT and its variance, congestion window, retransmits,
    /// bytes acked and received, delivery rate. In the view: as columns of the
    /// connections table, as many as fit (i shows or hides them). The kernel's dump
    /// grows with it: a full poll of 100k sockets takes 30 to 40 ms more.
    #[arg(short = 'i', long, help_heading = OUTPUT)]
    pub info: bool,

    /// SYN flood: half-open on one listener.
    ///
    /// SYN flood verdict: how many half-open connections on one listener count as many.
    #[arg(long, value_name = "N", default_value_t = Thresholds::default().min_half_open, help_heading = THRESHOLDS)]
    pub flood_min_half_open: u32,

    /// SYN flood: distinct source addresses.
    ///
    /// SYN flood verdict: distinct source addresses among them needed to call it a flood.
    #[arg(long, value_name = "N", default_value_t = Thresholds::default().min_distinct_sources, help_heading = THRESHOLDS)]
    pub flood_min_sources: u32,

    /// SYN flood: distinct networks.
    ///
    /// SYN flood verdict: distinct /24 (IPv4) or /64 (IPv6) networks needed as well.
    #[arg(long, value_name = "N", default_value_t = Thresholds::default().min_distinct_prefixes, help_heading = THRESHOLDS)]
    pub flood_min_prefixes: u32,

    /// Accept-queue share that counts as full.
    ///
    /// The accept-queue length, as a share of the backlog, that counts as full (0 to 1).
    #[arg(long, value_name = "RATIO", default_value_t = Thresholds::default().accept_queue_full_ratio, value_parser = parse_ratio, help_heading = THRESHOLDS)]
    pub accept_queue_full: f64,

    /// Time a finding outlasts its cause.
    ///
    /// Findings: how long a finding's condition must be gone before it clears.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = THRESHOLDS)]
    pub finding_hold: Duration,

    /// listen_drops: drops a second.
    ///
    /// A listener's drops per second that raise listen_drops.
    #[arg(long, value_name = "RATE", default_value_t = FindingThresholds::default().listen_drops_per_second, value_parser = parse_rate, help_heading = THRESHOLDS)]
    pub listen_drops_rate: f64,

    /// port_exhaustion: warning share.
    ///
    /// Share of the ephemeral port range one destination may use before
    /// port_exhaustion warns (0 to 1); critical at --port-exhaustion-critical.
    #[arg(long, value_name = "RATIO", default_value_t = FindingThresholds::default().port_exhaustion_warning, value_parser = parse_ratio, help_heading = THRESHOLDS)]
    pub port_exhaustion_warning: f64,

    /// port_exhaustion: critical share.
    ///
    /// Share of the ephemeral port range that makes port_exhaustion critical.
    #[arg(long, value_name = "RATIO", default_value_t = FindingThresholds::default().port_exhaustion_critical, value_parser = parse_ratio, help_heading = THRESHOLDS)]
    pub port_exhaustion_critical: f64,

    /// time_wait_pressure: warning share.
    ///
    /// TIME_WAIT sockets, as a share of net.ipv4.tcp_max_tw_buckets, that make
    /// time_wait_pressure a warning (0 to 1); critical at --time-wait-critical.
    #[arg(long, value_name = "RATIO", default_value_t = FindingThresholds::default().time_wait_warning, value_parser = parse_ratio, help_heading = THRESHOLDS)]
    pub time_wait_warning: f64,

    /// time_wait_pressure: critical share.
    ///
    /// The share of net.ipv4.tcp_max_tw_buckets that makes time_wait_pressure critical.
    #[arg(long, value_name = "RATIO", default_value_t = FindingThresholds::default().time_wait_critical, value_parser = parse_ratio, help_heading = THRESHOLDS)]
    pub time_wait_critical: f64,

    /// connect_stalled: SYN_SENT count.
    ///
    /// SYN_SENT sockets toward one remote endpoint that make connect_stalled, once the
    /// oldest has waited --connect-stalled-age or a SYN was sent twice again.
    #[arg(long, value_name = "COUNT", default_value_t = FindingThresholds::default().connect_stalled_count, value_parser = clap::value_parser!(u32).range(1..), help_heading = THRESHOLDS)]
    pub connect_stalled_count: u32,

    /// connect_stalled: wait of the oldest.
    ///
    /// How long the oldest of those SYN_SENT sockets must have waited.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration, help_heading = THRESHOLDS)]
    pub connect_stalled_age: Duration,

    /// peer_not_reading: Send-Q stuck for.
    ///
    /// How long a Send-Q may stay without going down before peer_not_reading (a zero
    /// window counts at once).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = THRESHOLDS)]
    pub peer_not_reading_after: Duration,

    /// retransmitting_path: retransmits.
    ///
    /// Retransmissions in a row of one segment that count a connection toward
    /// retransmitting_path.
    #[arg(long, value_name = "COUNT", default_value_t = FindingThresholds::default().path_retransmits, value_parser = clap::value_parser!(u8).range(1..), help_heading = THRESHOLDS)]
    pub path_retransmits: u8,

    /// connection_churn: new per second.
    ///
    /// New connections a second to one remote endpoint or into one listener, most over
    /// within a poll, that make connection_churn.
    #[arg(long, value_name = "RATE", default_value_t = FindingThresholds::default().churn_per_second, value_parser = parse_rate, help_heading = THRESHOLDS)]
    pub churn_rate: f64,
}

/// What the user asked tcpscope to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--grep`: a table of matching sockets.
    Grep,
    /// `--json`: one JSON document.
    Json,
    /// `--watch`: a stream of transitions, as text or (with `--json`) NDJSON.
    Watch,
    /// `--serve`: Prometheus metrics over HTTP.
    Serve,
    /// `--kill`: close matching sockets (or, without `--yes`, list them).
    Kill,
    /// `--check`: one monitoring-plugin status line and exit code.
    Check,
    /// `--replay`: a recording's stream.
    Replay,
    /// `--completions SHELL`: a shell's completion script.
    Completions(Shell),
    /// `--man`: the man page.
    Man,
    /// No mode: the interactive view.
    Interactive,
}

impl Cli {
    pub fn mode(&self) -> Mode {
        if let Some(shell) = self.completions {
            Mode::Completions(shell)
        } else if self.man {
            Mode::Man
        } else if self.replay.is_some() {
            Mode::Replay
        } else if self.kill.is_some() {
            Mode::Kill
        } else if self.check {
            Mode::Check
        } else if self.serve.is_some() {
            Mode::Serve
        } else if self.watch {
            Mode::Watch
        } else if self.json {
            Mode::Json
        } else if self.grep.is_some() || self.filter.is_some() {
            Mode::Grep
        } else {
            Mode::Interactive
        }
    }

    /// Refuses what clap's declarations cannot: `--record` only goes with a mode that
    /// polls over time (`--watch`, `--serve`, the interactive view), and `-p` not with
    /// `--replay`, whose recordings keep no owners, and `-i` only with the one-shot
    /// `--json` or `--grep` or the interactive view, in one namespace. The error is a
    /// usage error (exit status 2), as clap's own are.
    pub fn check(&self) -> Result<(), clap::Error> {
        let polls_over_time = matches!(self.mode(), Mode::Watch | Mode::Serve | Mode::Interactive);
        if self.record.is_some() && !polls_over_time {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--record goes with --watch, --serve or the interactive view: a one-shot or a replay has no polls to record",
            ));
        }
        if self.info
            && (self.all_netns
                || !matches!(self.mode(), Mode::Json | Mode::Grep | Mode::Interactive))
        {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "-i/--info goes with --json, --grep or the interactive view (one namespace): --watch, --serve, --check and --kill show no per-socket tcp_info, and a recording (--replay) holds none",
            ));
        }
        if self.replay.is_some() && self.processes {
            return Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "--replay cannot show processes (-p): a recording keeps no socket's owner, and today's processes are not the recorded ones",
            ));
        }
        if let Some(key) = self.group_by {
            if !matches!(self.mode(), Mode::Grep | Mode::Json) || self.all_netns {
                return Err(Cli::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--group-by goes with --grep or --json (the interactive view groups with g in its Groups tab), and not yet with --all-netns",
                ));
            }
            if key == GroupKey::Process && !self.processes {
                return Err(Cli::command().error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "--group-by process needs -p: the owners of sockets come from the walk over /proc that -p does",
                ));
            }
        }
        Ok(())
    }

    /// Where findings begin and end, defaults overridden by the flags.
    pub fn finding_thresholds(&self) -> FindingThresholds {
        FindingThresholds {
            clear_after: self.finding_hold,
            listen_drops_per_second: self.listen_drops_rate,
            port_exhaustion_warning: self.port_exhaustion_warning,
            port_exhaustion_critical: self.port_exhaustion_critical,
            time_wait_warning: self.time_wait_warning,
            time_wait_critical: self.time_wait_critical,
            connect_stalled_count: self.connect_stalled_count,
            connect_stalled_age: self.connect_stalled_age,
            peer_not_reading_after: self.peer_not_reading_after,
            path_retransmits: self.path_retransmits,
            churn_per_second: self.churn_rate,
            ..FindingThresholds::default()
        }
    }

    /// The SYN watch's thresholds, defaults overridden by the flags.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            min_half_open: self.flood_min_half_open,
            min_distinct_sources: self.flood_min_sources,
            min_distinct_prefixes: self.flood_min_prefixes,
            accept_queue_full_ratio: self.accept_queue_full,
            ..Thresholds::default()
        }
    }

    /// The socket filter the flags describe.
    pub fn filter(&self) -> Filter {
        let conditions = [
            self.port.map(Condition::either_port),
            self.sport
                .map(|port| Condition::port(Side::Source, Comparison::Equal, port)),
            self.dport
                .map(|port| Condition::port(Side::Destination, Comparison::Equal, port)),
        ];
        let condition = conditions.into_iter().flatten().reduce(Condition::and);
        let only_one_family = self.ipv4 || self.ipv6;
        let flags = Filter {
            states: self.grep.unwrap_or_else(StateSet::all),
            ipv4: !only_one_family || self.ipv4,
            ipv6: !only_one_family || self.ipv6,
            condition,
        };
        match &self.filter {
            Some(expression) => flags.and(expression.clone()),
            None => flags,
        }
    }
}

/// A filter expression; the error shows the expression with a caret under the
/// offending token.
fn parse_filter(expression: &str) -> Result<Filter, String> {
    filter::parse(expression).map_err(|error| error.to_string())
}

/// A size in bytes, with an optional binary suffix: `500K`, `64M`, `1G`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, multiplier) = match text.char_indices().last() {
        Some((at, 'K' | 'k')) => (&text[..at], 1u64 << 10),
        Some((at, 'M' | 'm')) => (&text[..at], 1 << 20),
        Some((at, 'G' | 'g')) => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|bytes| *bytes >= 4096)
        .ok_or_else(|| format!("'{text}' is not a size of at least 4K; write e.g. 500K, 64M or 1G"))
}

fn parse_group_key(text: &str) -> Result<GroupKey, String> {
    GroupKey::parse(text).ok_or_else(|| {
        let keys: Vec<&str> = GroupKey::ALL.iter().map(|key| key.name()).collect();
        format!("the keys are {}", keys.join(", "))
    })
}

fn parse_kill(expression: &str) -> Result<Expression, String> {
    filter::parse_expression(expression).map_err(|error| error.to_string())
}

fn parse_states(list: &str) -> Result<StateSet, String> {
    StateSet::parse_list(list).map_err(|error| error.to_string())
}

/// Parses a human duration: a number, optionally with a fraction, and a unit (`ms`,
/// `s` or `m`): `250ms`, `1s`, `2.5s`, `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration; write e.g. 250ms, 1s, 2.5s or 1m"))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "" => return Err(format!("'{text}' needs a unit: ms, s or m (e.g. {text}s)")),
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}'; use ms, s or m"
            ));
        }
    };
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("'{text}' is out of range"))
}

/// Where `--serve` listens when given no address: loopback only, since the endpoint
/// has no authentication.
const DEFAULT_SERVE_ADDRESS: &str = "127.0.0.1:9464";

/// An address and port; a port alone (`9464`), which means loopback; or `:PORT`,
/// which means every interface, as node_exporter's `--web.listen-address=:9100` and
/// Go's listeners take it. Every interface is `[::]`, which `--serve` binds for IPv4 as
/// well (or `0.0.0.0` on a kernel without IPv6).
fn parse_serve_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)));
    }
    if let Some(port) = text.strip_prefix(':')
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)));
    }
    text.parse().map_err(|_| {
        format!(
            "'{text}' is not an address and port; write e.g. 127.0.0.1:9464, [::]:9464, \
             a port alone (loopback) or :9464 (every interface)"
        )
    })
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a rate above 0 per second (e.g. 1 or 0.5)"
        )),
    }
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!(
            "'{text}' is not a ratio between 0 and 1 (e.g. 0.9)"
        )),
    }
}

/// The shortest `--window`: four polls at the shortest interval.
pub const MIN_WINDOW: Duration = Duration::from_millis(200);

fn parse_window(text: &str) -> Result<Duration, String> {
    let window = parse_duration(text)?;
    if window < MIN_WINDOW {
        return Err(format!(
            "'{text}' is shorter than the shortest window, 200ms: a check needs a few polls"
        ));
    }
    Ok(window)
}

/// Whether a command line asks for `--check`, read from the raw arguments, for a
/// command line clap refused: a monitoring plugin's usage errors are UNKNOWN (3), not
/// the other modes' 2, which a monitoring system would read as CRITICAL.
pub fn asks_for_check<I, S>(args: I) -> bool
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    args.into_iter()
        .skip(1)
        // tcpscope takes no positional arguments: past `--` nothing is a flag.
        .take_while(|arg| arg.as_ref() != "--")
        .any(|arg| arg.as_ref() == "--check")
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    if interval < MIN_INTERVAL {
        return Err(format!(
            "'{text}' is shorter than the minimum interval, 50ms"
        ));
    }
    Ok(interval)
}

/// A CPU budget in percent of one core: 0 (none) up to every core of the machine.
fn parse_max_cpu(text: &str) -> Result<f64, String> {
    let percent = text.trim().trim_end_matches('%').parse::<f64>();
    // Within one core, the cores need not be counted (a read of the cgroup's quota):
    // every run parses the default, one-shots too.
    if let Ok(percent) = percent
        && (0.0..=100.0).contains(&percent)
    {
        return Ok(percent);
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let most = 100.0 * cores as f64;
    match percent {
        Ok(percent) if percent.is_finite() && (0.0..=most).contains(&percent) => Ok(percent),
        Ok(_) => Err(format!(
            "'{text}' is not a CPU budget between 0 and {most} (percent of one core, {cores} cores here; 0 for none)"
        )),
        Err(_) => Err(format!(
            "'{text}' is not a number: give a percent of one core, like 20 (0 for no budget)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::State;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("tcpscope").chain(args.iter().copied()))?;
        cli.check()?;
        Ok(cli)
    }

    #[test]
    fn info_goes_with_the_view_in_one_namespace_and_with_no_other_live_mode() {
        assert_eq!(parse(&["-i"]).unwrap().mode(), Mode::Interactive);
        assert!(parse(&["--info", "--netns", "1"]).is_ok());
        for args in [
            &["-i", "--all-netns"][..],
            &["-i", "--watch"],
            &["-i", "--serve"],
            &["-i", "--replay", "x.rec"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains("-i/--info"), "{args:?}: {error}");
        }
    }

    #[test]
    fn grep_takes_several_states_in_any_spelling() {
        let cli = parse(&["--grep", "syn-recv,TIME_WAIT"]).unwrap();
        assert_eq!(cli.mode(), Mode::Grep);
        let states: Vec<_> = cli.filter().states.iter().collect();
        assert_eq!(states, [State::SynRecv, State::TimeWait]);
    }

    #[test]
    fn an_unknown_state_is_a_usage_error_naming_the_valid_states() {
        let error = parse(&["--grep", "SYN_RECIEVED"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let message = error.to_string();
        assert!(message.contains("SYN_RECIEVED"), "{message}");
        assert!(message.contains("ESTABLISHED"), "{message}");
    }

    #[test]
    fn json_with_grep_is_a_filtered_json_document() {
        let cli = parse(&["--json", "--grep", "listen"]).unwrap();
        assert_eq!(cli.mode(), Mode::Json);
        assert_eq!(
            cli.filter().states.iter().collect::<Vec<_>>(),
            [State::Listen]
        );
    }

    #[test]
    fn one_family_flag_excludes_the_other() {
        let filter = parse(&["-6"]).unwrap().filter();
        assert!(filter.ipv6 && !filter.ipv4);
        let filter = parse(&[]).unwrap().filter();
        assert!(filter.ipv6 && filter.ipv4);
        assert_eq!(parse(&["-4", "-6"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn port_flags_combine_with_and() {
        let filter = parse(&["--port", "80", "--dport", "5000"])
            .unwrap()
            .filter();
        assert_eq!(
            filter.condition,
            Some(Condition::either_port(80).and(Condition::port(
                Side::Destination,
                Comparison::Equal,
                5000
            )))
        );
    }

    #[test]
    fn a_filter_expression_alone_prints_a_table_and_combines_with_the_other_flags() {
        let cli = parse(&[
            "--filter",
            "state listen or dport = :443",
            "--grep",
            "listen,estab",
        ])
        .unwrap();
        assert_eq!(cli.mode(), Mode::Grep);
        let filter = cli.filter();
        assert_eq!(
            filter.states.iter().collect::<Vec<_>>(),
            [State::Listen, State::Established]
        );
        assert!(filter.condition.is_some());
        assert_eq!(
            parse(&["--filter", "sport = :22"]).unwrap().mode(),
            Mode::Grep
        );
        assert_eq!(
            parse(&["--json", "--filter", "sport = :22"])
                .unwrap()
                .mode(),
            Mode::Json
        );
    }

    #[test]
    fn a_bad_filter_expression_is_a_usage_error_pointing_at_the_token() {
        let error = parse(&["--filter", "state estab and dport = :http"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let message = error.to_string();
        assert!(
            message.contains("'http'") || message.contains("':http'"),
            "{message}"
        );
        assert!(
            message.contains("  state estab and dport = :http\n                          ^^^^^"),
            "{message}"
        );
    }

    #[test]
    fn kill_takes_an_expression_and_yes_only_goes_with_it() {
        let cli = parse(&["--kill", "state listen and sport = :8080", "--yes"]).unwrap();
        assert_eq!(cli.mode(), Mode::Kill);
        assert!(cli.yes);
        assert!(cli.kill.unwrap().named_states.contains(State::Listen));
        assert_eq!(parse(&["--yes"]).unwrap_err().exit_code(), 2);
        assert_eq!(
            parse(&["--kill", "sport = :1", "--json"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(parse(&["--kill", "sport = "]).unwrap_err().exit_code(), 2);
        let with_grep = parse(&["--kill", "sport = :1", "--grep", "estab"]).unwrap();
        assert_eq!(with_grep.mode(), Mode::Kill);
    }

    #[test]
    fn record_goes_with_the_modes_that_poll_over_time_and_replay_is_a_mode_of_its_own() {
        let cli = parse(&["--watch", "--record", "x.rec", "--record-max-size", "1M"]).unwrap();
        assert_eq!(cli.record.as_deref(), Some(std::path::Path::new("x.rec")));
        assert_eq!(cli.record_max_size, 1 << 20);
        assert_eq!(
            parse(&["--record", "x.rec"]).unwrap().mode(),
            Mode::Interactive
        );
        let serve = parse(&["--serve", "127.0.0.1:9464", "--record", "x.rec"]).unwrap();
        assert_eq!(serve.mode(), Mode::Serve);
        for refused in [
            &["--json", "--record", "x.rec"][..],
            &["--grep", "listen", "--record", "x.rec"],
            &["--kill", "sport = :1", "--record", "x.rec"],
            &["--replay", "y.rec", "--record", "x.rec"],
            &[
                "--serve",
                "127.0.0.1:9464",
                "--all-netns",
                "--record",
                "x.rec",
            ],
        ] {
            let error = parse(refused).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{refused:?}");
        }
        assert!(
            parse(&["--json", "--record", "x.rec"])
                .unwrap_err()
                .to_string()
                .contains("--record goes with --watch, --serve or the interactive view")
        );
        let cli = parse(&["--replay", "x.rec", "--json", "--filter", "sport = :80"]).unwrap();
        assert_eq!(cli.mode(), Mode::Replay);
        assert_eq!(
            parse(&["--replay", "x.rec", "--watch"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("500k"), Ok(500 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("1K").is_err(), "below 4K");
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn the_cpu_budget_defaults_to_a_fifth_of_a_core_and_refuses_what_is_not_a_share() {
        assert_eq!(parse(&["--watch"]).unwrap().max_cpu, 20.0);
        assert_eq!(parse(&["--watch", "--max-cpu", "0"]).unwrap().max_cpu, 0.0);
        assert_eq!(
            parse(&["--watch", "--max-cpu", "2.5"]).unwrap().max_cpu,
            2.5
        );
        for bad in ["-5", "lots", "NaN", "inf", "100000"] {
            let error = parse(&["--watch", "--max-cpu", bad]).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad}");
            assert!(error.to_string().contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn intervals_are_human_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn the_interval_defaults_to_one_second_and_has_a_floor() {
        assert_eq!(
            parse(&["--watch"]).unwrap().interval,
            Duration::from_secs(1)
        );
        assert_eq!(
            parse(&["--watch", "--interval", "10ms"])
                .unwrap_err()
                .exit_code(),
            2
        );
        let cli = parse(&["--watch", "--json", "--interval", "50ms"]).unwrap();
        assert_eq!(cli.mode(), Mode::Watch);
        assert_eq!(cli.interval, MIN_INTERVAL);
    }

    #[test]
    fn finding_thresholds_default_to_the_findings_defaults_and_can_be_changed() {
        assert_eq!(
            parse(&[]).unwrap().finding_thresholds(),
            FindingThresholds::default()
        );
        let cli = parse(&["--finding-hold", "5s", "--time-wait-warning", "0.3"]).unwrap();
        assert_eq!(cli.finding_thresholds().clear_after, Duration::from_secs(5));
        assert_eq!(cli.finding_thresholds().time_wait_warning, 0.3);
        let cli = parse(&[
            "--connect-stalled-count",
            "3",
            "--peer-not-reading-after",
            "2s",
            "--path-retransmits",
            "5",
            "--churn-rate",
            "20",
        ])
        .unwrap();
        let thresholds = cli.finding_thresholds();
        assert_eq!(thresholds.connect_stalled_count, 3);
        assert_eq!(thresholds.peer_not_reading_after, Duration::from_secs(2));
        assert_eq!(thresholds.path_retransmits, 5);
        assert_eq!(thresholds.churn_per_second, 20.0);
        assert!(parse(&["--listen-drops-rate", "0"]).is_err());
        assert!(parse(&["--port-exhaustion-warning", "1.5"]).is_err());
    }

    #[test]
    fn flood_thresholds_default_to_the_watch_defaults_and_can_be_changed() {
        assert_eq!(parse(&[]).unwrap().thresholds(), Thresholds::default());
        let cli = parse(&["--flood-min-half-open", "500", "--accept-queue-full", "0.5"]).unwrap();
        assert_eq!(cli.thresholds().min_half_open, 500);
        assert_eq!(cli.thresholds().accept_queue_full_ratio, 0.5);
        assert_eq!(
            parse(&["--accept-queue-full", "2"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn serve_binds_to_loopback_unless_an_address_or_colon_port_is_given() {
        let loopback: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        assert_eq!(parse(&["--serve"]).unwrap().serve, Some(loopback));
        assert_eq!(parse(&["--serve", "-4"]).unwrap().serve, Some(loopback));
        assert_eq!(parse(&["--serve", "9464"]).unwrap().serve, Some(loopback));
        assert_eq!(
            parse(&["--serve", ":9100"]).unwrap().serve,
            Some("[::]:9100".parse().unwrap()),
            "a port after a colon is every interface, as node_exporter takes it"
        );
        assert_eq!(parse(&["--serve", ":"]).unwrap_err().exit_code(), 2);
        assert_eq!(
            parse(&["--serve", "[::]:9464"]).unwrap().serve,
            Some("[::]:9464".parse().unwrap())
        );
        assert_eq!(parse(&["--serve", "host:80"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["--serve", "65536"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn serve_takes_an_address_and_port_and_is_a_mode_of_its_own() {
        let cli = parse(&["--serve", "127.0.0.1:9464"]).unwrap();
        assert_eq!(cli.mode(), Mode::Serve);
        assert_eq!(cli.serve, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(parse(&["--serve", "[::]:9464", "-4", "--port", "80"]).is_ok());
        assert_eq!(
            parse(&["--serve", "127.0.0.1:9464", "--watch"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn completions_and_the_man_page_are_modes_that_take_no_other_flag() {
        assert_eq!(
            parse(&["--completions", "zsh"]).unwrap().mode(),
            Mode::Completions(Shell::Zsh)
        );
        assert_eq!(parse(&["--man"]).unwrap().mode(), Mode::Man);
        let unknown = parse(&["--completions", "tcsh"]).unwrap_err();
        assert_eq!(unknown.exit_code(), 2);
        for shell in ["bash", "zsh", "fish"] {
            assert!(unknown.to_string().contains(shell), "{unknown}");
        }
        assert_eq!(
            parse(&["--man", "--json"]).unwrap_err().exit_code(),
            2,
            "--man alone"
        );
        assert_eq!(
            parse(&["--completions", "bash", "--man"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn every_flag_has_a_heading_and_a_one_line_summary() {
        let command = Cli::command();
        for arg in command.get_arguments() {
            let name = arg.get_id().as_str();
            if matches!(name, "help" | "version") {
                continue;
            }
            assert!(arg.get_help_heading().is_some(), "--{name} has no heading");
            let summary = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(
                !summary.is_empty() && !summary.contains('\n') && summary.len() <= 60,
                "--{name}: {summary:?} is no short summary"
            );
        }
    }

    #[test]
    fn a_web_config_goes_with_serve_only() {
        let cli = parse(&["--serve", "--web-config", "web.yml"]).unwrap();
        assert_eq!(cli.web_config, Some(PathBuf::from("web.yml")));
        assert_eq!(
            parse(&["--web-config", "web.yml"]).unwrap_err().exit_code(),
            2
        );
    }

    #[test]
    fn a_namespace_is_named_one_way_or_all_are_asked_for() {
        let cli = parse(&["--json", "--netns", "4242"]).unwrap();
        assert_eq!(cli.netns, Some(NetnsSpec::Pid(4242)));
        let cli = parse(&["--grep", "listen", "--netns", "blue"]).unwrap();
        assert_eq!(cli.netns, Some(NetnsSpec::Name("blue".into())));
        assert!(parse(&["--json", "--all-netns"]).unwrap().all_netns);
        assert_eq!(
            parse(&["--json", "--netns", "1", "--all-netns"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn a_port_out_of_range_is_a_usage_error() {
        assert_eq!(parse(&["--port", "70000"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn check_polls_for_two_seconds_unless_given_a_window_of_its_own() {
        let cli = parse(&["--check"]).unwrap();
        assert_eq!(cli.mode(), Mode::Check);
        assert_eq!(cli.window, Duration::from_secs(2));
        let cli = parse(&["--check", "--window", "500ms", "--port", "443"]).unwrap();
        assert_eq!(cli.window, Duration::from_millis(500));
        assert!(parse(&["--check", "--window", "100ms"]).is_err());
        assert!(
            parse(&["--window", "5s"]).is_err(),
            "--window needs --check"
        );
        assert!(parse(&["--check", "--json"]).is_err());
        assert!(parse(&["--check", "--record", "x.tcpscope"]).is_err());
    }

    #[test]
    fn a_command_line_asking_for_check_is_told_from_its_raw_arguments() {
        assert!(asks_for_check(["tcpscope", "--window", "1s", "--check"]));
        assert!(!asks_for_check(["tcpscope", "--json"]));
        assert!(!asks_for_check(["--check"]), "the program name is no flag");
        assert!(!asks_for_check(["tcpscope", "--", "--check"]));
    }
}
