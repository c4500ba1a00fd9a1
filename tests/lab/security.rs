//! What tcpscope may do to the machine it inspects: it runs no other program and
//! creates, changes or removes no file but the recording a user names (`--record`).
//! Checked two ways: the source outside its tests has no call that could (a review aid
//! that fails loudly when one appears), and every mode but `--record`, run under
//! `strace` in a lab namespace, makes no such system call. Run with fewer rights, it
//! says what it cannot see. What `--record` may write is tested with it
//! (`record.rs`).
//!
//! Fails, never skips, without root or without `strace`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::support::lab::Lab;
use crate::support::pty::Terminal;
use crate::support::{TCPSCOPE, tcpscope_command};

/// Calls that start a program.
const STARTS_PROGRAMS: &[&str] = &[
    "Command::new",
    "process::Command",
    "libc::fork",
    "libc::vfork",
    "libc::exec",
    "libc::system",
    "posix_spawn",
];

/// The only source that may create files: the recording a user names with `--record`.
const WRITES_WHAT_THE_USER_NAMES: &[&str] = &["src/record/writer.rs"];

/// Calls that create, write, move or remove a file.
const WRITES_FILES: &[&str] = &[
    "File::create",
    "OpenOptions",
    "fs::write",
    "fs::copy",
    "fs::rename",
    "create_dir",
    "remove_file",
    "remove_dir",
    "set_permissions",
    "symlink(",
    "hard_link",
    "O_CREAT",
    "O_WRONLY",
    "O_RDWR",
    "O_TRUNC",
];

fn rust_files(directory: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(directory)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, found)?;
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
    Ok(())
}

/// The text with every item marked `#[cfg(test)]` cut out: from the attribute to the
/// brace that closes the item (or its `;`), skipping braces inside string and
/// character literals.
fn without_tests(text: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut kept = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        kept.push_str(&rest[..at]);
        rest = &rest[at + MARK.len()..];
        rest = &rest[end_of_item(rest)..];
    }
    kept.push_str(rest);
    kept
}

/// Where the item at the start of `text` ends: after its closing brace, or after a `;`
/// that comes before any brace (`mod fixtures;`).
fn end_of_item(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b';' if depth == 0 => return index + 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return index + 1;
                }
            }
            b'"' => {
                index += 1;
                while index < bytes.len() && bytes[index] != b'"' {
                    index += if bytes[index] == b'\\' { 2 } else { 1 };
                }
            }
            // A character literal ('{', '\'', '\u{7b}'), not a lifetime ('a).
            b'\'' if bytes.get(index + 2) == Some(&b'\'') => index += 2,
            b'\'' if bytes.get(index + 1) == Some(&b'\\') => {
                while index + 1 < bytes.len() && bytes[index + 1] != b'\'' {
                    index += 1;
                }
                index += 1;
            }
            b'/' if bytes.get(index + 1) == Some(&b'/') => {
                while index < bytes.len() && bytes[index] != b'\n' {
                    index += 1;
                }
            }
            _ => {}
        }
        index += 1;
    }
    bytes.len()
}

#[test]
fn cutting_test_items_keeps_the_code_around_them() {
    let text = "fn a() {}\n#[cfg(test)]\nmod fixtures;\nfn b() {}\n#[cfg(test)]\nmod tests {\n    fn c() { let _ = \"}\"; let _ = '{'; }\n    // }\n}\nfn d() {}\n";
    assert_eq!(without_tests(text), "fn a() {}\n\nfn b() {}\n\nfn d() {}\n");
}

#[test]
fn the_source_outside_tests_starts_no_program_and_writes_no_file_but_the_recording() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files)?;
    ensure!(files.len() > 20, "found only {} source files", files.len());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let writer = WRITES_WHAT_THE_USER_NAMES
            .iter()
            .any(|allowed| file == root.join(allowed));
        let forbidden = if writer {
            STARTS_PROGRAMS.to_vec()
        } else {
            [STARTS_PROGRAMS, WRITES_FILES].concat()
        };
        for line in without_tests(&text).lines() {
            let code = line.split("//").next().unwrap_or_default();
            for call in forbidden.iter().filter(|call| code.contains(*call)) {
                found.push(format!("{}: {call}: {}", file.display(), line.trim()));
            }
        }
    }
    ensure!(found.is_empty(), "outside tests:\n{}", found.join("\n"));
    Ok(())
}

