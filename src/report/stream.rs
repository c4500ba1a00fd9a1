//! `--watch`: each poll's transitions as lines, text for people or NDJSON for
//! programs (one object per line, every one with a `type`).
//!
//! Pure formatting: the caller hands in values and a writer.

use std::collections::HashSet;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::endpoint::Endpoint;
use super::json::{CountsByName, FindingFields, Rfc3339};
use crate::diff::Transition;
use crate::snapshot::Counts;
use crate::tcp::{State, StateSet};
use crate::text::Escaped;
use crate::watch::findings::FindingEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Ndjson,
}

/// Writes stream lines for the states a user asked for.
pub struct StreamWriter<W: Write> {
    out: W,
    format: Format,
    states: StateSet,
    /// With `--all-netns`: the namespace the lines written from now on are about.
    netns: Option<u64>,
    /// The namespaces whose first counts the text stream has written.
    counted: HashSet<Option<u64>>,
    /// And what text lines call it, when known (else its inode).
    netns_label: Option<String>,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(out: W, format: Format, states: StateSet) -> StreamWriter<W> {
        StreamWriter {
            out,
            format,
            states,
            netns: None,
            counted: HashSet::new(),
            netns_label: None,
        }
    }

    /// Names the network namespace (by inode) that the next lines are about: a
    /// `netns` field in NDJSON, a column after the time in text (`--all-netns`).
    pub fn set_netns(&mut self, netns: Option<u64>) {
        self.netns = netns;
    }

    /// What text lines call the namespace of [`StreamWriter::set_netns`] (`blue`,
    /// `host`, `4242/nginx`) in place of its inode; NDJSON keeps the inode.
    pub fn set_netns_label(&mut self, label: Option<&str>) {
        if self.netns_label.as_deref() != label {
            self.netns_label = label.map(str::to_owned);
        }
    }

    /// The time column, and the namespace's when there is one.
    fn stamp(&self, at: SystemTime) -> String {
        match (self.netns, &self.netns_label) {
            (Some(_), Some(label)) => format!("{}  {}", clock(at), Escaped(label)),
            (Some(netns), None) => format!("{}  {netns}", clock(at)),
            (None, _) => clock(at),
        }
    }

    /// A transition is shown when it leaves or enters one of the states asked for.
    pub fn wants(&self, transition: &Transition) -> bool {
        [transition.from, transition.to]
            .into_iter()
            .flatten()
            .any(|state| self.states.contains(state))
    }

    pub fn transition(&mut self, at: SystemTime, transition: &Transition) -> io::Result<()> {
        if !self.wants(transition) {
            return Ok(());
        }
        match self.format {
            Format::Ndjson => self.json_line(&TransitionLine::new(at, transition, self.netns)),
            Format::Text => self.text_transition(at, transition),
        }
    }

    /// The per-state counts after a poll, for the states asked for (others are 0), and
    /// the pace of the poll when known: how often full dumps come (`interval_ms`), and
    /// whether this one is the full dump (else `"lane": "fast"`: only LISTEN and
    /// SYN_RECV are fresh, the other states are the last full dump's). NDJSON carries
    /// them after every poll; text only after a namespace's first, so that the stream
    /// starts by saying what is there (a quiet host would otherwise print nothing until
    /// something changes) and is transitions from then on.
    pub fn counts(
        &mut self,
        at: SystemTime,
        counts: &Counts,
        pace: Option<(Duration, bool)>,
    ) -> io::Result<()> {
        if self.format == Format::Text {
            if !self.counted.insert(self.netns) {
                return Ok(());
            }
            let counts = counts.only(self.states);
            let present: Vec<String> = counts
                .iter()
                .filter(|&(_, count)| count > 0)
                .map(|(state, count)| format!("{} {count}", state.name()))
                .collect();
            let said = if present.is_empty() {
                "no sockets".to_owned()
            } else {
                present.join("  ")
            };
            writeln!(self.out, "{}  {:<7}  {said}", self.stamp(at), "counts")?;
            return self.out.flush();
        }
        self.json_line(&CountsLine {
            kind: "counts",
            at: Rfc3339(at),
            netns: self.netns,
            counts: CountsByName(counts.only(self.states)),
            interval_ms: pace.map(|(full_every, _)| millis(full_every)),
            lane: pace.and_then(|(_, full)| (!full).then_some("fast")),
        })
    }

