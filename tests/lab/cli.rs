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

/// The headings `--help` and `-h` group the flags under, in order.
const HEADINGS: [&str; 5] = [
    "Modes (none: the interactive view):",
    "Which sockets:",
    "Live modes (--watch, --serve, --check, the view):",
    "Output:",
    "SYN watch and finding thresholds:",
];

/// `tcpscope ARGS` as on a terminal `columns` wide (clap reads COLUMNS when stdout is
/// not a terminal).
fn help_at(args: &[&str], columns: u16) -> Result<String> {
    let output = crate::support::tcpscope_command(args)
        .env("COLUMNS", columns.to_string())
        .output()?;
    assert_eq!(output.status.code(), Some(0), "{args:?}");
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn short_help_is_one_line_per_flag_under_headings_within_100_columns() -> Result<()> {
    let help = help_at(&["-h"], 100)?;
    let at: Vec<usize> = HEADINGS
        .iter()
        .map(|heading| {
            help.lines()
                .position(|line| line == *heading)
                .unwrap_or_else(|| panic!("{heading} missing:\n{help}"))
        })
        .collect();
    assert!(at.is_sorted(), "headings out of order:\n{help}");
    let flag_lines: Vec<&str> = help
        .lines()
        .filter(|line| line.trim_start().starts_with('-'))
        .collect();
    assert!(flag_lines.len() >= 40, "{help}");
    for line in help.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line:?}"
        );
        // A flag's line carries its summary: no line of the options is a flag alone
        // with its text below it, nor a summary carried over from the line above.
        if line.starts_with("  ") {
            let text = line.trim_start();
            assert!(text.starts_with('-'), "a summary wrapped: {line:?}");
            let summary = text.split_once("  ").map(|(_, rest)| rest.trim());
            assert!(
                summary.is_some_and(|summary| !summary.is_empty()),
                "no summary beside the flag: {line:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn long_help_wraps_to_the_terminal_and_ends_with_examples() -> Result<()> {
    let narrow = help_at(&["--help"], 72)?;
    assert!(
        narrow
            .lines()
            .all(|line| line.trim_end().chars().count() <= 72),
        "{narrow}"
    );
    let wide = help_at(&["--help"], 100)?;
    assert!(wide.lines().count() < narrow.lines().count());
    for heading in HEADINGS {
        assert!(narrow.contains(heading), "{heading} missing");
    }
    let examples = narrow
        .split_once("Examples:")
        .map(|(_, after)| after)
        .unwrap_or_else(|| panic!("no examples:\n{narrow}"));
    for example in [
        "tcpscope --replay assets/synflood.rec",
        "tcpscope --serve :9464",
        "tcpscope --completions bash",
    ] {
        assert!(examples.contains(example), "{example} missing");
    }
    // -h is the short form: it points to --help instead of explaining.
    let short = help_at(&["-h"], 100)?;
    assert!(short.lines().count() * 2 < wide.lines().count());
    assert!(!short.contains("Examples:"));
    Ok(())
}

/// Every long flag `-h` lists (one line each, indented).
fn long_flags() -> Result<Vec<String>> {
    let help = help_at(&["-h"], 100)?;
    let mut flags: Vec<String> = help
        .lines()
        .filter(|line| line.starts_with("  "))
        .filter_map(|line| {
            let text = line.trim_start();
            let text = text.split_once(", ").map_or(text, |(_, long)| long);
            let flag = text.strip_prefix("--")?.split([' ', '=']).next()?;
            Some(format!("--{flag}"))
        })
        .collect();
    flags.dedup();
    assert!(flags.len() >= 40, "{flags:?}");
    Ok(flags)
}

#[test]
fn the_bash_completion_script_is_valid_bash_and_names_every_flag() -> Result<()> {
    let output = tcpscope(&["--completions", "bash"])?;
    assert_eq!(output.status.code(), Some(0));
    let script = String::from_utf8(output.stdout)?;
    let path =
        std::env::temp_dir().join(format!("tcpscope-completion-{}.bash", std::process::id()));
    std::fs::write(&path, &script)?;
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let checked = checked?;
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(script.contains("complete -F"), "registers no completion");
    for flag in long_flags()? {
        assert!(
            script.contains(&flag),
            "{flag} missing from the bash completions"
        );
    }
    for shell in ["zsh", "fish"] {
        let output = tcpscope(&["--completions", shell])?;
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(output.stdout)?;
        assert!(script.contains("all-netns"), "{shell}: {script:.300}");
    }
    Ok(())
}

#[test]
fn an_unknown_shell_exits_2_naming_the_shells_it_knows() -> Result<()> {
    assert_usage_error(&["--completions", "tcsh"], &["tcsh", "bash", "zsh", "fish"])?;
    assert_usage_error(&["--completions", "bash", "--json"], &["--completions"])
}

#[test]
fn the_man_page_renders_with_every_long_flag_in_its_options() -> Result<()> {
    let output = tcpscope(&["--man"])?;
    assert_eq!(output.status.code(), Some(0));
    let roff = output.stdout;
    // Rendered as `man -l -` would; where man is missing, groff alone, as man calls it.
    let mut render = if which("man") {
        let mut man = std::process::Command::new("man");
        man.args(["-l", "-"]).env("MANWIDTH", "100");
        man
    } else {
        let mut groff = std::process::Command::new("groff");
        groff.args(["-man", "-Tutf8", "-rLL=100n"]);
        groff
    };
    let mut child = render
        .env("MAN_KEEP_FORMATTING", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, &roff)?;
    }
    let rendered = child.wait_with_output()?;
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    // Bold and underline come as overstrikes (`N\bN`) when not on a terminal.
    let page: String = strip_overstrikes(&String::from_utf8_lossy(&rendered.stdout));
    let options = page
        .split_once("\nOPTIONS\n")
        .map(|(before, after)| {
            assert!(before.contains("\nNAME\n") && before.contains("\nSYNOPSIS\n"));
            after
        })
        .unwrap_or_else(|| panic!("no OPTIONS section:\n{page}"));
    let examples = options
        .split_once("\nEXAMPLES\n")
        .map(|(_, after)| after)
        .unwrap_or_else(|| panic!("no EXAMPLES section:\n{page}"));
    assert!(
        examples.contains("tcpscope --replay assets/synflood.rec"),
        "{examples}"
    );
    for flag in long_flags()? {
        // groff may print a hyphen as U+2010 in UTF-8 output.
        let found = options.contains(&flag) || options.contains(&flag.replace('-', "\u{2010}"));
        assert!(found, "{flag} missing from the man page's OPTIONS");
    }
    Ok(())
}

fn which(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn strip_overstrikes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
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
fn completions_and_the_man_page_end_quietly_when_their_reader_is_gone() -> Result<()> {
    for args in [
        &["--completions", "bash"][..],
        &["--completions", "fish"],
        &["--man"],
    ] {
        let (reader, writer) = std::io::pipe()?;
        // The reader is gone before tcpscope writes: every write meets a closed pipe.
        drop(reader);
        let output = crate::support::tcpscope_command(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
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

#[test]
fn info_is_refused_by_the_modes_that_show_no_tcp_info() -> Result<()> {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec");
    for args in [
        &["--serve", "127.0.0.1:0", "-i"][..],
        &["--replay", demo, "--info"],
        &["--replay", demo, "--json", "-i"],
        &["--kill", "sport = :1", "-i"],
        &["--watch", "-i"],
        &["--all-netns", "--json", "-i"],
        &["--all-netns", "-i"],
    ] {
        assert_usage_error(args, &["-i/--info", "--grep or the interactive view"])?;
    }
    Ok(())
}
