//! `--record FILE`: appends every poll to a recording, as what changed since the
//! previous poll, with a size cap and rotation.
//!
//! Each record is written whole and flushed before the next poll, so a tcpscope that
//! crashes or is killed loses at most the record it was writing, which readers skip
//! as a torn tail. Reopening a recording to append first cuts such a tail off, so that
//! the new records are reachable. When a file reaches its cap it becomes `FILE.1`
//! (replacing an older recording) and a new `FILE` starts with a poll of every socket.
//!
//! This is the one place tcpscope writes a file, so it is careful with what it finds
//! there: it never follows a symbolic link as the file's last component (someone who
//! can write the directory must not be able to point a root tcpscope at another file),
//! and it never replaces a file that is not a recording unless told to (`--force`). It
//! writes only into a regular file, owned by the user it runs as unless `--force`, and
//! holds an exclusive lock on it while it records.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use super::codec::{self, Entry, PollRecord, Sockets};
use super::delta::SocketTable;
use super::frame::{self, FrameReader, HeaderError, Next};
use crate::diff::Transition;
use crate::kernel::events::EventStatus;
use crate::kernel::files;
use crate::kernel::procfs::TcpExt;
use crate::snapshot::Snapshot;

/// One poll as the recorder takes it, borrowed from whoever holds it.
#[derive(Debug, Clone, Copy)]
pub struct PollToRecord<'a> {
    pub snapshot: &'a Snapshot,
    pub transitions: &'a [Transition],
    pub counters: &'a TcpExt,
    pub took: Duration,
    pub events: &'a EventStatus,
    pub event_overflows: u32,
}

/// The default cap on one recording file: about 15 minutes of a busy host's polls.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Where and how to record: `--record FILE`, `--record-max-size`, `--force`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTo {
    pub path: PathBuf,
    /// Past this size the file rotates.
    pub max_bytes: u64,
    /// Replace `FILE` (and `FILE.1` when rotating) whatever it holds, instead of
    /// appending to a recording and refusing anything else.
    pub force: bool,
}

impl RecordTo {
    /// A recording at `path` with the default cap, appended to if it exists.
    pub fn new(path: impl Into<PathBuf>) -> RecordTo {
        RecordTo {
            path: path.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            force: false,
        }
    }
}

/// An open recording.
pub struct Recorder {
    path: PathBuf,
    file: BufWriter<File>,
    /// The current file's length.
    length: u64,
    max_bytes: u64,
    force: bool,
    /// The sockets of the last poll written; `None` when the next poll must be written
    /// whole (a new file).
    table: Option<SocketTable>,
    payload: Vec<u8>,
    frame: Vec<u8>,
}

impl Recorder {
    /// Opens the recording to append to, creating it if need be. An existing file must
    /// be a recording (a torn tail left by a crash is cut off first) unless `force`
    /// says to start it afresh. `FILE.1` is checked now too, so that a file in the way
    /// of rotation is found before anything is recorded.
    pub fn open(to: &RecordTo) -> anyhow::Result<Recorder> {
        let path = &to.path;
        let shown = path.display();
        let mut file = open_no_follow(
            OpenOptions::new().read(true).append(true).create(true),
            path,
        )
        .with_context(|| format!("opening the recording {shown}"))?;
        check_ours(&file, path, to.force)?;
        if to.force {
            file.set_len(0)
                .with_context(|| format!("emptying {shown} (--force)"))?;
        }
        let existing = file
            .metadata()
            .with_context(|| format!("reading the size of {shown}"))?
            .len();
        let length = if existing == 0 {
            file.write_all(&frame::header())
                .with_context(|| format!("writing to {shown}"))?;
            frame::HEADER_BYTES as u64
        } else {
            let end = intact_length(&mut file).with_context(|| {
                format!("{shown} exists and is not a recording tcpscope can append to (--force replaces it)")
            })?;
            if end < existing {
                file.set_len(end)
                    .with_context(|| format!("cutting the torn end off {shown}"))?;
            }
            end
        };
        if !to.force {
            check_replaceable(&rotated_path(path))?;
        }
        Ok(Recorder {
            path: path.clone(),
            file: BufWriter::new(file),
            length,
            max_bytes: to.max_bytes.max(1),
            force: to.force,
            table: None,
            payload: Vec::new(),
            frame: Vec::new(),
        })
    }

