//! The API's operations, each on a selection of sockets (`namespace`, `rooms`, `except`,
//! `socket`) and done cluster-wide through the namespace's adapter: emit (with acks or not),
//! sockets join and leave, disconnect, fetch, the member counts of rooms, and the nodes.

use std::time::Duration;

use http::StatusCode;

use super::fields::Fields;
use super::{Api, ApiError};
use crate::engine::sid::NODE_SEPARATOR;
use crate::gateway::json;
use crate::socketio::{
    BroadcastAckError, BroadcastError, BroadcastOperator, ClusterRequestError, Room, RoomsError, Value,
    check_event_name,
};

/// Every endpoint's path (also the metric's `endpoint` label).
pub const ENDPOINTS: [&str; 7] = [
    "/v1/emit",
    "/v1/sockets/join",
    "/v1/sockets/leave",
    "/v1/sockets/disconnect",
    "/v1/sockets/fetch",
    "/v1/rooms",
    "/v1/nodes",
];
/// The fields that choose sockets, known to every endpoint.
const SELECTION: [&str; 4] = ["namespace", "rooms", "except", "socket"];
/// How long an emit with acks waits by default, and at most, in milliseconds.
const ACK_TIMEOUT_MS: (u64, u64) = (5_000, 60_000);

/// Runs the endpoint at `path` on `fields`.
pub async fn call(api: &Api, path: &str, fields: Fields) -> Result<serde_json::Value, ApiError> {
    let known = |extra: &[&'static str]| [SELECTION.as_slice(), extra].concat();
    match path {
        "/v1/emit" => {
            fields.only(&known(&["event", "args", "volatile", "compress", "ack", "timeout"]))?;
            let event = fields.string("event")?;
            check_event_name(&event).map_err(|e| ApiError::field("event", e.to_string()))?;
            let args = fields.values("args")?.into_iter().map(json::from_json).collect();
            let mut target = select(api, &fields)?;
            if fields.flag("volatile")? {
                target = target.volatile();
            }
            target = target.compress(fields.flag("compress")?);
            let timeout = fields.number("timeout", 1..=ACK_TIMEOUT_MS.1)?;
            if fields.flag("ack")? {
                let timeout = Duration::from_millis(timeout.unwrap_or(ACK_TIMEOUT_MS.0));
                return emit_with_ack(target.timeout(timeout), &event, args).await;
            }
            if timeout.is_some() {
                return Err(ApiError::field("timeout", "only with \"ack\": true"));
            }
            target.emit(&event, args).await.map_err(|e| match e {
                BroadcastError::RoomName(e) => ApiError::field("rooms", e.to_string()),
                other => unavailable(other.to_string()),
            })?;
        }
        "/v1/sockets/join" | "/v1/sockets/leave" => {
            let joining = path.ends_with("join");
            let field = if joining { "join" } else { "leave" };
            fields.only(&known(&[field]))?;
            let rooms: Vec<Room> = fields.strings(field)?.into_iter().map(Room::from).collect();
            if rooms.is_empty() {
                return Err(ApiError::field(field, "required: a list of room names"));
            }
            let target = select(api, &fields)?;
            let done =
                if joining { target.sockets_join(rooms).await } else { target.sockets_leave(rooms).await };
            done.map_err(|e| match e {
                RoomsError::RoomName(e) => ApiError::field(field, e.to_string()),
                other => unavailable(other.to_string()),
            })?;
        }
        "/v1/sockets/disconnect" => {
            fields.only(&known(&["close"]))?;
            let target = select(api, &fields)?;
            target.disconnect_sockets(fields.flag("close")?).await.map_err(cluster_error)?;
        }
        "/v1/sockets/fetch" => {
            fields.only(&SELECTION)?;
            let sockets = select(api, &fields)?.fetch_sockets().await.map_err(cluster_error)?;
            let sockets: Vec<serde_json::Value> = sockets
                .iter()
                .map(|socket| {
                    let info = socket.info();
                    let id = info.id.as_str();
                    let rooms: Vec<&str> =
                        info.rooms.iter().map(Room::as_str).filter(|room| *room != id).collect();
                    serde_json::json!({
                        "id": id,
                        "node": node_of(id),
                        "namespace": info.nsp,
                        "rooms": rooms,
                        "data": info.data,
                    })
                })
                .collect();
            return Ok(serde_json::json!({ "sockets": sockets }));
        }
        "/v1/rooms" => {
            fields.only(&["namespace", "rooms"])?;
            let rooms = fields.strings("rooms")?;
            if rooms.is_empty() {
                return Err(ApiError::field("rooms", "required: the rooms to count"));
            }
            let sockets = select(api, &fields)?.fetch_sockets().await.map_err(cluster_error)?;
            let counts: Vec<serde_json::Value> = rooms
                .iter()
                .map(|room| {
                    let count =
                        sockets.iter().filter(|s| s.info().rooms.iter().any(|r| r.as_str() == room)).count();
                    serde_json::json!({ "name": room, "sockets": count })
                })
                .collect();
            return Ok(serde_json::json!({ "rooms": counts }));
        }
        "/v1/nodes" => {
            fields.only(&[])?;
            let (nodes, missing) =
                crate::gateway::nodes::list(&api.io, &api.namespaces).await.map_err(unavailable)?;
            return Ok(serde_json::json!({ "nodes": nodes, "missing": missing }));
        }
        _ => return Err(ApiError::field("", "no such endpoint")),
    }
    Ok(serde_json::json!({ "ok": true }))
}

/// Emits with acks and collects the answers until every socket answered or the timeout: what came
/// is answered even when some did not (`missing` counts them).
async fn emit_with_ack(
    target: BroadcastOperator,
    event: &str,
    args: Vec<Value>,
) -> Result<serde_json::Value, ApiError> {
    let (responses, missing) = match target.emit_with_ack(event, args).await {
        Ok(responses) => (responses, 0),
        Err(BroadcastAckError::AckTimeout { responses, missing }) => (responses, missing),
        Err(BroadcastAckError::RoomName(e)) => return Err(ApiError::field("rooms", e.to_string())),
        Err(other) => return Err(unavailable(other.to_string())),
    };
    let responses: Vec<serde_json::Value> = responses
        .iter()
        .map(|r| {
            let id = r.socket.as_str();
            serde_json::json!({
                "socket": id,
                "node": node_of(id),
                "args": r.args.iter().map(json::to_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(serde_json::json!({ "responses": responses, "missing": missing }))
}

/// The sockets the request's selection fields choose.
fn select(api: &Api, fields: &Fields) -> Result<BroadcastOperator, ApiError> {
    let namespace = fields.optional_string("namespace")?.unwrap_or_else(|| "/".to_owned());
    // `of` would create a namespace: only the gateway's are looked up.
    if !api.namespaces.contains(&namespace) {
        return Err(ApiError::field(
            "namespace",
            format!("{namespace:?} is not a namespace of this gateway"),
        ));
    }
    let mut target = api.io.of(&namespace).broadcast();
    for room in fields.strings("rooms")? {
        target = target.to(room);
    }
    for room in fields.strings("except")? {
        target = target.except(room);
    }
    if let Some(socket) = fields.optional_string("socket")? {
        target = target.to(socket);
    }
    Ok(target)
}

/// The node a socket id names (its prefix).
fn node_of(id: &str) -> Option<&str> {
    id.split_once(NODE_SEPARATOR).map(|(node, _)| node)
}

fn cluster_error(error: ClusterRequestError) -> ApiError {
    match error {
        ClusterRequestError::RoomName(e) => ApiError::field("rooms", e.to_string()),
        other => unavailable(other.to_string()),
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", field: None, message }
}
