//! Offsets the Redis store gives out: `<epoch>-<ms>-<seq>`, the epoch in hex and the stream id of
//! the packet (`<ms>-<seq>`). A stream id alone would not do: a stream deleted and made again
//! starts over from the clock, and the epoch (drawn when the log is created, part of the stream's
//! key) tells the new log from the old.

/// Longest offset accepted: a u64 in hex, then two u64s in decimal, and the dashes.
const MAX_LEN: usize = 16 + 1 + 20 + 1 + 20;

/// A stream id as one number, larger is later: `ms << 64 | seq`.
pub(crate) fn position(ms: u64, seq: u64) -> u128 {
    (u128::from(ms) << 64) | u128::from(seq)
}

/// The stream id (`<ms>-<seq>`) at `position`.
pub(crate) fn stream_id(position: u128) -> String {
    format!("{}-{}", position >> 64, position as u64)
}

/// Parses a stream id as Redis gives it out; `None` for anything else.
pub(crate) fn parse_stream_id(id: &str) -> Option<u128> {
    let (ms, seq) = id.split_once('-')?;
    Some(position(decimal(ms)?, decimal(seq)?))
}

/// The offset of `position` in the log of `epoch`.
pub(crate) fn format(epoch: u64, position: u128) -> String {
    format!("{epoch:x}-{}", stream_id(position))
}

/// Parses what a client sent back: its epoch and position; `None` for anything that is not an
/// offset.
pub(crate) fn parse(offset: &str) -> Option<(u64, u128)> {
    if offset.len() > MAX_LEN {
        return None;
    }
    let (epoch, id) = offset.split_once('-')?;
    if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((u64::from_str_radix(epoch, 16).ok()?, parse_stream_id(id)?))
}

/// Digits only (`u64::from_str` also takes a leading `+`).
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_garbage_is_refused() {
        let p = position(1_733_000_000_000, 7);
        assert_eq!(format(0xbeef, p), "beef-1733000000000-7");
        assert_eq!(parse("beef-1733000000000-7"), Some((0xbeef, p)));
        assert!(position(5, u64::MAX) < position(6, 0));
        for bad in ["", "beef", "beef-1", "beef-1-", "-1-2", "x-1-2", "1-+1-2", "1-1-2-3", &"9".repeat(100)] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