    /// The kernel dropped destroy events; the next poll resynchronises.
    pub fn events_lost(&mut self, at: SystemTime, overflows: u32) -> io::Result<()> {
        match self.format {
            Format::Ndjson => self.json_line(&NoticeLine {
                kind: "events_lost",
                at: Rfc3339(at),
                netns: self.netns,
                message: "the kernel's destroy-event queue overflowed: connections that opened and closed since the last poll may be missing; resynchronised from the poll",
                count: Some(overflows),
                repeated: None,
            }),
            Format::Text => writeln!(
                self.out,
                "{}  events lost: the kernel's event queue overflowed {overflows} time(s); resynchronised from the poll",
                self.stamp(at)
            ),
        }
    }

    /// A poll failed; polling goes on. `times` is how many failures with this message
    /// the line stands for (see [`super::repeats`]): more than one is said as `repeated`.
    pub fn poll_failed(&mut self, at: SystemTime, message: &str, times: u32) -> io::Result<()> {
        let repeated = (times > 1).then_some(times);
        match self.format {
            Format::Ndjson => self.json_line(&NoticeLine {
                kind: "error",
                at: Rfc3339(at),
                netns: self.netns,
                message,
                count: None,
                repeated,
            }),
            Format::Text => match repeated {
                Some(times) => writeln!(
                    self.out,
                    "{}  poll failed {times} times since this was last said: {}",
                    self.stamp(at),
                    Escaped(message)
                ),
                None => writeln!(
                    self.out,
                    "{}  poll failed: {}",
                    self.stamp(at),
                    Escaped(message)
                ),
            },
        }
    }

    /// A poll took longer than the interval: the next one starts when it ends, late,
    /// rather than queueing behind it.
    pub fn slow_poll(
        &mut self,
        at: SystemTime,
        took: Duration,
        interval: Duration,
    ) -> io::Result<()> {
        let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let interval_ms = millis(interval);
        match self.format {
            Format::Ndjson => self.json_line(&SlowPollLine {
                kind: "slow_poll",
                at: Rfc3339(at),
                netns: self.netns,
                took_ms,
                interval_ms,
            }),
            Format::Text => writeln!(
                self.out,
                "{}  slow poll: took {took_ms} ms, longer than the {interval_ms} ms interval; the next starts late instead of queueing",
                self.stamp(at)
            ),
        }
    }

