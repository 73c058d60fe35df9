//! The edge-safety suite: each attack sent, with assertions on what the origin saw and what the next client got.
#[path = "security/config.rs"]
mod config;
#[path = "security/memory.rs"]
mod memory;
mod support;
