// SPDX-License-Identifier: MPL-2.0
//! Maps keyed by ids this side hands out itself (message stream ids, a
//! server's connection tokens), looked up for every message.
//!
//! The standard map hashes with SipHash, which resists a peer choosing
//! keys that collide; these keys are never the peer's choice, so a
//! multiply-and-rotate hash, a few instructions instead of about a
//! hundred, is enough. Keys a peer picks (chunk stream ids, AMF strings)
//! keep the standard hasher.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` for keys this side chose (see the module's notes).
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: each word of the key is mixed in by a rotate,
/// an xor and a multiply by an odd constant (2^64 over the golden ratio),
/// which spreads small consecutive ids over the high bits the map's
/// control bytes use.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

impl IdHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SPREAD);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    /// Keys of bytes are not what this map is for; they still hash right
    /// (slices and strings mark their length or end themselves).
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.mix(u64::from(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn a_map_of_ids_finds_each_and_only_what_was_put() {
        let mut m: IdMap<u32, u32> = IdMap::default();
        for id in 0..10_000u32 {
            m.insert(id * 3, id);
        }
        for id in 0..10_000u32 {
            assert_eq!(m.get(&(id * 3)), Some(&id));
            assert_eq!(m.get(&(id * 3 + 1)), None);
        }
        for id in (0..10_000u32).step_by(2) {
            assert_eq!(m.remove(&(id * 3)), Some(id));
        }
        assert_eq!(m.len(), 5_000);
        assert_eq!(m.get(&3), Some(&1));
    }

    #[test]
    fn consecutive_ids_spread_over_the_high_bits() {
        // The map picks a slot from the low bits and keeps the top 7 in its
        // control bytes: consecutive ids must differ in both.
        let b = BuildHasherDefault::<IdHasher>::default();
        let hashes: Vec<u64> = (0..128usize).map(|i| b.hash_one(i)).collect();
        let tops: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        let lows: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 127).collect();
        assert!(
            tops.len() > 64,
            "top 7 bits of 128 ids: {} values",
            tops.len()
        );
        assert_eq!(lows.len(), 128, "low 7 bits of 128 ids must all differ");
    }

    #[test]
    fn bytes_of_different_lengths_hash_apart() {
        let b = BuildHasherDefault::<IdHasher>::default();
        assert_ne!(
            b.hash_one([0u8; 3].as_slice()),
            b.hash_one([0u8; 4].as_slice())
        );
        assert_ne!(b.hash_one("ab"), b.hash_one("ba"));
    }
}