    /// A finding raised or cleared. Findings are about the host, not about the states
    /// asked for: every one is written.
    pub fn finding(&mut self, at: SystemTime, event: &FindingEvent) -> io::Result<()> {
        let (raised, finding) = match event {
            FindingEvent::Raised(finding) => (true, finding),
            FindingEvent::Cleared(finding) => (false, finding),
        };
        match self.format {
            Format::Ndjson => self.json_line(&FindingLine {
                kind: "finding",
                event: if raised { "raised" } else { "cleared" },
                at: Rfc3339(at),
                netns: self.netns,
                finding: FindingFields::of(finding),
            }),
            Format::Text if raised => writeln!(
                self.out,
                "{}  {} {}: {}. {}",
                self.stamp(at),
                finding.severity.name().to_uppercase(),
                finding.kind.id(),
                finding.summary,
                finding.remedy,
            ),
            Format::Text => writeln!(
                self.out,
                "{}  cleared {} on {}",
                self.stamp(at),
                finding.kind.id(),
                finding.subject,
            ),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn json_line(&mut self, line: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    fn text_transition(&mut self, at: SystemTime, t: &Transition) -> io::Result<()> {
        let endpoints = &t.endpoints;
        let mut line = format!(
            "{}  {:<7}  {:>11} → {:<11}  {:<22} {:<22}",
            self.stamp(at),
            t.kind.name(),
            t.from.map_or("(new)", State::name),
            t.to.map_or("(gone)", State::name),
            Endpoint(endpoints.local.0, endpoints.local.1).to_string(),
            Endpoint(endpoints.remote.0, endpoints.remote.1).to_string(),
        );
        if !t.via.is_empty() {
            line.push_str(&format!("  via {}", t.via));
        }
        if let Some(ending) = t.ending {
            line.push_str(&format!("  ({})", ending.describe()));
        }
        writeln!(self.out, "{}", line.trim_end())?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;
    use crate::snapshot::fixtures::socket;
    use std::time::UNIX_EPOCH;

    fn transitions() -> Vec<Transition> {
        let at = UNIX_EPOCH;
        let open = socket(State::Established, "127.0.0.1", 5000, "127.0.0.1", 80);
        let mut closing = open;
        closing.state = State::TimeWait;
        let mut differ = crate::diff::Differ::new();
        differ.observe(&Snapshot::new(at, vec![open]), &[]);
        differ
            .observe(
                &Snapshot::new(at + Duration::from_secs(1), vec![closing]),
                &[],
            )
            .to_vec()
    }

    fn render(format: Format, states: &str) -> String {
        let mut out = Vec::new();
        let mut writer = StreamWriter::new(&mut out, format, StateSet::parse_list(states).unwrap());
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        for transition in transitions() {
            writer.transition(at, &transition).unwrap();
        }
        let mut counts = Counts::default();
        counts.add(State::TimeWait);
        counts.add(State::Listen);
        writer.counts(at, &counts, None).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_text_stream_says_the_counts_once_per_namespace_to_begin_with() {
        let mut out = Vec::new();
        let mut writer = StreamWriter::new(&mut out, Format::Text, StateSet::all());
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let mut counts = Counts::default();
        counts.add(State::Listen);
        counts.add(State::Established);
        counts.add(State::Established);
        writer.counts(at, &counts, None).unwrap();
        writer.counts(at, &counts, None).unwrap();
        writer.set_netns(Some(4_026_532_001));
        writer.counts(at, &Counts::default(), None).unwrap();
        writer.counts(at, &counts, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "22:13:20.250  counts   LISTEN 1  ESTABLISHED 2\n\
             22:13:20.250  4026532001  counts   no sockets\n"
        );
    }

    #[test]
    fn a_skipped_state_shows_its_inferred_path_in_text() {
        assert_eq!(
            render(Format::Text, "all"),
            "22:13:20.250  changed  ESTABLISHED → TIME_WAIT    127.0.0.1:5000         127.0.0.1:80            via FIN_WAIT1 → FIN_WAIT2\n\
             22:13:20.250  counts   LISTEN 1  TIME_WAIT 1\n"
        );
    }

    #[test]
    fn ndjson_lines_carry_a_type_and_every_documented_field() {
        let text = render(Format::Ndjson, "all");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let t = &lines[0];
        assert_eq!(t["type"], "transition");
        assert_eq!(t["at"], "2023-11-14T22:13:20.250Z");
        assert_eq!(t["kind"], "changed");
        assert_eq!(t["family"], "ipv4");
        assert_eq!(t["local_port"], 5000);
        assert_eq!(t["remote_addr"], "127.0.0.1");
        assert_eq!(t["from"], "ESTABLISHED");
        assert_eq!(t["to"], "TIME_WAIT");
        assert_eq!(t["via"], serde_json::json!(["FIN_WAIT1", "FIN_WAIT2"]));
        assert_eq!(t["exact"], false);
        assert_eq!(lines[1]["type"], "counts");
        assert_eq!(lines[1]["counts"]["TIME_WAIT"], 1);
        assert_eq!(lines[1]["counts"].as_object().unwrap().len(), 11);
    }

    #[test]
    fn a_finding_is_one_line_raised_and_one_cleared_in_text_and_ndjson() {
        use crate::watch::findings::{Evidence, Finding, Kind, Severity, Subject};
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let finding = Finding {
            since: Some(at),
            ..Finding::new(
                Kind::SynFlood,
                Severity::Critical,
                Subject::Listener {
                    addr: "10.0.0.1".parse().unwrap(),
                    port: 443,
                },
                "SYN flood on 10.0.0.1:443: 300 half-open from 300 addresses in 280 networks"
                    .to_owned(),
                Evidence::default().count("half_open", 300u32),
            )
        };
        let lines = |format| {
            let mut out = Vec::new();
            let mut writer =
                StreamWriter::new(&mut out, format, StateSet::parse_list("listen").unwrap());
            writer
                .finding(at, &FindingEvent::Raised(finding.clone()))
                .unwrap();
            writer
                .finding(at, &FindingEvent::Cleared(finding.clone()))
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let text = lines(Format::Text);
        let text: Vec<&str> = text.lines().collect();
        assert!(text[0].starts_with(
            "22:13:20.250  CRITICAL syn_flood: SYN flood on 10.0.0.1:443: 300 half-open"
        ));
        assert!(text[0].ends_with(Kind::SynFlood.remedy()));
        assert_eq!(text[1], "22:13:20.250  cleared syn_flood on 10.0.0.1:443");
        let ndjson = lines(Format::Ndjson);
        let json: Vec<serde_json::Value> = ndjson
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(json[0]["type"], "finding");
        assert_eq!(json[0]["event"], "raised");
        assert_eq!(json[1]["event"], "cleared");
        assert_eq!(json[0]["kind"], "syn_flood");
        assert_eq!(json[0]["severity"], "critical");
        assert_eq!(json[0]["subject"], "10.0.0.1:443");
        assert_eq!(json[0]["evidence"]["half_open"], 300);
        assert_eq!(json[0]["since"], "2023-11-14T22:13:20.250Z");
    }

    #[test]
    fn across_namespaces_a_slow_poll_names_its_namespace_like_every_other_line() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let mut out = Vec::new();
        let mut writer = StreamWriter::new(&mut out, Format::Ndjson, StateSet::all());
        writer.set_netns(Some(4026531840));
        writer
            .slow_poll(at, Duration::from_millis(1250), Duration::from_secs(1))
            .unwrap();
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["netns"], 4026531840u64);
    }

    #[test]
    fn counts_lines_say_how_often_full_dumps_come_and_which_polls_are_the_fast_lane() {
        let mut out = Vec::new();
        let mut writer = StreamWriter::new(&mut out, Format::Ndjson, StateSet::all());
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let counts = Counts::default();
        writer
            .counts(at, &counts, Some((Duration::from_millis(4000), true)))
            .unwrap();
        writer
            .counts(at, &counts, Some((Duration::from_millis(4000), false)))
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines[0]["interval_ms"], 4000);
        assert!(lines[0].get("lane").is_none(), "{text}");
        assert_eq!(lines[1]["interval_ms"], 4000);
        assert_eq!(lines[1]["lane"], "fast");
    }

    #[test]
    fn a_slow_poll_says_how_long_it_took_against_the_interval() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let line = |format| {
            let mut out = Vec::new();
            let mut writer = StreamWriter::new(&mut out, format, StateSet::all());
            writer
                .slow_poll(at, Duration::from_millis(1250), Duration::from_secs(1))
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            line(Format::Ndjson),
            "{\"type\":\"slow_poll\",\"at\":\"2023-11-14T22:13:20.250Z\",\"took_ms\":1250,\"interval_ms\":1000}\n"
        );
        assert_eq!(
            line(Format::Text),
            "22:13:20.250  slow poll: took 1250 ms, longer than the 1000 ms interval; the next starts late instead of queueing\n"
        );
    }

    #[test]
    fn with_several_namespaces_every_line_names_its_namespace() {
        let mut out = Vec::new();
        let mut writer = StreamWriter::new(&mut out, Format::Ndjson, StateSet::all());
        writer.set_netns(Some(4026532201));
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        for transition in transitions() {
            writer.transition(at, &transition).unwrap();
        }
        writer.counts(at, &Counts::default(), None).unwrap();
        writer.poll_failed(at, "no", 1).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in text.lines() {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(line["netns"], 4026532201u64, "{line}");
        }
        assert_eq!(text.lines().count(), 3);

        let mut out = Vec::new();
        let mut writer = StreamWriter::new(&mut out, Format::Text, StateSet::all());
        writer.set_netns(Some(4026532201));
        writer.transition(at, &transitions()[0]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("22:13:20.250  4026532201  changed  "),
            "{text}"
        );

        let mut out = Vec::new();
        let mut writer = StreamWriter::new(&mut out, Format::Text, StateSet::all());
        writer.set_netns(Some(4026532201));
        writer.set_netns_label(Some("blue"));
        writer.transition(at, &transitions()[0]).unwrap();
        writer.counts(at, &Counts::default(), None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines()
                .all(|line| line.starts_with("22:13:20.250  blue  ")),
            "{text}"
        );
    }

    #[test]
    fn an_error_said_again_carries_how_often_it_came() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let mut out = Vec::new();
        let mut writer = StreamWriter::new(&mut out, Format::Ndjson, StateSet::all());
        writer.poll_failed(at, "no descriptor", 1).unwrap();
        writer.poll_failed(at, "no descriptor", 30).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines[0].get("repeated"), None, "{text}");
        assert_eq!(lines[1]["repeated"], 30, "{text}");

        let mut out = Vec::new();
        let mut writer = StreamWriter::new(&mut out, Format::Text, StateSet::all());
        writer.poll_failed(at, "no descriptor", 30).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("poll failed 30 times since this was last said: no descriptor\n"),
            "{text}"
        );
    }

    #[test]
    fn the_state_filter_keeps_transitions_into_or_out_of_its_states() {
        let text = render(Format::Ndjson, "LISTEN");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "only the counts line: {text}");
        assert!(lines[0].contains("\"LISTEN\":1"));
        assert!(lines[0].contains("\"TIME_WAIT\":0"));
        assert_eq!(render(Format::Ndjson, "time-wait").lines().count(), 2);
    }
}

