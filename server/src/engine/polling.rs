//! HTTP long-polling: a GET waits for and flushes everything queued, a POST delivers client packets.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use switchboard_protocol::engineio::{decode_payload, encode_encoded_payload};

use super::CloseReason;

/// How long a GET that arrives mid-upgrade is held before it gets its noop.
const UPGRADE_HOLD: Duration = Duration::from_millis(100);

/// How long a client's close packet over POST waits for the client's pending GET to arrive, so
/// that GET gets its noop instead of an unknown-sid 400 (the two requests race on two connections).
const CLOSE_WAITS_FOR_POLL: Duration = Duration::from_millis(50);
use super::compression;
use super::error::RequestError;
use super::session::{PollRefusal, PollStep, Session};
use crate::body::Body;

impl From<PollRefusal> for RequestError {
    fn from(r: PollRefusal) -> Self {
        match r {
            PollRefusal::Gone => Self::UnknownSid,
            PollRefusal::WrongTransport | PollRefusal::Overlap | PollRefusal::Draining => Self::BadRequest,
        }
    }
}

/// Clears the session's pending-GET mark however the GET ends (answered, or the client went away).
struct PollGuard<'a>(&'a Session);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.0.end_poll();
    }
}

/// Clears the session's POST mark however the POST ends.
struct PostGuard<'a>(&'a Session);

impl Drop for PostGuard<'_> {
    fn drop(&mut self) {
        self.0.end_post();
    }
}

/// A long-poll: answers as soon as anything is queued, the session closes, or an upgrade needs a noop.
pub(crate) async fn get(
    session: &Arc<Session>,
    accept_encoding: Option<&HeaderValue>,
    compression_threshold: Option<usize>,
) -> Result<Response<Body>, RequestError> {
    session.begin_poll()?;
    let _guard = PollGuard(session);
    // During an upgrade the noop is held up to 100 ms, as socket.io's upgrade check does: a real
    // client sends `5` only after this GET returns, but if `5` does arrive meanwhile the session is
    // on websocket and this request gets the same 400 as any later one.
    let mut hold_until: Option<Instant> = None;
    let packets = loop {
        let notified = session.poll_notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match session.poll_step() {
            PollStep::Send(packets) => break packets,
            PollStep::Wait => notified.await,
            PollStep::Upgraded => return Err(RequestError::BadRequest),
            PollStep::Upgrading => {
                let until = *hold_until.get_or_insert_with(|| Instant::now() + UPGRADE_HOLD);
                if Instant::now() >= until {
                    break vec![Session::noop()];
                }
                let _ = tokio::time::timeout_at(until, notified).await;
            }
        }
    };
    let mut body = BytesMut::with_capacity(packets.iter().map(|p| p.len() + 1).sum());
    encode_encoded_payload(&packets, &mut body);
    let body = body.freeze();
    let metrics = &session.metrics().polling;
    metrics.packets_out.inc_by(packets.len() as u64);
    metrics.bytes_out.inc_by(body.len() as u64);
    match compression_threshold.and_then(|t| compression::compress(&body, accept_encoding, t)) {
        Some((compressed, encoding)) => {
            let mut response = text_response(compressed);
            response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
            Ok(response)
        }
        None => Ok(text_response(body)),
    }
}

/// Client → server packets; a parse error, an oversized body, or a body that does not arrive
/// whole within `body_timeout` (answered 408) closes the session.
pub(crate) async fn post(
    session: &Arc<Session>,
    req: Request<Incoming>,
    max_size: usize,
    body_timeout: Duration,
) -> Result<Response<Body>, RequestError> {
    match session.begin_post() {
        Err(PollRefusal::Draining) => return Ok(text_response(Bytes::from_static(b"ok"))),
        other => other?,
    }
    let _guard = PostGuard(session);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_size as u64) {
        session.close(CloseReason::TransportError);
        return Ok(status_response(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let collect = Limited::new(req.into_body(), max_size).collect();
    let Ok(collected) = tokio::time::timeout(body_timeout, collect).await else {
        tracing::debug!(sid = %session.sid(), "polling body timed out");
        session.close(CloseReason::TransportError);
        let mut response = status_response(StatusCode::REQUEST_TIMEOUT);
        // The rest of the body will not be read: the connection cannot carry another request.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    };
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            session.close(CloseReason::TransportError);
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return Ok(status_response(StatusCode::PAYLOAD_TOO_LARGE));
            }
            return Err(RequestError::BadRequest);
        }
    };
    session.metrics().polling.bytes_in.inc_by(body.len() as u64);
    let Ok(packets) = decode_payload(body) else {
        session.close(CloseReason::ParseError);
        return Err(RequestError::BadRequest);
    };
    for packet in packets {
        session.metrics().polling.packets_in.inc();
        let result = match packet {
            Ok(packet) => session.on_packet(packet),
            Err(e) => {
                tracing::debug!(sid = %session.sid(), error = %e, "bad polling packet");
                Err(CloseReason::ParseError)
            }
        };
        if let Err(reason) = result {
            if reason == CloseReason::TransportClose {
                wait_for_poll(session).await;
            }
            session.close(reason);
            if reason == CloseReason::ParseError {
                return Err(RequestError::BadRequest);
            }
            break;
        }
    }
    Ok(text_response(Bytes::from_static(b"ok")))
}

async fn wait_for_poll(session: &Session) {
    let until = Instant::now() + CLOSE_WAITS_FOR_POLL;
    while !session.is_polling() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A 200 `text/plain` response, the content type socket.io uses for polling; `no-store`, as
/// engine.io sends, so no proxy or browser cache answers a poll with an old payload.
pub(crate) fn text_response(body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn status_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
