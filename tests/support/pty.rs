//! A real terminal for end-to-end tests: the binary runs on the slave side of a
//! pseudo-terminal as its controlling terminal, and everything it writes is fed to a
//! `vt100` emulator, so a test reads the screen a user would see.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::lab::child::exit_within;

/// A program running in a pseudo-terminal.
pub struct Terminal {
    child: Child,
    master: File,
    screen: Arc<Mutex<vt100::Parser>>,
    /// Every byte the program wrote, for checking escape sequences.
    raw: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Terminal {
    /// Starts `command` on a new `columns` x `rows` pseudo-terminal.
    pub fn spawn(mut command: Command, columns: u16, rows: u16) -> Result<Terminal> {
        let (master, slave) = open_pty(columns, rows)?;
        let child = spawn_on(&mut command, slave)?;
        drop(command);
        let master = File::from(master);
        let size = |n: u16| std::num::NonZeroU16::new(n).context("a terminal of zero size");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            size(rows)?,
            size(columns)?,
            0,
        )));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let reader = thread::spawn({
            let mut master = master.try_clone()?;
            let (screen, raw) = (Arc::clone(&screen), Arc::clone(&raw));
            move || {
                let mut buffer = [0u8; 8192];
                // EIO once the program and every copy of the slave are gone.
                while let Ok(length) = master.read(&mut buffer) {
                    if length == 0 {
                        break;
                    }
                    if let Ok(mut screen) = screen.lock() {
                        screen.process(&buffer[..length]);
                    }
                    if let Ok(mut raw) = raw.lock() {
                        raw.extend_from_slice(&buffer[..length]);
                    }
                }
            }
        });
        Ok(Terminal {
            child,
            master,
            screen,
            raw,
            reader: Some(reader),
        })
    }

    /// The screen's text now, one line per row.
    pub fn contents(&self) -> String {
        self.screen
            .lock()
            .map(|screen| screen.screen().contents())
            .unwrap_or_default()
    }

    pub fn alternate_screen(&self) -> bool {
        self.screen
            .lock()
            .map(|screen| screen.screen().alternate_screen())
            .unwrap_or(false)
    }

    /// Whether the program hid the cursor and has not shown it again.
    pub fn cursor_hidden(&self) -> bool {
        self.screen
            .lock()
            .map(|screen| screen.screen().hide_cursor())
            .unwrap_or(true)
    }

    /// Whether the terminal is in its normal line mode (canonical input and echo), as a
    /// shell expects it, rather than the raw mode a full-screen program sets. On Linux
    /// the master side reports the terminal's settings.
    pub fn line_mode(&self) -> Result<bool> {
        // SAFETY: termios is plain data; tcgetattr fills it in.
        let mut settings: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a valid termios to write to.
        if unsafe { libc::tcgetattr(self.master.as_raw_fd(), &mut settings) } != 0 {
            return Err(std::io::Error::last_os_error()).context("tcgetattr on the pty");
        }
        Ok(settings.c_lflag & libc::ICANON != 0 && settings.c_lflag & libc::ECHO != 0)
    }

    /// Resizes the terminal as a window manager would: the kernel sends the program
    /// SIGWINCH. The emulator follows (it cannot be smaller than 1x1).
    pub fn resize(&mut self, columns: u16, rows: u16) -> Result<()> {
        if let Ok(mut screen) = self.screen.lock() {
            let at_least_one = |n: u16| std::num::NonZeroU16::new(n.max(1));
            if let (Some(rows), Some(columns)) = (at_least_one(rows), at_least_one(columns)) {
                screen.screen_mut().set_size(rows, columns);
            }
        }
        set_size(&self.master, columns, rows)
    }

    /// Whether the program is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn raw_output(&self) -> Vec<u8> {
        self.raw.lock().map(|raw| raw.clone()).unwrap_or_default()
    }

    /// Waits until `ready` holds for the screen's text, and returns that text.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        ready: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let contents = self.contents();
            if ready(&contents) {
                return Ok(contents);
            }
            if Instant::now() > deadline {
                bail!("waited {timeout:?} for {what}; the screen shows:\n{contents}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn send(&mut self, keys: &[u8]) -> Result<()> {
        self.master.write_all(keys).context("typing into the pty")
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(0)
    }

    /// Waits for the program to exit, then for the last of its output.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let status = exit_within(&mut self.child, timeout)
            .with_context(|| format!("the program did not exit:\n{}", self.contents()))?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ok(status)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `command` with the pty's `slave` end as its stdin, stdout, stderr and
/// controlling terminal, as a terminal emulator starts a shell. `command` keeps copies
/// of the slave until it is dropped: drop it once the program runs, so that the
/// program's exit closes the terminal.
pub fn spawn_on(command: &mut Command, slave: OwnedFd) -> Result<Child> {
    let stdio = |fd: &OwnedFd| -> Result<Stdio> { Ok(Stdio::from(fd.try_clone()?)) };
    command
        .stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?)
        .env("TERM", "xterm-256color");
    // SAFETY: setsid and ioctl are async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().context("starting the program in the pty")
}

/// Sets the size of the pty whose master is `master`: the kernel sends the program on
/// it SIGWINCH.
pub fn set_size(master: &impl AsRawFd, columns: u16, rows: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: a valid descriptor and a valid winsize to read.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(std::io::Error::last_os_error()).context("TIOCSWINSZ on the pty");
    }
    Ok(())
}

/// A pseudo-terminal of `columns` x `rows`: its master and slave ends.
pub fn open_pty(columns: u16, rows: u16) -> Result<(OwnedFd, OwnedFd)> {
    let mut master = -1;
    let mut slave = -1;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the given integers; name and termios
    // may be null.
    let result = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error()).context("openpty");
    }
    // SAFETY: openpty succeeded, so both are open descriptors that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // The program must not inherit the master: holding its own terminal open, it would
    // never see the terminal go away, and a test that closes it would wait forever.
    // SAFETY: fcntl on a descriptor owned here.
    if unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error()).context("FD_CLOEXEC on the pty master");
    }
    Ok((master, slave))
}

impl Terminal {
    /// The screen's cells as JSON rows of `[text, fg, bg, bold, inverse]`, colours as
    /// `"default"`, an xterm index or `"#rrggbb"`: what `tests/screenshot/render.py`
    /// draws to a PNG.
    pub fn cells_json(&self) -> serde_json::Value {
        let Ok(parser) = self.screen.lock() else {
            return serde_json::Value::Null;
        };
        let screen = parser.screen();
        let (rows, columns) = screen.size();
        let (rows, columns) = (rows.get(), columns.get());
        let colour = |colour: vt100::Color| match colour {
            vt100::Color::Default => serde_json::json!("default"),
            vt100::Color::Idx(index) => serde_json::json!(index),
            vt100::Color::Rgb(r, g, b) => serde_json::json!(format!("#{r:02x}{g:02x}{b:02x}")),
        };
        let rows: Vec<serde_json::Value> = (0..rows)
            .map(|row| {
                let cells: Vec<serde_json::Value> = (0..columns)
                    .map(|column| match screen.cell(row, column) {
                        Some(cell) => serde_json::json!([
                            cell.contents(),
                            colour(cell.fgcolor()),
                            colour(cell.bgcolor()),
                            cell.bold(),
                            cell.inverse()
                        ]),
                        None => serde_json::json!([" ", "default", "default", false, false]),
                    })
                    .collect();
                serde_json::Value::Array(cells)
            })
            .collect();
        serde_json::Value::Array(rows)
    }
}
