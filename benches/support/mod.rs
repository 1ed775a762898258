//! What every benchmark program shares (each includes this with `mod support;`).
#![allow(dead_code)] // each program uses part of it

/// A size or rate from the environment (`1_000_000` and `1,000,000` read alike); a value that
/// is not a number stops the program with its name.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .replace(['_', ','], "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

pub fn env_usize(name: &str, default: usize) -> usize {
    env_u64(name, default as u64) as usize
}
