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
//! - [`event`]: the login event the rules see.
//! - [`record`]: the user's record and its compare-and-swap updates.
//! - [`pipeline`]: the rules, run in order as a sans-IO state machine.
//! - [`steps`]: the built-in integrations and their wire formats.
//! - [`http`]: outbound calls as data, and the retry classifier.
//! - [`delivery`]: the outbox of background calls.
//! - [`sign`]: Rulegate's key and re-signing.
//! - [`discovery`]: the merged JWKS and the rewritten discovery document.

pub mod actions;
pub mod claims;
pub mod config;
pub mod delivery;
pub mod discovery;
mod error;
pub mod event;
pub mod exchange;
pub mod expr;
pub mod http;
pub mod pipeline;
pub mod record;
pub mod sign;
pub mod steps;
pub mod verify;

pub use error::{Error, Rejection};
