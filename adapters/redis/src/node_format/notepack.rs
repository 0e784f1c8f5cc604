//! msgpack as `notepack.io` 3 writes and reads it (the codec of `@socket.io/redis-adapter` 8 and
//! `@socket.io/redis-emitter` 5), to and from the Socket.IO [`Value`] the rest of the server uses.
//! Bytes in, values out: no I/O. [`message`](super::message) builds the Node messages on top.
//!
//! Encoding follows notepack byte for byte (docs/design/node-redis-adapter-wire-format.md §4):
//! unsigned forms for non-negative integers (uint64 from 2^32 up), signed for negative ones,
//! float64 for every other number, `bin` for binary, the shortest string/array/map header.
//!
//! Decoding takes every form a Node peer may send, the legacy notepack 2 ones included, and is
//! bounded: a message from the broker cannot nest deeper than [`MAX_DEPTH`] nor hold more than
//! [`MAX_VALUES`] values (each becomes a [`Value`] of tens of bytes, so a message of one-byte
//! values would otherwise cost forty times its size), and no length it announces is trusted: a
//! container reserves room for at most [`PREALLOCATE`] elements before they are read.

use bytes::Bytes;
use serde_json::Number;
use switchboard_protocol::socketio::Value;

/// Deepest nesting of arrays and maps accepted from a peer (Node's own `JSON` has no limit, but a
/// recursive decoder needs one to keep its stack).
pub const MAX_DEPTH: usize = 32;

/// Most values (scalars and containers together) one message may hold: 2^18, a few tens of MiB
/// decoded at worst, far above any broadcast or request a Node peer sends.
pub const MAX_VALUES: usize = 1 << 18;

/// Most elements an array or map reserves room for before they are read.
const PREALLOCATE: usize = 64;

/// Why bytes are not a notepack value; small, so a flood of garbage costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotepackError {
    /// The bytes end inside a value.
    #[error("truncated msgpack")]
    Truncated,
    /// A marker notepack never writes nor reads (`c1`).
    #[error("invalid msgpack marker {0:#04x}")]
    Marker(u8),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("msgpack nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A string that is not UTF-8.
    #[error("msgpack string is not UTF-8")]
    Utf8,
    /// Bytes left after the value (notepack throws on them too).
    #[error("trailing bytes after the msgpack value")]
    Trailing,
    /// More than [`MAX_VALUES`] values.
    #[error("msgpack message holds more than {MAX_VALUES} values")]
    TooManyValues,
}

/// Encodes `value` as notepack does.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write(&mut out, value);
    out
}

/// Appends `value` to `out` as notepack does.
pub fn write(out: &mut Vec<u8>, value: &Value) {
    // Writing into a Vec cannot fail, and lengths over 4 GiB cannot come from a message we
    // bound far below that: the results are ignored on purpose.
    match value {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => {
            let _ = rmp::encode::write_str(out, s);
        }
        Value::Binary(b) => {
            let _ = rmp::encode::write_bin(out, b);
        }
        Value::Array(items) => {
            let _ = rmp::encode::write_array_len(out, len32(items.len()));
            for item in items {
                write(out, item);
            }
        }
        Value::Object(entries) => {
            let _ = rmp::encode::write_map_len(out, len32(entries.len()));
            for (key, item) in entries {
                let _ = rmp::encode::write_str(out, key);
                write(out, item);
            }
        }
    }
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A JS number as notepack writes it: integers (`Math.floor(v) === v`) in the smallest unsigned
/// or signed form, everything else as float64.
fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        let _ = rmp::encode::write_uint(out, u);
    } else if let Some(i) = n.as_i64() {
        let _ = rmp::encode::write_sint(out, i);
    } else {
        let f = n.as_f64().unwrap_or(0.0);
        if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
            // An integral double (e.g. 2.0 parsed from JSON) is an integer to JS.
            if f >= 0.0 {
                let _ = rmp::encode::write_uint(out, f as u64);
            } else {
                let _ = rmp::encode::write_sint(out, f as i64);
            }
        } else {
            let _ = rmp::encode::write_f64(out, f);
        }
    }
}

