//! A minimal HTTP/1.1 server for one job: answering `GET` requests for pages that are
//! already rendered, without letting any client stall tcpscope or grow its memory.
//!
//! Why not an HTTP crate: `tiny_http` reads headers with no size limit and no timeout
//! a caller can set, and hands each connection to a thread that blocks on it, so a few
//! hundred idle connections (or one slowloris trickling a header) take every worker;
//! `hyper` and the frameworks on it bring an async runtime for what is one small page.
//! This server is one thread on a `mio` event loop, with the request head parsed by
//! `httparse`, and every limit explicit in [`Limits`]:
//!
//! - at most `max_connections` open at once; at the cap, a new connection evicts the
//!   one that has made the least progress (no byte read or written for the longest),
//!   whether it is still sending its request or not reading its answer, so idle, slow
//!   or non-reading connections cannot lock scrapers out, only push out the most
//!   stalled of themselves;
//! - a request head (request line and headers) of at most `max_head_bytes`, in at most
//!   `head_timeout` from accept to the blank line, however slowly it trickles in (a
//!   per-read timeout would let a slowloris reset it with each byte);
//! - the answer written within `write_timeout`, so a client that stops reading is
//!   dropped; the page itself is shared (`Arc`), never copied per connection, and the
//!   pages that answers in flight hold (older ones too, when the page was replaced
//!   meanwhile) take at most `max_held_bytes`: past it, the most stalled writers
//!   holding other pages are dropped;
//! - one request per connection (`Connection: close`): no idle keep-alive sockets.
//!
//! With `--web-config` ([`WebConfig`]) it speaks TLS ([`Transport`]) and asks for a
//! user and password: the limits hold alike (a TLS handshake is part of the head, under
//! the same deadline, and a session holds at most its bounded buffers), and a request
//! without the right credentials gets `401` and an empty body, whatever it asked for.
//!
//! Memory is thus bounded by `max_connections × max_head_bytes` plus `max_held_bytes`
//! (and one page, however large, for a lone answer). The
//! server never calls into the handler for anything but a well-formed `GET` or `HEAD`,
//! and the handler must answer from memory: it runs on the event loop.

use std::io::{self, ErrorKind, IoSlice};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::auth::Auth;
use super::tls::Transport;
use super::web_config::WebConfig;

/// The server's limits; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_head_bytes: usize,
    pub head_timeout: Duration,
    pub write_timeout: Duration,
    /// The most bytes of distinct pages that answers being written may hold.
    pub max_held_bytes: usize,
}

impl Default for Limits {
    /// Room for a few hundred scrapers and idle probes; a head far larger than any
    /// scraper sends (Prometheus sends about 300 bytes); Prometheus's default scrape
    /// timeout (10 s) for both phases; room for a few versions of a large page.
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            max_head_bytes: 8 * 1024,
            head_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_held_bytes: 32 * 1024 * 1024,
        }
    }
}

/// How often the loop looks up to check the stop flag and the deadlines.
const TICK: Duration = Duration::from_millis(100);
/// The most headers a request may have.
const MAX_HEADERS: usize = 64;
const LISTENER: Token = Token(usize::MAX);
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 2048;

/// Connections the kernel may hold for the listener before it accepts them, as std's
/// `TcpListener::bind` asks for.
const LISTEN_BACKLOG: i32 = 128;

/// What a handler answers.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Arc<[u8]>,
    /// Extra header lines, each ending in `\r\n`.
    pub headers: &'static str,
}

/// The answer to a request without the right credentials: nothing but the challenge.
fn unauthorized() -> Response {
    Response {
        headers: "WWW-Authenticate: Basic realm=\"tcpscope\"\r\n",
        ..Response::new(401, "text/plain; charset=utf-8", Arc::from(&[][..]))
    }
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Arc<[u8]>) -> Response {
        Response {
            status,
            content_type,
            body,
            headers: "",
        }
    }

    /// A short plain-text answer, for errors.
    pub fn text(status: u16, text: &'static str) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            Arc::from(text.as_bytes()),
        )
    }
}

/// A listening socket and the connections it has accepted.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    limits: Limits,
    web: WebConfig,
    connections: Vec<Option<Connection>>,
    /// Free slots in `connections`.
    free: Vec<usize>,
    open: usize,
}

struct Connection {
    stream: TcpStream,
    transport: Transport,
    /// When a byte was last read from or written to it (or it was accepted).
    progressed: Instant,
    deadline: Instant,
    phase: Phase,
}