    /// Appends one poll.
    pub fn record_poll(&mut self, poll: &PollToRecord<'_>) -> anyhow::Result<()> {
        let entry = self.poll_entry(poll);
        self.encode(&entry);
        if self.must_rotate() {
            self.rotate()?;
            // A new file starts with every socket.
            let entry = self.poll_entry(poll);
            self.encode(&entry);
        }
        self.write_frame()
    }

    /// Appends a failed poll.
    pub fn record_failure(&mut self, at: SystemTime, message: &str) -> anyhow::Result<()> {
        self.encode(&Entry::PollFailed {
            at,
            message: message.to_string(),
        });
        if self.must_rotate() {
            self.rotate()?;
        }
        self.write_frame()
    }

    /// The record of a poll: every socket in a new file, else what changed.
    fn poll_entry(&mut self, poll: &PollToRecord<'_>) -> Entry {
        let now = &poll.snapshot.sockets;
        let sockets = match &mut self.table {
            Some(table) => {
                let changes = table.changes_to(now);
                table.replace(now);
                Sockets::Changes(changes)
            }
            None => {
                self.table = Some(SocketTable::of(now));
                Sockets::All(now.clone())
            }
        };
        Entry::Poll(PollRecord {
            taken_at: poll.snapshot.taken_at,
            took: poll.took,
            events: poll.events.clone(),
            event_overflows: poll.event_overflows,
            counters: *poll.counters,
            sockets,
            transitions: poll.transitions.to_vec(),
        })
    }

    fn encode(&mut self, entry: &Entry) {
        codec::encode(entry, &mut self.payload);
        self.frame.clear();
        frame::append_frame(&self.payload, &mut self.frame);
    }

    /// Whether the encoded record would take the file past its cap. A file always
    /// gets at least one record, however large.
    fn must_rotate(&self) -> bool {
        self.length > frame::HEADER_BYTES as u64
            && self.length + self.frame.len() as u64 > self.max_bytes
    }

    fn write_frame(&mut self) -> anyhow::Result<()> {
        let shown = self.path.display();
        self.file
            .write_all(&self.frame)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing to the recording {shown}"))?;
        self.length += self.frame.len() as u64;
        Ok(())
    }

    /// `FILE` becomes `FILE.1` and a new `FILE` starts.
    fn rotate(&mut self) -> anyhow::Result<()> {
        self.file
            .flush()
            .with_context(|| format!("writing to the recording {}", self.path.display()))?;
        let older = rotated_path(&self.path);
        if !self.force {
            check_replaceable(&older)?;
        }
        // rename() replaces a symbolic link at FILE.1 itself, never what it points to.
        fs::rename(&self.path, &older)
            .with_context(|| format!("renaming {} to {}", self.path.display(), older.display()))?;
        // FILE was just moved away: anything there now was put there meanwhile.
        let mut file = open_no_follow(OpenOptions::new().write(true).create_new(true), &self.path)
            .with_context(|| format!("creating the recording {}", self.path.display()))?;
        lock(&file, &self.path)?;
        file.write_all(&frame::header())
            .with_context(|| format!("writing to {}", self.path.display()))?;
        self.file = BufWriter::new(file);
        self.length = frame::HEADER_BYTES as u64;
        self.table = None;
        Ok(())
    }
}

/// Where a recording goes when it reaches its cap: `FILE.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".1");
    PathBuf::from(name)
}

/// Opens `path` without following a symbolic link as its last component (the kernel
/// refuses with ELOOP, said here in words), and without waiting: opening a FIFO would
/// otherwise wait for a reader, and [`check_ours`] refuses it before anything is
/// written. On a regular file O_NONBLOCK changes nothing.
fn open_no_follow(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other(format!(
                "{} is a symbolic link; tcpscope does not write through one",
                path.display()
            )),
            _ => error,
        })
}

