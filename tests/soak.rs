//! Soak: `tcpscope --watch` under continuous connection churn in a lab namespace must
//! keep its resident memory flat (within 10% after warm-up) and its file descriptors and
//! threads constant.
//!
//! Short by default so that it runs with every `cargo test`; for the hour-long run:
//!
//! ```sh
//! TCPSCOPE_SOAK_SECS=3600 cargo test --release --test soak -- --nocapture
//! ```

mod lab;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use lab::Lab;

const DEFAULT_SECONDS: u64 = 30;

/// What `/proc/<pid>` says about a process at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    threads: u64,
}

fn sample(pid: u32) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let value = line
            .split_whitespace()
            .nth(1)
            .with_context(|| format!("empty {name}"))?;
        Ok(value.parse()?)
    };
    Ok(Sample {
        rss_kib: field("VmRSS:")?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))?.count(),
        threads: field("Threads:")?,
    })
}

/// Opens and resets connections as fast as one thread can, until told to stop.
/// Resetting (linger 0) leaves no TIME_WAIT behind, so the socket count stays level
/// and any growth is tcpscope's own.
fn churn(listener: TcpListener, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) -> Result<()> {
    let address = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::Relaxed) {
        let client = TcpStream::connect(address)?;
        socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO))?;
        while let Ok((server, _)) = listener.accept() {
            drop(server);
        }
        drop(client);
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[test]
fn watch_keeps_memory_fds_and_threads_flat_under_churn() -> Result<()> {
    let seconds = std::env::var("TCPSCOPE_SOAK_SECS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);
    let duration = Duration::from_secs(seconds);
    // Hash tables and the allocator's heaps grow to the churn's working set first;
    // measured over 150 s at 16k connections per second, resident memory steps up to
    // its high-water mark within the first minute and then stays put.
    let warm_up = duration / 2;
    let _lab = Lab::enter()?;

    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(AtomicU64::new(0));
    // Threads spawned from the lab's thread share its namespace.
    let churner = {
        let listener = TcpListener::bind("127.0.0.1:7300")?;
        let (stop, connections) = (Arc::clone(&stop), Arc::clone(&connections));
        thread::spawn(move || churn(listener, stop, connections))
    };

    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpscope"))
        .args(["--watch", "--json", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let lines = Arc::new(AtomicU64::new(0));
    let reader = {
        let lines = Arc::clone(&lines);
        thread::spawn(move || {
            for _ in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let started = Instant::now();
    thread::sleep(warm_up);
    let baseline = sample(child.id())?;
    let mut peak = baseline;
    let mut rss = Vec::new();
    let mut fds = Vec::new();
    while started.elapsed() < duration {
        thread::sleep(Duration::from_millis(250));
        let now = sample(child.id())?;
        // One more is the /proc file a poll reads, open for a moment.
        ensure!(
            now.fds <= baseline.fds + 1,
            "file descriptors went from {} to {}",
            baseline.fds,
            now.fds
        );
        fds.push(now.fds as u64);
        ensure!(
            now.threads == baseline.threads,
            "threads went from {} to {}",
            baseline.threads,
            now.threads
        );
        peak.rss_kib = peak.rss_kib.max(now.rss_kib);
        rss.push(now.rss_kib);
        if std::env::var_os("TCPSCOPE_SOAK_TRACE").is_some() {
            println!(
                "  {:>6.1} s  RSS {} KiB",
                started.elapsed().as_secs_f64(),
                now.rss_kib
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    churner
        .join()
        .map_err(|_| anyhow::anyhow!("the churn thread panicked"))??;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait()?;
    let _ = reader.join();

    let churned = connections.load(Ordering::Relaxed);
    let printed = lines.load(Ordering::Relaxed);
    // Flat means no trend: the typical (median) resident size over the last quarter of
    // the run against the most it reached in the first quarter after warm-up. Single
    // samples swing with the size of each poll's batch of transitions; a leak, which
    // grows with every connection, still shows within seconds at this churn.
    let quarter = (rss.len() / 4).max(1);
    let early = rss[..quarter]
        .iter()
        .copied()
        .max()
        .unwrap_or(baseline.rss_kib);
    let late = median(&rss[rss.len() - quarter..]);
    println!(
        "soak: {seconds} s, {churned} connections ({:.0}/s), {printed} lines; RSS at most {early} KiB early, median {late} KiB late ({:+.1}%), peak {} KiB; {} fds, {} threads, {} samples",
        churned as f64 / seconds as f64,
        (late as f64 / early as f64 - 1.0) * 100.0,
        peak.rss_kib,
        baseline.fds,
        baseline.threads,
        rss.len(),
    );
    ensure!(status.success(), "tcpscope --watch ended with {status}");
    ensure!(
        churned as f64 / seconds as f64 > 500.0,
        "the churn was too slow to prove anything"
    );
    ensure!(
        printed > churned,
        "the stream did not keep up: {printed} lines for {churned} connections"
    );
    ensure!(
        median(&fds[fds.len() - quarter..]) == baseline.fds as u64,
        "file descriptors grew from {} to {}",
        baseline.fds,
        median(&fds[fds.len() - quarter..])
    );
    ensure!(
        late as f64 <= early as f64 * 1.10,
        "resident memory grew from at most {early} KiB to a median of {late} KiB"
    );
    ensure!(
        peak.rss_kib <= 2 * baseline.rss_kib,
        "resident memory peaked at {} KiB, from {} KiB after warm-up",
        peak.rss_kib,
        baseline.rss_kib
    );
    Ok(())
}

fn median(samples: &[u64]) -> u64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}
