//! The cluster's nodes as the API's `/v1/nodes` lists them: each gateway node answers a
//! server-side event on the main namespace with its id and how many sockets it holds in the
//! gateway's namespaces; the node the request reached adds its own and reports who did not answer.

use std::time::Duration;

use switchboard_adapter::{AdapterError, PartialReplies};

use crate::socketio::{SocketIo, Value};

/// The server-side event the nodes answer.
const EVENT: &str = "gateway:node";
/// How long the other nodes have to answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Makes this node answer the other nodes' `/v1/nodes`.
pub fn answer(io: &SocketIo, namespaces: Vec<String>) {
    let me = io.clone();
    io.main_namespace().on_server_side(EVENT, move |event| {
        if let Some(ack) = event.ack {
            ack.send(vec![Value::from(describe(&me, &namespaces))]);
        }
    });
}

/// This node: `{id, sockets}`.
pub fn describe(io: &SocketIo, namespaces: &[String]) -> serde_json::Value {
    let sockets: usize = namespaces.iter().map(|name| io.of(name).socket_count()).sum();
    serde_json::json!({ "id": io.engine().config().node_id(), "sockets": sockets })
}

/// Every node that answered within [`TIMEOUT`], this one first, and how many did not answer;
/// `Err` with the reason when the cluster could not be asked at all.
pub async fn list(io: &SocketIo, namespaces: &[String]) -> Result<(Vec<serde_json::Value>, usize), String> {
    let mut nodes = vec![describe(io, namespaces)];
    let (answers, missing) =
        match io.main_namespace().server_side_emit_with_ack(EVENT, Vec::new(), TIMEOUT).await {
            Ok(answers) => (answers, 0),
            Err(crate::socketio::ServerSideEmitError::Adapter(AdapterError::Timeout {
                missing,
                partial,
            })) => match partial {
                PartialReplies::Answers(answers) => (answers, missing),
                _ => (Vec::new(), missing),
            },
            Err(e) => return Err(e.to_string()),
        };
    nodes.extend(answers.iter().filter_map(|args| args.first().and_then(Value::to_json)));
    Ok((nodes, missing))
}
