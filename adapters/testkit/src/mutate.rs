//! Broker fuzzing: what a hostile (or broken) program publishing on the cluster's channels sends.
//! Cluster frames mutated as an attacker would ([`mutate`]: cut short, bit-flipped, huge counts
//! and lengths, other versions and kinds, garbage, a made-up sender), and well-formed messages
//! with values no node sends ([`forged_messages`]), all from a seeded [`Rng`] so a failure
//! replays exactly. [`every_kind`] gives one real frame of each kind to start from when no
//! capture is at hand.

use std::time::Duration;

use bytes::Bytes;
use switchboard_adapter::cluster::{Message, Target, codec};
use switchboard_adapter::{BroadcastFlags, BroadcastOptions, Room, SocketInfo};
use switchboard_protocol::socketio::{Value, encode_event};

/// xorshift64*: a deterministic stream of pseudo-random numbers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream from `seed` (0 is replaced: xorshift needs a bit set).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// A made-up node id: valid-looking, or not one at all (dots, wildcards, far too long).
pub fn forged_id(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => format!("forged-{}", rng.next_u64()),
        1 => format!("a.b{}", rng.next_u64()),
        2 => "x".repeat(5_000),
        _ => format!("> *{}", rng.below(10)),
    }
}

/// One mutation of `frame` (sealed with `key` when the cluster has a secret). The result may,
/// rarely, equal the input: compare before counting it as a forgery.
pub fn mutate(frame: &Bytes, rng: &mut Rng, key: Option<&codec::Key>) -> Bytes {
    let mut v = frame.to_vec();
    match rng.below(9) {
        // Cut short anywhere.
        0 => v.truncate(rng.below(v.len())),
        // Bits flipped.
        1 if !v.is_empty() => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
        }
        // A huge part count, or a huge header length.
        2 if v.len() >= 12 => {
            v[8..12].copy_from_slice(&[u32::MAX, 1 << 20, 0x7fff_ffff][rng.below(3)].to_be_bytes())
        }
        3 if v.len() >= 12 => {
            v[4..8].copy_from_slice(&[u32::MAX, 1 << 30, 0x8000_0000][rng.below(3)].to_be_bytes())
        }
        // Another version, or another kind.
        4 if v.len() >= 4 => v[2] = [0, 2, 9, 255][rng.below(4)],
        5 if v.len() >= 4 => v[3] = rng.byte(),
        // Garbage appended, or garbage alone.
        6 => {
            let n = rng.below(64) + 1;
            v.extend(rng.bytes(n));
        }
        7 => {
            let n = rng.below(256);
            v = rng.bytes(n);
        }
        // The same message from a made-up sender, encoded as a node would (unsealed, or sealed
        // with a key that is not the cluster's).
        8 => {
            let Ok(envelope) = codec::open(frame, key).and_then(|f| codec::decode(&f)) else {
                return Bytes::from(v);
            };
            let wrong = codec::Key::new(b"not the cluster's secret at all");
            let key = if rng.below(2) == 0 { None } else { Some(&wrong) };
            let sender = forged_id(rng);
            if let Ok(frame) = codec::encode_with(&sender, &envelope.nsp, &envelope.message, key) {
                return frame;
            }
        }
        _ => v.reverse(),
    }
    Bytes::from(v)
}

/// Well-formed messages with values no node sends: huge counts and timeouts, room lists and
/// names past every limit (5,000 rooms named anew at each call), addresses that are URLs, parts
/// that do not exist.
pub fn forged_messages(rng: &mut Rng) -> Vec<Message> {
    let n = rng.below(1_000) as u64;
    let whole = |opts| Target { opts, part: Target::WHOLE };
    vec![
        Message::BroadcastClientCount { request_id: n, count: u64::MAX - n },
        Message::BroadcastWithAck {
            request_id: n,
            opts: BroadcastOptions::default(),
            ack_id: n,
            timeout: Duration::from_millis(u64::MAX - n),
            packet: encode_event("/", "e", &[], Some(n)),
        },
        Message::SocketsJoin {
            target: whole(BroadcastOptions::default()),
            rooms: (0..5_000).map(|i| Room::from(format!("r{n}-{i}"))).collect(),
        },
        Message::SocketsJoin {
            target: whole(BroadcastOptions::default()),
            rooms: vec![Room::from("r".repeat(5_000))],
        },
        Message::Address { address: "http://169.254.169.254/latest/meta-data:80".into() },
        Message::Address { address: format!("127.0.0.1:{}/admin?", n + 1) },
        Message::Broadcast {
            target: Target { opts: BroadcastOptions::default(), part: u32::MAX - 1 },
            packet: encode_event("/", "e", &[], None),
        },
    ]
}

/// One message of every kind, as node `sender` encodes them for namespace `/` (sealed with
/// `key` if given): a start for [`mutate`] when no real capture is at hand.
pub fn every_kind(sender: &str, key: Option<&codec::Key>) -> Vec<Bytes> {
    let opts = BroadcastOptions {
        rooms: vec!["room".into(), format!("{sender}.{}", "A".repeat(22)).into()],
        except: vec!["except".into()],
        flags: BroadcastFlags { local: false, volatile: true, compress: true },
    };
    let target = Target { opts: opts.clone(), part: 0 };
    let args = vec![Value::from("text"), Value::Binary(Bytes::from_static(b"\x00\x01"))];
    let info = SocketInfo {
        id: format!("{sender}.{}", "B".repeat(22)).into(),
        nsp: "/".into(),
        rooms: vec!["room".into()],
        handshake: serde_json::json!({ "query": { "EIO": "4" } }),
        data: serde_json::json!({ "user": 1 }),
    };
    let messages = vec![
        Message::Heartbeat,
        Message::InitialHeartbeat,
        Message::Address { address: "10.0.0.7:3000".into() },
        Message::Closing,
        Message::Broadcast { target: target.clone(), packet: encode_event("/", "e", &args, None) },
        Message::BroadcastWithAck {
            request_id: 1,
            opts: opts.clone(),
            ack_id: 2,
            timeout: Duration::from_millis(500),
            packet: encode_event("/", "e", &args, Some(2)),
        },
        Message::BroadcastClientCount { request_id: 1, count: 3 },
        Message::BroadcastAck { request_id: 1, socket: info.id.clone(), args: args.clone() },
        Message::SocketsJoin { target: target.clone(), rooms: vec!["joined".into()] },
        Message::SocketsLeave { target: target.clone(), rooms: vec!["joined".into()] },
        Message::DisconnectSockets { target, close: false },
        Message::FetchSockets { request_id: 4, opts },
        Message::FetchSocketsResponse { request_id: 4, sockets: vec![info] },
        Message::ServerSideEmit { request_id: Some(5), event: "hello".into(), args: args.clone() },
        Message::ServerSideEmitResponse { request_id: 5, args },
    ];
    messages.iter().filter_map(|m| codec::encode_with(sender, "/", m, key).ok()).collect()
}
