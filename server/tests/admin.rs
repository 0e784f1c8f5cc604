//! The admin UI's namespace as `@socket.io/admin-ui` uses it, over a real connection: the login
//! (refused, accepted, then by session id), read-only mode, and the cluster-wide view: a UI on
//! node a gets node b's sockets, stats, socket and room notices, and its commands reach node b's
//! sockets. The nodes are joined by the cluster adapter over the in-process bus (the same adapter
//! runs over Redis in the Chromium test, `server/e2e/test/admin.test.js`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::STEP;
use common::sio::{Client, json, serve_io};
use serde_json::{Value as Json, json};
use switchboard::EngineConfig;
use switchboard::admin::{Admin, AdminAuth, AdminConfig};
use switchboard::socketio::{SocketIo, SocketIoConfig, SocketRef};
use switchboard_adapter::AdapterFactory;
use switchboard_adapter::MemoryAdapterFactory;
use switchboard_adapter::cluster::{ClusterAdapterFactory, ClusterConfig};
use switchboard_protocol::socketio::Packet;
use switchboard_testkit::Bus;

const NSP: &str = "/admin";
/// bcrypt of `s3cret`, at the lowest cost so the test stays fast.
const HASH: &str = "$2a$04$ssdl9rDuYlOOiPkBlXGwae/9K8jVFRzOiwT2bLwgZAHERWD3EPf.m";

fn basic() -> AdminAuth {
    AdminAuth::Basic { username: "admin".into(), password_hash: HASH.into() }
}

/// A node `id` with the admin UI (`config`) over `factory`, its main namespace joining every socket
/// to `room`; the [`Admin`] must be kept for as long as the node runs.
fn node(id: &str, config: AdminConfig, factory: Arc<dyn AdapterFactory>) -> (SocketIo, Admin) {
    let admin = Admin::new(config.with_stats_interval(Duration::from_millis(100)));
    let sio = SocketIoConfig::default().with_adapter(admin.adapter_factory(factory));
    let io = SocketIo::new(EngineConfig::default().with_node_id(id), sio);
    io.main_namespace().on_connection(|socket: SocketRef| async move {
        socket.join(["room"]);
    });
    admin.install(&io);
    (io, admin)
}

fn clustered(bus: &Bus, id: &str, config: AdminConfig) -> (SocketIo, Admin, ClusterAdapterFactory) {
    let cluster = ClusterConfig::new(id)
        .unwrap()
        .with_heartbeat_interval(Duration::from_millis(100))
        .with_heartbeat_timeout(Duration::from_millis(500));
    let (factory, _transport) = bus.node(cluster).unwrap();
    let (io, admin) = node(id, config, Arc::new(factory.clone()));
    (io, admin, factory)
}

/// The next `event` on the admin namespace, skipping the others (stats and notices interleave);
/// returns its arguments as JSON.
async fn next(client: &mut Client, event: &str) -> Vec<Json> {
    next_where(client, event, |_| true).await
}

/// The next `event` whose arguments pass `wanted`.
async fn next_where(client: &mut Client, event: &str, wanted: impl Fn(&[Json]) -> bool) -> Vec<Json> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no {event} on {NSP} within {STEP:?}");
        if let Packet::Event { nsp, event: name, args, .. } = client.next_packet().await
            && nsp == NSP
            && name == event
        {
            let args: Vec<Json> = args.iter().map(|a| a.to_json().unwrap()).collect();
            if wanted(&args) {
                return args;
            }
        }
    }
}

async fn admin_client(server: &common::TestServer, auth: Json) -> Result<Client, Json> {
    let mut client = Client::ws(server).await;
    client.connect(NSP, Some(auth)).await.map(|_| client)
}

#[tokio::test]
async fn only_the_right_password_or_its_session_opens_the_admin_namespace() {
    let (io, _admin) = node("a", AdminConfig::new(basic()).unwrap(), Arc::new(MemoryAdapterFactory));
    let server = serve_io(&io).await;

    for wrong in [
        json!({"username": "admin", "password": "nope"}),
        json!({"username": "root", "password": "s3cret"}),
        json!({}),
    ] {
        let refused = admin_client(&server, wrong.clone()).await.err();
        assert_eq!(refused, Some(json!({"message": "invalid credentials"})), "{wrong}");
    }

    let mut ui = admin_client(&server, json!({"username": "admin", "password": "s3cret"})).await.unwrap();
    let session = next(&mut ui, "session").await;
    let session = session[0].as_str().unwrap().to_owned();
    let config = next(&mut ui, "config").await;
    let features = config[0]["supportedFeatures"].as_array().unwrap();
    for feature in ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "AGGREGATED_EVENTS", "ALL_EVENTS"] {
        assert!(features.contains(&json!(feature)), "{feature} missing from {features:?}");
    }
    let sockets = next(&mut ui, "all_sockets").await;
    let me = &sockets[0].as_array().unwrap()[0];
    assert_eq!(me["nsp"], NSP);
    assert_eq!(me["transport"], "websocket");
    assert!(me["handshake"].get("auth").is_none(), "the password is shown: {me}");

    // The session id logs in without the password; a made-up one does not.
    assert!(admin_client(&server, json!({"sessionId": session})).await.is_ok());
    assert!(admin_client(&server, json!({"sessionId": "0123456789abcdef"})).await.is_err());
}

