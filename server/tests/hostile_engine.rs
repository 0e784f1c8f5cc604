//! Hostile clients against the Engine.IO and HTTP layers of the real binary (issue 14, "one client
//! must not exhaust a node"). Each test attacks as a client on the internet could, with raw
//! sockets; samples the node's RSS while it does and bounds its growth; keeps a bystander's acked
//! echo answering within a second throughout; and checks that the attacking connections end where
//! they should (or, where the protocol allows what they do, that they are merely given no work).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::hostile::{Bystander, Node};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// What the bystander's echo must always take less than.
const ECHO: Duration = Duration::from_secs(1);

/// Generous upper bound for anything that should end within a few seconds.
const LIMIT: Duration = Duration::from_secs(15);

/// Runs `attack` in its own task while the bystander echoes (each within [`ECHO`]); returns what
/// the attack returned and the node's peak RSS meanwhile.
async fn during<T: Send + 'static>(
    node: &Node,
    bystander: &mut Bystander,
    attack: impl Future<Output = T> + Send + 'static,
) -> (T, u64) {
    let attack = tokio::spawn(attack);
    let mut peak = node.rss_kib();
    while !attack.is_finished() {
        bystander.echo_within(ECHO).await;
        peak = peak.max(node.rss_kib());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = attack.await.expect("the attack panicked");
    bystander.echo_within(ECHO).await;
    (out, peak.max(node.rss_kib()))
}

/// Asserts the node runs, and that its RSS peaked (and is now) below `before_kib + bound_kib`.
#[track_caller]
fn assert_bounded(node: &mut Node, before_kib: u64, peak_kib: u64, bound_kib: u64, attack: &str) {
    eprintln!("{attack}: RSS {before_kib} KiB before, peak {peak_kib} KiB");
    assert!(
        peak_kib < before_kib + bound_kib,
        "{attack}: RSS peaked at {peak_kib} KiB from {before_kib} KiB (bound: +{bound_kib} KiB)"
    );
    node.assert_alive_and_bounded(before_kib, bound_kib, attack);
}

// ---- raw clients ----

/// A TCP connection to the node; a small receive buffer makes a client that does not read
/// stop the node's writes sooner.
async fn connect(node: &Node, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    socket.connect(node.addr).await.expect("connect to the node")
}

/// Reads a response head byte by byte (nothing past it); returns the status and the head.
async fn read_head(stream: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head)
}

