//! Rulegate's metrics, as Envoy stats.
//!
//! Envoy shows them under `wasmcustom.rulegate.*`. The ABI has no tags, so
//! labels are part of the name (`rulegate.rule.<rule>.failed`,
//! `rulegate.call.<service>.<outcome>`), placed so that Envoy's
//! `stats_tags` can extract them. Ids are defined with the host on first
//! use and cached; a metric that cannot be defined is skipped, because
//! metrics must never break a login.

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// The host's metric ids, by name, for one VM.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: RefCell<HashMap<String, u32>>,
}

impl Metrics {
    /// Defines the metrics whose names are fixed, so that they show (at 0)
    /// before anything happens; the labelled ones appear on first use.
    pub fn new() -> Metrics {
        let metrics = Metrics::default();
        for counter in name::FIXED_COUNTERS {
            metrics.id(MetricType::Counter, counter);
        }
        metrics.id(MetricType::Gauge, name::OUTBOX_DEPTH);
        metrics.id(MetricType::Histogram, name::PROCESSING_US);
        metrics
    }

    /// Adds one to the counter `name`.
    pub fn count(&self, name: &str) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// Sets the gauge `name`.
    pub fn gauge(&self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    /// Records one value of the histogram `name`.
    pub fn record(&self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn id(&self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        self.ids.borrow_mut().insert(name.to_string(), id);
        Some(id)
    }
}

/// Metric names, in one place so that the README's table can be checked
/// against them.
pub mod name {
    pub const REWRITTEN: &str = "rulegate.token_response.rewritten";
    pub const UNCHANGED: &str = "rulegate.token_response.unchanged";
    pub const PASSED_THROUGH: &str = "rulegate.token_response.passed_through";
    pub const REJECTED: &str = "rulegate.token_response.rejected";
    pub const DENIED: &str = "rulegate.token_response.denied";
    pub const INVALID_TOKEN: &str = "rulegate.token.invalid";
    pub const JWKS_LOADED: &str = "rulegate.jwks.loaded";
    pub const JWKS_FAILED: &str = "rulegate.jwks.failed";
    pub const JWKS_SERVED: &str = "rulegate.jwks.served";
    pub const DISCOVERY_REWRITTEN: &str = "rulegate.discovery.rewritten";
    pub const FIRST_LOGINS: &str = "rulegate.logins.first";
    /// Access-token claim changes skipped because the token is opaque.
    pub const ACCESS_TOKEN_OPAQUE: &str = "rulegate.access_token.opaque_skipped";
    /// Access tokens not extended because they did not verify.
    pub const ACCESS_TOKEN_INVALID: &str = "rulegate.access_token.invalid";
    pub const STORE_FAILED: &str = "rulegate.store.failed";
    pub const RETRIES: &str = "rulegate.delivery.retries";
    pub const DROPS: &str = "rulegate.delivery.drops";
    pub const OUTBOX_DEPTH: &str = "rulegate.outbox.depth";
    /// In-filter time of a token exchange, in microseconds, waiting for
    /// calls and keys excluded.
    pub const PROCESSING_US: &str = "rulegate.token_exchange.processing_us";

    /// The counters with fixed names.
    pub const FIXED_COUNTERS: [&str; 16] = [
        REWRITTEN,
        UNCHANGED,
        PASSED_THROUGH,
        REJECTED,
        DENIED,
        INVALID_TOKEN,
        JWKS_LOADED,
        JWKS_FAILED,
        JWKS_SERVED,
        DISCOVERY_REWRITTEN,
        FIRST_LOGINS,
        STORE_FAILED,
        RETRIES,
        DROPS,
        ACCESS_TOKEN_OPAQUE,
        ACCESS_TOKEN_INVALID,
    ];

    /// Token exchanges by protocol.
    pub fn protocol(protocol: &str) -> String {
        format!("rulegate.logins.protocol.{protocol}")
    }

    /// Rules by outcome: `ran`, `skipped`, `failed`, `shadow`,
    /// `over_budget`.
    pub fn rule(rule: &str, outcome: &str) -> String {
        format!("rulegate.rule.{rule}.{outcome}")
    }

    /// Outbound calls by service and outcome: `success`, `retry`,
    /// `failed`, `dropped`.
    pub fn call(service: &str, outcome: &str) -> String {
        format!("rulegate.call.{service}.{outcome}")
    }
}
