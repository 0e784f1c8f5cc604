//! The store's writes, in the order they were asked for: logged packets (XADD), sessions saved
//! (SET PX) and forgotten (DEL), pipelined in batches on one connection; and the task that saves
//! this node's connected sessions again before they expire, so that they outlive the node by at
//! most `max_disconnection_duration` (plus a third of it).

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{Shared, lock, offset};

/// Writes per pipeline.
const BATCH: usize = 256;

/// One write, queued.
pub(crate) enum Write {
    /// A logged packet's stream fields.
    Append(Vec<(&'static str, Bytes)>),
    /// A session, told when written if someone waits.
    Save { key: String, value: Vec<u8>, done: Option<oneshot::Sender<Result<(), String>>> },
    /// A session whose socket left on purpose.
    Forget { key: String },
    /// Answered once everything queued before is written (or failed).
    Flush(oneshot::Sender<()>),
}

/// Writes until every handle is gone.
pub(crate) async fn run(shared: Weak<Shared>, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut stale_epoch = true;
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let Some(shared) = shared.upgrade() else { return };
        let result = write(&shared, &mut batch, &mut stale_epoch).await;
        // Written or failed, these appends are done: emits waiting for them go on.
        let appends = batch.iter().filter(|w| matches!(w, Write::Append(_))).count() as u64;
        shared.appended.send_modify(|(n, _)| *n += appends);
        if let Err(error) = &result {
            stale_epoch = true;
            tracing::warn!(keys = shared.keys, error, writes = batch.len(), "recovery writes failed");
        }
        for w in batch.drain(..) {
            match w {
                Write::Save { done: Some(done), .. } => {
                    let _ = done.send(result.clone());
                }
                Write::Flush(done) => {
                    let _ = done.send(());
                }
                _ => {}
            }
        }
    }
}

async fn write(shared: &Shared, batch: &mut [Write], stale_epoch: &mut bool) -> Result<(), String> {
    let mut conn = shared.connection().await.map_err(|e| e.to_string())?;
    if *stale_epoch {
        shared.fetch_epoch(&mut conn).await.map_err(|e| e.to_string())?;
        *stale_epoch = false;
    }
    let epoch = shared.epoch.load(Ordering::Acquire);
    let log = shared.log_key(epoch);
    let ttl = shared.limits.max_disconnection_duration.as_millis().max(1) as u64;
    let mut pipe = redis::pipe();
    // The epoch first: if the log was reset (its key deleted or changed), this batch went to the
    // old log, and the next one goes to the new.
    pipe.cmd("GET").arg(shared.epoch_key());
    for w in batch.iter() {
        match w {
            Write::Append(fields) => {
                let cmd = pipe
                    .cmd("XADD")
                    .arg(&log)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(shared.limits.max_log_packets)
                    .arg("*");
                for (name, value) in fields {
                    cmd.arg(*name).arg(&value[..]);
                }
                // Not ignored: its answer, the entry's id, tells emits what to wait for.
            }
            Write::Save { key, value, .. } => {
                pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(ttl).ignore();
            }
            Write::Forget { key } => {
                pipe.cmd("DEL").arg(key).ignore();
            }
            Write::Flush(_) => {}
        }
    }
    let answers: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(|e| e.to_string())?;
    let mut answers = answers.into_iter();
    let now: Option<String> = answers.next().and_then(|v| redis::from_redis_value(v).ok());
    let newest = answers
        .filter_map(|id| redis::from_redis_value::<String>(id).ok())
        .filter_map(|id| offset::parse_stream_id(&id))
        .max();
    if let Some(newest) = newest {
        shared.appended.send_modify(|(_, id)| *id = newest);
    }
    if now.as_deref() != Some(format!("{epoch:x}").as_str()) {
        *stale_epoch = true;
        return Err("the recovery log's epoch changed: these writes went to the old log".into());
    }
    Ok(())
}

/// Extends the expiry of this node's connected sessions every third of the window while the
/// store lives. Only the expiry: the ordered writer alone writes values, so a refresh never brings
/// back a session a restore took or a deliberate leave forgot.
pub(crate) async fn keep_alive(shared: Weak<Shared>) {
    let Some(window) = shared.upgrade().map(|s| s.limits.max_disconnection_duration) else { return };
    let mut tick = tokio::time::interval((window / 3).max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let live: Vec<String> = lock(&shared.live).keys().map(|pid| shared.session_key(pid)).collect();
        let ttl = window.as_millis().max(1) as u64;
        for chunk in live.chunks(1_000) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
            }
            let result = match shared.connection().await {
                Ok(mut conn) => pipe.query_async::<()>(&mut conn).await,
                Err(e) => Err(e),
            };
            if let Err(error) = result {
                tracing::warn!(keys = shared.keys, %error, "connected sessions' expiry not extended");
                break;
            }
        }
    }
}
