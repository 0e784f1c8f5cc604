//! The few packets the scenarios send and read, encoded once with the protocol crate's codec; per message
//! only the ack id (and a timestamp) is written, and incoming packets are recognised by their header
//! alone, without parsing the JSON.

use switchboard_protocol::socketio::{self, Value};

/// Width of the hexadecimal send timestamp at the start of a fanout payload.
pub const STAMP_LEN: usize = 16;

/// An event with an ack id, pre-encoded; [`EventTemplate::write`] adds the Engine.IO `4`, the id and the
/// stamp, if the template has one.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    /// The Socket.IO text without an id: `2["name",…]`.
    text: Vec<u8>,
    /// Where the [`STAMP_LEN`] placeholder digits start in `text`, if any.
    stamp_at: Option<usize>,
}

impl EventTemplate {
    /// `event(...args, ack)`, with no stamp.
    pub fn new(event: &str, args: &[Value]) -> Self {
        Self {
            text: socketio::encode_event(socketio::DEFAULT_NAMESPACE, event, args, None).text.to_vec(),
            stamp_at: None,
        }
    }

    /// `event(args, ack)` where one string of `args` starts with [`STAMP_PLACEHOLDER`], replaced by the
    /// send time on every write.
    pub fn stamped(event: &str, args: &[Value]) -> Self {
        let mut template = Self::new(event, args);
        template.stamp_at = find(&template.text, STAMP_PLACEHOLDER.as_bytes());
        template
    }

    /// Appends `4` + `2<id>[…]`, with `stamp` in place of the placeholder.
    pub fn write(&self, buf: &mut Vec<u8>, id: u64, stamp: u64) {
        let Some((kind, rest)) = self.text.split_first() else { return };
        buf.push(b'4');
        buf.push(*kind);
        put_decimal(buf, id);
        let base = buf.len();
        buf.extend_from_slice(rest);
        if let Some(at) = self.stamp_at {
            // `at` counts the type byte, which sits before `base`.
            let start = base + at - 1;
            put_hex(&mut buf[start..start + STAMP_LEN], stamp);
        }
    }

    /// Length of the ack text the server answers with when it echoes the same arguments: `3<id>[…]`.
    pub fn echo_ack_len(&self, id: u64) -> usize {
        // `2["event",` + args + `]` becomes `3<id>[` + args + `]`; `2["event"]` becomes `3<id>[]`.
        let args_and_close =
            self.text.iter().position(|&b| b == b',').map_or(1, |comma| self.text.len() - comma - 1);
        2 + decimal_len(id) + args_and_close
    }
}

/// The 16 characters a stamped payload starts with in the template.
pub const STAMP_PLACEHOLDER: &str = "0000000000000000";

/// A string of exactly `len` bytes: the stamp placeholder (if `stamped`), then `x` up to the length.
pub fn payload(len: usize, stamped: bool) -> String {
    let mut s = String::with_capacity(len.max(STAMP_LEN));
    if stamped {
        s.push_str(STAMP_PLACEHOLDER);
    }
    while s.len() < len {
        s.push('x');
    }
    s
}

/// The id of an ACK packet (`3<id>[…]` on `/`), if `text` is one.
pub fn ack_id(text: &[u8]) -> Option<u64> {
    let rest = text.strip_prefix(b"3")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || rest.get(digits) != Some(&b'[') {
        return None;
    }
    rest[..digits].iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// The prefix of an event `name` whose first argument is a string, up to its opening quote: `2["name","`.
pub fn event_string_prefix(name: &str) -> Vec<u8> {
    let text = socketio::encode_event(socketio::DEFAULT_NAMESPACE, name, &[Value::from("")], None).text;
    // Drop the closing `"]` of the empty string argument.
    text[..text.len() - 2].to_vec()
}

/// The send stamp of a delivery: `prefix` then [`STAMP_LEN`] hex digits.
pub fn delivery_stamp(text: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = text.strip_prefix(prefix)?.get(..STAMP_LEN)?;
    digits.iter().try_fold(0u64, |n, &d| Some(n << 4 | u64::from((d as char).to_digit(16)?)))
}

/// The text of `name(arg, ack)` with ack id `id`, for one-off calls like `join`.
pub fn call(name: &str, args: &[Value], id: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    EventTemplate::new(name, args).write(&mut buf, id, 0);
    buf
}

fn put_decimal(buf: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

fn put_hex(out: &mut [u8], n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((n >> (4 * (STAMP_LEN - 1 - i))) & 0xf) as usize];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_template_writes_ids_and_predicts_the_ack() {
        let template = EventTemplate::new("echo", &[Value::from(payload(5, false))]);
        let mut buf = Vec::new();
        template.write(&mut buf, 1234, 0);
        assert_eq!(buf, br#"421234["echo","xxxxx"]"#);
        let ack = br#"31234["xxxxx"]"#;
        assert_eq!(template.echo_ack_len(1234), ack.len());
        assert_eq!(ack_id(ack), Some(1234));
        assert_eq!(template.echo_ack_len(0), br#"30["xxxxx"]"#.len());
        assert_eq!(EventTemplate::new("echo", &[]).echo_ack_len(12), b"312[]".len());
    }

    #[test]
    fn stamped_template_round_trips_through_a_delivery() {
        let spec = Value::Object(vec![
            ("room".into(), "r".into()),
            ("event".into(), "msg".into()),
            ("data".into(), payload(20, true).into()),
        ]);
        let template = EventTemplate::stamped("broadcast", &[spec]);
        let mut buf = Vec::new();
        template.write(&mut buf, 7, 0x0123_4567_89ab_cdef);
        let text = String::from_utf8_lossy(&buf).into_owned();
        assert_eq!(text, r#"427["broadcast",{"room":"r","event":"msg","data":"0123456789abcdefxxxx"}]"#);

        let prefix = event_string_prefix("msg");
        assert_eq!(prefix, br#"2["msg",""#);
        let delivery = br#"2["msg","0123456789abcdefxxxx"]"#;
        assert_eq!(delivery_stamp(delivery, &prefix), Some(0x0123_4567_89ab_cdef));
        assert_eq!(delivery_stamp(br#"2["other","0123456789abcdef"]"#, &prefix), None);
        assert_eq!(delivery_stamp(br#"2["msg","0123"]"#, &prefix), None);
    }

    #[test]
    fn ack_ids() {
        assert_eq!(ack_id(b"30[]"), Some(0));
        assert_eq!(ack_id(b"318446744073709551615[]"), Some(u64::MAX));
        assert_eq!(ack_id(b"318446744073709551616[]"), None);
        assert_eq!(ack_id(b"3[]"), None);
        assert_eq!(ack_id(b"3/admin,1[]"), None);
        assert_eq!(ack_id(br#"2["x"]"#), None);
        assert_eq!(call("join", &[Value::from("room")], 0), br#"420["join","room"]"#);
    }
}
