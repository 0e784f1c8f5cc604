//! Which Redis instance carries a channel: consistent hashing of the channel name over the
//! instances' addresses, with virtual nodes (the `consistent_hash` crate's ring).
//!
//! Every node must compute the same placement, or a publish lands on an instance its subscribers
//! do not listen to. So:
//!
//! - The ring is keyed by each instance's address (`host:port`, as the URL spells it), not by its
//!   position in the list: nodes may list instances in any order, but must spell them alike.
//!   Adding an instance moves only the channels it takes over (about 1/N of them); removing one
//!   moves only its own.
//! - Hashing is defined here byte for byte (FNV-1a over the UTF-8 name, then a 64-bit finalizer
//!   for avalanche), not by `std`'s `Hash` for `str`/`usize`, whose output may differ between Rust
//!   releases and platforms: nodes built differently still agree. A test pins sample placements.

use std::hash::{Hash, Hasher};

use consistent_hash::{Node, RingHash, StaticHashRing};

/// The placement of channel names on instances `0..len`.
pub(crate) struct ShardRing {
    ring: StaticHashRing<'static, InstanceKey, usize, StableHash>,
    len: usize,
}

impl std::fmt::Debug for ShardRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardRing").field("instances", &self.len).field("points", &self.ring.len()).finish()
    }
}

impl ShardRing {
    /// A ring over instances named `keys` (distinct), each with `virtual_nodes` points.
    pub(crate) fn new(keys: &[String], virtual_nodes: usize) -> Self {
        let nodes = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Node::new(InstanceKey(k.clone())).value(i).quantity(virtual_nodes));
        Self { ring: StaticHashRing::new(StableHash, nodes), len: keys.len() }
    }

    /// The index (into the `keys` given to [`new`](Self::new)) of the instance carrying `channel`.
    pub(crate) fn place(&self, channel: &str) -> usize {
        if self.len <= 1 {
            return 0;
        }
        self.ring.calc_candidates(&Name(channel)).next().map_or(0, |node| node.value)
    }
}

/// An instance's ring key; hashes as its UTF-8 bytes only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct InstanceKey(String);

impl Hash for InstanceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

/// A channel name; hashes as its UTF-8 bytes only.
struct Name<'a>(&'a str);

impl Hash for Name<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

/// The ring's hash: only ever fed through `Hasher::write` (see the keys' `Hash`), and the point
/// number as 8 little-endian bytes, so it is the same on every platform and Rust release.
struct StableHash;

impl RingHash for StableHash {
    fn hash_item<T: Hash>(&self, item: &T) -> u64 {
        let mut h = Fnv1a::new();
        item.hash(&mut h);
        h.finish()
    }

    fn hash_vnode<K: Hash>(&self, key: &K, point: usize) -> u64 {
        let mut h = Fnv1a::new();
        key.hash(&mut h);
        h.write(&(point as u64).to_le_bytes());
        h.finish()
    }
}

/// FNV-1a (64-bit) with MurmurHash3's `fmix64` finalizer, so names differing in their last bytes
/// (`room-1`, `room-2`; point 0, point 1) land far apart on the ring.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut k = self.0;
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:6379")).collect()
    }

    fn channels() -> Vec<String> {
        (0..1000).map(|i| format!("switchboard#/#room#room-{i}")).collect()
    }

    #[test]
    fn channels_spread_over_every_instance() {
        let ring = ShardRing::new(&keys(3), 160);
        let mut per = [0usize; 3];
        for c in channels() {
            per[ring.place(&c)] += 1;
        }
        for n in per {
            assert!((200..=470).contains(&n), "uneven spread {per:?}");
        }
    }

    #[test]
    fn adding_a_fourth_instance_moves_about_a_quarter() {
        let three = ShardRing::new(&keys(3), 160);
        let four = ShardRing::new(&keys(4), 160);
        let mut moved = 0;
        for c in channels() {
            let (before, after) = (three.place(&c), four.place(&c));
            if before != after {
                assert_eq!(after, 3, "{c} moved between old instances");
                moved += 1;
            }
        }
        assert!((170..=330).contains(&moved), "{moved} of 1000 channels moved, expected about 250");
    }

    #[test]
    fn placement_ignores_list_order() {
        let mut reversed = keys(3);
        reversed.reverse();
        let (a, b) = (ShardRing::new(&keys(3), 160), ShardRing::new(&reversed, 160));
        for c in channels() {
            assert_eq!(keys(3)[a.place(&c)], reversed[b.place(&c)], "{c}");
        }
    }

    const PINNED: [usize; 4] = [0, 2, 0, 2];
    // Cross-checked with an independent FNV-1a + fmix64 implementation.
    const HASH: u64 = 0x9874_91d5_4f93_748c;
    const POINT: u64 = 0x68bc_d3d9_cf04_19d1;

    #[test]
    fn placement_is_pinned() {
        // These must never change: nodes of different builds must agree on every channel.
        let ring = ShardRing::new(&keys(3), 160);
        let got: Vec<usize> = ["switchboard#/#", "switchboard#node#n1", "switchboard#/chat#room#lobby", "x"]
            .iter()
            .map(|c| ring.place(c))
            .collect();
        assert_eq!(got, PINNED);
        assert_eq!(StableHash.hash_item(&Name("switchboard#/#")), HASH);
        assert_eq!(StableHash.hash_vnode(&InstanceKey("10.0.0.1:6379".into()), 7), POINT);
    }

    #[test]
    fn one_instance_takes_everything() {
        let ring = ShardRing::new(&keys(1), 1);
        assert!(channels().iter().all(|c| ring.place(c) == 0));
    }
}
