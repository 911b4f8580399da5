//! Rulegate's counters, as Envoy stats.
//!
//! Envoy shows them under `wasmcustom.rulegate.*`. Names carry their labels
//! (`token_response.rewritten`) because the ABI has no tags; Envoy's
//! `stats_tags` can extract them. A counter that cannot be defined is
//! skipped: metrics must never break a login.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Every counter Rulegate keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A token response whose id_token gained claims and was re-signed.
    Rewritten,
    /// A verified token response the rules left unchanged (forwarded as is).
    Unchanged,
    /// A response on the token path that was not a token response
    /// (error status, not JSON, compressed, too large): passed through.
    PassedThrough,
    /// A token that failed verification.
    InvalidToken,
    /// A token exchange answered with an error because its token failed.
    Rejected,
    /// A JWKS fetched and loaded.
    JwksLoaded,
    /// A JWKS fetch that failed (network, status, or unusable document).
    JwksFailed,
    /// A discovery document whose jwks_uri was rewritten.
    DiscoveryRewritten,
    /// A request for the merged JWKS answered.
    JwksServed,
}

const ALL: [(Counter, &str); 9] = [
    (Counter::Rewritten, "rulegate.token_response.rewritten"),
    (Counter::Unchanged, "rulegate.token_response.unchanged"),
    (
        Counter::PassedThrough,
        "rulegate.token_response.passed_through",
    ),
    (Counter::InvalidToken, "rulegate.token.invalid"),
    (Counter::Rejected, "rulegate.token_response.rejected"),
    (Counter::JwksLoaded, "rulegate.jwks.loaded"),
    (Counter::JwksFailed, "rulegate.jwks.failed"),
    (Counter::DiscoveryRewritten, "rulegate.discovery.rewritten"),
    (Counter::JwksServed, "rulegate.jwks.served"),
];

/// The host's ids of the counters, defined once per VM.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: Vec<(Counter, u32)>,
}

impl Metrics {
    /// Defines every counter with the host.
    pub fn define() -> Metrics {
        let ids = ALL
            .iter()
            .filter_map(|(counter, name)| {
                let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
                Some((*counter, id))
            })
            .collect();
        Metrics { ids }
    }

    /// Adds one to `counter`.
    pub fn count(&self, counter: Counter) {
        if let Some((_, id)) = self.ids.iter().find(|(c, _)| *c == counter) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
}
