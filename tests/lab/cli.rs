//! The command line as a user meets it: bad input gets a clear message on stderr,
//! nothing on stdout, and exit status 2. These need no privileges.

use anyhow::Result;

use crate::support::tcpscope;

fn assert_usage_error(args: &[&str], mentions: &[&str]) -> Result<()> {
    let output = tcpscope(args)?;
    assert_eq!(output.status.code(), Some(2), "{args:?}");
    assert!(output.stdout.is_empty(), "{args:?} wrote to stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for word in mentions {
        assert!(stderr.contains(word), "{args:?}: {word:?} not in {stderr}");
    }
    Ok(())
}

#[test]
fn an_unknown_state_name_lists_the_valid_ones() -> Result<()> {
    assert_usage_error(
        &["--grep", "SYN_RECIEVED"],
        &[
            "SYN_RECIEVED",
            "SYN_RECV",
            "TIME_WAIT",
            "CLOSE_WAIT",
            "connected",
        ],
    )
}

#[test]
fn one_bad_name_in_a_list_is_enough_to_refuse_it() -> Result<()> {
    assert_usage_error(&["--grep", "LISTEN,nope"], &["'nope'"])
}

#[test]
fn an_empty_state_list_is_refused() -> Result<()> {
    assert_usage_error(&["--grep", ""], &["valid states"])
}

#[test]
fn an_unknown_flag_is_a_usage_error() -> Result<()> {
    assert_usage_error(&["--frobnicate"], &["--frobnicate", "Usage"])
}

#[test]
fn a_port_that_is_not_a_port_is_a_usage_error() -> Result<()> {
    assert_usage_error(&["--port", "http"], &["--port"])?;
    assert_usage_error(&["--sport", "65536"], &["--sport"])
}

#[test]
fn asking_for_both_only_ipv4_and_only_ipv6_is_a_usage_error() -> Result<()> {
    assert_usage_error(&["-4", "-6"], &["cannot be used with"])
}

#[test]
fn without_a_mode_and_without_a_terminal_it_points_to_the_scripted_modes() -> Result<()> {
    // `output()` gives the child a pipe for stdout, never a terminal.
    assert_usage_error(&[], &["not a terminal", "--json", "--grep"])?;
    Ok(())
}

#[test]
fn help_lists_the_modes_and_exits_0() -> Result<()> {
    let output = tcpscope(&["--help"])?;
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for word in ["--grep", "--json", "--processes", "--port"] {
        assert!(help.contains(word), "{word} missing from --help");
    }
    Ok(())
}

/// Malformed command lines, each of which must exit 2 with a message on stderr and
/// nothing on stdout, before touching the kernel.
const MALFORMED: &[&[&str]] = &[
    &["--grep"],
    &["--grep", ""],
    &["--grep", ","],
    &["--grep", "SYN_RECIEVED"],
    &["--grep", "LISTEN,,nope"],
    &["--grep", "established;rm -rf /"],
    &["--grep", "SYN RECV"],
    &["--grep", "12"],
    &["--grep", "all", "--grep", "listen"],
    &["--port"],
    &["--port", "http"],
    &["--port", "-1"],
    &["--port", "65536"],
    &["--port", "80.5"],
    &["--port", "0x50"],
    &["--sport", "99999"],
    &["--dport", ""],
    &["-4", "-6"],
    &["--ipv4", "--ipv6"],
    &["--interval", "fast", "--watch"],
    &["--interval", "10ms", "--watch"],
    &["--interval", "0s", "--watch"],
    &["--interval", "5", "--watch"],
    &["--interval", "5h", "--watch"],
    &["--interval", "-1s", "--watch"],
    &["--interval", "1e400s", "--watch"],
    &["--flood-min-half-open", "many"],
    &["--flood-min-sources", "-3"],
    &["--flood-min-prefixes", "4294967296"],
    &["--accept-queue-full", "2"],
    &["--accept-queue-full", "-0.1"],
    &["--accept-queue-full", "NaN"],
    &["--json=yes"],
    &["--frobnicate"],
    &["-x"],
    &["extra-argument"],
    &["--grep", "listen", "stray"],
];