/// The system calls that start a program or create, change or remove a file.
const TRACED: &str = "trace=execve,execveat,open,openat,openat2,creat,mkdir,mkdirat,unlink,unlinkat,rename,renameat,renameat2,symlink,symlinkat,link,linkat,truncate,chmod,fchmodat,chown,fchownat";

/// `strace` running tcpscope with `args`, writing what it saw to `trace`.
fn traced(args: &[&str], trace: &Path) -> Command {
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", TRACED, "-e", "signal=none", "-o"])
        .arg(trace)
        .arg(TCPSCOPE)
        .args(args);
    command
}

/// What in a trace starts a program (beyond tcpscope's own start) or writes a file.
/// The only files tcpscope may open for writing are terminals.
fn misdeeds(trace: &str) -> Vec<String> {
    let mut execs = 0;
    let mut found = Vec::new();
    for line in trace.lines() {
        // `1234 openat(AT_FDCWD, "/proc/…", O_RDONLY|O_CLOEXEC) = 5`
        let call = line
            .split_once(' ')
            .map_or(line, |(_, call)| call.trim_start());
        // The end of a call another thread interrupted: its start has the arguments.
        if call.starts_with("<...") {
            continue;
        }
        // A thread strace let go of as the process exited, between two calls: no call
        // was made, so strace has no name for it.
        if call == "???( <detached ...>" {
            continue;
        }
        let name = call.split('(').next().unwrap_or_default();
        let writes = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
            .iter()
            .any(|flag| call.contains(flag));
        let terminal = call.contains("\"/dev/tty\"") || call.contains("\"/dev/pts/");
        match name {
            "execve" | "execveat" => {
                execs += 1;
                if execs > 1 {
                    found.push(line.to_owned());
                }
            }
            "open" | "openat" | "openat2" if writes && !terminal => found.push(line.to_owned()),
            "open" | "openat" | "openat2" => {}
            "" => {}
            _ => found.push(line.to_owned()),
        }
    }
    if execs == 0 {
        found.push("no execve at all: was the trace written?".to_owned());
    }
    found
}

#[test]
fn a_second_program_or_a_file_opened_for_writing_shows_in_a_trace() {
    let trace = "10 execve(\"/bin/tcpscope\", [\"tcpscope\"], 0x7ffd /* 20 vars */) = 0
10 openat(AT_FDCWD, \"/proc/thread-self/net/netstat\", O_RDONLY|O_CLOEXEC) = 3
11 openat(AT_FDCWD, \"/dev/tty\", O_RDWR|O_CLOEXEC <unfinished ...>
11 <... openat resumed>) = 4
12 openat(AT_FDCWD, \"/tmp/out\", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 5
13 execve(\"/bin/sh\", [\"sh\", \"-c\", \"ss\"], 0x7ffd /* 20 vars */) = 0
14 unlink(\"/tmp/x\") = 0
15 ???( <detached ...>
";
    let found = misdeeds(trace);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].contains("/tmp/out") && found[1].contains("/bin/sh"));
    assert!(found[2].starts_with("14 unlink"));
}

fn trace_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "tcpscope-security-{}-{name}.strace",
        std::process::id()
    ))
}

fn read_trace(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the trace {}", path.display()))?;
    let _ = std::fs::remove_file(path);
    Ok(text)
}

