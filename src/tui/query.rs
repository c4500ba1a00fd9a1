//! The filter line (`/`): words that narrow the connections table by state, port and
//! address. States use the spellings `--grep` accepts (`syn-recv`, `SYN_RECV`,
//! `estab`, groups such as `connected`, comma lists); a number or `:PORT` is a local or
//! peer port; an address, a `CIDR`, or text containing `.` or `:` matches an address;
//! across namespaces, `netns:TEXT` keeps the namespaces whose label contains TEXT or
//! whose inode it is. `port:N` keeps the sockets whose local port is N (a listening
//! port's listener and connections, as the Groups tab counts them); `cgroup:TEXT` those
//! whose cgroup's unit or path contains TEXT or whose id it is (`cgroup:-`: none),
//! request sockets and TIME_WAIT counting in their listener's. All words must match.
//!
//! The line also takes the `--filter` language (`state syn-recv and dport = :443`,
//! `not src 10.0.0.0/8`), tried first; a line neither reads is reported in the terms of
//! the one it looks like, with the offending token's position for the caret.

use std::fmt::Write;
use std::net::IpAddr;

use crate::filter::{self, Filter};
use crate::kernel::cgroups::CgroupName;
use crate::snapshot::SocketRecord;
use crate::tcp::StateSet;

use crate::poll::rounds::NamespaceSpan;

/// A parsed filter line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    states: Option<StateSet>,
    ports: Vec<u16>,
    addresses: Vec<AddressMatch>,
    /// `netns:TEXT` words, lowercased.
    namespaces: Vec<String>,
    /// `port:N` words: local ports.
    local_ports: Vec<u16>,
    /// `cgroup:TEXT` words, lowercased.
    cgroups: Vec<String>,
    /// The line in the `--filter` language, when it reads as one.
    expression: Option<Filter>,
}

/// Why a filter line was refused, and where: `position` and `length` are byte offsets
/// into `text`, for the caret under the offending token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub text: String,
    pub position: usize,
    pub length: usize,
    pub message: String,
}

