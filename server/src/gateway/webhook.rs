//! Client events to the backend: each socket's routed events (and its lifecycle notices and
//! subscribe questions) wait in its own bounded queue and are POSTed one at a time (so they reach the backend in order) through one pooled keep-alive
//! HTTP client per node, at most `max-concurrency` calls in flight and `max-queued-bytes` of
//! arguments waiting on the node. The backend's JSON answer
//! becomes the client's ack; a failure becomes an error ack (`{"error": {"code", "message"}}`)
//! and a metric, so a client never waits for an answer that will not come.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt as _, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use super::config::WebhookConfig;
use super::json;
use super::metrics::GatewayMetrics;
use crate::body::Body;
use crate::socketio::{AckResponder, BoxFuture, Socket, SocketRef, Value};

/// How long an idle pooled connection to the backend is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Why a webhook call gave no answer; [`WebhookError::code`] is what the client's error ack says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The socket already had `max-pending-per-socket` events waiting, or the node
    /// `max-queued-bytes` of arguments.
    #[error("too many events waiting for the backend")]
    Busy,
    /// No answer within `webhook.timeout` (waiting for a free slot included).
    #[error("the backend did not answer in time")]
    Timeout,
    /// No connection to the backend, or it broke.
    #[error("the backend is unreachable")]
    Unreachable,
    /// The backend answered with a status other than 2xx.
    #[error("the backend answered {0}")]
    Status(u16),
    /// The answer was over `webhook.max-answer-bytes`.
    #[error("the backend's answer is too large")]
    TooLarge,
    /// The answer was not JSON.
    #[error("the backend's answer is not JSON")]
    BadAnswer,
}

impl WebhookError {
    /// The error ack's `code` (and the metric's `result`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Timeout => "backend_timeout",
            Self::Unreachable => "backend_unreachable",
            Self::Status(_) => "backend_status",
            Self::TooLarge => "backend_answer_too_large",
            Self::BadAnswer => "backend_bad_answer",
        }
    }

    /// The ack argument the client receives.
    pub fn to_ack(&self) -> Value {
        json::from_json(serde_json::json!({"error": {"code": self.code(), "message": self.to_string()}}))
    }
}

/// Where one route's events go.
#[derive(Debug, Clone)]
pub struct Route {
    /// The backend URL.
    pub url: Uri,
    /// `<namespace> <event>`, the metric label.
    pub label: String,
}

/// The node's webhook client; see the module docs.
#[derive(Debug)]
pub struct Webhooks {
    client: Client<HttpConnector, Body>,
    permits: Semaphore,
    /// One permit per byte of arguments waiting (an estimate: [`weight`]).
    queued: Arc<Semaphore>,
    config: WebhookConfig,
    metrics: GatewayMetrics,
}

impl Webhooks {
    /// A client bounded by `config`, counting into `metrics`.
    pub fn new(config: WebhookConfig, metrics: GatewayMetrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(config.max_concurrency)
            .build(connector);
        Self {
            client,
            permits: Semaphore::new(config.max_concurrency),
            queued: Arc::new(Semaphore::new(config.max_queued_bytes)),
            config,
            metrics,
        }
    }

    /// POSTs `body` (JSON) to `route`: the answer's JSON, or `None` for an empty answer.
    pub async fn call(&self, route: &Route, body: Bytes) -> Result<Option<serde_json::Value>, WebhookError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.config.timeout, self.post(&route.url, body)).await {
            Ok(result) => result,
            Err(_) => Err(WebhookError::Timeout),
        };
        self.metrics.webhook_seconds.observe(started.elapsed().as_secs_f64());
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        self.metrics.webhook_requests.with_label_values(&[route.label.as_str(), label]).inc();
        result
    }

    async fn post(&self, url: &Uri, body: Bytes) -> Result<Option<serde_json::Value>, WebhookError> {
        let _permit = self.permits.acquire().await.map_err(|_| WebhookError::Unreachable)?;
        let request = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::new(body))
            .map_err(|_| WebhookError::Unreachable)?;
        let response = self.client.request(request).await.map_err(|e| {
            tracing::debug!(%url, error = %e, "webhook: no answer");
            WebhookError::Unreachable
        })?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), self.config.max_answer_bytes).collect().await;
        let answer = match answer {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(WebhookError::TooLarge),
            Err(_) => return Err(WebhookError::Unreachable),
        };
        if !status.is_success() {
            return Err(WebhookError::Status(status.as_u16()));
        }
        if answer.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&answer).map(Some).map_err(|_| WebhookError::BadAnswer)
    }
}