/// Reads until the server ends the connection (EOF or reset); returns what arrived.
async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on its own connection (`Connection: close`); the status and the body.
async fn http(node: &Node, method: &str, target: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let mut stream = connect(node, None).await;
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write request head");
    stream.write_all(body).await.expect("write request body");
    let answer = tokio::time::timeout(LIMIT, read_to_end(&mut stream)).await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A polling handshake; the sid.
async fn polling_session(node: &Node) -> String {
    let (status, body) = http(node, "GET", "/socket.io/?EIO=4&transport=polling", "", b"").await;
    assert_eq!(status, 200, "handshake: {body}");
    let open: serde_json::Value = serde_json::from_str(body.strip_prefix('0').expect("open packet")).unwrap();
    open["sid"].as_str().expect("sid").to_owned()
}

/// A Socket.IO client on the main namespace over polling (its CONNECT answer read); the sid.
async fn socketio_polling_client(node: &Node) -> String {
    let sid = polling_session(node).await;
    let (status, body) = http(node, "POST", &polling_target(&sid), "", b"40").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = http(node, "GET", &polling_target(&sid), "", b"").await;
    assert!(status == 200 && body.starts_with("40"), "CONNECT answer: {status} {body}");
    sid
}

fn polling_target(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

/// A websocket handshake (`query` after `?`, an optional `Origin`); the status and the stream,
/// positioned right after the response head.
async fn websocket(
    node: &Node,
    query: &str,
    origin: Option<&str>,
    recv_buffer: Option<u32>,
) -> (u16, TcpStream) {
    let mut stream = connect(node, recv_buffer).await;
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let request = format!(
        "GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write the upgrade request");
    let (status, _) = tokio::time::timeout(LIMIT, read_head(&mut stream)).await.expect("an answer");
    (status, stream)
}

/// One final, masked client frame.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "short frames only");
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Writes `chunk` until `total` bytes are out or a write fails; `Err` holds what was written
/// before the server ended the connection.
async fn flood(stream: &mut TcpStream, chunk: &[u8], total: usize) -> Result<usize, usize> {
    let mut sent = 0;
    while sent < total {
        if stream.write_all(chunk).await.is_err() {
            return Err(sent);
        }
        sent += chunk.len();
    }
    Ok(sent)
}

/// `switchboard_sessions{transport=…}` from the node's `/metrics`.
async fn sessions(node: &Node, transport: &str) -> u64 {
    let (_, body) = http(node, "GET", "/metrics", "", b"").await;
    let series = format!("switchboard_sessions{{transport=\"{transport}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

/// The node's side of one connection, as `/proc/net/tcp` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeSide {
    /// TCP state: 1 established, 4 FIN-WAIT-1, …
    state: u8,
    /// Which timer runs: 2 is the keepalive timer on an idle connection.
    timer: u8,
    /// Bytes received that the node has not read yet.
    unread: u64,
    /// When the running timer fires, in clock ticks (USER_HZ, 100 a second) from now.
    when: u64,
}

/// The node's side of the connection whose client end is `client`; `None` once the node let go.
fn node_side(node: &Node, client: &TcpStream) -> Option<NodeSide> {
    let client_port = client.local_addr().expect("local address").port();
    let tcp = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let hex = |port: u16| format!("0100007F:{port:04X}");
    let (local, remote) = (hex(node.addr.port()), hex(client_port));
    tcp.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
        let unread = u64::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()?;
        let (timer, when) = fields.get(5)?.split_once(':')?;
        let (timer, when) = (u8::from_str_radix(timer, 16).ok()?, u64::from_str_radix(when, 16).ok()?);
        Some(NodeSide { state, timer, unread, when })
    })
}

// ---- item 1: websocket control frames ----

/// A client sends websocket pings as fast as it can and never reads. Before: every ping queued its
/// pong behind what the client had not read, and the node grew by as much as the client sent
/// until the heartbeat dropped it. Now pongs are coalesced (one per read, the latest), so the
/// node holds at most one; the client, which answers no Engine.IO ping since it reads nothing, is
/// dropped by the heartbeat (1 s interval and timeout here). RSS bound: +16 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_from_a_client_that_never_reads() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&["--ping-interval", "1000", "--ping-timeout", "1000"]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let (status, mut attacker) = websocket(&node, "EIO=4&transport=websocket", None, Some(4096)).await;
    assert_eq!(status, 101);
    let pings: Vec<u8> = (0..1000).flat_map(|_| masked(0x9, &[b'p'; 125])).collect();
    let started = Instant::now();
    let attack = async move { tokio::time::timeout(LIMIT, flood(&mut attacker, &pings, usize::MAX)).await };
    let (sent, peak) = during(&node, &mut bystander, attack).await;
    assert!(
        matches!(sent, Ok(Err(_))),
        "the node must drop a client that sends pings and never reads; it took {sent:?} bytes of pings"
    );
    eprintln!("unread pings: {sent:?} bytes sent before the node dropped the client");
    assert!(started.elapsed() < Duration::from_secs(10), "dropped after {:?}", started.elapsed());
    assert_bounded(&mut node, before, peak, 16 * 1024, "unread pings");
}

// ---- item 2: unsolicited Engine.IO pongs ----