/// The time of day, UTC, to the millisecond: `13:52:01.123`.
fn clock(at: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_millis(at).to_string();
    stamp.get(11..23).unwrap_or(&stamp).to_string()
}

#[derive(Serialize)]
struct TransitionLine {
    #[serde(rename = "type")]
    kind_of_line: &'static str,
    at: Rfc3339,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u64>,
    kind: &'static str,
    family: &'static str,
    local_addr: String,
    local_port: u16,
    remote_addr: String,
    remote_port: u16,
    from: Option<&'static str>,
    to: Option<&'static str>,
    via: Vec<&'static str>,
    exact: bool,
    ending: Option<&'static str>,
}

impl TransitionLine {
    fn new(at: SystemTime, t: &Transition, netns: Option<u64>) -> TransitionLine {
        TransitionLine {
            kind_of_line: "transition",
            at: Rfc3339(at),
            netns,
            kind: t.kind.name(),
            family: t.endpoints.family.name(),
            local_addr: t.endpoints.local.0.to_string(),
            local_port: t.endpoints.local.1,
            remote_addr: t.endpoints.remote.0.to_string(),
            remote_port: t.endpoints.remote.1,
            from: t.from.map(State::name),
            to: t.to.map(State::name),
            via: t.via.iter().map(State::name).collect(),
            exact: t.exact,
            ending: t.ending.map(|e| e.describe()),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Serialize)]
struct CountsLine {
    #[serde(rename = "type")]
    kind: &'static str,
    at: Rfc3339,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u64>,
    counts: CountsByName,
    /// The time between full dumps (the interval, or longer within `--max-cpu`).
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lane: Option<&'static str>,
}

#[derive(Serialize)]
struct NoticeLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    at: Rfc3339,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u64>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
    /// An error said again: how many times it came since it was last said.
    #[serde(skip_serializing_if = "Option::is_none")]
    repeated: Option<u32>,
}

#[derive(Serialize)]
struct FindingLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: &'static str,
    at: Rfc3339,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u64>,
    #[serde(flatten)]
    finding: FindingFields<'a>,
}

#[derive(Serialize)]
struct SlowPollLine {
    #[serde(rename = "type")]
    kind: &'static str,
    at: Rfc3339,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u64>,
    took_ms: u64,
    interval_ms: u64,
}
