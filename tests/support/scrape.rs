//! A running `tcpscope --serve` and a Prometheus-like scraper for it: a real HTTP client
//! (`ureq`) and a parser of the exposition format (`prometheus-parse`), so that tests
//! read the metrics the way a scraper would, not by grepping text.
//!
//! The server is spawned from the calling thread, so inside a lab it runs in the lab's
//! namespace. It is asked to listen on port 0 and the test reads the address it got from
//! the line it prints on stderr.

// Each test binary uses only part of this module.
use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::lab::child::exit_within;
use super::tcpscope_command;
use prometheus_parse::{Sample, Scrape, Value};

/// How long the server may take to start and poll once, or a scrape to show what a
/// test waits for (with `--all-netns`, new namespaces are looked for every 5 s).
const START: Duration = Duration::from_secs(15);

/// A `tcpscope --serve` child process.
pub struct Server {
    child: Child,
    pub url: String,
    /// What it printed on stderr after the address line.
    stderr: Receiver<String>,
    agent: ureq::Agent,
}

impl Server {
    /// Starts `tcpscope --serve LISTEN ARGS…` and waits until it serves its first poll.
    pub fn start(listen: &str, args: &[&str]) -> Result<Server> {
        let mut child = tcpscope_command(&[])
            .arg("--serve")
            .arg(listen)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpscope --serve")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut url = None;
        let mut said = Vec::new();
        while url.is_none() {
            match lines.recv_timeout(START) {
                Ok(line) => {
                    url = line
                        .strip_prefix("tcpscope: serving Prometheus metrics at ")
                        .map(str::to_owned);
                    said.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    bail!(
                        "tcpscope --serve did not say where it listens; stderr:\n{}",
                        said.join("\n")
                    );
                }
            }
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let server = Server {
            child,
            url: url.context("no url")?,
            stderr: lines,
            agent,
        };
        server.wait_for("the first poll", |metrics| {
            metrics.value("tcpscope_polls_total", &[]).unwrap_or(0.0) >= 1.0
        })?;
        Ok(server)
    }

    /// The base address, `http://host:port`.
    pub fn base(&self) -> &str {
        self.url.trim_end_matches("/metrics")
    }

    /// GETs `/metrics` and parses it.
    pub fn scrape(&self) -> Result<Metrics> {
        let mut response = self
            .agent
            .get(&self.url)
            .call()
            .with_context(|| format!("scraping {}", self.url))?;
        ensure!(
            response.status() == 200,
            "scraping {} answered {}",
            self.url,
            response.status()
        );
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        ensure!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "content type {content_type}"
        );
        let text = response.body_mut().read_to_string()?;
        let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .context("parsing the exposition text")?;
        Ok(Metrics { scrape, text })
    }

    /// GETs `path` and returns the status and body.
    pub fn get(&self, path: &str) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.base());
        let mut response = self.agent.get(&url).call()?;
        Ok((
            response.status().as_u16(),
            response.body_mut().read_to_string()?,
        ))
    }

    /// Scrapes until `wanted` holds, for up to 10 s.
    pub fn wait_for(&self, what: &str, wanted: impl Fn(&Metrics) -> bool) -> Result<Metrics> {
        let deadline = Instant::now() + START;
        loop {
            let last = match self.scrape() {
                Ok(metrics) if wanted(&metrics) => return Ok(metrics),
                Ok(metrics) => metrics.text,
                // Before the first poll the server answers 503.
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() >= deadline {
                bail!("no scrape showed {what} within {START:?}; the last said:\n{last}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits (up to 5 s) for the exit status.
    pub fn terminate(mut self) -> Result<(ExitStatus, Duration)> {
        let started = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        ensure!(sent == 0, "could not signal tcpscope");
        let status = exit_within(&mut self.child, Duration::from_secs(5))
            .context("tcpscope --serve did not stop after SIGTERM")?;
        Ok((status, started.elapsed()))
    }

    /// What the server said on stderr since it started serving.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One parsed scrape.
pub struct Metrics {
    pub scrape: Scrape,
    pub text: String,
}

impl Metrics {
    /// The samples of `name` whose labels include all of `labels`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.scrape.samples.iter().filter(move |sample| {
            sample.metric == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
    }

    /// The value of the one sample of `name` with `labels`; None if there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut samples = self.samples(name, labels);
        let sample = samples.next()?;
        match sample.value {
            Value::Gauge(v) | Value::Counter(v) | Value::Untyped(v) => Some(v),
            _ => None,
        }
    }
}