/// Two clients send 16 MiB each of Engine.IO pongs (`3`, 7 bytes a frame) nobody asked for.
/// Before: each one was a message on an unbounded channel to the heartbeat wheel, which fell
/// behind. Now a pong reaches the wheel only when a ping awaits it. Pongs are legal, so the
/// attackers stay connected: they are just given no work. RSS bound: +16 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_engine_io_pongs() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&[]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let mut attackers = Vec::new();
    for _ in 0..2 {
        let (status, attacker) = websocket(&node, "EIO=4&transport=websocket", None, None).await;
        assert_eq!(status, 101);
        attackers.push(attacker);
    }
    let pongs: Vec<u8> = (0..10_000).flat_map(|_| masked(0x1, b"3")).collect();
    let attack = async move {
        let floods = attackers.into_iter().map(|mut attacker| {
            let pongs = pongs.clone();
            tokio::spawn(async move {
                let sent = flood(&mut attacker, &pongs, 16 << 20).await;
                (sent, attacker)
            })
        });
        let mut out = Vec::new();
        for f in floods.collect::<Vec<_>>() {
            out.push(f.await.expect("flood task"));
        }
        out
    };
    let (results, peak) = during(&node, &mut bystander, attack).await;
    for (sent, _) in &results {
        assert!(sent.is_ok(), "pongs are legal: the attacker must not be dropped ({sent:?})");
    }
    assert_eq!(sessions(&node, "websocket").await, 3, "the bystander and both attackers are connected");
    assert_bounded(&mut node, before, peak, 16 * 1024, "32 MiB of unsolicited pongs");
    drop(results);
}

// ---- item 3: handshake headers ----

/// 150 handshakes, each with 100 KiB of headers. Before: each was accepted and its session kept a
/// copy of them (15 MB). Now a request head over 16 KiB (Node's default) is answered 431 and the
/// connection closed, so no session is made. RSS bound: +8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_with_huge_headers() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&[]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let polling_sessions = sessions(&node, "polling").await;
    let node_addr = node.addr;
    let attack = async move {
        let pad = "a".repeat(10 * 1024);
        let headers: String = (0..10).map(|i| format!("X-Pad-{i}: {pad}\r\n")).collect();
        let request = format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n{headers}\r\n")
            .into_bytes();
        let mut answers = Vec::new();
        for _ in 0..150 {
            let mut stream = TcpStream::connect(node_addr).await.expect("connect");
            stream.write_all(&request).await.expect("write the request");
            let (status, _) = tokio::time::timeout(LIMIT, read_head(&mut stream)).await.expect("an answer");
            let closed = status == 431
                && tokio::time::timeout(Duration::from_secs(2), read_to_end(&mut stream)).await.is_ok();
            answers.push((status, closed));
        }
        answers
    };
    let (answers, peak) = during(&node, &mut bystander, attack).await;
    assert!(
        answers.iter().all(|a| *a == (431, true)),
        "every oversized handshake gets 431 and its connection closed (status, closed): {answers:?}"
    );
    assert_eq!(sessions(&node, "polling").await, polling_sessions, "no session was made");
    assert_bounded(&mut node, before, peak, 8 * 1024, "150 handshakes with 100 KiB of headers");
}

// ---- item 4: slow or half-open HTTP ----