/// Decodes one value that must fill `bytes` exactly. Binary values share `bytes`' buffer.
pub fn decode(bytes: &Bytes) -> Result<Value, NotepackError> {
    let mut reader = Reader { bytes, pos: 0, values: 0 };
    let value = reader.value(0)?;
    if reader.pos != bytes.len() {
        return Err(NotepackError::Trailing);
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a Bytes,
    pos: usize,
    /// Values read so far, against [`MAX_VALUES`].
    values: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], NotepackError> {
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(NotepackError::Truncated)?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, NotepackError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, NotepackError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A length announced by the peer, refused when fewer bytes than that remain (every element
    /// takes at least one), so it never sizes an allocation beyond the message.
    fn len(&mut self, n: usize) -> Result<usize, NotepackError> {
        let len = usize::try_from(self.be(n)?).map_err(|_| NotepackError::Truncated)?;
        self.fits(len)
    }

    fn fits(&self, len: usize) -> Result<usize, NotepackError> {
        match len <= self.bytes.len() - self.pos {
            true => Ok(len),
            false => Err(NotepackError::Truncated),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, NotepackError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(NotepackError::TooManyValues);
        }
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Value::Number(u64::from(marker).into()),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => self.string(usize::from(marker & 0x1f))?,
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let len = self.len(1 << (marker - 0xc4))?;
                self.binary(len)
            }
            0xc7..=0xc9 => {
                let len = self.len(1 << (marker - 0xc7))?;
                self.ext(len)?
            }
            0xca => Value::Number(float(f64::from(f32::from_bits(self.be(4)? as u32)))),
            0xcb => Value::Number(float(f64::from_bits(self.be(8)?))),
            0xcc => Value::Number(self.be(1)?.into()),
            0xcd => Value::Number(self.be(2)?.into()),
            0xce => Value::Number(self.be(4)?.into()),
            0xcf => Value::Number(self.be(8)?.into()),
            0xd0 => Value::Number(i64::from(self.be(1)? as u8 as i8).into()),
            0xd1 => Value::Number(i64::from(self.be(2)? as u16 as i16).into()),
            0xd2 => Value::Number(i64::from(self.be(4)? as u32 as i32).into()),
            0xd3 => Value::Number((self.be(8)? as i64).into()),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let len = self.len(1)?;
                self.string(len)?
            }
            0xda => {
                let len = self.len(2)?;
                self.string(len)?
            }
            0xdb => {
                let len = self.len(4)?;
                self.string(len)?
            }
            0xdc => {
                let len = self.len(2)?;
                self.array(len, depth)?
            }
            0xdd => {
                let len = self.len(4)?;
                self.array(len, depth)?
            }
            0xde => {
                let len = self.len(2)?;
                self.map(len, depth)?
            }
            0xdf => {
                let len = self.len(4)?;
                self.map(len, depth)?
            }
            0xe0..=0xff => Value::Number(i64::from(marker as i8).into()),
            0xc1 => return Err(NotepackError::Marker(marker)),
        })
    }

    fn string(&mut self, len: usize) -> Result<Value, NotepackError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map(|s| Value::String(s.to_owned())).map_err(|_| NotepackError::Utf8)
    }

    fn binary(&mut self, len: usize) -> Value {
        // `len` was checked by `len`: the slice is in bounds.
        let start = self.pos;
        self.pos += len;
        Value::Binary(self.bytes.slice(start..start + len))
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, NotepackError> {
        let depth = nest(depth)?;
        let len = self.fits(len)?;
        let mut items = Vec::with_capacity(len.min(PREALLOCATE));
        for _ in 0..len {
            items.push(self.value(depth)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, NotepackError> {
        let depth = nest(depth)?;
        // A key and a value: at least two bytes each entry.
        let len = self.fits(len.saturating_mul(2))? / 2;
        let mut entries = Vec::with_capacity(len.min(PREALLOCATE));
        for _ in 0..len {
            // notepack reads keys as any value and uses them as JS property names.
            let key = match self.value(depth)? {
                Value::String(s) => s,
                other => property_name(&other),
            };
            entries.push((key, self.value(depth)?));
        }
        Ok(Value::Object(entries))
    }

    /// An extension of `len` data bytes: notepack 2's `undefined` (`d4 00 00`) and ArrayBuffer
    /// (type 0), a timestamp (type -1, a JS `Date`, which reaches clients as its ISO string), or
    /// any other type as notepack gives it: `[type, bytes]`.
    fn ext(&mut self, len: usize) -> Result<Value, NotepackError> {
        let kind = self.byte()? as i8;
        let data = self.take(len)?.to_vec();
        Ok(match (kind, len) {
            (0, 1) if data[0] == 0 => Value::Null,
            (0, _) => Value::Binary(Bytes::from(data)),
            (-1, 4 | 8 | 12) => timestamp(&data).map_or(Value::Null, Value::String),
            _ => Value::Array(vec![Value::Number(i64::from(kind).into()), Value::Binary(Bytes::from(data))]),
        })
    }
}

fn nest(depth: usize) -> Result<usize, NotepackError> {
    match depth < MAX_DEPTH {
        true => Ok(depth + 1),
        false => Err(NotepackError::TooDeep),
    }
}

/// A finite float as a JSON number; NaN and the infinities become `null`, as `JSON.stringify`
/// writes them for a client.
fn float(f: f64) -> Number {
    Number::from_f64(f).unwrap_or_else(|| 0.into())
}

/// A non-string map key as a JS property name (`String(key)`).
fn property_name(key: &Value) -> String {
    match key {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Binary(_) | Value::Array(_) | Value::Object(_) => String::new(),
    }
}

/// A msgpack timestamp (32, 64 or 96 bits) as `Date.prototype.toJSON` writes it
/// (`2026-12-07T07:15:00.000Z`); `None` outside JS's date range.
fn timestamp(data: &[u8]) -> Option<String> {
    let be = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    let (seconds, nanos): (i64, u64) = match data.len() {
        4 => (be(data) as i64, 0),
        8 => {
            let v = be(data);
            ((v & 0x3_ffff_ffff) as i64, v >> 34)
        }
        12 => (be(&data[4..]) as i64, be(&data[..4])),
        _ => return None,
    };
    if !(-8_640_000_000_000..=8_640_000_000_000).contains(&seconds) {
        return None;
    }
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        nanos / 1_000_000
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn n(v: impl Into<Number>) -> Value {
        Value::Number(v.into())
    }

    #[test]
    fn numbers_take_notepacks_forms() {
        let cases: [(Value, &str); 9] = [
            (n(0u64), "00"),
            (n(127u64), "7f"),
            (n(255u64), "cc ff"),
            (n(1u64 << 32), "cf 0000000100000000"),
            (n(-1i64), "ff"),
            (n(-33i64), "d0 df"),
            (n(-2_147_483_649i64), "d3 ffffffff7fffffff"),
            (Value::Number(Number::from_f64(1.5).unwrap()), "cb 3ff8000000000000"),
            (Value::Number(Number::from_f64(2.0).unwrap()), "02"),
        ];
        for (value, bytes) in cases {
            assert_eq!(encode(&value), hex(bytes), "{value:?}");
        }
    }

    #[test]
    fn legacy_and_extension_forms_decode() {
        let d = |s: &str| decode(&Bytes::from(hex(s))).unwrap();
        assert_eq!(d("d4 00 00"), Value::Null, "notepack 2 undefined");
        assert_eq!(
            d("c7 03 00 010203"),
            Value::Binary(Bytes::from_static(&[1, 2, 3])),
            "notepack 2 ArrayBuffer"
        );
        assert_eq!(d("ca 3fc00000"), Value::Number(Number::from_f64(1.5).unwrap()), "float32");
        assert_eq!(d("d6 ff 00000000"), Value::String("1970-01-01T00:00:00.000Z".into()));
        assert_eq!(d("d7 ff 3b9aca0000000000"), Value::String("1970-01-01T00:00:00.250Z".into()));
        assert_eq!(d("c4 02 0102"), Value::Binary(Bytes::from_static(&[1, 2])));
        assert_eq!(d("81 01 c3"), Value::Object(vec![("1".into(), Value::Bool(true))]), "integer key");
    }

    #[test]
    fn hostile_input_is_refused_without_allocating_from_lengths() {
        let bad = |s: &str| decode(&Bytes::from(hex(s))).unwrap_err();
        assert_eq!(bad("dd ffffffff"), NotepackError::Truncated, "4G elements announced, none there");
        assert_eq!(bad("df ffffffff 00"), NotepackError::Truncated);
        assert_eq!(bad("c6 ffffffff 00"), NotepackError::Truncated);
        assert_eq!(bad("c1"), NotepackError::Marker(0xc1));
        assert_eq!(bad("a2 ff fe"), NotepackError::Utf8);
        assert_eq!(bad("01 02"), NotepackError::Trailing);
        assert_eq!(bad(""), NotepackError::Truncated);
        let deep = "91".repeat(MAX_DEPTH + 1) + "c0";
        assert_eq!(bad(&deep), NotepackError::TooDeep);
        let ok = "91".repeat(MAX_DEPTH) + "c0";
        assert!(decode(&Bytes::from(hex(&ok))).is_ok());
        // One-byte values: each would cost a `Value` of tens of bytes.
        let many = |n: usize| {
            let mut bytes = vec![0xdd];
            bytes.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
            bytes.resize(5 + n, 0x01);
            Bytes::from(bytes)
        };
        assert_eq!(decode(&many(MAX_VALUES)).unwrap_err(), NotepackError::TooManyValues);
        assert!(decode(&many(MAX_VALUES - 1)).is_ok(), "the array and its elements");
    }

    #[test]
    fn values_round_trip() {
        let value = Value::Array(vec![
            Value::String("x".repeat(40)),
            Value::Object(vec![("a".into(), n(-5i64)), ("b".into(), Value::Null)]),
            Value::Binary(Bytes::from(vec![7u8; 300])),
            Value::Array((0..20u64).map(n).collect()),
            Value::Bool(false),
        ]);
        assert_eq!(decode(&Bytes::from(encode(&value))).unwrap(), value);
    }
}
