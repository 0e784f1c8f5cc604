//! Socket.IO namespace connections against a real server: auth and the socket id in the CONNECT
//! answer, unknown namespaces, connect middleware (refusal, order), dynamic namespaces and the
//! removal of emptied children, the limits on namespace names and namespaces per client, and a
//! server that keeps working after its `SocketIo` handle was dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config;
use common::sio::{Client, expect_no_value, io, json, recv, serve, serve_io, wait_until};
use common::{STEP, within};
use serde_json::json;
use switchboard::EngineConfig;
use switchboard::socketio::{ConnectError, Event, SocketIo, SocketIoConfig, SocketRef, Value};
use switchboard_adapter::cluster::{ClusterConfig, Route};
use switchboard_testkit::Bus;
use tokio::sync::mpsc;

/// The test engine config with node id `id` (a cluster node's sids must start with its id).
fn config_for(id: &str) -> EngineConfig {
    config().with_node_id(id)
}

/// Echo handlers used by several tests: `echo` → `echo-back`, `ack-me` acked with its args.
fn echo_handlers(socket: &SocketRef) {
    socket.on("echo", |socket: SocketRef, event: Event| async move {
        let _ = socket.emit("echo-back", event.args);
    });
    socket.on("ack-me", |_socket: SocketRef, mut event: Event| async move {
        let args = std::mem::take(&mut event.args);
        event.ack(args);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_auth_on_both_transports() {
    let io = io(config());
    let (tx, mut rx) = mpsc::unbounded_channel();
    io.main_namespace().on_connection(move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            let auth = socket.handshake().auth.clone();
            let _ = tx.send((socket.id().to_string(), socket.session().sid().to_string(), auth.clone()));
            let _ = socket.emit("auth", vec![json(serde_json::Value::Object(auth))]);
        }
    });
    let server = serve_io(&io).await;

    for polling in [false, true] {
        let mut c = if polling { Client::polling(&server).await } else { Client::ws(&server).await };
        let auth = json!({"token": "abc", "n": 1, "nested": {"ok": true}});
        let sid = c.connect("/", Some(auth.clone())).await.expect("connect");
        assert_ne!(sid, c.eio_sid, "socket id must differ from the Engine.IO sid (polling: {polling})");
        assert!(!sid.is_empty());
        let (id, eio_sid, seen) = recv(&mut rx, "connection").await;
        assert_eq!((id.as_str(), eio_sid.as_str()), (sid.as_str(), c.eio_sid.as_str()));
        assert_eq!(serde_json::Value::Object(seen), auth);
        let (args, id) = c.expect_event("auth").await;
        assert_eq!((args, id), (vec![json(auth)], None));
    }

    // No auth: the handler sees `{}`.
    let mut c = Client::ws(&server).await;
    let sid = c.connect("/", None).await.expect("connect");
    let (id, _, seen) = recv(&mut rx, "connection").await;
    assert_eq!(id, sid);
    assert!(seen.is_empty(), "auth without data: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_answer_is_exactly_the_sid_object() {
    let io = io(config());
    let server = serve_io(&io).await;
    let mut c = Client::ws(&server).await;
    c.send_text("0").await;
    let text = c.next_text().await;
    let data: serde_json::Value =
        serde_json::from_str(text.strip_prefix('0').unwrap_or_else(|| panic!("CONNECT expected: {text}")))
            .expect("JSON");
    let obj = data.as_object().expect("object");
    assert_eq!(obj.len(), 1, "CONNECT data: {data}");
    let sid = obj["sid"].as_str().expect("sid");
    assert_ne!(sid, c.eio_sid);
    assert_eq!(io.main_namespace().sockets().iter().map(|s| s.id().to_string()).collect::<Vec<_>>(), [sid]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_namespace_is_refused_and_the_session_stays_usable() {
    let io = io(config());
    io.main_namespace().on_connection(|socket: SocketRef| async move { echo_handlers(&socket) });
    let server = serve_io(&io).await;
    let mut c = Client::ws(&server).await;

    c.send_text("0/nope,").await;
    assert_eq!(c.next_text().await, r#"4/nope,{"message":"Invalid namespace"}"#);
    assert!(!io.namespace_names().contains(&"/nope".to_owned()), "{:?}", io.namespace_names());

    c.connect("/", None).await.expect("connect to / after the refusal");
    c.emit("echo", vec![json(json!("still here"))]).await;
    let (args, _) = c.expect_event("echo-back").await;
    assert_eq!(args, vec![json(json!("still here"))]);
    assert_eq!(server.engine.session_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_refusal_sends_connect_error_with_message_and_data() {
    let io = io(config());
    io.main_namespace().on_connection(|socket: SocketRef| async move { echo_handlers(&socket) });
    let private = io.of("/private");
    private.use_middleware(|_socket: SocketRef| async move {
        Err(ConnectError::new("not authorized").with_data(json!({"code": 401, "retry": false})))
    });
    let (tx, mut connected) = mpsc::unbounded_channel::<String>();
    private.on_connection(move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(socket.id().to_string());
        }
    });
    // Without data: only `message`.
    io.of("/plain").use_middleware(|_socket: SocketRef| async move { Err(ConnectError::new("nope")) });
    let server = serve_io(&io).await;
    let mut c = Client::ws(&server).await;

    let err = c.connect("/private", Some(json!({"token": "bad"}))).await.expect_err("refused");
    assert_eq!(err, json!({"message": "not authorized", "data": {"code": 401, "retry": false}}));
    let err = c.connect("/plain", None).await.expect_err("refused");
    assert_eq!(err, json!({"message": "nope"}));
    assert_eq!(private.socket_count(), 0);
    assert_eq!(private.adapter().local().len(), 0);

    // The session is still usable.
    c.connect("/", None).await.expect("connect to /");
    c.emit("echo", vec![json(json!(1))]).await;
    c.expect_event("echo-back").await;
    expect_no_value(&mut connected, Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middlewares_run_in_order_and_stop_at_the_first_refusal() {
    let io = io(config());
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let ns = io.of("/mw");
    let l = log.clone();
    ns.use_middleware(move |socket: SocketRef| {
        let log = l.clone();
        async move {
            // Waits, so a second middleware running concurrently would log first.
            tokio::time::sleep(Duration::from_millis(30)).await;
            let user = socket.handshake().auth.get("user").and_then(|u| u.as_str()).unwrap_or("?").to_owned();
            log.lock().unwrap().push(format!("m1:{user}"));
            if socket.handshake().auth.contains_key("deny") {
                return Err(ConnectError::new("denied by m1"));
            }
            socket.set_data(&json!({"checked_by": "m1"})).unwrap();
            Ok(())
        }
    });
    let l = log.clone();
    ns.use_middleware(move |socket: SocketRef| {
        let log = l.clone();
        async move {
            let data: serde_json::Value = socket.data().unwrap_or_default();
            log.lock().unwrap().push(format!("m2:{}", data["checked_by"].as_str().unwrap_or("-")));
            Ok(())
        }
    });
    let l = log.clone();
    ns.on_connection(move |_socket: SocketRef| {
        let log = l.clone();
        async move { log.lock().unwrap().push("connection".to_owned()) }
    });
    let server = serve_io(&io).await;
    let mut c = Client::ws(&server).await;

    c.connect("/mw", Some(json!({"user": "a"}))).await.expect("accepted");
    wait_until("connection handler ran", STEP, || log.lock().unwrap().len() == 3).await;
    let mut b = Client::ws(&server).await;
    let err = b.connect("/mw", Some(json!({"user": "b", "deny": true}))).await.expect_err("refused");
    assert_eq!(err, json!({"message": "denied by m1"}));
    // A third join after the refusal: its entries come after whatever the refusal logged.
    let mut d = Client::ws(&server).await;
    d.connect("/mw", Some(json!({"user": "c"}))).await.expect("accepted");
    wait_until("connection handler ran", STEP, || log.lock().unwrap().len() == 7).await;
    assert_eq!(
        *log.lock().unwrap(),
        ["m1:a", "m2:m1", "connection", "m1:b", "m1:c", "m2:m1", "connection"],
        "m2 and the connection handler must not run for a refused socket"
    );
    assert_eq!(ns.socket_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_namespaces_are_created_on_demand() {
    let io = io(config());
    let dynamic = io.of_dynamic(|name| name.starts_with("/room-"));
    let (tx, mut seen) = mpsc::unbounded_channel::<String>();
    dynamic.use_middleware(move |socket: SocketRef| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(socket.namespace().name().to_owned());
            Ok(())
        }
    });
    dynamic.on_connection(|socket: SocketRef| async move {
        let name = socket.namespace().name().to_owned();
        let _ = socket.emit("welcome", vec![Value::from(name)]);
    });
    let server = serve_io(&io).await;
    let mut c = Client::ws(&server).await;

    let sid = c.connect("/room-1", None).await.expect("dynamic namespace");
    assert_eq!(c.next_text().await, r#"2/room-1,["welcome","/room-1"]"#);
    assert_eq!(recv(&mut seen, "middleware").await, "/room-1");
    assert!(io.namespace_names().contains(&"/room-1".to_owned()));

    let err = c.connect("/other", None).await.expect_err("no pattern matches");
    assert_eq!(err, json!({"message": "Invalid namespace"}));
    assert!(!io.namespace_names().contains(&"/other".to_owned()));

    // A second client joins the same child namespace; another child is separate.
    let mut d = Client::ws(&server).await;
    d.connect("/room-1", None).await.expect("same child");
    d.expect_event_on("/room-1", "welcome").await;
    d.connect("/room-2", None).await.expect("another child");
    let (args, _) = d.expect_event_on("/room-2", "welcome").await;
    assert_eq!(args, vec![Value::from("/room-2")]);
    let room1 = io.of("/room-1");
    assert_eq!(room1.socket_count(), 2);
    assert!(room1.socket(&sid.as_str().into()).is_some());
    assert_eq!(io.of("/room-2").socket_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keeps_working_after_the_socketio_handle_is_dropped() {
    let engine = {
        let io = io(config());
        io.main_namespace().on_connection(|socket: SocketRef| async move {
            echo_handlers(&socket);
            socket.on("shout", |socket: SocketRef, event: Event| async move {
                let _ = socket.broadcast().emit("shouted", event.args).await;
            });
        });
        io.of("/admin").on_connection(|socket: SocketRef| async move {
            let _ = socket.emit("hello-admin", vec![]);
        });
        io.engine().clone()
    };
    let server = serve(engine).await;
    let (mut a, _) = within(STEP, "connect a", Client::ws_connected(&server)).await;
    let (mut b, _) = Client::ws_connected(&server).await;

    a.emit_with_ack("ack-me", vec![Value::from(5)], 1).await;
    assert_eq!(a.next_text().await, "31[5]");
    a.emit("shout", vec![Value::from("hi")]).await;
    let (args, _) = b.expect_event("shouted").await;
    assert_eq!(args, vec![Value::from("hi")]);
    b.connect("/admin", None).await.expect("connect /admin");
    b.expect_event_on("/admin", "hello-admin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_closes_only_sessions_that_never_joined() {
    // socket.io clears connectTimeout on the first successful join (client.ts `doConnect`), so a
    // client that joined and then left every namespace is not closed by it.
    let timeout = Duration::from_millis(300);
    let io = SocketIo::new(config(), SocketIoConfig::default().with_connect_timeout(timeout));
    io.main_namespace().on_connection(|socket: SocketRef| async move { echo_handlers(&socket) });
    let server = serve_io(&io).await;
    let mut never = Client::ws(&server).await;
    let mut left = Client::ws(&server).await;
    let opened = std::time::Instant::now();
    left.connect("/", None).await.expect("connect");
    left.disconnect_nsp("/").await;
    wait_until("the socket left", STEP, || io.main_namespace().socket_count() == 0).await;

    never.expect_closed(STEP).await;
    tokio::time::sleep((opened + timeout * 2).saturating_duration_since(std::time::Instant::now())).await;
    assert!(
        server.engine.session(&left.eio_sid).is_some(),
        "a session that joined a namespace must survive connectTimeout"
    );
    left.connect("/", None).await.expect("join again");
    left.emit("echo", vec![Value::from(1)]).await;
    left.expect_event("echo-back").await;
}

/// The metrics text of `io`'s registry.
fn metrics(io: &SocketIo) -> String {
    String::from_utf8(switchboard::metrics::render(io.engine().registry())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_child_namespaces_go_with_their_adapter_subscription_and_metric_series() {
    let bus = Bus::new();
    let (factory, _transport) = bus.node(ClusterConfig::new("a").unwrap()).unwrap();
    let cleanup = Duration::from_millis(50);
    let config =
        SocketIoConfig::default().with_adapter(Arc::new(factory)).with_child_namespace_cleanup(Some(cleanup));
    let io = SocketIo::new(config_for("a"), config);
    let dynamic = io.of_dynamic(|name| name.starts_with("/dyn-"));
    dynamic.use_middleware(|socket: SocketRef| async move {
        match socket.handshake().auth.get("deny") {
            Some(_) => Err(ConnectError::new("denied")),
            None => Ok(()),
        }
    });
    dynamic.on_connection(|socket: SocketRef| async move {
        let _ = socket.emit("welcome", vec![Value::from(socket.namespace().name())]);
    });
    let server = serve_io(&io).await;
    let route = |name: &str| Route::Namespace(name.into());
    let present = |name: &str| io.namespace_names().contains(&name.to_owned());

    let mut c = Client::ws(&server).await;
    c.connect("/dyn-1", None).await.expect("child");
    c.expect_event_on("/dyn-1", "welcome").await;
    let adapter = Arc::downgrade(io.of("/dyn-1").adapter());
    assert_eq!(bus.subscribers(&route("/dyn-1")), 1);
    assert!(metrics(&io).contains(r#"switchboard_sockets{nsp="/dyn-1"} 1"#));

    // A child that empties goes once the delay has passed; one with a socket stays meanwhile.
    c.connect("/dyn-2", None).await.expect("another child");
    c.expect_event_on("/dyn-2", "welcome").await;
    c.disconnect_nsp("/dyn-2").await;
    wait_until("/dyn-2 removed", STEP, || !present("/dyn-2")).await;
    assert!(present("/dyn-1"), "a child with a socket was removed");
    // The adapter goes with the namespace's last handle, just after it left the map.
    wait_until("/dyn-2 unsubscribed", STEP, || bus.subscribers(&route("/dyn-2")) == 0).await;

    c.disconnect_nsp("/dyn-1").await;
    wait_until("/dyn-1 removed", STEP, || !present("/dyn-1")).await;
    wait_until("/dyn-1's adapter dropped", STEP, || adapter.upgrade().is_none()).await;
    // The weak handle fails as soon as the last strong one is gone, before the adapter's drop has
    // unsubscribed (on whichever thread dropped it): waited for, not read at once.
    wait_until("/dyn-1 unsubscribed", STEP, || bus.subscribers(&route("/dyn-1")) == 0).await;
    let text = metrics(&io);
    assert!(!text.contains(r#"nsp="/dyn-1""#) && !text.contains(r#"nsp="/dyn-2""#), "{text}");

    // Names made up by refused clients are created and go too.
    for i in 0..20 {
        let refused = c.connect(&format!("/dyn-refused-{i}"), Some(json!({"deny": true}))).await;
        assert_eq!(refused.unwrap_err(), json!({"message": "denied"}));
    }
    wait_until("refused children removed", STEP, || {
        io.namespace_names().iter().all(|n| !n.starts_with("/dyn-refused-"))
    })
    .await;

    // A removed child comes back as it was on the next CONNECT.
    c.connect("/dyn-1", None).await.expect("the child again");
    let (args, _) = c.expect_event_on("/dyn-1", "welcome").await;
    assert_eq!(args, vec![Value::from("/dyn-1")]);
    assert_eq!(bus.subscribers(&route("/dyn-1")), 1);
    // Namespaces made by `of` are never removed, even empty.
    assert!(present("/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_names_and_namespaces_per_client_are_limited() {
    let limits = SocketIoConfig::default().with_max_name_bytes(16).with_max_namespaces_per_client(3);
    let io = SocketIo::new(config(), limits);
    io.of_dynamic(|_| true);
    let server = serve_io(&io).await;
    let mut c = Client::ws(&server).await;

    // A name past the limit gets CONNECT_ERROR, and no namespace is made for it.
    let long = format!("/{}", "n".repeat(16));
    let err = c.connect(&long, None).await.expect_err("a name too long");
    assert_eq!(err, json!({"message": "Namespace name too long"}));
    assert!(!io.namespace_names().contains(&long));
    c.connect(&long[..16], None).await.expect("a name at the limit");

    // Three namespaces at once, then no more until one is left.
    c.connect("/", None).await.expect("second");
    c.connect("/third", None).await.expect("third");
    let err = c.connect("/fourth", None).await.expect_err("a fourth namespace");
    assert_eq!(err, json!({"message": "Too many namespaces"}));
    c.disconnect_nsp("/third").await;
    c.connect("/fourth", None).await.expect("a fourth after one was left");
    // The refusals did not close the connection.
    c.emit_to("/fourth", "x", vec![], None).await;
    let mut d = Client::ws(&server).await;
    d.connect("/fourth", None).await.expect("another client has its own count");
}
