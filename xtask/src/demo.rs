//! `cargo xtask demo`: placeholder.
use anyhow::Result;
pub fn run() -> Result<i32> { Ok(0) }
