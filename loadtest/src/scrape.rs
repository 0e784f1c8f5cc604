//! Reads the node's own counts from its `/metrics` page (Prometheus text format): the soak samples the
//! sockets and Engine.IO sessions the node believes it holds, next to what `/proc` says it holds.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};

use crate::ConnError;
use crate::polling::connect;

/// Largest `/metrics` page read: a node's page is a few KiB, so more means something is wrong.
const MAX_PAGE: usize = 4 << 20;

/// GETs `/metrics` from `addr` on a fresh connection, within `timeout`.
pub async fn fetch(addr: SocketAddr, timeout: Duration) -> Result<String, ConnError> {
    tokio::time::timeout(timeout, fetch_unbounded(addr)).await.map_err(|_| ConnError::TimedOut)?
}

async fn fetch_unbounded(addr: SocketAddr) -> Result<String, ConnError> {
    let mut sender = connect(addr).await?;
    let host = HeaderValue::try_from(addr.to_string()).map_err(|e| ConnError::Protocol(e.to_string()))?;
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = Method::GET;
    *request.uri_mut() = hyper::Uri::from_static("/metrics");
    request.headers_mut().insert(HOST, host);
    let response = sender.send_request(request).await.map_err(|e| ConnError::from_hyper(&e))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_PAGE)
        .collect()
        .await
        .map_err(|e| ConnError::Protocol(format!("/metrics body: {e}")))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if status != StatusCode::OK {
        return Err(ConnError::Http { status: status.as_u16(), body: text.chars().take(200).collect() });
    }
    Ok(text)
}

/// The sum of every series of metric `name` (all label sets), or `None` if the page has none.
pub fn gauge_sum(page: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let mut total = 0.0;
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        // `name{labels} value` or `name value`, but not `name_total …` of a longer name.
        let value = match rest.as_bytes().first() {
            Some(b'{') => rest.rfind('}').map(|end| &rest[end + 1..]),
            Some(b' ') => Some(rest),
            _ => None,
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<f64>().ok()) {
            found = true;
            total += v;
        }
    }
    found.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_label_set_of_one_metric_only() {
        let page = "# HELP switchboard_sockets Socket.IO sockets connected now\n\
                    # TYPE switchboard_sockets gauge\n\
                    switchboard_sockets{nsp=\"/\"} 2000\n\
                    switchboard_sockets{nsp=\"/admin\"} 3\n\
                    switchboard_sockets_total 99\n\
                    switchboard_sessions{transport=\"polling\"} 7\n\
                    switchboard_sessions{transport=\"websocket\"} 2001\n\
                    switchboard_up 1\n";
        assert_eq!(gauge_sum(page, "switchboard_sockets"), Some(2003.0));
        assert_eq!(gauge_sum(page, "switchboard_sessions"), Some(2008.0));
        assert_eq!(gauge_sum(page, "switchboard_up"), Some(1.0));
        assert_eq!(gauge_sum(page, "switchboard_missing"), None);
    }
}