/// One routed event waiting for its turn.
#[derive(Debug)]
pub struct Job {
    /// Where it goes.
    pub route: Arc<Route>,
    /// The event name.
    pub event: String,
    /// Its arguments.
    pub args: Vec<Value>,
    /// The client's ack, if it asked for one.
    pub ack: Option<AckResponder>,
}

/// A lifecycle webhook call (connect, disconnect, join, leave): its body is made when it happened,
/// it is sent even after the socket is gone, and its answer is dropped.
#[derive(Debug)]
pub struct Notice {
    /// Where it goes.
    pub route: Arc<Route>,
    /// The JSON body.
    pub body: Bytes,
}

/// What the gateway does with a [`Question`]'s answer (or the call's failure).
pub type Then = Box<dyn FnOnce(Result<Option<serde_json::Value>, WebhookError>) -> BoxFuture<()> + Send>;

/// A call whose answer the gateway acts on before the socket's next call (a subscribe
/// webhook's allow or deny).
pub struct Question {
    /// Where it goes.
    pub route: Arc<Route>,
    /// The JSON body.
    pub body: Bytes,
    /// Run with the answer, in the socket's turn.
    pub then: Then,
}

impl std::fmt::Debug for Question {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Question").field("route", &self.route).finish_non_exhaustive()
    }
}

/// What a socket's queue holds, in the order it happened.
#[derive(Debug)]
enum Work {
    Event(Job),
    Notice(Notice),
    Question(Question),
}

/// A socket's queue of routed events and lifecycle notices, drained in order by one task; the
/// task ends when the queue is dropped (the socket's handlers hold it and are dropped when it
/// disconnects; its disconnect handler last).
#[derive(Debug, Clone)]
pub struct SocketQueue {
    /// Each piece of work with the bytes it holds of the node's `max-queued-bytes`.
    tx: mpsc::Sender<(Work, OwnedSemaphorePermit)>,
    webhooks: Arc<Webhooks>,
}

impl SocketQueue {
    /// Starts the queue of `socket`.
    pub fn start(webhooks: Arc<Webhooks>, socket: &SocketRef) -> Self {
        let (tx, mut rx) = mpsc::channel(webhooks.config.max_pending_per_socket);
        let weak = Arc::downgrade(socket);
        let worker = webhooks.clone();
        tokio::spawn(async move {
            while let Some((work, _bytes)) = rx.recv().await {
                match work {
                    Work::Event(job) => run(&worker, &weak, job).await,
                    // Fire and forget: the call's metric says how it went.
                    Work::Notice(notice) => {
                        let _ = worker.call(&notice.route, notice.body).await;
                    }
                    Work::Question(question) => {
                        let answer = worker.call(&question.route, question.body).await;
                        (question.then)(answer).await;
                    }
                }
            }
        });
        Self { tx, webhooks }
    }

    /// Queues `job`, or answers it with a `busy` error at once when the socket's queue or the
    /// node's bytes are full.
    pub fn push(&self, job: Job) {
        let size = weight(&job.args) + job.event.len();
        let Err(Work::Event(job)) = self.enqueue(Work::Event(job), size) else { return };
        let error = WebhookError::Busy;
        self.webhooks
            .metrics
            .webhook_requests
            .with_label_values(&[job.route.label.as_str(), error.code()])
            .inc();
        if let Some(ack) = job.ack {
            ack.send(vec![error.to_ack()]);
        }
    }

