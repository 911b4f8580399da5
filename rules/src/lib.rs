//! Rulegate's pure logic, free of any proxy-wasm dependency.
//!
//! The filter crate is a thin adapter around this one: it reads what Envoy
//! gives it (configuration, request and response bodies, the time, HTTP call
//! answers), hands it to the functions here, and carries out what they
//! return. Keeping every decision here means all of it builds and is tested
//! natively, without Envoy.
//!
//! - [`config`]: the plugin configuration, validated once at load.
//! - [`exchange`]: the token request and token response.
//! - [`verify`]: the provider's keys and token verification.
//! - [`engine`]: the rules, run against verified claims.
//! - [`sign`]: Rulegate's key and re-signing.
//! - [`discovery`]: the merged JWKS and the rewritten discovery document.

pub mod claims;
pub mod config;
pub mod discovery;
pub mod engine;
mod error;
pub mod exchange;
pub mod sign;
pub mod verify;

pub use error::{Error, Rejection};
