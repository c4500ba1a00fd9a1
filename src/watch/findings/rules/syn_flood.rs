//! `syn_flood`: the SYN watch's flood verdict on a listener, as a finding. The verdict
//! itself (many half-open connections from many networks, kept while SYN cookies hide
//! the evidence) is [`crate::watch::verdict`]'s and [`crate::watch::tracker`]'s.

use crate::watch::findings::{Evidence, Finding, Kind, Severity, Subject};
use crate::watch::syn_watch::SynWatch;
use crate::watch::verdict::Verdict;

use super::Candidate;

/// A candidate for each listener the SYN watch suspects of a SYN flood on this poll's
/// evidence: its own half-open connections, or SYN cookies still being sent
/// (`cookies_rising`) for a listener it remembers. A listener remembered on no evidence
/// this poll is no candidate: once the flood stops, the finding's own hold (the
/// hysteresis, `--finding-hold`) decides when it clears, not that hold added to the SYN
/// watch's memory of the flood.
pub fn check(watch: &SynWatch, cookies_rising: bool, out: &mut Vec<Candidate>) {
    for row in watch.listeners.iter().filter(|row| {
        row.verdict == Verdict::SynFloodSuspected && (!row.remembered || cookies_rising)
    }) {
        let listener = &row.listener;
        let subject = Subject::Listener {
            addr: listener.local_addr,
            port: listener.local_port,
        };
        let summary = if row.remembered {
            format!(
                "SYN flood on {subject}: SYN cookies are still rising ({} half-open now)",
                listener.half_open
            )
        } else {
            format!(
                "SYN flood on {subject}: {} half-open from {} addresses in {} networks",
                listener.half_open, listener.distinct_sources, listener.distinct_prefixes
            )
        };
        let evidence = Evidence::default()
            .count("half_open", listener.half_open)
            .count("distinct_sources", listener.distinct_sources)
            .count("distinct_prefixes", listener.distinct_prefixes)
            .count("backlog", listener.backlog)
            .count("syn_ack_retransmits", listener.syn_ack_retransmits)
            .flag("held_by_syn_cookies", row.remembered);
        out.push(Candidate::new(Finding::new(
            Kind::SynFlood,
            Severity::Critical,
            subject,
            summary,
            evidence,
        )));
    }
}
