//! The in-memory log's offsets: `<epoch>-<seq>`, the epoch in hex, the sequence in decimal. The
//! epoch is drawn when a log is created, so an offset of an earlier log (a node that restarted) is
//! never read as a position in this one.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest offset string accepted: a u64 in hex, a dash, a u64 in decimal.
const MAX_LEN: usize = 16 + 1 + 20;

/// A position in one log: the packet with sequence number `seq` (0 is "before the first").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offset {
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
}

impl Offset {
    /// Parses what a client sent back; `None` for anything that is not an offset.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        if s.len() > MAX_LEN {
            return None;
        }
        let (epoch, seq) = s.split_once('-')?;
        let epoch = u64::from_str_radix(epoch, 16).ok()?;
        // `u64::from_str` takes a leading `+`; an offset never has one.
        if !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self { epoch, seq: seq.parse().ok()? })
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{}", self.epoch, self.seq)
    }
}

/// A new log's epoch. It needs to differ from earlier logs' (not to be secret): the process's
/// randomly seeded hasher keys mixed with the time.
pub(crate) fn new_epoch() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    hasher.write_u128(nanos);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_garbage_is_refused() {
        let offset = Offset { epoch: 0xdead_beef, seq: 42 };
        assert_eq!(offset.to_string(), "deadbeef-42");
        assert_eq!(Offset::parse("deadbeef-42"), Some(offset));
        for bad in ["", "-", "deadbeef", "deadbeef-", "xyz-1", "1-+2", "1--2", "1-2-3", &"9".repeat(100)] {
            assert_eq!(Offset::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn two_logs_get_different_epochs() {
        assert_ne!(new_epoch(), new_epoch());
    }
}