enum Phase {
    /// Receiving the request head.
    Reading { head: Vec<u8> },
    /// Sending the answer: the status line and headers, then the body.
    Writing {
        head: Vec<u8>,
        body: Arc<[u8]>,
        written: usize,
    },
}

/// What a read found.
enum Head {
    /// More bytes are needed.
    Incomplete,
    /// A whole head; answer with this.
    Answer(Response, bool),
    /// The peer is gone, or broke the connection.
    Gone,
}

impl Server {
    /// Listens on `address`. Binding happens here, so that a bad address is reported
    /// before anything else starts.
    pub fn bind(address: SocketAddr, limits: Limits) -> io::Result<Server> {
        Server::listen(std::net::TcpListener::bind(address)?, limits)
    }

    /// Listens on `port` of every interface, IPv6 and IPv4 alike: `[::]` with
    /// IPV6_V6ONLY off, whatever `net.ipv6.bindv6only` makes the default, or `0.0.0.0`
    /// where the kernel has no IPv6 (as Go's listeners do for node_exporter's `:9100`).
    pub fn bind_every_interface(port: u16, limits: Limits) -> io::Result<Server> {
        let socket = match Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)) {
            Ok(socket) => socket,
            Err(error) if error.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                return Server::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), limits);
            }
            Err(error) => return Err(error),
        };
        socket.set_only_v6(false)?;
        // As std's TcpListener::bind does: a restart finds the port free at once.
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Server::listen(socket.into(), limits)
    }

    /// Serves on a bound, listening socket.
    fn listen(listener: std::net::TcpListener, limits: Limits) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            limits,
            web: WebConfig::default(),
            connections: Vec::new(),
            free: Vec::new(),
            open: 0,
        })
    }

    /// Serves through TLS and asks for credentials as `web` says.
    pub fn guarded(self, web: WebConfig) -> Server {
        Server { web, ..self }
    }

    /// The address it listens on (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is set. `handler` gets the path of each `GET` or `HEAD`
    /// request (query string included) and must answer at once, from memory.
    pub fn run(&mut self, stop: &AtomicBool, handler: impl Fn(&str) -> Response) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        while !stop.load(Ordering::Relaxed) {
            match self.poll.poll(&mut events, Some(TICK)) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_all(),
                    Token(slot) => self.progress(slot, &handler),
                }
            }
            self.drop_late();
        }
        Ok(())
    }

    /// Accepts every pending connection (the poll is edge-triggered).
    fn accept_all(&mut self) {
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                // ECONNABORTED and friends concern one connection; EMFILE leaves it in
                // the backlog until a slot frees up. Either way, try again later.
                Err(_) => return,
            };
            if self.open >= self.limits.max_connections && !self.evict_most_stalled(|_, _| true) {
                // No room at all (a cap of 0).
                drop(stream);
                continue;
            }
            self.add(stream);
        }
    }

    /// Closes the connection that has gone longest without a byte read or written,
    /// among those `which` accepts (by slot and connection). Returns false when there is
    /// none.
    /// A scraper reads its answer as it comes and sends its request at once, so it is
    /// never the most stalled while others idle or have stopped reading.
    fn evict_most_stalled(&mut self, which: impl Fn(usize, &Connection) -> bool) -> bool {
        let stalled = self
            .connections
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| Some((slot, c.as_ref()?)))
            .filter(|(slot, c)| which(*slot, c))
            .min_by_key(|(_, c)| c.progressed)
            .map(|(slot, _)| slot);
        match stalled {
            Some(slot) => {
                self.close(slot);
                true
            }
            None => false,
        }
    }

    fn add(&mut self, mut stream: TcpStream) {
        let Ok(transport) = Transport::new(self.web.tls.as_ref()) else {
            return;
        };
        let interest = if transport.writes_while_reading() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.connections.push(None);
            self.connections.len() - 1
        });
        if self
            .poll
            .registry()
            .register(&mut stream, Token(slot), interest)
            .is_err()
        {
            self.free.push(slot);
            return;
        }
        let now = Instant::now();
        self.connections[slot] = Some(Connection {
            stream,
            transport,
            progressed: now,
            deadline: now + self.limits.head_timeout,
            phase: Phase::Reading { head: Vec::new() },
        });
        self.open += 1;
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut connection) = self.connections.get_mut(slot).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
            self.free.push(slot);
            self.open -= 1;
        }
    }

    /// Moves one connection on as far as its socket allows.
    fn progress(&mut self, slot: usize, handler: &impl Fn(&str) -> Response) {
        let limits = self.limits;
        let Some(connection) = self.connections.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if let Phase::Reading { head } = &mut connection.phase {
            let before = head.len();
            let read = read_head(
                &mut connection.stream,
                &mut connection.transport,
                head,
                limits.max_head_bytes,
                self.web.auth.as_ref(),
                handler,
            );
            if head.len() > before {
                connection.progressed = Instant::now();
            }
            match read {
                Head::Incomplete => return,
                Head::Gone => return self.close(slot),
                Head::Answer(response, with_body) => {
                    let head = response_head(&response);
                    let body = if with_body {
                        response.body
                    } else {
                        Arc::from(&[][..])
                    };
                    if !self.make_room_for(slot, &body) {
                        return self.close(slot);
                    }
                    let Some(connection) = self.connections.get_mut(slot).and_then(Option::as_mut)
                    else {
                        return;
                    };
                    connection.phase = Phase::Writing {
                        head,
                        body,
                        written: 0,
                    };
                    connection.deadline = Instant::now() + limits.write_timeout;
                    // Write at once: a page usually fits the socket buffer, and the
                    // writable event will not come for a socket that already was.
                    let registry = self.poll.registry();
                    if registry
                        .reregister(&mut connection.stream, Token(slot), Interest::WRITABLE)
                        .is_err()
                    {
                        return self.close(slot);
                    }
                }
            }
        }
        let Some(connection) = self.connections.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if let Phase::Writing {
            head,
            body,
            written,
        } = &mut connection.phase
        {
            let before = *written;
            let result = write_answer(
                &mut connection.stream,
                &mut connection.transport,
                head,
                body,
                written,
            );
            if *written > before {
                connection.progressed = Instant::now();
            }
            match result {
                Ok(true) => {
                    let _ = connection.stream.shutdown(Shutdown::Write);
                    self.close(slot);
                }
                Ok(false) => {}
                Err(_) => self.close(slot),
            }
        }
    }

    /// Makes room, within `max_held_bytes`, for connection `slot` to hold `body` while
    /// writing it: a page other writers already hold costs nothing more; otherwise the
    /// most stalled writers holding other pages are dropped until it fits. Returns
    /// false when it cannot fit even so (a page larger than the limit is still sent
    /// when no other page is held).
    fn make_room_for(&mut self, slot: usize, body: &Arc<[u8]>) -> bool {
        loop {
            let mut pages: Vec<&Arc<[u8]>> = Vec::new();
            for connection in self.connections.iter().flatten() {
                if let Phase::Writing { body, .. } = &connection.phase
                    && !body.is_empty()
                    && !pages.iter().any(|page| Arc::ptr_eq(page, body))
                {
                    pages.push(body);
                }
            }
            if body.is_empty() || pages.iter().any(|page| Arc::ptr_eq(page, body)) {
                return true;
            }
            let held: usize = pages.iter().map(|page| page.len()).sum();
            if held == 0 || held.saturating_add(body.len()) <= self.limits.max_held_bytes {
                return true;
            }
            let holds_another_page = |other: usize, c: &Connection| {
                other != slot
                    && matches!(&c.phase, Phase::Writing { body: page, .. }
                        if !page.is_empty() && !Arc::ptr_eq(page, body))
            };
            if !self.evict_most_stalled(holds_another_page) {
                return false;
            }
        }
    }

    /// Closes every connection past its deadline.
    fn drop_late(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = self
            .connections
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| c.deadline <= now))
            .map(|(slot, _)| slot)
            .collect();
        for slot in late {
            self.close(slot);
        }
    }
}