/// Refuses, before the first byte is written, what tcpscope must not record into: anything
/// but a regular file (a FIFO would block the recorder, and hand the recording to
/// whoever opens it; a device would be written over from its first byte), and, unless
/// `force`, a file another user owns (a root tcpscope must not fill a file someone
/// else left writable). Then takes the file's lock, so that two recorders cannot
/// interleave their records in it.
fn check_ours(file: &File, path: &Path, force: bool) -> anyhow::Result<()> {
    let shown = path.display();
    let metadata = file
        .metadata()
        .with_context(|| format!("looking at {shown}"))?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        bail!("{shown} is {what}; tcpscope records only into a regular file");
    }
    let me = files::effective_uid();
    if metadata.uid() != me && !force {
        bail!(
            "{shown} belongs to user {}, not to the user tcpscope runs as ({me}); --force records into it anyway",
            metadata.uid()
        );
    }
    lock(file, path)
}

/// Takes the recording's exclusive lock, or says who holds it.
fn lock(file: &File, path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    let locked = files::try_lock_exclusive(file).with_context(|| format!("locking {shown}"))?;
    if !locked {
        bail!("another tcpscope is recording into {shown} (it holds the file's lock)");
    }
    Ok(())
}

/// Rotation may replace `older` only if nothing is there, or a recording is.
fn check_replaceable(older: &Path) -> anyhow::Result<()> {
    let shown = older.display();
    let metadata = match fs::symlink_metadata(older) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).with_context(|| format!("looking at {shown}")),
    };
    let is_recording = metadata.is_file() && {
        let mut magic = [0u8; frame::HEADER_BYTES];
        File::open(older)
            .and_then(|mut file| file.read_exact(&mut magic))
            .is_ok()
            && FrameReader::open(&magic[..]).is_ok()
    };
    if !is_recording {
        bail!(
            "{shown} is in the way: a full recording is moved there, and it is not a recording (--force replaces it)"
        );
    }
    Ok(())
}

