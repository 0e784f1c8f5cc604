//! The store's reader: XREADs the log and hands each entry, in stream order, to the namespace
//! ([`LogSink`](switchboard_adapter::recovery::LogSink)), which delivers it to this node's sockets
//! and records it in the mirror under its order lock. On a new epoch (the broker lost its data)
//! it starts the new log from its beginning; after a lost connection it goes on from the last
//! entry it read, and if the log was trimmed past it meanwhile, the mirror starts again after the
//! gap (restores from before it need a broker read, which finds the entries gone).

use std::sync::Weak;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::{BATCH, Shared, entry, lock, offset};

/// How long one XREAD blocks.
const BLOCK: Duration = Duration::from_millis(1_000);
/// Longest wait for an answer beyond the block.
const ANSWER: Duration = Duration::from_secs(5);

/// Where reading stands: the epoch and the last position read.
#[derive(Clone, Copy)]
struct Cursor {
    epoch: u64,
    last: u128,
}

/// Reads until the store is gone.
pub(crate) async fn run(shared: Weak<Shared>) {
    let mut cursor: Option<Cursor> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(client) = shared.upgrade().map(|s| s.client.clone()) else { return };
        // Its own connection (XREAD blocks it), answers awaited past the block.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(BLOCK + ANSWER));
        let error = match client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(conn) => match read(&shared, conn, &mut cursor).await {
                Ok(()) => return,
                Err(error) => error,
            },
            Err(error) => error,
        };
        if let Some(s) = shared.upgrade() {
            s.reading.send_replace(false);
        }
        tracing::warn!(%error, "recovery log reader lost its connection");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Reads on one connection; `Ok` when the store is gone.
async fn read(
    shared: &Weak<Shared>,
    mut conn: MultiplexedConnection,
    cursor: &mut Option<Cursor>,
) -> Result<(), redis::RedisError> {
    let Some(s) = shared.upgrade() else { return Ok(()) };
    let epoch = s.fetch_epoch(&mut conn).await?;
    let key = s.log_key(epoch);
    let epoch_key = s.epoch_key();
    let start = match *cursor {
        // Same log: go on, and start the mirror again after any gap left by trimming.
        Some(c) if c.epoch == epoch => {
            let first = entry::entries(
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await?,
            );
            let first = first.first().and_then(|(id, _)| offset::parse_stream_id(id));
            if let Some(first) = first.filter(|f| *f > c.last + 1) {
                lock(&s.mirror).restart(first - 1);
            }
            c.last
        }
        // A new log (another epoch): from its beginning.
        Some(_) => {
            lock(&s.mirror).restart(0);
            s.head.send_replace(0);
            0
        }
        // This node starts: from the log's end.
        None => {
            let last: Value = redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await?;
            let last =
                entry::entries(last).first().and_then(|(id, _)| offset::parse_stream_id(id)).unwrap_or(0);
            lock(&s.mirror).restart(last);
            s.head.send_replace(last);
            last
        }
    };
    *cursor = Some(Cursor { epoch, last: start });
    s.reading.send_replace(true);
    drop(s);
    loop {
        let Some(c) = *cursor else { return Ok(()) };
        let mut xread = redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&key)
            .arg(offset::stream_id(c.last));
        // Then whether the last entry read is still there: if not, the log was trimmed past it
        // and what this batch starts with may follow a gap.
        let last = offset::stream_id(c.last);
        let mut pipe = redis::pipe();
        pipe.add_command(xread).cmd("XRANGE").arg(&key).arg(&last).arg(&last);
        // And whether the log is still this epoch's: its key gone or changed, start again.
        pipe.cmd("GET").arg(&epoch_key);
        let query = pipe.query_async::<(Value, Value, Option<String>)>(&mut conn);
        let (answer, still, now) = tokio::time::timeout(BLOCK + ANSWER, query)
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "XREAD unanswered")))??;
        if now.as_deref() != Some(format!("{epoch:x}").as_str()) {
            return Err(redis::RedisError::from((redis::ErrorKind::Io, "the recovery log's epoch changed")));
        }
        let mut gap = c.last != 0 && entry::entries(still).is_empty();
        let Some(s) = shared.upgrade() else { return Ok(()) };
        let Some(sink) = s.sink.get().and_then(Weak::upgrade) else { return Ok(()) };
        let entries = entry::xread(answer);
        let newest = entries.last().and_then(|(id, _)| offset::parse_stream_id(id));
        for (id, fields) in entries {
            let Some(position) = offset::parse_stream_id(&id) else { continue };
            if std::mem::take(&mut gap) {
                tracing::warn!(
                    keys = s.keys,
                    "this node read the recovery log too slowly: entries were trimmed before it read them, \
                     and its clients missed them; restores from before are refused"
                );
                lock(&s.mirror).restart(position - 1);
            }
            *cursor = Some(Cursor { epoch, last: position });
            let Some((entry, only)) = entry::decode(epoch, &id, fields, s.limits.max_log_bytes) else {
                tracing::debug!(id, "a foreign entry in the recovery log: skipped");
                continue;
            };
            if only.is_some_and(|o| o != s.origin) {
                // Another node's `local` emit: logged, for its clients' restores, not delivered here.
                lock(&s.mirror).push(entry);
                s.head.send_replace(position);
                continue;
            }
            let opts = switchboard_adapter::BroadcastOptions {
                rooms: entry.rooms.clone(),
                except: entry.except.clone(),
                ..Default::default()
            };
            let packet = entry.packet.clone();
            let mut entry = Some(entry);
            sink.deliver(&opts, &packet, &mut || {
                if let Some(entry) = entry.take() {
                    lock(&s.mirror).push(entry);
                    s.head.send_replace(position);
                }
            });
        }
        if let Some(newest) = newest {
            // A stream id's first part is the broker's time of the append, in milliseconds.
            let appended = std::time::UNIX_EPOCH + Duration::from_millis((newest >> 64) as u64);
            let lag = std::time::SystemTime::now().duration_since(appended).unwrap_or_default();
            sink.observe(lag, lock(&s.mirror).size().0);
        }
    }
}
