//! The provider's keys as this worker knows them, kept in step with the
//! other workers through Envoy's shared data.
//!
//! Each worker runs its own VM, so each has its own parsed keys. The JWKS
//! document itself lives in shared data: a worker that fetches it stores it
//! there, and the others parse it the next time they look (the CAS version
//! tells them it changed). A failed fetch changes nothing, so the last good
//! keys stay in use; refreshes caused by unknown `kid`s are spaced by the
//! configured interval so that a flood of forged tokens cannot turn into a
//! flood of JWKS requests.

use std::rc::Rc;

use rules::config::Config;
use rules::verify::ProviderKeys;
use rules::Error;

use crate::host;

const SHARED_KEY: &str = "rulegate.jwks";

/// This worker's view of the provider's keys.
pub struct KeyCache {
    keys: Rc<ProviderKeys>,
    /// Shared-data version the keys were parsed from.
    version: Option<u32>,
    /// When the keys in use were fetched (Unix seconds; 0: never).
    fetched_at: u64,
    /// When this worker last asked the provider (Unix seconds; 0: never).
    last_attempt: u64,
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache::new()
    }
}

impl KeyCache {
    pub fn new() -> Self {
        KeyCache {
            keys: Rc::new(ProviderKeys::empty()),
            version: None,
            fetched_at: 0,
            last_attempt: 0,
        }
    }

    /// The keys in use, after picking up any document another worker stored.
    pub fn current(&mut self, config: &Config) -> Rc<ProviderKeys> {
        self.sync(config);
        Rc::clone(&self.keys)
    }

    /// Whether the keys must be fetched before they are used: none yet, or
    /// older than `jwks_max_age_s`, and no attempt made within the refresh
    /// interval.
    pub fn needs_fetch(&mut self, config: &Config, now: u64) -> bool {
        self.sync(config);
        let stale = self.keys.is_empty() || now >= self.fetched_at + config.jwks_max_age_s;
        stale && self.may_refresh(config, now)
    }

    /// Whether an unknown `kid` may trigger a fetch now.
    pub fn may_refresh(&self, config: &Config, now: u64) -> bool {
        self.last_attempt == 0 || now >= self.last_attempt + config.jwks_refresh_interval_s
    }

    /// Notes that a fetch is being made.
    pub fn attempting(&mut self, now: u64) {
        self.last_attempt = now;
    }

    /// Loads a fetched document. On success every worker will use it; on
    /// failure the previous keys stay.
    pub fn load(&mut self, config: &Config, document: &[u8], now: u64) -> Result<usize, Error> {
        let keys = ProviderKeys::from_jwks(document, &config.verify.allowed_algorithms)?;
        for reason in keys.left_out() {
            log::warn!("provider key left out: {reason}");
        }
        let count = keys.len();
        let mut stored = now.to_be_bytes().to_vec();
        stored.extend_from_slice(document);
        if !host::set_shared_data(SHARED_KEY, &stored, None) {
            log::warn!("failed to share the provider's keys with other workers");
        }
        let (_, version) = host::shared_data(SHARED_KEY);
        self.keys = Rc::new(keys);
        self.version = version;
        self.fetched_at = now;
        Ok(count)
    }

    fn sync(&mut self, config: &Config) {
        let (Some(stored), version) = host::shared_data(SHARED_KEY) else {
            return;
        };
        if version.is_some() && version == self.version {
            return;
        }
        let Some((fetched_at, document)) = stored.split_first_chunk::<8>() else {
            return;
        };
        match ProviderKeys::from_jwks(document, &config.verify.allowed_algorithms) {
            Ok(keys) => {
                self.keys = Rc::new(keys);
                self.fetched_at = u64::from_be_bytes(*fetched_at);
            }
            Err(err) => log::warn!("ignoring the shared provider keys: {err}"),
        }
        self.version = version;
    }
}
