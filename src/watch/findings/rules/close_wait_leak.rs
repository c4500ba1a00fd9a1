//! `close_wait_leak`: the CLOSE_WAIT leak detector's verdict as a finding. A process
//! whose CLOSE_WAIT sockets keep growing while its oldest stay is not closing what its
//! peers closed ([`crate::watch::leaks`] decides that, across polls). The finding names
//! the process; when no process is known for the sockets (no `-p`, or an owner that
//! could not be read), it names the local port instead.

use std::time::Duration;

use crate::watch::findings::{Escaped, Evidence, Finding, Kind, Severity, Subject};
use crate::watch::leaks::CloseWaitLeaks;

use super::Candidate;

/// A candidate for each growing process, and for each growing port that no growing
/// process accounts for.
pub fn check(leaks: &CloseWaitLeaks, out: &mut Vec<Candidate>) {
    let mut named_ports = Vec::new();
    for leak in leaks.growing_processes() {
        let Some(owner) = &leak.owner else {
            continue;
        };
        named_ports.extend_from_slice(&leak.local_ports);
        let ports = leak
            .local_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let summary = format!(
            "{} (pid {}) is not closing its sockets: {} in CLOSE_WAIT on port{} {ports}, \
             oldest seen {} ago, and growing",
            Escaped(&owner.name),
            owner.pid,
            leak.close_wait,
            if leak.local_ports.len() == 1 { "" } else { "s" },
            Seconds(leak.oldest),
        );
        let evidence = Evidence::default()
            .count("close_wait", leak.close_wait)
            .number("oldest_seen_seconds", leak.oldest.as_secs_f64())
            .text("local_ports", ports);
        out.push(Candidate::new(Finding::new(
            Kind::CloseWaitLeak,
            Severity::Warning,
            Subject::Process {
                pid: owner.pid,
                name: owner.name.clone(),
            },
            summary,
            evidence,
        )));
    }
    for leak in leaks
        .ports
        .iter()
        .filter(|leak| leak.growing && !named_ports.contains(&leak.local_port))
    {
        let summary = format!(
            "local port {}: {} sockets in CLOSE_WAIT, oldest seen {} ago, and growing; \
             no process named (run with -p)",
            leak.local_port,
            leak.close_wait,
            Seconds(leak.oldest),
        );
        let evidence = Evidence::default()
            .count("close_wait", leak.close_wait)
            .number("oldest_seen_seconds", leak.oldest.as_secs_f64());
        out.push(Candidate::new(Finding::new(
            Kind::CloseWaitLeak,
            Severity::Warning,
            Subject::LocalPort(leak.local_port),
            summary,
            evidence,
        )));
    }
}

/// A duration in whole seconds, as the summary shows it.
struct Seconds(Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} s", self.0.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::leaks::{Owner, PortLeak, ProcessLeak};

    fn process(pid: i32, name: &str, growing: bool, ports: &[u16]) -> ProcessLeak {
        ProcessLeak {
            owner: Some(Owner {
                pid,
                name: name.to_owned(),
            }),
            close_wait: 120,
            oldest: Duration::from_secs(45),
            growing,
            local_ports: ports.to_vec(),
        }
    }

    fn port(local_port: u16, growing: bool) -> PortLeak {
        PortLeak {
            local_port,
            close_wait: 120,
            oldest: Duration::from_secs(45),
            growing,
        }
    }

    fn judge(leaks: &CloseWaitLeaks) -> Vec<Finding> {
        let mut out = Vec::new();
        check(leaks, &mut out);
        out.into_iter().map(|c| c.finding).collect()
    }

    #[test]
    fn a_growing_process_is_named_with_its_ports_and_oldest_socket() {
        let leaks = CloseWaitLeaks {
            processes: vec![process(42, "nginx", true, &[8080])],
            ports: vec![port(8080, true)],
        };
        let found = judge(&leaks);
        assert_eq!(
            found.len(),
            1,
            "the port is the process's, not a second finding"
        );
        assert_eq!(
            found[0].summary,
            "nginx (pid 42) is not closing its sockets: 120 in CLOSE_WAIT on port 8080, \
             oldest seen 45 s ago, and growing"
        );
        assert_eq!(found[0].severity, Severity::Warning);
    }

    #[test]
    fn many_close_wait_sockets_that_are_not_growing_are_calm() {
        let leaks = CloseWaitLeaks {
            processes: vec![process(42, "nginx", false, &[8080])],
            ports: vec![port(8080, false)],
        };
        assert!(judge(&leaks).is_empty());
    }

    #[test]
    fn a_growing_port_with_no_process_known_is_named_by_port() {
        let leaks = CloseWaitLeaks {
            processes: vec![ProcessLeak {
                owner: None,
                ..process(0, "", true, &[9000])
            }],
            ports: vec![port(9000, true)],
        };
        let found = judge(&leaks);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].subject, Subject::LocalPort(9000));
    }

    #[test]
    fn a_process_name_with_control_characters_is_escaped_in_the_summary() {
        let leaks = CloseWaitLeaks {
            processes: vec![process(7, "x\x1b]0;owned\x07", true, &[80])],
            ports: Vec::new(),
        };
        let summary = &judge(&leaks)[0].summary;
        assert!(!summary.chars().any(char::is_control), "{summary:?}");
    }
}
