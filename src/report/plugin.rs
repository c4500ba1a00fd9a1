//! `--check`'s answer, as a monitoring plugin gives it (the Nagios plugin API, which
//! Icinga, Naemon, Sensu and Zabbix's plugin runners read): one status line, `TCPSCOPE
//! CRITICAL - syn_flood on 10.0.0.1:443 | perfdata`, then one line per finding, and the
//! status as the exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
//!
//! Pure: the sockets counted and the findings raised come in as values, text and a
//! status go out. The text never holds a `|` but the one before the perfdata, nor a line
//! break inside a line: a monitoring system reads everything after a `|` as perfdata.

use std::fmt::Write as _;

use crate::snapshot::Counts;
use crate::tcp::State;
use crate::watch::findings::{Finding, Severity};

/// A plugin's status, its exit code by the plugin convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warning,
    Critical,
    /// The check could not be made: no poll, an error, a signal.
    Unknown,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    fn of(severity: Severity) -> Status {
        match severity {
            Severity::Critical => Status::Critical,
            Severity::Warning => Status::Warning,
        }
    }
}

/// The findings the status line names; the others are counted ("and 3 more") and
/// listed on the lines after it, which monitoring systems show as the long output.
pub const NAMED_ON_THE_STATUS_LINE: usize = 5;

/// What a check saw: the sockets of the last poll of each namespace, and the findings
/// raised at the end of the window.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Sockets per state (by [`State::index`]), summed over the namespaces polled.
    sockets: [u64; 11],
    findings: Vec<Finding>,
}

impl Reading {
    /// Adds one namespace's last poll: its socket counts and its raised findings.
    pub fn add(&mut self, counts: &Counts, findings: &[Finding]) {
        for (state, count) in counts.iter() {
            self.sockets[state.index()] += u64::from(count);
        }
        self.findings.extend_from_slice(findings);
    }

    /// The status: that of the most severe finding, OK without any.
    pub fn status(&self) -> Status {
        self.findings
            .iter()
            .map(|finding| Status::of(finding.severity))
            .max()
            .unwrap_or(Status::Ok)
    }

    /// The plugin's output, ending in a line break, and its status.
    pub fn render(mut self) -> (Status, String) {
        self.findings.sort_by(|a, b| {
            a.urgency()
                .cmp(&b.urgency())
                .then_with(|| a.netns.cmp(&b.netns))
        });
        let status = self.status();
        let mut text = format!("TCPSCOPE {} - ", status.name());
        if self.findings.is_empty() {
            text.push_str("no findings");
        } else {
            let named: Vec<String> = self
                .findings
                .iter()
                .take(NAMED_ON_THE_STATUS_LINE)
                .map(|finding| plain(&named(finding)))
                .collect();
            text.push_str(&named.join("; "));
            let more = self.findings.len().saturating_sub(NAMED_ON_THE_STATUS_LINE);
            if more > 0 {
                let _ = write!(text, "; and {more} more");
            }
        }
        text.push_str(" | ");
        text.push_str(&self.perfdata());
        text.push('\n');
        for finding in &self.findings {
            let mut line = format!("{}: {}", finding.severity.name(), finding.summary);
            if let Some(netns) = &finding.netns {
                let _ = write!(line, " (netns {netns})");
            }
            text.push_str(&plain(&line));
            text.push('\n');
        }
        (status, text)
    }

    /// Sockets per state and findings per severity, as `label=value;warn;crit;min`.
    fn perfdata(&self) -> String {
        let mut fields: Vec<String> = State::ALL
            .into_iter()
            .map(|state| {
                let count = self.sockets[state.index()];
                format!("{}={count};;;0", state.name().to_ascii_lowercase())
            })
            .collect();
        for severity in [Severity::Critical, Severity::Warning] {
            let count = self
                .findings
                .iter()
                .filter(|finding| finding.severity == severity)
                .count();
            fields.push(format!("findings_{}={count};;;0", severity.name()));
        }
        fields.join(" ")
    }
}

/// The status line and only line of a check that could not be made.
pub fn unknown(reason: &str) -> String {
    format!("TCPSCOPE UNKNOWN - {}\n", plain(reason))
}

