//! Rulegate as a proxy-wasm HTTP filter for Envoy.
//!
//! This crate is the thin adapter between Envoy and the pure logic of the
//! `rules` crate: it reads what the host provides (configuration, headers,
//! bodies, time, call answers), hands it over, and carries out the answer.
//!
//! - [`root`]: one per worker VM; loads the configuration and the signing
//!   key, and holds what the worker's streams share.
//! - [`stream`]: one per HTTP request on an enabled route: the token
//!   exchange, the discovery rewrite and the merged JWKS.
//! - [`keys`]: the provider's keys, cached and shared between workers.
//! - [`store`]: the embedded user store, on Envoy's shared data.
//! - [`host`]: host calls that report failure instead of panicking.
//! - [`metrics`]: the counters Envoy shows as `wasmcustom.rulegate.*`.
//!
//! Logging policy: info for lifecycle (configured, with how many rules),
//! debug for each request, warn for recoverable oddities (a JWKS fetch that
//! failed, a token that did not verify), error for failures that change what
//! the client receives. No log line ever holds a token, a key or a secret.

pub mod host;
pub mod keys;
pub mod metrics;
pub mod root;
pub mod store;
pub mod stream;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Also installs a panic hook that writes the panic to Envoy's log. The
    // host's own level is read later (in `on_vm_start`): host calls are not
    // allowed while the module initialises.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::Root::new()));
}}
