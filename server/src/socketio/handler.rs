//! How user handlers run: polled once inline (so handlers that do not wait run in arrival order,
//! without a task), spawned only if they wait, and isolated so a panic or an error ends only
//! their socket.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt as _;
use prometheus::Histogram;
use tokio::time::Instant;

/// What a handler may return: nothing, or a `Result` whose error disconnects the socket.
pub trait HandlerOutput: Send + 'static {
    /// The error message, if the handler failed.
    fn into_error(self) -> Option<String>;
}

impl HandlerOutput for () {
    fn into_error(self) -> Option<String> {
        None
    }
}

impl<E: Display + Send + 'static> HandlerOutput for Result<(), E> {
    fn into_error(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// A boxed handler future producing an error message on failure.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// Boxes a user future, mapping its output to an optional error.
pub(crate) fn boxed<F, O>(fut: F) -> HandlerFuture
where
    F: Future<Output = O> + Send + 'static,
    O: HandlerOutput,
{
    Box::pin(fut.map(HandlerOutput::into_error))
}

/// Runs a handler future: one inline poll, then a task if it is not done. `on_failure` gets the
/// error message or the panic message; `timing`, if given, observes how long the handler took.
pub(crate) fn run(
    fut: HandlerFuture,
    timing: Option<&Histogram>,
    on_failure: impl FnOnce(String) + Send + 'static,
) {
    let started = timing.map(|_| Instant::now());
    let mut fut = AssertUnwindSafe(fut).catch_unwind();
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut fut).poll(&mut cx) {
        Poll::Ready(result) => {
            observe(timing, started);
            finish(result, on_failure)
        }
        // The spawned task polls again at once, registering real wakers, so nothing is missed.
        Poll::Pending => {
            let timing = timing.cloned();
            tokio::spawn(async move {
                let result = fut.await;
                observe(timing.as_ref(), started);
                finish(result, on_failure)
            });
        }
    }
}

fn observe(timing: Option<&Histogram>, started: Option<Instant>) {
    if let (Some(histogram), Some(started)) = (timing, started) {
        histogram.observe(started.elapsed().as_secs_f64());
    }
}

fn finish(result: std::thread::Result<Option<String>>, on_failure: impl FnOnce(String)) {
    match result {
        Ok(None) => {}
        Ok(Some(error)) => on_failure(error),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".to_owned());
            on_failure(format!("handler panicked: {message}"))
        }
    }
}