/// Ten polling sessions each start a 100 kB POST, send 1 kB of it, then five stop and five trickle
/// a byte every 100 ms. Before: each POST waited for its body for ever. Now the body must arrive
/// whole within the body timeout (the ping timeout, 1 s here): each gets 408 and its connection
/// is closed. RSS bound: +8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_bodies_that_trickle_or_stop() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&["--ping-timeout", "1000"]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let mut attackers = Vec::new();
    for i in 0..10 {
        let sid = polling_session(&node).await;
        let mut stream = connect(&node, None).await;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n4{}",
            polling_target(&sid),
            "a".repeat(999)
        );
        stream.write_all(head.as_bytes()).await.expect("write the start of the POST");
        attackers.push((i % 2 == 0, stream));
    }
    let attack = async move {
        let tasks: Vec<_> = attackers
            .into_iter()
            .map(|(trickle, mut stream)| {
                tokio::spawn(async move {
                    let started = Instant::now();
                    let deadline = tokio::time::Instant::now() + LIMIT;
                    let mut first = [0u8; 1];
                    loop {
                        tokio::select! {
                            _ = stream.peek(&mut first) => break,
                            () = tokio::time::sleep(Duration::from_millis(100)), if trickle => {
                                let _ = stream.write_all(b"a").await;
                            }
                            () = tokio::time::sleep_until(deadline) => break,
                        }
                    }
                    let answer = tokio::time::timeout_at(deadline, read_to_end(&mut stream)).await;
                    let answer = answer.map(|a| String::from_utf8_lossy(&a).into_owned()).unwrap_or_default();
                    (answer, started.elapsed())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("attacker task"));
        }
        out
    };
    let (answers, peak) = during(&node, &mut bystander, attack).await;
    for (answer, took) in &answers {
        assert!(answer.starts_with("HTTP/1.1 408"), "a stalled POST gets 408, got {answer:?} after {took:?}");
        assert!(*took < Duration::from_secs(5), "answered and closed after {took:?}");
    }
    assert_bounded(&mut node, before, peak, 8 * 1024, "ten stalled POSTs");
}

/// Four waves of four Socket.IO clients over polling: each wave joins a room, another client
/// broadcasts 5 MB to it (on a node whose operator raised the message limit for uploads), and the
/// four ask for it with a GET they never read. The kernel takes what fits its send buffer (about
/// 3 MB here); hyper held the whole response for as long as the client kept its connection open,
/// so every wave added 20 MB to the node. Now a response the client takes nothing of for the
/// write timeout (the 1 s ping timeout) is dropped with its connection, and the next wave reuses
/// its memory: the node peaks near +50 MB (one wave's responses, and the 5 MB broadcast parsed and
/// encoded), where the four waves held 80 MB of responses before. RSS bound: +64 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_responses_the_client_never_reads() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&["--ping-timeout", "1000", "--max-http-buffer-size", "6000000"]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let mut peak = before;
    let data = "x".repeat(5_000_000);
    let broadcaster = socketio_polling_client(&node).await;
    for wave in 0..4 {
        let room = format!("victims-{wave}");
        let mut attackers = Vec::new();
        for _ in 0..4 {
            let sid = socketio_polling_client(&node).await;
            let join = format!("421[\"join\",\"{room}\"]");
            let (status, body) = http(&node, "POST", &polling_target(&sid), "", join.as_bytes()).await;
            assert_eq!((status, body.as_str()), (200, "ok"));
            let (status, body) = http(&node, "GET", &polling_target(&sid), "", b"").await;
            assert_eq!((status, body.as_str()), (200, "431[]"), "the join's ack");
            let mut stream = connect(&node, Some(4096)).await;
            let get = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", polling_target(&sid));
            stream.write_all(get.as_bytes()).await.expect("write the GET");
            attackers.push(stream);
        }
        let broadcast = format!("42[\"broadcast\",{{\"room\":\"{room}\",\"data\":\"{data}\"}}]");
        let (status, body) =
            http(&node, "POST", &polling_target(&broadcaster), "", broadcast.as_bytes()).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        let started = Instant::now();
        loop {
            bystander.echo_within(ECHO).await;
            peak = peak.max(node.rss_kib());
            let dropped = attackers.iter().all(|a| node_side(&node, a).is_none_or(|side| side.state != 1));
            if dropped {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "wave {wave}: the node still holds unread responses after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(attackers);
    }
    assert_bounded(&mut node, before, peak, 64 * 1024, "four waves of unread long-polls");
}

/// A connection that goes quiet (its peer may have vanished without a FIN) has TCP keepalive on,
/// so the kernel probes it and ends it if the peer is gone; before, no timer ran on it at all, and
/// then only at the host's timing (2 hours by default): its first probe is due within the node's
/// 60 s. RSS bound: +8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_connections_have_tcp_keepalive() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&[]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let quiet = connect(&node, None).await;
    let started = Instant::now();
    loop {
        bystander.echo_within(ECHO).await;
        if let Some(side) = node_side(&node, &quiet).filter(|side| side.state == 1 && side.timer == 2) {
            assert!(
                side.when <= 60 * 100,
                "the first keepalive probe is due in {} ticks, not within 60 s",
                side.when
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the node's side of a quiet connection runs no keepalive timer: {:?}",
            node_side(&node, &quiet)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.assert_alive_and_bounded(before, 8 * 1024, "a quiet connection");
}

/// A client opens a POST and, while it is still being read, sends a second one for the same
/// session. Before: both were read (two bodies held, packets possibly out of order). Now the
/// second is answered 400 and the session closed, as socket.io does. RSS bound: +8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_concurrent_post_on_one_session() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&[]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let sid = polling_session(&node).await;
    let mut first = connect(&node, None).await;
    let head = format!("POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n4a", polling_target(&sid));
    first.write_all(head.as_bytes()).await.expect("write the first POST");
    // The node reads a request's head and starts its handler in one go: once nothing of the first
    // POST is left unread, it is the session's POST in progress.
    let drained = || std::future::ready(node_side(&node, &first).is_some_and(|side| side.unread == 0));
    assert!(switchboard_testkit::eventually(LIMIT, drained).await);
    bystander.echo_within(ECHO).await;
    let (status, body) = http(&node, "POST", &polling_target(&sid), "", b"4b").await;
    assert_eq!(status, 400, "a second concurrent POST is refused: {body}");
    let (status, body) = http(&node, "GET", &polling_target(&sid), "", b"").await;
    assert_eq!(status, 400, "the session is closed: {body}");
    assert!(body.contains("\"code\":1"), "unknown sid: {body}");
    bystander.echo_within(ECHO).await;
    node.assert_alive_and_bounded(before, 8 * 1024, "a second concurrent POST");
}

// ---- item 5: websocket Origin ----

/// With CORS origins configured, 100 websocket handshakes from another origin (a page that would
/// ride its visitors' cookies) are refused 403, new sessions and upgrades alike; the allowed
/// origin and clients that send no Origin (not browsers) still connect. RSS bound: +8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_from_other_origins() {
    let _alone = common::hostile::one_at_a_time().await;
    let mut node = Node::start(&["--cors-origin", "https://good.example"]);
    let before = node.rss_kib();
    let mut bystander = Bystander::connect(&node).await;
    let sid = polling_session(&node).await;
    let node_addr = node.addr;
    let upgrade = format!("EIO=4&transport=websocket&sid={sid}");
    let attack = async move {
        let mut statuses = Vec::new();
        for i in 0..100 {
            let query = if i % 2 == 0 { "EIO=4&transport=websocket" } else { upgrade.as_str() };
            let mut stream = TcpStream::connect(node_addr).await.expect("connect");
            let request = format!(
                "GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                 Origin: https://evil.example\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.expect("write");
            statuses.push(tokio::time::timeout(LIMIT, read_head(&mut stream)).await.expect("an answer").0);
        }
        statuses
    };
    let (statuses, peak) = during(&node, &mut bystander, attack).await;
    assert!(statuses.iter().all(|s| *s == 403), "other origins are refused: {statuses:?}");
    assert_eq!(sessions(&node, "websocket").await, 1, "only the bystander is on websocket");
    let (good, _) = websocket(&node, "EIO=4&transport=websocket", Some("https://good.example"), None).await;
    assert_eq!(good, 101, "the allowed origin connects");
    let (upgraded, _) = websocket(&node, &format!("EIO=4&transport=websocket&sid={sid}"), None, None).await;
    assert_eq!(upgraded, 101, "a client without Origin may upgrade");
    assert_bounded(&mut node, before, peak, 8 * 1024, "100 cross-origin websockets");
}
