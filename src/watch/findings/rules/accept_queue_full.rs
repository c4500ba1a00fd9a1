//! `accept_queue_full`: the SYN watch's verdict that a listener's accept queue is at
//! its backlog, as a finding: handshakes complete, the application does not take them.

use crate::watch::findings::{Evidence, Finding, Kind, Severity, Subject, percent};
use crate::watch::syn_watch::SynWatch;
use crate::watch::verdict::Verdict;

use super::Candidate;

/// A candidate for each listener whose accept queue the SYN watch judged full.
pub fn check(watch: &SynWatch, out: &mut Vec<Candidate>) {
    for row in watch
        .listeners
        .iter()
        .filter(|row| row.verdict == Verdict::AcceptQueueFull)
    {
        let listener = &row.listener;
        let subject = Subject::Listener {
            addr: listener.local_addr,
            port: listener.local_port,
        };
        let fill = listener.accept_queue_fill.unwrap_or(1.0);
        let summary = format!(
            "accept queue of {subject} is full: {} of {} waiting for accept() ({}%)",
            listener.accept_queue,
            listener.backlog,
            percent(fill)
        );
        let evidence = Evidence::default()
            .count("accept_queue", listener.accept_queue)
            .count("backlog", listener.backlog)
            .number("accept_queue_fill", fill)
            .count("listen_sockets", listener.listen_sockets);
        out.push(Candidate::new(Finding::new(
            Kind::AcceptQueueFull,
            Severity::Warning,
            subject,
            summary,
            evidence,
        )));
    }
}
