//! The sipbus process as a library: the layered configuration and the
//! module graph that starts a target. The `sipbus` binary is a command
//! line over it; tests start a target in process through it.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod ctl;
pub mod modules;