/// Reads what has arrived of a request head and, once it is whole, decides the answer.
fn read_head(
    stream: &mut TcpStream,
    transport: &mut Transport,
    head: &mut Vec<u8>,
    max_head_bytes: usize,
    auth: Option<&Auth>,
    handler: &impl Fn(&str) -> Response,
) -> Head {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let room = max_head_bytes.saturating_sub(head.len()).min(READ_CHUNK);
        if room == 0 {
            return Head::Answer(
                Response::text(431, "request header fields too large\n"),
                true,
            );
        }
        match transport.read(stream, &mut chunk[..room]) {
            Ok(0) => return Head::Gone,
            Ok(read) => {
                head.extend_from_slice(&chunk[..read]);
                if let Some(answer) = answer(head, auth, handler) {
                    return answer;
                }
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Head::Incomplete,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Head::Gone,
        }
    }
}

/// The answer to a head, or `None` while it is incomplete.
fn answer(head: &[u8], auth: Option<&Auth>, handler: &impl Fn(&str) -> Response) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let response = match request.parse(head) {
        Ok(httparse::Status::Partial) => return None,
        Ok(httparse::Status::Complete(_))
            if auth.is_some_and(|auth| {
                let authorization = request
                    .headers
                    .iter()
                    .find(|header| header.name.eq_ignore_ascii_case("authorization"));
                !auth.allows(authorization.map(|header| header.value))
            }) =>
        {
            unauthorized()
        }
        Ok(httparse::Status::Complete(_)) => match (request.method, request.path) {
            (Some("GET"), Some(path)) => return Some(Head::Answer(handler(path), true)),
            (Some("HEAD"), Some(path)) => return Some(Head::Answer(handler(path), false)),
            _ => Response {
                headers: "Allow: GET, HEAD\r\n",
                ..Response::text(405, "only GET and HEAD are served\n")
            },
        },
        Err(httparse::Error::TooManyHeaders) => {
            Response::text(431, "request header fields too large\n")
        }
        Err(_) => Response::text(400, "bad request\n"),
    };
    Some(Head::Answer(response, true))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn response_head(response: &Response) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        response.headers,
    )
    .into_bytes()
}

