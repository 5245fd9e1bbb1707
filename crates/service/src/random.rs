//! The random source. Secrets and ids come only from [`Random`], so tests can make them
//! repeatable.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub trait Random: Send + Sync + 'static {
    fn fill(&self, bytes: &mut [u8]);
}

/// The operating system's cryptographic random source.
pub struct OsRandom(SystemRandom);

impl OsRandom {
    pub fn new() -> Self {
        Self(SystemRandom::new())
    }
}

impl Default for OsRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Random for OsRandom {
    fn fill(&self, bytes: &mut [u8]) {
        self.0.fill(bytes).expect("the system random source failed");
    }
}

/// A repeatable stream for tests: SHA-256 of a seed and a counter. Not for production use.
pub struct SeededRandom {
    seed: u64,
    counter: AtomicU64,
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: AtomicU64::new(0),
        }
    }
}

impl Random for SeededRandom {
    fn fill(&self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(32) {
            let counter = self.counter.fetch_add(1, Ordering::Relaxed);
            let block = Sha256::new()
                .chain_update(self.seed.to_le_bytes())
                .chain_update(counter.to_le_bytes())
                .finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

/// `len` random bytes as lower-case hex.
pub fn secret_hex(random: &dyn Random, len: usize) -> String {
    let mut bytes = vec![0u8; len];
    random.fill(&mut bytes);
    hex(&bytes)
}

/// Generates a random (version 4) UUID.
pub fn uuid_v4(random: &dyn Random) -> String {
    let mut bytes = [0u8; 16];
    random.fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Generates a time-ordered (version 7) UUID, for append-heavy tables where index locality
/// matters.
pub fn uuid_v7(random: &dyn Random, now: DateTime<Utc>) -> String {
    let mut bytes = [0u8; 10];
    random.fill(&mut bytes);
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or_default();
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes)
        .into_uuid()
        .to_string()
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// SHA-256 as hex: how codes, refresh secrets and client secrets are stored.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// True for a syntactically valid UUID (any version).
pub fn is_uuid(text: &str) -> bool {
    Uuid::parse_str(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_random_repeats() {
        let first = secret_hex(&SeededRandom::new(7), 40);
        let second = secret_hex(&SeededRandom::new(7), 40);
        assert_eq!(first, second);
        assert_eq!(first.len(), 80);
    }

    #[test]
    fn uuid_v7_sorts_by_time() {
        let random = SeededRandom::new(1);
        let earlier = uuid_v7(&random, DateTime::from_timestamp(1_000, 0).unwrap());
        let later = uuid_v7(&random, DateTime::from_timestamp(2_000, 0).unwrap());
        assert!(earlier < later);
    }
}