#[test]
fn every_malformed_command_line_exits_2_with_a_message_and_no_output() -> Result<()> {
    assert!(MALFORMED.len() >= 30);
    for args in MALFORMED {
        let output = tcpscope(args)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} wrote to stdout");
        assert!(
            stderr.contains("error"),
            "{args:?}: no error message: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
    Ok(())
}

#[test]
fn a_bad_filter_expression_shows_the_expression_with_a_caret_under_the_culprit() -> Result<()> {
    let output = tcpscope(&[
        "--filter",
        "state syn-recv and ( dport = :443 or sprot = :8080 )",
    ])?;
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown word 'sprot'"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let shown = lines
        .iter()
        .position(|line| line.trim_start().starts_with("state syn-recv"))
        .unwrap_or_else(|| panic!("the expression is not shown: {stderr}"));
    let column = lines[shown].find("sprot").unwrap();
    assert_eq!(lines[shown + 1].find('^'), Some(column), "{stderr}");
    assert_eq!(lines[shown + 1].trim(), "^^^^^", "{stderr}");
    Ok(())
}

/// Filter expressions that must be refused with exit 2 before touching the kernel.
const MALFORMED_FILTERS: &[&str] = &[
    "",
    "   ",
    "state",
    "state nope",
    "sport",
    "sport = ",
    "sport = :65536",
    "sport = http",
    "dport >> :80",
    "src 10.0.0.0/33",
    "dst ::1/129",
    "dst 10.0.0.256",
    "src *",
    "src [::1",
    "src < 10.0.0.1",
    "( sport = :80",
    "sport = :80 )",
    "( )",
    "and sport = :80",
    "sport = :80 or",
    "not",
    "sport = :80 and and dport = :1",
    "dev lo",
    "=",
];

#[test]
fn every_malformed_filter_expression_exits_2_with_a_message_and_no_output() -> Result<()> {
    for expression in MALFORMED_FILTERS {
        for mode in [&["--filter"][..], &["--json", "--filter"]] {
            let args: Vec<&str> = mode.iter().copied().chain([*expression]).collect();
            let output = tcpscope(&args)?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(output.stdout.is_empty(), "{args:?} wrote to stdout");
            assert!(stderr.contains('^'), "{args:?}: no caret: {stderr}");
            assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        }
    }
    Ok(())
}

#[test]
fn a_filter_nested_or_long_beyond_reason_exits_2_instead_of_overflowing_the_stack() -> Result<()> {
    let nested = format!("{}sport = :80{}", "(".repeat(10_000), ")".repeat(10_000));
    let long = vec!["dst != 2001:db8::1"; 5_000].join(" or ");
    for (expression, says) in [(nested, "nested too deeply"), (long, "too long")] {
        let output = tcpscope(&["--json", "--filter", &expression])?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{says}: {stderr:.300}");
        assert!(output.stdout.is_empty());
        assert!(stderr.contains(says), "{stderr:.300}");
    }
    Ok(())
}

#[test]
fn a_replay_refuses_p_since_a_recording_keeps_no_owners() -> Result<()> {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec");
    assert_usage_error(&["--replay", demo, "-p"], &["--replay", "-p", "owner"])?;
    assert_usage_error(
        &["--replay", demo, "--json", "--processes"],
        &["--replay", "-p", "owner"],
    )
}

#[test]
fn help_says_all_netns_and_replay_work_in_the_interactive_view_too() -> Result<()> {
    let output = tcpscope(&["--help"])?;
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in ["--all-netns", "--replay <FILE>"] {
        // A flag's entry runs from its name to the next blank line.
        let entry = help
            .split("\n\n")
            .find(|entry| entry.trim_start().starts_with(flag))
            .unwrap_or_default();
        let entry = entry.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            entry.contains("interactive view"),
            "{flag}'s help does not mention the view: {entry:?}"
        );
    }
    Ok(())
}