    /// Queues `notice` behind the socket's events, or drops it (counted as `dropped`) when the
    /// socket's queue or the node's bytes are full: lifecycle webhooks are best effort.
    pub fn notify(&self, notice: Notice) {
        let size = notice.body.len();
        if let Err(Work::Notice(notice)) = self.enqueue(Work::Notice(notice), size) {
            self.webhooks
                .metrics
                .webhook_requests
                .with_label_values(&[notice.route.label.as_str(), DROPPED])
                .inc();
        }
    }

    /// Queues `question` behind the socket's events, or answers it with a `busy` error at once
    /// when the socket's queue or the node's bytes are full.
    pub fn ask(&self, question: Question) {
        let size = question.body.len();
        if let Err(Work::Question(question)) = self.enqueue(Work::Question(question), size) {
            let error = WebhookError::Busy;
            self.webhooks
                .metrics
                .webhook_requests
                .with_label_values(&[question.route.label.as_str(), error.code()])
                .inc();
            tokio::spawn((question.then)(Err(error)));
        }
    }

    /// Queues `work` holding `size` bytes of the node's allowance; gives it back if it does not fit.
    fn enqueue(&self, work: Work, size: usize) -> Result<(), Work> {
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        let Ok(bytes) = self.webhooks.queued.clone().try_acquire_many_owned(size) else { return Err(work) };
        self.tx.try_send((work, bytes)).map_err(|e| match e {
            mpsc::error::TrySendError::Full((work, _)) | mpsc::error::TrySendError::Closed((work, _)) => work,
        })
    }
}

/// The `result` of a lifecycle notice that did not fit in the queue.
pub const DROPPED: &str = "dropped";

/// Calls the backend for one event and answers the client's ack.
async fn run(webhooks: &Webhooks, socket: &Weak<Socket>, job: Job) {
    // A socket gone meanwhile has no one to answer; its events are dropped.
    let Some(socket) = socket.upgrade() else { return };
    let body = request_body(&socket, &job.event, &job.args);
    let answer = webhooks.call(&job.route, body).await;
    let Some(ack) = job.ack else { return };
    match answer {
        Ok(Some(json)) => ack.send(vec![json::from_json(json)]),
        Ok(None) => ack.send(Vec::new()),
        Err(error) => ack.send(vec![error.to_ack()]),
    }
}

/// About how many bytes `args` hold: their strings and binary, plus a little per value.
pub fn weight(args: &[Value]) -> usize {
    args.iter()
        .map(|value| match value {
            Value::String(s) => s.len() + 8,
            Value::Binary(b) => b.len() + 8,
            Value::Array(items) => weight(items) + 8,
            Value::Object(entries) => {
                entries.iter().map(|(k, v)| k.len() + weight(std::slice::from_ref(v))).sum::<usize>() + 8
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        })
        .sum()
}

/// `{namespace, socket, user, data, rooms, event, args}`, as docs/gateway.md describes it: the
/// body of event webhooks and lifecycle notices.
pub fn request_body(socket: &Socket, event: &str, args: &[Value]) -> Bytes {
    let data: serde_json::Value = socket.data().unwrap_or_default();
    let user = data.get("user").cloned().unwrap_or_default();
    let rooms: Vec<String> = socket
        .rooms()
        .into_iter()
        .filter(|room| room.as_str() != socket.id().as_str())
        .map(|room| room.as_str().to_owned())
        .collect();
    let body = serde_json::json!({
        "namespace": socket.namespace().name(),
        "socket": socket.id().as_str(),
        "user": user,
        "data": data,
        "rooms": rooms,
        "event": event,
        "args": args.iter().map(json::to_json).collect::<Vec<_>>(),
    });
    Bytes::from(body.to_string())
}
