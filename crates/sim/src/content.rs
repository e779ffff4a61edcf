//! Deterministic file content of any size, generated on the fly: a 20 GiB recording costs no disk
//! and no memory. Byte `i` of a file with seed `s` is `PATTERN[(i + s) % PERIOD]`; chunks are
//! zero-copy slices of one shared pattern.

use std::sync::OnceLock;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Not a power of two, so files of different seeds and sizes do not line up.
const PERIOD: u64 = 1_048_573;

fn pattern() -> &'static Bytes {
    static PATTERN: OnceLock<Bytes> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..PERIOD)
            .map(|_| {
                // xorshift64*: cheap, deterministic, not compressible like a constant.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect::<Vec<u8>>()
            .into()
    })
}

/// The bytes `[start, end)` of a file, as a sequence of shared slices.
pub fn chunks(seed: u64, start: u64, end: u64) -> impl Iterator<Item = Bytes> {
    let pattern = pattern();
    let mut position = start;
    std::iter::from_fn(move || {
        if position >= end {
            return None;
        }
        let offset = (position + seed) % PERIOD;
        let length = (PERIOD - offset).min(end - position);
        position += length;
        Some(pattern.slice(offset as usize..(offset + length) as usize))
    })
}

/// SHA-256 (hex) of a whole file: what a correct download must produce.
pub fn sha256(seed: u64, size: u64) -> String {
    let mut hasher = Sha256::new();
    for chunk in chunks(seed, 0, size) {
        hasher.update(&chunk);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_agree_with_the_whole() {
        let whole: Vec<u8> = chunks(7, 0, 3_000_000).flat_map(|c| c.to_vec()).collect();
        let tail: Vec<u8> = chunks(7, 1_234_567, 3_000_000)
            .flat_map(|c| c.to_vec())
            .collect();
        assert_eq!(&whole[1_234_567..], &tail[..]);
        assert_ne!(sha256(7, 1000), sha256(8, 1000));
    }
}