/// The length of the part of the recording made of whole records.
fn intact_length(file: &mut File) -> anyhow::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = match FrameReader::open(BufReader::new(&mut *file)) {
        Ok(reader) => reader,
        Err(HeaderError::Io(error)) => return Err(error.into()),
        Err(error) => bail!(error),
    };
    loop {
        match reader.next_frame()? {
            Next::Frame(_) => continue,
            Next::End | Next::Torn { .. } => return Ok(reader.offset()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::kernel::procfs::TcpExt;
    use crate::record::{RecordedPoll, Replay, ReplayEnd, Replayed};
    use crate::snapshot::{Snapshot, SocketRecord, fixtures};
    use crate::tcp::State;

    /// A fresh path in the system's temporary directory, removed (with its rotated
    /// sibling) when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "tcpscope-record-{}-{}.rec",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            Scratch(std::env::temp_dir().join(name))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
            let _ = fs::remove_file(rotated_path(&self.0));
        }
    }

    fn socket(cookie: u64, state: State) -> SocketRecord {
        let mut socket = fixtures::socket(state, "127.0.0.1", 80, "127.64.0.1", cookie as u16);
        socket.cookie = cookie;
        socket
    }

    /// Poll `n`: sockets 1..=n+1, the oldest moving on to ESTABLISHED.
    fn update(n: u64) -> RecordedPoll {
        let sockets: Vec<_> = (1..=n + 1)
            .map(|cookie| {
                let state = if cookie <= n {
                    State::Established
                } else {
                    State::SynRecv
                };
                socket(cookie, state)
            })
            .collect();
        let snapshot = Snapshot::new(UNIX_EPOCH + Duration::from_secs(1_000 + n), sockets);
        RecordedPoll {
            snapshot,
            transitions: Vec::new(),
            counters: TcpExt {
                syncookies_sent: n,
                ..TcpExt::default()
            },
            took: Duration::from_millis(3),
            events: EventStatus::Subscribed,
            event_overflows: 0,
        }
    }

    fn replay_all(path: &Path) -> (Vec<RecordedPoll>, ReplayEnd) {
        let mut replay = Replay::open(path).unwrap();
        let mut updates = Vec::new();
        while let Some(replayed) = replay.next_poll().unwrap() {
            match replayed {
                Replayed::Poll(poll) => updates.push(poll),
                Replayed::Failed { message, .. } => panic!("unexpected failure {message}"),
            }
        }
        (updates, replay.end().cloned().unwrap())
    }

    fn sorted(sockets: &[SocketRecord]) -> Vec<SocketRecord> {
        let mut sockets = sockets.to_vec();
        sockets.sort_by_key(|s| s.cookie);
        sockets
    }

    #[test]
    fn a_recording_replays_every_poll_with_its_sockets_and_counters() {
        let scratch = Scratch::new();
        let mut recorder = Recorder::open(&RecordTo::new(&scratch.0)).unwrap();
        for n in 0..5 {
            recorder.record_poll(&update(n).as_record()).unwrap();
        }
        recorder
            .record_failure(UNIX_EPOCH + Duration::from_secs(2_000), "dump failed")
            .unwrap();
        drop(recorder);

        let mut replay = Replay::open(&scratch.0).unwrap();
        for n in 0..5 {
            let replayed = replay.next_poll().unwrap().unwrap();
            let Replayed::Poll(replayed) = replayed else {
                panic!("poll {n} is not an update");
            };
            let expected = update(n);
            assert_eq!(replayed.snapshot.taken_at, expected.snapshot.taken_at);
            assert_eq!(
                sorted(&replayed.snapshot.sockets),
                sorted(&expected.snapshot.sockets)
            );
            assert_eq!(replayed.counters, expected.counters);
            assert_eq!(replayed.took, expected.took);
        }
        let failure = replay.next_poll().unwrap().unwrap();
        assert!(
            matches!(failure, Replayed::Failed { ref message, .. } if message == "dump failed")
        );
        assert!(replay.next_poll().unwrap().is_none());
        assert_eq!(replay.end(), Some(&ReplayEnd::Complete));
    }

    #[test]
    fn later_polls_are_written_as_changes_and_take_less_room() {
        let scratch = Scratch::new();
        let mut recorder = Recorder::open(&RecordTo::new(&scratch.0)).unwrap();
        let big = |n| {
            let mut update = update(0);
            let sockets = (1..=200).map(|c| socket(c, State::Established)).collect();
            update.snapshot = Snapshot::new(UNIX_EPOCH + Duration::from_secs(n), sockets);
            update
        };
        recorder.record_poll(&big(1).as_record()).unwrap();
        let first = recorder.length;
        recorder.record_poll(&big(2).as_record()).unwrap();
        let second = recorder.length - first;
        assert!(first > 200 * 72, "the first poll holds every socket");
        assert!(second < 200, "an unchanged poll is a few bytes: {second}");
    }

    #[test]
    fn a_recording_cut_mid_record_replays_up_to_the_tear() {
        let scratch = Scratch::new();
        let mut recorder = Recorder::open(&RecordTo::new(&scratch.0)).unwrap();
        let mut ends = Vec::new();
        for n in 0..4 {
            recorder.record_poll(&update(n).as_record()).unwrap();
            ends.push(recorder.length);
        }
        drop(recorder);
        let whole = fs::read(&scratch.0).unwrap();
        // Cut inside the fourth record.
        let cut = (ends[2] + ends[3]) / 2;
        fs::write(&scratch.0, &whole[..cut as usize]).unwrap();
        let (updates, end) = replay_all(&scratch.0);
        assert_eq!(updates.len(), 3);
        assert!(matches!(end, ReplayEnd::Torn { offset, .. } if offset == ends[2]));
    }

    #[test]
    fn appending_after_a_crash_cuts_the_torn_tail_so_new_polls_are_reachable() {
        let scratch = Scratch::new();
        let mut recorder = Recorder::open(&RecordTo::new(&scratch.0)).unwrap();
        for n in 0..2 {
            recorder.record_poll(&update(n).as_record()).unwrap();
        }
        drop(recorder);
        let mut bytes = fs::read(&scratch.0).unwrap();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
        fs::write(&scratch.0, &bytes).unwrap();

        let mut recorder = Recorder::open(&RecordTo::new(&scratch.0)).unwrap();
        recorder.record_poll(&update(7).as_record()).unwrap();
        drop(recorder);
        let (updates, end) = replay_all(&scratch.0);
        assert_eq!(end, ReplayEnd::Complete);
        assert_eq!(updates.len(), 3);
        assert_eq!(
            updates[2].snapshot.sockets.len(),
            8,
            "a reopened file starts whole"
        );
    }

    #[test]
    fn a_full_file_rotates_and_the_new_file_starts_with_every_socket() {
        let scratch = Scratch::new();
        let mut recorder = Recorder::open(&RecordTo {
            max_bytes: 2_000,
            ..RecordTo::new(&scratch.0)
        })
        .unwrap();
        for n in 0..20 {
            recorder.record_poll(&update(n).as_record()).unwrap();
        }
        drop(recorder);
        let older = rotated_path(&scratch.0);
        assert!(older.exists());
        assert!(fs::metadata(&scratch.0).unwrap().len() <= 2_000);
        assert!(fs::metadata(&older).unwrap().len() <= 2_000);
        let (updates, end) = replay_all(&scratch.0);
        assert_eq!(end, ReplayEnd::Complete);
        let last = updates.last().unwrap();
        assert_eq!(
            last.snapshot.sockets.len(),
            20,
            "the newest file replays on its own"
        );
        let (older_updates, _) = replay_all(&older);
        assert!(!older_updates.is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_recording_is_never_appended_to() {
        let scratch = Scratch::new();
        fs::write(&scratch.0, b"precious notes").unwrap();
        let error = Recorder::open(&RecordTo::new(&scratch.0))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("not a recording"), "{error}");
        assert_eq!(fs::read(&scratch.0).unwrap(), b"precious notes");
    }

    #[test]
    fn force_starts_a_file_that_is_not_a_recording_afresh() {
        let scratch = Scratch::new();
        fs::write(&scratch.0, b"old notes").unwrap();
        let mut recorder = Recorder::open(&RecordTo {
            force: true,
            ..RecordTo::new(&scratch.0)
        })
        .unwrap();
        recorder.record_poll(&update(3).as_record()).unwrap();
        drop(recorder);
        let (updates, end) = replay_all(&scratch.0);
        assert_eq!(end, ReplayEnd::Complete);
        assert_eq!(updates.len(), 1);
    }

    #[test]
    fn a_symbolic_link_is_never_written_through() {
        let scratch = Scratch::new();
        let target = Scratch::new();
        fs::write(&target.0, b"a file someone else owns").unwrap();
        std::os::unix::fs::symlink(&target.0, &scratch.0).unwrap();
        for force in [false, true] {
            let error = Recorder::open(&RecordTo {
                force,
                ..RecordTo::new(&scratch.0)
            })
            .err()
            .unwrap();
            assert!(
                format!("{error:#}").contains("is a symbolic link"),
                "{error:#}"
            );
        }
        assert_eq!(fs::read(&target.0).unwrap(), b"a file someone else owns");
    }

    #[test]
    fn a_dangling_symbolic_link_is_not_followed_to_create_a_file() {
        let scratch = Scratch::new();
        let target = Scratch::new();
        std::os::unix::fs::symlink(&target.0, &scratch.0).unwrap();
        assert!(Recorder::open(&RecordTo::new(&scratch.0)).is_err());
        assert!(!target.0.exists());
    }

    #[test]
    fn a_file_in_the_way_of_rotation_is_refused_before_anything_is_recorded() {
        let scratch = Scratch::new();
        let older = rotated_path(&scratch.0);
        fs::write(&older, b"precious notes").unwrap();
        let error = Recorder::open(&RecordTo::new(&scratch.0)).err().unwrap();
        assert!(format!("{error:#}").contains("is in the way"), "{error:#}");
        assert_eq!(fs::read(&older).unwrap(), b"precious notes");

        // With --force it goes, the first time the recording rotates.
        let mut recorder = Recorder::open(&RecordTo {
            max_bytes: 2_000,
            force: true,
            ..RecordTo::new(&scratch.0)
        })
        .unwrap();
        for n in 0..20 {
            recorder.record_poll(&update(n).as_record()).unwrap();
        }
        drop(recorder);
        let (older_updates, _) = replay_all(&older);
        assert!(!older_updates.is_empty());
    }

    #[test]
    fn an_older_recording_is_replaced_by_rotation() {
        let scratch = Scratch::new();
        let to = RecordTo {
            max_bytes: 2_000,
            ..RecordTo::new(&scratch.0)
        };
        for _ in 0..2 {
            let mut recorder = Recorder::open(&to).unwrap();
            for n in 0..20 {
                recorder.record_poll(&update(n).as_record()).unwrap();
            }
        }
        assert!(fs::metadata(rotated_path(&scratch.0)).unwrap().len() <= 2_000);
    }
}
