//! Recording polls to a file and replaying them (`--record FILE`, `--replay FILE`), so
//! that an incident can be looked at again afterwards, elsewhere, without root.
//!
//! A recording is a header and then one record per poll, appended as the polls come:
//! the first poll of a file holds every socket, the next ones only what changed
//! (sockets named by their kernel cookie), with the poll's transitions, TcpExt
//! counters and event status, or a failed poll's message. A torn last record (the
//! writer crashed mid-write) is skipped on read; everything before it replays.
//!
//! - [`frame`]: the header and the length + CRC-32 framing of records;
//! - [`codec`]: what a record holds, and its bytes;
//! - [`delta`]: sockets as changes from the previous poll, and back;
//! - [`writer`]: appending, the size cap and rotation;
//! - [`reader`]: the recorded polls, rebuilt.
//!
//! Nothing here analyses a poll or knows the poller: the live source (`crate::poll`)
//! hands polls in and analyses what comes back out.
//!
//! The file and its layout are documented in README.md ("Record and replay"); bump
//! [`frame::VERSION`] on any change an older reader could not read.

pub(crate) mod codec;
pub(crate) mod delta;
pub(crate) mod frame;
pub(crate) mod reader;
pub(crate) mod writer;

pub use reader::{RecordedPoll, Replay, ReplayEnd, Replayed};
pub use writer::{DEFAULT_MAX_BYTES, PollToRecord, RecordTo, Recorder, rotated_path};