#[tokio::test]
async fn read_only_offers_no_commands_and_ignores_them() {
    let config = AdminConfig::new(basic()).unwrap().with_read_only(true);
    let (io, _admin) = node("a", config, Arc::new(MemoryAdapterFactory));
    let server = serve_io(&io).await;
    let (_user, user_id) = Client::ws_connected(&server).await;
    let mut ui = admin_client(&server, json!({"username": "admin", "password": "s3cret"})).await.unwrap();
    let config = next(&mut ui, "config").await;
    assert_eq!(config[0]["supportedFeatures"], json!(["AGGREGATED_EVENTS", "ALL_EVENTS"]));

    ui.emit_to(NSP, "join", vec![json(json!("/")), json(json!("extra")), json(json!(null))], None).await;
    ui.emit_to(NSP, "_disconnect", vec![json(json!("/")), json(json!(true)), json(json!(null))], None).await;
    // The UI's packets are handled in order: once a later connect is announced, the commands
    // before it have been dropped, not merely delayed.
    let (_later, later_id) = Client::ws_connected(&server).await;
    next_where(&mut ui, "socket_connected", |args| args[0]["id"] == later_id.as_str()).await;
    let user = io.main_namespace().socket(&user_id.as_str().into()).expect("the user is still connected");
    assert!(!user.rooms().iter().any(|r| r.as_str() == "extra"), "{:?}", user.rooms());
}

#[tokio::test]
async fn a_ui_on_one_node_sees_and_acts_on_the_other() {
    let bus = Bus::new();
    let none = || AdminConfig::new(AdminAuth::None).unwrap();
    let (a, _admin_a, _fa) = clustered(&bus, "a", none());
    let (b, _admin_b, _fb) = clustered(&bus, "b", none());
    let (server_a, server_b) = (serve_io(&a).await, serve_io(&b).await);
    let (_early, early_id) = Client::ws_connected(&server_b).await;
    bus.settle().await;

    let mut ui = admin_client(&server_a, json!({})).await.unwrap();
    // Node b's socket, with its room, is in the list node a sends.
    let sockets = next(&mut ui, "all_sockets").await;
    let early = sockets[0].as_array().unwrap().iter().find(|s| s["id"] == early_id.as_str()).cloned();
    let early = early.unwrap_or_else(|| panic!("{early_id} missing from {sockets:?}"));
    assert_eq!(early["nsp"], "/");
    assert!(early["rooms"].as_array().unwrap().contains(&json!("room")), "{early}");
    assert_eq!(early["clientId"].as_str().unwrap().len(), 12);

    // Both nodes report their stats.
    let from_b = next_where(&mut ui, "server_stats", |args| args[0]["serverId"] == "b").await;
    assert_eq!(from_b[0]["clientsCount"], 1);
    assert_eq!(from_b[0]["pid"], std::process::id());
    assert!(from_b[0]["namespaces"].as_array().unwrap().contains(&json!({"name": "/", "socketsCount": 1})));
    next_where(&mut ui, "server_stats", |args| args[0]["serverId"] == "a").await;

    // A socket connecting to node b, and the room it joins, are announced on node a.
    let (_late, late_id) = Client::ws_connected(&server_b).await;
    let connected = next(&mut ui, "socket_connected").await;
    assert_eq!(connected[0]["id"], late_id.as_str());
    assert!(connected[1].as_str().unwrap().ends_with('Z'), "a Date: {connected:?}");
    let joined = next_where(&mut ui, "room_joined", |args| args[2] == late_id.as_str()).await;
    assert_eq!(&joined[..3], &[json!("/"), json!("room"), json!(late_id)]);

    // The UI's join reaches node b's sockets of "room"; node b announces each join.
    ui.emit_to(NSP, "join", vec![json(json!("/")), json(json!("extra")), json(json!("room"))], None).await;
    let mut joined_extra = Vec::new();
    while joined_extra.len() < 2 {
        let args = next_where(&mut ui, "room_joined", |args| args[1] == "extra").await;
        joined_extra.push(args[2].as_str().unwrap().to_owned());
    }
    joined_extra.sort();
    let mut both = vec![early_id.clone(), late_id.clone()];
    both.sort();
    assert_eq!(joined_extra, both);
    let b_socket = b.main_namespace().socket(&late_id.as_str().into()).unwrap();
    assert!(b_socket.rooms().iter().any(|r| r.as_str() == "extra"));

    // And its _disconnect.
    ui.emit_to(NSP, "_disconnect", vec![json(json!("/")), json(json!(false)), json(json!(late_id))], None)
        .await;
    let gone = next(&mut ui, "socket_disconnected").await;
    assert_eq!(&gone[..3], &[json!("/"), json!(late_id), json!("server namespace disconnect")]);
}
