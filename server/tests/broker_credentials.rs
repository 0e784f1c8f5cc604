//! Brokers with credentials and TLS, through the real binary: a node joins a `redis-server` with
//! `requirepass`, an ACL user, or TLS only (with `--redis-tls-ca`), and a `nats-server` with a
//! user and password, a token, an nkey, or TLS with client certificates; a wrong password or an
//! untrusted certificate stops the node at start-up with a message that says so; no password
//! ever shows in its output, its `--help` or its metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use switchboard_testkit::{Nats, NatsServer, NkeyUser, Redis, RedisServer, TestCa};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// How long a node may take to connect to its broker, or to give up at start-up.
const WITHIN: Duration = Duration::from_secs(10);
/// The password every test uses: it must never appear in the node's output.
const PASSWORD: &str = "s3cret-hunter2";

/// A `switchboard --app bench` process on an ephemeral port, its output (stdout and stderr)
/// collected in a file; killed when dropped.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn spawn(extra: &[&str]) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("broker-credentials-{}-{n}.log", std::process::id()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["--app", "bench", "--host", "127.0.0.1", "--port", "0", "--log-format", "text"])
            .args(["--log-level", "debug", "--drain-window", "0"])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address from the "switchboard listening" line, once logged.
    fn address(&self) -> Option<String> {
        let output = self.output();
        let line = output.lines().find(|l| l.contains("switchboard listening"))?;
        let field = line.split_whitespace().find_map(|w| w.strip_prefix("address="))?;
        Some(field.trim_matches('"').to_owned())
    }

    fn get(&self, path: &str) -> String {
        let Some(address) = self.address() else { return String::new() };
        let Ok(mut stream) = TcpStream::connect(address) else { return String::new() };
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    /// Waits until the node reports its broker connected; panics with its output otherwise.
    fn assert_connects(&mut self, what: &str) -> String {
        let deadline = Instant::now() + WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what}: the node exited ({status}):\n{}", self.output());
            }
            let metrics = self.get("/metrics");
            if metrics.lines().any(|l| l == "switchboard_adapter_connected 1") {
                return metrics;
            }
            assert!(Instant::now() < deadline, "{what}: not connected within {WITHIN:?}:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the node to exit; its status.
    fn exit_status(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "{what}: still running after {WITHIN:?}:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the node refuses to start, its output matching every one of `expected` (case
    /// insensitive) and never showing the password.
    fn assert_refused(mut self, what: &str, expected: &[&str]) {
        let status = self.exit_status(what);
        let output = self.output();
        assert!(!status.success(), "{what}: exited with success:\n{output}");
        let lower = output.to_lowercase();
        for e in expected {
            assert!(lower.contains(&e.to_lowercase()), "{what}: no {e:?} in:\n{output}");
        }
        assert!(!output.contains(PASSWORD), "{what}: the password is in the output:\n{output}");
    }

    /// Asserts that neither the output so far nor the metrics show the password.
    fn assert_no_password(&self, metrics: &str) {
        let output = self.output();
        assert!(!output.contains(PASSWORD), "the password is in the output:\n{output}");
        assert!(!metrics.contains(PASSWORD), "the password is in the metrics:\n{metrics}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn redis_node(url: &str, extra: &[&str]) -> Node {
    let mut args = vec!["--adapter", "redis", "--redis-url", url];
    args.extend_from_slice(extra);
    Node::spawn(&args)
}

fn nats_node(url: &str, extra: &[&str]) -> Node {
    let mut args = vec!["--adapter", "nats", "--nats-url", url];
    args.extend_from_slice(extra);
    Node::spawn(&args)
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn redis_requirepass_lets_in_the_password_and_refuses_a_wrong_one() {
    let redis = RedisServer::start_with(Redis::default().with_password(PASSWORD));
    let port = redis.port();
    let mut node = redis_node(&redis.url(), &[]);
    let metrics = node.assert_connects("with the password");
    node.assert_no_password(&metrics);

    let wrong = format!("redis://:not-{PASSWORD}@127.0.0.1:{port}");
    redis_node(&wrong, &[])
        .assert_refused("a wrong password", &["refused the connection", "authentication failed"]);
    redis_node(&format!("redis://127.0.0.1:{port}"), &[])
        .assert_refused("no password", &["refused the connection", "authentication failed"]);
}

#[test]
fn redis_acl_user_lets_in_its_password_and_refuses_a_wrong_one() {
    let redis = RedisServer::start_with(Redis::default().with_user("switchboard", PASSWORD));
    let port = redis.port();
    let mut node = redis_node(&format!("redis://switchboard:{PASSWORD}@127.0.0.1:{port}"), &[]);
    let metrics = node.assert_connects("as the ACL user");
    node.assert_no_password(&metrics);
    redis_node(&format!("redis://switchboard:{PASSWORD}x@127.0.0.1:{port}"), &[])
        .assert_refused("the ACL user with a wrong password", &["authentication failed"]);
}

#[test]
fn rediss_connects_with_the_ca_and_refuses_an_untrusted_certificate() {
    let ca = TestCa::new();
    let redis = RedisServer::start_with(Redis::default().with_tls(&ca, false).with_password(PASSWORD));
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let mut node = redis_node(&url, &["--redis-tls-ca", &path(&ca.ca())]);
    let metrics = node.assert_connects("with the CA");
    node.assert_no_password(&metrics);

    // The system's roots do not know the test CA, nor does another CA.
    redis_node(&url, &[])
        .assert_refused("without the CA", &["refused the connection", "TLS handshake failed"]);
    let other = TestCa::new();
    redis_node(&url, &["--redis-tls-ca", &path(&other.ca())])
        .assert_refused("with another CA", &["TLS handshake failed"]);
    // Skipping verification is not on offer; a CA for a plain URL is a mistake.
    redis_node(&format!("{url}/#insecure"), &[]).assert_refused("#insecure", &["#insecure", "refused"]);
    let plain = format!("redis://127.0.0.1:{}", redis.port());
    redis_node(&plain, &["--redis-tls-ca", &path(&ca.ca())])
        .assert_refused("a CA for redis://", &["not rediss://"]);
    redis_node(&url, &["--redis-tls-ca", &path(&ca.server_key())])
        .assert_refused("a key given as CA", &["--redis-tls-ca", "no PEM CERTIFICATE"]);
}

#[test]
fn rediss_with_client_verification_lets_in_the_node_certificate_only() {
    let ca = TestCa::new();
    let redis = RedisServer::start_with(Redis::default().with_tls(&ca, true));
    let (ca_file, cert, key) = (path(&ca.ca()), path(&ca.client_cert()), path(&ca.client_key()));
    let all = ["--redis-tls-ca", &ca_file, "--redis-tls-cert", &cert, "--redis-tls-key", &key];
    redis_node(&redis.url(), &all).assert_connects("with a client certificate");
    // The server asks for a certificate; without one the handshake fails.
    redis_node(&redis.url(), &all[..2])
        .assert_refused("without a client certificate", &["TLS handshake failed"]);
    let plain = format!("redis://127.0.0.1:{}", redis.port());
    redis_node(&plain, &all[2..]).assert_refused("a client certificate for redis://", &["not rediss://"]);
}

#[test]
fn nats_user_password_and_token_let_in_and_a_wrong_password_is_refused() {
    let nats = NatsServer::start_with(Nats::default().with_user("switchboard", PASSWORD));
    let mut node = nats_node(&nats.url(), &[]);
    let metrics = node.assert_connects("user and password");
    node.assert_no_password(&metrics);
    let wrong = format!("nats://switchboard:nope-{PASSWORD}@127.0.0.1:{}", nats.port());
    nats_node(&wrong, &[])
        .assert_refused("a wrong password", &["refused the connection", "authorization violation"]);

    let nats = NatsServer::start_with(Nats::default().with_token(PASSWORD));
    let mut node = nats_node(&nats.url(), &[]);
    let metrics = node.assert_connects("token");
    node.assert_no_password(&metrics);
    nats_node(&format!("nats://127.0.0.1:{}", nats.port()), &[])
        .assert_refused("no token", &["authorization violation"]);
}

#[test]
fn nats_nkey_seed_from_a_file_lets_in_and_a_bad_seed_stops_the_node() {
    let user = NkeyUser::new();
    let nats = NatsServer::start_with(Nats::default().with_nkey(&user.public_key));
    let dir = TestCa::new();
    let seed = dir.dir().join("user.nk");
    std::fs::write(&seed, &user.seed).unwrap();
    let mut node = nats_node(&nats.url(), &["--nats-nkey", &path(&seed)]);
    let metrics = node.assert_connects("nkey");
    assert!(!node.output().contains(&user.seed) && !metrics.contains(&user.seed), "the seed was printed");

    // Another user's key: the server refuses the signature.
    let stranger = dir.dir().join("stranger.nk");
    std::fs::write(&stranger, NkeyUser::new().seed).unwrap();
    nats_node(&nats.url(), &["--nats-nkey", &path(&stranger)])
        .assert_refused("another nkey", &["refused the connection"]);
    let garbage = dir.dir().join("garbage.nk");
    std::fs::write(&garbage, format!("SU{PASSWORD}")).unwrap();
    nats_node(&nats.url(), &["--nats-nkey", &path(&garbage)])
        .assert_refused("a bad seed", &["nkey seed does not parse"]);
    let creds = dir.dir().join("bad.creds");
    std::fs::write(&creds, format!("-----BEGIN NATS USER JWT-----\n{PASSWORD}\n")).unwrap();
    nats_node(&nats.url(), &["--nats-creds", &path(&creds)])
        .assert_refused("a bad .creds", &[".creds file does not parse"]);
    nats_node(&nats.url(), &["--nats-nkey", "/nonexistent/user.nk"])
        .assert_refused("a missing seed file", &["--nats-nkey /nonexistent/user.nk"]);
}

#[test]
fn nats_tls_with_client_certificates_connects_with_the_ca_and_refuses_without() {
    let ca = TestCa::new();
    let nats = NatsServer::start_with(Nats::default().with_tls(&ca, true).with_user("switchboard", PASSWORD));
    let url = nats.url();
    assert!(url.starts_with("tls://"), "{url}");
    let (ca_file, cert, key) = (path(&ca.ca()), path(&ca.client_cert()), path(&ca.client_key()));
    let all = ["--nats-tls-ca", &ca_file, "--nats-tls-cert", &cert, "--nats-tls-key", &key];
    let mut node = nats_node(&url, &all);
    let metrics = node.assert_connects("mutual TLS");
    node.assert_no_password(&metrics);

    // No CA: the system's roots do not know it. No client certificate: the server refuses.
    nats_node(&url, &all[2..]).assert_refused("without the CA", &["refused the connection", "tls"]);
    nats_node(&url, &all[..2]).assert_refused("without a client certificate", &["refused the connection"]);
}

#[test]
fn urls_with_passwords_are_not_shown_by_help() {
    let url = format!("redis://u:{PASSWORD}@10.0.0.5:6379");
    let nats = format!("nats://u:{PASSWORD}@10.0.0.7:4222");
    let help = Command::new(BIN)
        .arg("--help")
        .env("SWITCHBOARD_REDIS_URL", &url)
        .env("SWITCHBOARD_NATS_URL", &nats)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("SWITCHBOARD_REDIS_URL"), "{text}");
    assert!(!text.contains(PASSWORD), "--help shows a password:\n{text}");
}

#[test]
fn invalid_broker_settings_still_stop_the_node_at_start_up() {
    // Nothing listens there: a setting that cannot work must not pass for an outage.
    let port = switchboard_testkit::closed_port();
    let bad_port = format!("redis://u:{PASSWORD}@127.0.0.1:notaport");
    redis_node(&bad_port, &[])
        .assert_refused("a redis URL that does not parse", &["invalid redis url", "***@"]);
    let scheme = format!("http://u:{PASSWORD}@127.0.0.1:{port}");
    nats_node(&scheme, &[])
        .assert_refused("a NATS URL of another scheme", &["invalid NATS server URL", "***@"]);
    let url = format!("redis://127.0.0.1:{port}");
    redis_node(&url, &["--cluster-prefix", "a#b"])
        .assert_refused("a redis prefix with #", &["invalid redis channel prefix"]);
    let url = format!("nats://127.0.0.1:{port}");
    nats_node(&url, &["--cluster-prefix", "a b"])
        .assert_refused("a NATS prefix with a space", &["invalid NATS subject prefix"]);
    let two = format!("nats://a:{PASSWORD}@127.0.0.1:{port},nats://b:{PASSWORD}@127.0.0.1:{port}");
    nats_node(&two, &[]).assert_refused("URLs with different users", &["different users"]);
}
