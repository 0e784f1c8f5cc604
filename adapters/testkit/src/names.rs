//! Awkward names for the tests of a transport's route naming (Redis channels, NATS subjects):
//! separators, wildcards, escape characters, keywords, whitespace, non-ASCII, the empty name.

use switchboard_adapter::Room;
use switchboard_adapter::cluster::Route;

/// Room names that break naive escaping.
pub const ODD_NAMES: &[&str] = &[
    "",
    "lobby",
    "a.b",
    "a b",
    "tab\there",
    "*",
    ">",
    "a.*.>",
    "#",
    "%",
    "%23",
    "room#1",
    "_",
    "__",
    "_2F",
    "é",
    "日本語",
    "🎉",
    "/",
    "node",
    "node#x",
    "a\nb",
];

/// Every route kind with odd names: namespaces (Socket.IO ones and others), each with a room of
/// every odd name, and a few nodes. Distinct routes must get distinct names that parse back.
pub fn odd_routes() -> Vec<Route> {
    let mut out = Vec::new();
    for nsp in ["/", "/chat", "/a.b", "/#x", "/%", "/é", "node", "", "x#y"] {
        out.push(Route::Namespace(nsp.into()));
        for room in ODD_NAMES {
            out.push(Route::Room(nsp.into(), Room::from(*room)));
        }
    }
    for node in ["n1", "A-z_0", "node"] {
        out.push(Route::Node(node.into()));
    }
    out
}