#[test]
fn no_mode_starts_a_program_or_writes_a_file() -> Result<()> {
    let lab = Lab::enter()?;
    let _listener = lab.listener_v4()?;
    let _connection = lab.established("127.0.0.1".parse()?)?;

    for (name, args) in [
        ("json", &["--json", "-p"][..]),
        ("grep", &["--grep", "all", "-p"]),
        ("grep-none", &["--grep", "closing"]),
        (
            "filter",
            &["--json", "--filter", "sport = :80 or state established"],
        ),
        (
            "replay",
            &[
                "--replay",
                concat!(env!("CARGO_MANIFEST_DIR"), "/assets/synflood.rec"),
            ],
        ),
        ("help", &["--help"]),
        ("man", &["--man"]),
        ("completions", &["--completions", "zsh"]),
        ("bad-flag", &["--port", "http"]),
    ] {
        let trace = trace_file(name);
        let output = traced(args, &trace)
            .stdin(Stdio::null())
            .output()
            .context("running strace (is it installed?)")?;
        ensure!(
            output.status.code().is_some(),
            "{args:?} ended by a signal: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let found = misdeeds(&read_trace(&trace)?);
        ensure!(found.is_empty(), "{args:?}:\n{}", found.join("\n"));
    }

    let trace = trace_file("watch");
    let mut watch = traced(&["--watch", "--json", "--interval", "100ms"], &trace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(1));
    // strace does not pass SIGTERM on: stop tcpscope itself, and strace ends with it.
    let tracee = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", watch.id()))?;
    let tracee: libc::pid_t = tracee
        .split_whitespace()
        .next()
        .context("strace has no child")?
        .parse()?;
    // SAFETY: kill(2) on the process strace started for this test.
    unsafe { libc::kill(tracee, libc::SIGTERM) };
    ensure!(watch.wait()?.success(), "--watch under strace failed");
    let found = misdeeds(&read_trace(&trace)?);
    ensure!(found.is_empty(), "--watch:\n{}", found.join("\n"));

    let trace = trace_file("view");
    let mut terminal = Terminal::spawn(traced(&["--interval", "100ms"], &trace), 100, 30)?;
    terminal.wait_for(Duration::from_secs(20), "the view", |screen| {
        screen.contains("ESTABLISHED") && screen.contains("q quit")
    })?;
    // The connections tab scans processes; Enter asks the kernel for one tcp_info.
    for keys in [&b"2"[..], b"\r", b"\x1b", b"3", b"?", b"\x1b"] {
        terminal.send(keys)?;
        std::thread::sleep(Duration::from_millis(300));
    }
    terminal.send(b"q")?;
    let status = terminal.wait(Duration::from_secs(10))?;
    if !status.success() {
        bail!("the view ended with {status}:\n{}", terminal.contents());
    }
    let found = misdeeds(&read_trace(&trace)?);
    ensure!(found.is_empty(), "the view:\n{}", found.join("\n"));
    Ok(())
}

#[test]
fn run_as_nobody_it_says_which_processes_it_could_not_read() -> Result<()> {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let lab = Lab::enter()?;
    // Held by this (root) process, which nobody may not inspect.
    let listener = lab.listener_v4()?;
    let port = listener.addr.port().to_string();

    for args in [&["--grep", "listen", "-p"][..], &["--json", "-p"]] {
        let output = tcpscope_command(&[])
            .args(args)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(Stdio::null())
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(output.status.success(), "{args:?}: {stderr}");
        ensure!(
            stdout.contains(&port),
            "{args:?} did not list the listener: {stdout}"
        );
        ensure!(
            stderr.contains("processes could not be read")
                && stderr.contains("run as root to see all"),
            "{args:?}: {stderr}"
        );
        ensure!(stderr.lines().count() == 1, "{args:?}: {stderr}");
    }
    Ok(())
}

/// What a process shows as its name: the kernel keeps 15 bytes of it.
const HOSTILE_NAME: &str = "\x1b]2;OWN\x07\x1b[2J";

#[test]
fn a_process_name_that_is_a_terminal_escape_is_shown_escaped_by_grep_p() -> Result<()> {
    let lab = Lab::enter()?;
    let _listener = lab.listener_v4()?;
    // This test process holds the listener: it names itself, as prctl(PR_SET_NAME)
    // would, through the file the kernel offers for it.
    let own_name = std::fs::read_to_string("/proc/self/comm")?;
    std::fs::write("/proc/self/comm", HOSTILE_NAME)?;
    let output = Command::new(env!("CARGO_BIN_EXE_tcpscope"))
        .args(["--grep", "listen", "-p"])
        .output();
    std::fs::write("/proc/self/comm", own_name.trim_end())?;
    let output = output?;
    ensure!(output.status.code() == Some(0), "{output:?}");
    let stdout = String::from_utf8(output.stdout)?;
    ensure!(
        !stdout.contains('\x1b') && !stdout.contains('\x07'),
        "{stdout:?}"
    );
    ensure!(stdout.contains("\\e]2;OWN\\a\\e[2J"), "{stdout}");
    Ok(())
}
