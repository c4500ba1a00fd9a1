//! Feeds arbitrary bytes to the recording reader (`--replay FILE`), as if the file had
//! been damaged or made by someone else. The reader must return polls, or end with a
//! reason (complete, torn, unreadable), or refuse the file: never panic, and never
//! allocate what a length field claims before the bytes are there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpscope::poll::Message;
use tcpscope::poll::replay::Replaying;
use tcpscope::record::{Replay, ReplayEnd};
use tcpscope::watch::Thresholds;
use tcpscope::watch::findings::FindingThresholds;

fuzz_target!(|bytes: &[u8]| {
    let Ok(replay) = Replay::from_reader(bytes) else {
        return;
    };
    // Replayed as the view and the stream replay it: analysed, SYN watch and all.
    let mut replay = Replaying::new(replay, Thresholds::default(), FindingThresholds::default());
    loop {
        let replayed = match replay.next_poll() {
            Ok(Some(replayed)) => replayed,
            Ok(None) => break,
            // Only an I/O error is an error, and reading from memory has none.
            Err(error) => panic!("{error:#}"),
        };
        if let Message::Update(update) = replayed.message {
            // The counts are those of the sockets the records rebuilt.
            let total = update.snapshot.counts().total() as usize;
            assert_eq!(total, update.snapshot.sockets.len());
        }
    }
    match replay.end() {
        Some(ReplayEnd::Complete) => {}
        Some(ReplayEnd::Torn { offset, .. } | ReplayEnd::Unreadable { offset, .. }) => {
            assert!(*offset <= bytes.len() as u64);
        }
        None => panic!("the replay stopped without saying why"),
    }
});
