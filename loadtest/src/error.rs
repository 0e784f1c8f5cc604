//! Errors, one enum per boundary: a client connection, the setup of a run, the servers `compare` starts.

use std::path::PathBuf;

/// Why one client connection failed; each kind is counted, never hidden (see [`crate::failures`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The TCP connect was refused: nothing listens, or the accept backlog is full.
    #[error("connection refused")]
    Refused,
    /// The TCP connect failed otherwise (e.g. no free local port, too many open files).
    #[error("connect failed: {0}")]
    Connect(std::io::ErrorKind),
    /// The WebSocket upgrade was not accepted (HTTP status, headers, or the HTTP exchange broke).
    #[error("websocket handshake failed: {0}")]
    Handshake(String),
    /// The handshake (TCP, upgrade, Engine.IO open, Socket.IO CONNECT) took longer than allowed.
    #[error("timed out")]
    TimedOut,
    /// The server answered the Socket.IO CONNECT with CONNECT_ERROR.
    #[error("namespace connect refused: {0}")]
    Rejected(String),
    /// The server closed the connection (EOF, close frame, reset, or an Engine.IO close packet).
    #[error("closed by the server")]
    Closed,
    /// Another I/O error on an open connection.
    #[error("i/o error: {0}")]
    Io(std::io::ErrorKind),
    /// The server sent something this client cannot take (bad frame, unexpected packet).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A long-polling request was answered with an HTTP status other than 200 (e.g. 400 for an
    /// unknown session); the start of the body says why.
    #[error("HTTP {status}: {body}")]
    Http {
        /// The status code.
        status: u16,
        /// The first bytes of the body, lossily decoded.
        body: String,
    },
    /// A long-polling request got no answer within the server's pingInterval + pingTimeout, the
    /// longest a healthy server may hold it.
    #[error("no answer to a {0} request within pingInterval + pingTimeout")]
    Stalled(&'static str),
}

impl ConnError {
    /// Maps an error of the TCP connect.
    pub fn from_connect(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Self::Refused,
            kind => Self::Connect(kind),
        }
    }

    /// Maps an I/O error on an open connection: the ways a peer goes away are all [`ConnError::Closed`].
    pub fn from_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => Self::Closed,
            kind => Self::Io(kind),
        }
    }

    /// Maps an error of hyper's HTTP client: a connection the peer dropped is [`ConnError::Closed`].
    pub fn from_hyper(e: &hyper::Error) -> Self {
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                return Self::from_io(io);
            }
            source = inner.source();
        }
        if e.is_closed() || e.is_incomplete_message() || e.is_canceled() {
            Self::Closed
        } else {
            Self::Protocol(format!("HTTP: {e}"))
        }
    }

    /// Maps an error fastwebsockets reports while reading or writing frames.
    pub fn from_ws(e: fastwebsockets::WebSocketError) -> Self {
        use fastwebsockets::WebSocketError as W;
        match e {
            W::IoError(e) => Self::from_io(&e),
            W::UnexpectedEOF | W::ConnectionClosed => Self::Closed,
            W::InvalidStatusCode(code) => Self::Handshake(format!("HTTP status {code}")),
            W::HTTPError(e) => Self::Handshake(e.to_string()),
            W::InvalidUpgradeHeader | W::InvalidConnectionHeader => Self::Handshake(e.to_string()),
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// Why a run could not be set up; failures of the load itself are counted in the report instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The host is not an IP address (or `localhost`), so there is no single address to load.
    #[error("host {0:?} is not an IP address or localhost")]
    Host(String),
    /// The target is not a loopback address and `--allow-non-loopback` was not given.
    #[error("{0} is not a loopback address; pass --allow-non-loopback to load it anyway")]
    NotLoopback(std::net::IpAddr),
    /// The server pid file could not be read or does not hold a pid.
    #[error("cannot read a pid from {path}: {reason}")]
    PidFile {
        /// The file given with `--server-pid-file`.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A parameter is out of range (the message says which and why).
    #[error("invalid parameter: {0}")]
    Param(String),
    /// The latency histogram could not be created.
    #[error("histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
}

/// Why `compare` could not run a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A file the comparison needs is missing (the server binary or the Node reference).
    #[error("{what} not found at {path} ({hint})")]
    Missing {
        /// Which file.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to get it.
        hint: &'static str,
    },
    /// A reference server built on demand did not build.
    #[error("{what} did not build ({status}); run `{command}` to see why")]
    Build {
        /// Which server.
        what: &'static str,
        /// The command that failed.
        command: String,
        /// Its exit status.
        status: String,
    },
    /// The process could not be started, or its log not written.
    #[error("cannot start {name}: {source}")]
    Spawn {
        /// The server's name.
        name: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server exited, or did not say it was listening in time; the log's tail is attached.
    #[error("{name} did not become ready ({reason}); log {log}:\n{tail}")]
    NotReady {
        /// The server's name.
        name: &'static str,
        /// Exited (with status) or timed out.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// Setting up a run against it failed.
    #[error(transparent)]
    Setup(#[from] SetupError),
}