/// The words that start a `--filter` expression, or only make sense in one.
const EXPRESSION_WORDS: [&str; 10] = [
    "state", "exclude", "sport", "dport", "src", "dst", "not", "and", "or", "(",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum AddressMatch {
    Network(IpAddr, u8),
    /// Text the written address starts with, e.g. `10.1.` or `fe80:`.
    Prefix(String),
}

impl Query {
    /// Parses the filter line: as a `--filter` expression, else as words. The error
    /// is the expression's when the line looks like one, else it names the word not
    /// understood.
    pub fn parse(line: &str) -> Result<Query, QueryError> {
        if line.trim().is_empty() {
            return Ok(Query::default());
        }
        let expression_error = match filter::parse(line) {
            Ok(expression) => {
                return Ok(Query {
                    expression: Some(expression),
                    ..Query::default()
                });
            }
            Err(error) => error,
        };
        match Query::parse_words(line) {
            Ok(query) => Ok(query),
            Err(_) if looks_like_an_expression(line) => Err(QueryError {
                text: line.to_owned(),
                position: expression_error.position,
                length: expression_error.length,
                message: expression_error.message,
            }),
            Err(error) => Err(error),
        }
    }

    fn parse_words(line: &str) -> Result<Query, QueryError> {
        let mut query = Query::default();
        for (position, word) in words(line) {
            query.add(word).map_err(|message| QueryError {
                text: line.to_owned(),
                position,
                length: word.len(),
                message,
            })?;
        }
        Ok(query)
    }

    fn add(&mut self, word: &str) -> Result<(), String> {
        let port_text = word.strip_prefix(':').unwrap_or(word);
        if let Some(port) = word.strip_prefix("port:") {
            let port = port.strip_prefix(':').unwrap_or(port);
            match port.parse::<u16>() {
                Ok(port) => self.local_ports.push(port),
                Err(_) => return Err(format!("`{word}`: `port:` needs a port number after it")),
            }
        } else if let Some(cgroup) = word.strip_prefix("cgroup:") {
            if cgroup.is_empty() {
                return Err(
                    "`cgroup:` needs a unit, a path or an id after it (`-`: none)".to_owned(),
                );
            }
            self.cgroups.push(cgroup.to_lowercase());
        } else if let Some(namespace) = word.strip_prefix("netns:") {
            if namespace.is_empty() {
                return Err("`netns:` needs a label or an inode after it".to_owned());
            }
            self.namespaces.push(namespace.to_lowercase());
        } else if let Ok(port) = port_text.parse::<u16>() {
            self.ports.push(port);
        } else if let Ok(states) = StateSet::parse_list(word) {
            // Two state words mean either: `syn-recv estab` reads as a list.
            self.states = Some(self.states.map_or(states, |known| known.union(states)));
        } else if let Some(network) = parse_network(word) {
            self.addresses.push(network);
        } else if word.contains(['.', ':']) {
            self.addresses
                .push(AddressMatch::Prefix(word.to_ascii_lowercase()));
        } else {
            return Err(format!(
                "`{word}` is not a state, a port or an address (states: syn-recv, estab, time-wait, …)"
            ));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_none()
            && self.ports.is_empty()
            && self.addresses.is_empty()
            && self.namespaces.is_empty()
            && self.local_ports.is_empty()
            && self.cgroups.is_empty()
            && self.expression.is_none()
    }

    /// Whether the line has `cgroup:` words, which need the snapshot's listeners and
    /// the cgroups' names ([`Query::matches_cgroup`]).
    pub fn has_cgroup_words(&self) -> bool {
        !self.cgroups.is_empty()
    }

    /// Whether cgroup `id`, named `name` (unit and path), passes the `cgroup:` words.
    pub fn matches_cgroup(&self, id: u64, name: Option<&CgroupName>) -> bool {
        self.cgroups.iter().all(|wanted| {
            if id == 0 {
                return wanted == "-";
            }
            id.to_string() == *wanted
                || name.is_some_and(|name| {
                    name.label.to_lowercase().contains(wanted.as_str())
                        || name.path.to_lowercase().contains(wanted.as_str())
                })
        })
    }

    /// Whether a socket of namespace `span` (none with one namespace) passes the
    /// `netns:` words. With one namespace there is none to name, so nothing does.
    pub fn matches_namespace(&self, span: Option<&NamespaceSpan>) -> bool {
        self.namespaces.iter().all(|wanted| {
            span.is_some_and(|span| {
                span.label.to_lowercase().contains(wanted.as_str())
                    || span.inode.to_string() == *wanted
            })
        })
    }

    pub fn matches(&self, socket: &SocketRecord) -> bool {
        if let Some(expression) = &self.expression {
            return expression.matches(socket);
        }
        self.states
            .is_none_or(|states| states.contains(socket.state))
            && self
                .ports
                .iter()
                .all(|&port| socket.local_port == port || socket.remote_port == port)
            && self
                .local_ports
                .iter()
                .all(|&port| socket.local_port == port)
            && self.addresses.iter().all(|address| {
                address.matches(socket.local_addr) || address.matches(socket.remote_addr)
            })
    }
}

impl AddressMatch {
    fn matches(&self, address: IpAddr) -> bool {
        match self {
            AddressMatch::Network(network, bits) => in_network(address, *network, *bits),
            AddressMatch::Prefix(prefix) => {
                let mut text = String::with_capacity(40);
                let _ = write!(text, "{address}");
                text.starts_with(prefix.as_str())
            }
        }
    }
}

/// The whitespace-separated words of `line`, each with its byte offset.
fn words(line: &str) -> impl Iterator<Item = (usize, &str)> {
    line.split_whitespace().map(move |word| {
        // `word` is a slice of `line`: its offset is the distance between their starts.
        (word.as_ptr() as usize - line.as_ptr() as usize, word)
    })
}

fn looks_like_an_expression(line: &str) -> bool {
    line.contains(['=', '<', '>', '!', '(', ')'])
        || line
            .split_whitespace()
            .any(|word| EXPRESSION_WORDS.contains(&word.to_ascii_lowercase().as_str()))
}

fn parse_network(word: &str) -> Option<AddressMatch> {
    let (address, bits) = match word.split_once('/') {
        Some((address, bits)) => (address.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
        None => {
            let address = word.parse::<IpAddr>().ok()?;
            (address, if address.is_ipv4() { 32 } else { 128 })
        }
    };
    let limit = if address.is_ipv4() { 32 } else { 128 };
    (bits <= limit).then_some(AddressMatch::Network(address, bits))
}

fn in_network(address: IpAddr, network: IpAddr, bits: u8) -> bool {
    let (address, network, width) = match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(a.to_bits()), u128::from(n.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (a.to_bits(), n.to_bits(), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    address >> shift == network >> shift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixtures::socket;
    use crate::tcp::State;

    #[test]
    fn state_words_accept_every_grep_spelling() {
        let established = socket(State::Established, "10.0.0.1", 443, "10.0.0.2", 5000);
        for line in ["estab", "ESTABLISHED", "established,syn-recv", "connected"] {
            assert!(Query::parse(line).unwrap().matches(&established), "{line}");
        }
        assert!(!Query::parse("syn-recv").unwrap().matches(&established));
    }

    #[test]
    fn a_port_matches_either_side_and_words_combine_with_and() {
        let socket = socket(State::SynRecv, "10.0.0.1", 80, "192.0.2.7", 40000);
        assert!(Query::parse(":80").unwrap().matches(&socket));
        assert!(Query::parse("40000").unwrap().matches(&socket));
        assert!(
            Query::parse("syn-recv 80 192.0.2.0/24")
                .unwrap()
                .matches(&socket)
        );
        assert!(!Query::parse("syn-recv 81").unwrap().matches(&socket));
    }

    #[test]
    fn a_namespace_word_matches_a_part_of_its_label_or_its_inode() {
        let nginx = NamespaceSpan {
            start: 0,
            inode: 4_026_532_777,
            label: "5120/nginx".into(),
        };
        let query = |line: &str| Query::parse(line).unwrap();

        assert!(query("netns:NGINX").matches_namespace(Some(&nginx)));
        assert!(query("netns:4026532777").matches_namespace(Some(&nginx)));
        assert!(!query("netns:4026532").matches_namespace(Some(&nginx)));
        assert!(!query("netns:docker").matches_namespace(Some(&nginx)));
        assert!(!query("netns:nginx").matches_namespace(None));
        assert!(query(":80").matches_namespace(None));
        assert_eq!(
            Query::parse("estab netns:").map_err(|e| (e.position, e.message)),
            Err((6, "`netns:` needs a label or an inode after it".to_owned()))
        );
    }

    #[test]
    fn addresses_match_exactly_by_network_or_by_written_prefix() {
        let socket = socket(State::Established, "::1", 22, "2001:db8::5", 6000);
        assert!(Query::parse("2001:db8::/32").unwrap().matches(&socket));
        assert!(Query::parse("2001:db8:").unwrap().matches(&socket));
        assert!(Query::parse("::1").unwrap().matches(&socket));
        assert!(!Query::parse("10.").unwrap().matches(&socket));
    }

    #[test]
    fn port_words_keep_a_local_port_and_cgroup_words_a_unit_path_or_id() {
        let server = socket(State::Established, "10.0.0.1", 8080, "10.0.0.2", 443);
        let client = socket(State::Established, "10.0.0.2", 443, "10.0.0.1", 8080);
        let query = Query::parse("port:8080").unwrap();
        assert!(query.matches(&server));
        assert!(
            !query.matches(&client),
            "8080 is the client's peer port only"
        );
        assert!(Query::parse("port:x").is_err());

        let query = Query::parse("cgroup:NGINX").unwrap();
        assert!(query.has_cgroup_words());
        let nginx = CgroupName::of_path("/system.slice/nginx.service");
        assert!(query.matches_cgroup(5, Some(&nginx)));
        assert!(!query.matches_cgroup(5, Some(&CgroupName::of_path("/init.scope"))));
        assert!(!query.matches_cgroup(0, None));
        assert!(Query::parse("cgroup:-").unwrap().matches_cgroup(0, None));
        assert!(Query::parse("cgroup:5").unwrap().matches_cgroup(5, None));
        assert!(Query::parse("estab cgroup:").is_err());
    }

    #[test]
    fn an_unknown_word_is_an_error_naming_it() {
        let error = Query::parse("estab nonsense").unwrap_err();
        assert!(error.message.contains("`nonsense`"), "{error:?}");
        assert_eq!((error.position, error.length), (6, 8));
    }

    #[test]
    fn the_filter_language_is_understood_too() {
        let https = socket(State::Established, "10.0.0.1", 443, "10.0.0.2", 5000);
        let other = socket(State::SynRecv, "10.0.0.1", 80, "10.0.0.2", 5000);
        let query = Query::parse("state established and sport = :443").unwrap();
        assert!(query.matches(&https));
        assert!(!query.matches(&other));
        let query = Query::parse("not src 10.0.0.2").unwrap();
        assert!(query.matches(&https), "src is the local address in ss");
    }

    #[test]
    fn an_expression_error_points_at_its_token() {
        let error = Query::parse("state syn-recv and sprot = :80").unwrap_err();
        assert_eq!(&error.text[error.position..][..error.length], "sprot");
        assert!(error.message.contains("sprot"), "{error:?}");
    }
}