/// A finding as the status line names it: `syn_flood on 10.0.0.1:443`.
fn named(finding: &Finding) -> String {
    match &finding.netns {
        Some(netns) => format!(
            "{} on {} in netns {netns}",
            finding.kind.id(),
            finding.subject
        ),
        None => format!("{} on {}", finding.kind.id(), finding.subject),
    }
}

/// `text` fit for one line of plugin output: no `|` (it starts the perfdata) and no
/// line break or other control character.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '|' => '/',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::findings::{Evidence, Kind, Subject};

    fn finding(kind: Kind, severity: Severity, port: u16) -> Finding {
        Finding::new(
            kind,
            severity,
            Subject::Listener {
                addr: "10.0.0.1".parse().expect("address"),
                port,
            },
            format!("{} on port {port} | really", kind.id()),
            Evidence::default(),
        )
    }

    fn counts(states: &[State]) -> Counts {
        let mut counts = Counts::default();
        for state in states {
            counts.add(*state);
        }
        counts
    }

    #[test]
    fn a_calm_host_is_ok_with_its_counts_as_perfdata() {
        let mut reading = Reading::default();
        reading.add(
            &counts(&[State::Listen, State::Established, State::Established]),
            &[],
        );
        let (status, text) = reading.render();
        assert_eq!(status, Status::Ok);
        assert_eq!(status.code(), 0);
        assert_eq!(
            text,
            "TCPSCOPE OK - no findings | closed=0;;;0 listen=1;;;0 syn_sent=0;;;0 \
             syn_recv=0;;;0 established=2;;;0 fin_wait1=0;;;0 fin_wait2=0;;;0 \
             close_wait=0;;;0 closing=0;;;0 last_ack=0;;;0 time_wait=0;;;0 \
             findings_critical=0;;;0 findings_warning=0;;;0\n"
        );
    }

    #[test]
    fn the_most_severe_finding_sets_the_status_and_is_named_first() {
        let mut reading = Reading::default();
        reading.add(
            &Counts::default(),
            &[
                finding(Kind::AcceptQueueFull, Severity::Warning, 80),
                finding(Kind::SynFlood, Severity::Critical, 443),
            ],
        );
        let (status, text) = reading.render();
        assert_eq!(status, Status::Critical);
        assert_eq!(status.code(), 2);
        let mut lines = text.lines();
        let first = lines.next().expect("a status line");
        assert!(
            first.starts_with(
                "TCPSCOPE CRITICAL - syn_flood on 10.0.0.1:443; accept_queue_full on 10.0.0.1:80 | "
            ),
            "{first}"
        );
        assert!(first.contains(" findings_critical=1;;;0 findings_warning=1;;;0"));
        assert_eq!(
            lines.collect::<Vec<_>>(),
            [
                "critical: syn_flood on port 443 / really",
                "warning: accept_queue_full on port 80 / really"
            ],
            "one line per finding, with no | to be taken for perfdata"
        );
    }

    #[test]
    fn warnings_alone_are_a_warning() {
        let mut reading = Reading::default();
        reading.add(
            &Counts::default(),
            &[finding(Kind::CloseWaitLeak, Severity::Warning, 80)],
        );
        assert_eq!(reading.render().0.code(), 1);
    }

    #[test]
    fn many_findings_name_a_few_and_count_the_rest() {
        let mut reading = Reading::default();
        let many: Vec<Finding> = (0..8)
            .map(|port| finding(Kind::SynFlood, Severity::Critical, 1000 + port))
            .collect();
        reading.add(&Counts::default(), &many);
        let (_, text) = reading.render();
        let first = text.lines().next().expect("a status line");
        assert!(
            first.contains("syn_flood on 10.0.0.1:1004; and 3 more | "),
            "{first}"
        );
        assert!(!first.contains("10.0.0.1:1005"));
        assert_eq!(text.lines().count(), 9);
    }

    #[test]
    fn a_check_that_could_not_be_made_is_unknown_on_one_line() {
        assert_eq!(
            unknown("no sock_diag:\nProtocol not supported | x"),
            "TCPSCOPE UNKNOWN - no sock_diag: Protocol not supported / x\n"
        );
        assert_eq!(Status::Unknown.code(), 3);
    }
}
