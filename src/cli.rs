//! The command line: flags, their value parsers, and the mode they select.
//!
//! Parsing only: nothing here touches the kernel or the terminal.

use clap::{ArgAction, Parser};

use crate::filter::{Comparison, Condition, Filter, Side};
use crate::tcp::StateSet;
use crate::watch::Thresholds;

#[derive(Debug, Parser)]
#[command(
    name = "tcpscope",
    version,
    about = "Live TCP connection states: counts, changes, and SYN flood detection",
    long_about = "Live TCP connection states: counts, changes, and SYN flood detection.\n\n\
        With no mode on a terminal, opens the interactive view. --grep prints matching \
        sockets as a table (exit 0 on a match, 1 on none, 2 on error); --json prints one \
        JSON document.",
    after_help = "State names: netstat (SYN_RECV, FIN_WAIT1), ss (syn-recv, fin-wait-1, estab) \
        or RFC (SYN-RECEIVED) spellings, case-insensitive, comma-separated; ss groups: all, \
        connected, synchronized, bucket, big."
)]
pub struct Cli {
    /// Print the sockets in these states as a table, like `netstat -nap | grep SYN_RECV`
    /// (with --json: filter the JSON document).
    #[arg(long, value_name = "STATES", value_parser = parse_states)]
    pub grep: Option<StateSet>,

    /// Print one JSON document: counts for all states, every socket, kernel counters.
    #[arg(long)]
    pub json: bool,

    /// Show the process that owns each socket (reads /proc/*/fd; slower).
    #[arg(short = 'p', long)]
    pub processes: bool,

    /// IPv4 sockets only.
    #[arg(short = '4', long = "ipv4", action = ArgAction::SetTrue, conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// IPv6 sockets only.
    #[arg(short = '6', long = "ipv6", action = ArgAction::SetTrue)]
    pub ipv6: bool,

    /// Sockets whose local or peer port is PORT.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Sockets whose local (source) port is PORT.
    #[arg(long, value_name = "PORT")]
    pub sport: Option<u16>,

    /// Sockets whose peer (destination) port is PORT.
    #[arg(long, value_name = "PORT")]
    pub dport: Option<u16>,

    /// SYN watch: half-open connections on one listener that count as many.
    #[arg(long, value_name = "N", default_value_t = Thresholds::default().min_half_open)]
    pub flood_min_half_open: u32,

    /// SYN watch: distinct source addresses needed to call it a flood.
    #[arg(long, value_name = "N", default_value_t = Thresholds::default().min_distinct_sources)]
    pub flood_min_sources: u32,

    /// SYN watch: distinct /24 or /64 networks needed to call it a flood.
    #[arg(long, value_name = "N", default_value_t = Thresholds::default().min_distinct_prefixes)]
    pub flood_min_prefixes: u32,

    /// SYN watch: accept-queue fill (share of the backlog, 0 to 1) that counts as full.
    #[arg(long, value_name = "RATIO", default_value_t = Thresholds::default().accept_queue_full_ratio)]
    pub accept_queue_full: f64,
}

/// What the user asked tcpscope to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--grep`: a table of matching sockets.
    Grep,
    /// `--json`: one JSON document.
    Json,
    /// No mode: the interactive view.
    Interactive,
}

impl Cli {
    pub fn mode(&self) -> Mode {
        if self.json {
            Mode::Json
        } else if self.grep.is_some() {
            Mode::Grep
        } else {
            Mode::Interactive
        }
    }

    /// The SYN watch thresholds the flags describe.
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
        Filter {
            states: self.grep.unwrap_or_else(StateSet::all),
            ipv4: !only_one_family || self.ipv4,
            ipv6: !only_one_family || self.ipv6,
            condition,
        }
    }
}

fn parse_states(list: &str) -> Result<StateSet, String> {
    StateSet::parse_list(list).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::State;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tcpscope").chain(args.iter().copied()))
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
    fn syn_watch_thresholds_default_to_the_watch_defaults_and_can_be_changed() {
        assert_eq!(parse(&[]).unwrap().thresholds(), Thresholds::default());
        let thresholds = parse(&["--flood-min-half-open", "10", "--flood-min-sources", "5"])
            .unwrap()
            .thresholds();
        assert_eq!(
            (thresholds.min_half_open, thresholds.min_distinct_sources),
            (10, 5)
        );
    }

    #[test]
    fn a_port_out_of_range_is_a_usage_error() {
        assert_eq!(parse(&["--port", "70000"]).unwrap_err().exit_code(), 2);
    }
}