/// Writes as much of the answer as the socket takes. Returns whether all of it went.
fn write_answer(
    stream: &mut TcpStream,
    transport: &mut Transport,
    head: &[u8],
    body: &[u8],
    written: &mut usize,
) -> io::Result<bool> {
    let total = head.len() + body.len();
    while *written < total {
        let slices = if *written < head.len() {
            [IoSlice::new(&head[*written..]), IoSlice::new(body)]
        } else {
            [
                IoSlice::new(&body[*written - head.len()..]),
                IoSlice::new(&[]),
            ]
        };
        match transport.write_vectored(stream, &slices) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(sent) => *written += sent,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    transport.finish(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;
    use std::thread;

    /// The size of the pages at `/big` (one page, shared) and `/fresh` (a new page each
    /// time): far more than a socket's buffers take, so that a client that does not
    /// read leaves its answer half written.
    const BIG: usize = 8 * 1024 * 1024;

    /// A server on a free loopback port, answering `/` with "hello", `/big` and
    /// `/fresh` with [`BIG`] bytes, and anything else with 404, on its own thread until
    /// dropped.
    struct Running {
        address: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<thread::JoinHandle<()>>,
    }

    impl Running {
        fn start(limits: Limits) -> Running {
            Running::start_with(limits, WebConfig::default())
        }

        fn start_with(limits: Limits, web: WebConfig) -> Running {
            let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), limits)
                .unwrap()
                .guarded(web);
            let address = server.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let big: Arc<[u8]> = Arc::from(vec![b'x'; BIG]);
            let thread = thread::spawn({
                let stop = Arc::clone(&stop);
                move || {
                    server
                        .run(&stop, |path| match path {
                            "/" => Response::new(200, "text/plain", Arc::from(&b"hello"[..])),
                            "/big" => Response::new(200, "text/plain", Arc::clone(&big)),
                            "/fresh" => {
                                Response::new(200, "text/plain", Arc::from(vec![b'y'; BIG]))
                            }
                            _ => Response::text(404, "not found\n"),
                        })
                        .unwrap()
                }
            });
            Running {
                address,
                stop,
                thread: Some(thread),
            }
        }

        fn connect(&self) -> StdStream {
            let stream = StdStream::connect(self.address).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream
        }

        /// Sends `request` on a new connection and reads the whole answer.
        fn exchange(&self, request: &[u8]) -> String {
            let mut stream = self.connect();
            stream.write_all(request).unwrap();
            read_all(&mut stream)
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap();
            }
        }
    }

    fn read_all(stream: &mut StdStream) -> String {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn short_limits() -> Limits {
        Limits {
            max_connections: 4,
            max_head_bytes: 1024,
            head_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_millis(500),
            max_held_bytes: 64 * 1024 * 1024,
        }
    }

    /// Connections that ask for `path` and never read the answer, each left with its
    /// answer half written once the server has got that far.
    fn non_readers(server: &Running, count: usize, path: &str) -> Vec<StdStream> {
        let clients = (0..count)
            .map(|_| {
                let mut stream = server.connect();
                write!(stream, "GET {path} HTTP/1.1\r\n\r\n").unwrap();
                stream
            })
            .collect();
        thread::sleep(Duration::from_millis(300));
        clients
    }

    /// Whether the server dropped `stream` before its whole answer was sent: what it
    /// had written ends early, or the connection is reset.
    fn was_dropped(stream: &mut StdStream) -> bool {
        let mut received = Vec::new();
        match stream.read_to_end(&mut received) {
            Ok(_) => received.len() < BIG,
            Err(error) => error.kind() == ErrorKind::ConnectionReset,
        }
    }

    #[test]
    fn clients_that_never_read_their_answer_cannot_lock_a_scraper_out() {
        let server = Running::start(Limits {
            write_timeout: Duration::from_secs(30),
            ..short_limits()
        });
        let mut stalled = non_readers(&server, 4, "/big");
        // Round after round of newcomers: each gets in and is answered at once.
        for _ in 0..3 {
            let started = Instant::now();
            let answer = server.exchange(b"GET / HTTP/1.1\r\n\r\n");
            assert!(answer.ends_with("hello"), "{answer}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        }
        // A scraper reading a page as large as the stalled ones' gets all of it.
        let mut scraper = server.connect();
        scraper.write_all(b"GET /big HTTP/1.1\r\n\r\n").unwrap();
        let mut page = Vec::new();
        scraper.read_to_end(&mut page).unwrap();
        assert!(page.len() > BIG, "{} bytes", page.len());
        // The ones evicted were the non-readers, the first stalled first.
        assert!(was_dropped(&mut stalled[0]));
        stalled.clear();
    }

    #[test]
    fn answers_in_flight_hold_no_more_distinct_pages_than_the_limit_allows() {
        let server = Running::start(Limits {
            max_connections: 16,
            write_timeout: Duration::from_secs(30),
            max_held_bytes: 2 * BIG,
            ..short_limits()
        });
        // Each asks for a page of its own and never reads it: a third page cannot be
        // held, so the most stalled holder goes.
        let mut stalled = non_readers(&server, 3, "/fresh");
        assert!(
            was_dropped(&mut stalled[0]),
            "the first non-reader was kept"
        );
        assert!(
            !was_dropped(&mut stalled[2]),
            "the newest non-reader was dropped"
        );
        // Any number of answers of one shared page cost it once.
        let mut sharing = non_readers(&server, 8, "/big");
        assert!(!was_dropped(&mut sharing[7]));
        sharing.clear();
        stalled.clear();
    }

    #[test]
    fn a_get_is_answered_with_the_page_and_a_length_and_the_connection_closes() {
        let server = Running::start(Limits::default());
        let answer = server.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("Content-Length: 5\r\n"), "{answer}");
        assert!(answer.contains("Connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
        let missing = server.exchange(b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
    }

    #[test]
    fn head_gets_the_headers_without_the_body() {
        let server = Running::start(Limits::default());
        let answer = server.exchange(b"HEAD / HTTP/1.1\r\n\r\n");
        assert!(answer.contains("Content-Length: 5\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");
    }

    #[test]
    fn other_methods_and_garbage_are_refused() {
        let server = Running::start(Limits::default());
        let post = server.exchange(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
        let garbage = server.exchange(b"\x00\x01\x02 nonsense\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    }

    #[test]
    fn a_head_larger_than_the_limit_is_refused_without_reading_more() {
        let server = Running::start(short_limits());
        let mut request = b"GET / HTTP/1.1\r\nX-Padding: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 4096));
        request.extend_from_slice(b"\r\n\r\n");
        let mut stream = server.connect();
        // The server stops reading at its limit, so part of this may never be taken.
        let _ = stream.write_all(&request);
        let answer = read_all(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }

    #[test]
    fn a_slowloris_is_cut_off_at_the_head_deadline_however_it_trickles() {
        let server = Running::start(short_limits());
        let mut stream = server.connect();
        let started = Instant::now();
        let mut cut_off = false;
        for byte in b"GET / HTTP/1.1\r\nX-Slow: 0123456789012345678901234567890123456789" {
            if stream.write_all(&[*byte]).is_err() {
                cut_off = true;
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let answer = read_all(&mut stream);
        assert!(cut_off || answer.is_empty(), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn at_the_connection_cap_a_new_client_evicts_the_idlest_and_is_answered() {
        let server = Running::start(Limits {
            head_timeout: Duration::from_secs(30),
            ..short_limits()
        });
        let mut idle: Vec<StdStream> = (0..4).map(|_| server.connect()).collect();
        // Let the server accept them all before the newcomer arrives.
        thread::sleep(Duration::from_millis(200));
        let answer = server.exchange(b"GET / HTTP/1.1\r\n\r\n");
        assert!(answer.ends_with("hello"), "{answer}");
        // The first idle connection was the idlest: it has been closed.
        assert_eq!(read_all(&mut idle[0]), "");
        idle.clear();
    }

    /// A TLS configuration with a fresh self-signed certificate for `localhost`, and a
    /// client configuration that trusts it.
    fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = CertificateDer::from(certified.cert.der().to_vec());
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let server = super::super::web_config::tls_config(vec![der.clone()], key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        (server, Arc::new(client))
    }

    fn tls_server(limits: Limits) -> (Running, Arc<rustls::ClientConfig>) {
        let (server, client) = tls_pair();
        let web = WebConfig {
            tls: Some(server),
            auth: None,
        };
        (Running::start_with(limits, web), client)
    }

    /// Sends `request` over TLS and reads the whole answer.
    fn tls_exchange(
        server: &Running,
        client: &Arc<rustls::ClientConfig>,
        request: &[u8],
    ) -> Vec<u8> {
        let session =
            rustls::ClientConnection::new(Arc::clone(client), "localhost".try_into().unwrap())
                .unwrap();
        let mut stream = rustls::StreamOwned::new(session, server.connect());
        stream.write_all(request).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        answer
    }

    #[test]
    fn a_page_far_larger_than_the_tls_buffers_comes_whole_and_the_session_ends_cleanly() {
        let (server, client) = tls_server(Limits::default());
        let answer = tls_exchange(&server, &client, b"GET /big HTTP/1.1\r\n\r\n");
        let text = String::from_utf8_lossy(&answer[..64]);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        // read_to_end succeeded, so the server ended with close_notify, not a cut.
        assert!(answer.len() > BIG, "{} bytes", answer.len());
        assert!(answer.ends_with(b"xxxx"));
    }

    #[test]
    fn a_tls_handshake_that_never_finishes_is_cut_off_at_the_head_deadline() {
        let (server, _client) = tls_server(short_limits());
        let mut stream = server.connect();
        let started = Instant::now();
        // The start of a ClientHello record that announces more than ever comes.
        stream
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(answer.is_empty(), "{answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    #[test]
    fn without_the_right_password_any_request_gets_401_and_an_empty_body() {
        use base64::Engine;
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let users = std::collections::BTreeMap::from([("prometheus".to_owned(), hash)]);
        let web = WebConfig {
            tls: None,
            auth: Some(Auth::new(users)),
        };
        let server = Running::start_with(Limits::default(), web);
        let encoded = |pair: &str| base64::engine::general_purpose::STANDARD.encode(pair);
        for request in [
            "GET / HTTP/1.1\r\n\r\n".to_owned(),
            "GET /nope HTTP/1.1\r\n\r\n".to_owned(),
            "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_owned(),
            format!(
                "GET / HTTP/1.1\r\nAuthorization: Basic {}\r\n\r\n",
                encoded("prometheus:wrong")
            ),
        ] {
            let answer = server.exchange(request.as_bytes());
            assert!(
                answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
                "{answer}"
            );
            assert!(
                answer.contains("WWW-Authenticate: Basic realm=\"tcpscope\"\r\n"),
                "{answer}"
            );
            assert!(answer.ends_with("Content-Length: 0\r\nConnection: close\r\nWWW-Authenticate: Basic realm=\"tcpscope\"\r\n\r\n"), "{answer}");
        }
        let allowed = server.exchange(
            format!(
                "GET / HTTP/1.1\r\nauthorization: Basic {}\r\n\r\n",
                encoded("prometheus:s3cret")
            )
            .as_bytes(),
        );
        assert!(allowed.ends_with("\r\n\r\nhello"), "{allowed}");
    }

    #[test]
    fn plain_http_to_a_tls_port_gets_no_http_answer() {
        let (server, _client) = tls_server(Limits::default());
        let answer = server.exchange(b"GET / HTTP/1.1\r\n\r\n");
        assert!(!answer.contains("HTTP/1.1"), "{answer}");
        assert!(!answer.contains("hello"), "{answer}");
    }
}
