//! The root context: one per worker VM and plugin configuration.
//!
//! It validates the configuration and loads the signing key once, when
//! Envoy configures the plugin. A bad configuration is refused there with
//! one log line naming the field; Envoy then keeps the previous one (or
//! refuses to start), and no request ever sees a half-valid configuration.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use rules::config::Config;
use rules::sign::Signer;
use rules::Error;

use crate::keys::KeyCache;
use crate::metrics::Metrics;
use crate::stream::Stream;

/// A configuration that loaded, with the key it names.
pub struct Plugin {
    pub config: Config,
    pub signer: Signer,
}

/// What every stream of this worker shares.
pub struct Worker {
    pub keys: RefCell<KeyCache>,
    pub metrics: Metrics,
}

pub struct Root {
    worker: Option<Rc<Worker>>,
    plugin: Option<Rc<Plugin>>,
}

impl Root {
    pub fn new() -> Self {
        Root {
            worker: None,
            plugin: None,
        }
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new()
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        // Debug lines are formatted only when Envoy would print them.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let text = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match load_plugin(&text) {
            Ok(plugin) => {
                log::info!(
                    "rulegate {} configured: {} rules, issuer {}, signing {} key {}",
                    env!("CARGO_PKG_VERSION"),
                    plugin.config.rules.len(),
                    plugin.config.verify.issuer,
                    plugin.config.signing.algorithm.name(),
                    plugin.config.signing.key_id,
                );
                self.plugin = Some(Rc::new(plugin));
                self.worker.get_or_insert_with(|| {
                    Rc::new(Worker {
                        keys: RefCell::new(KeyCache::new()),
                        metrics: Metrics::define(),
                    })
                });
                true
            }
            Err(err) => {
                log::error!("rulegate refused its configuration: {err}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates streams only for a plugin that configured; without
        // one the stream passes everything through.
        let plugin = self.plugin.clone();
        let worker = self.worker.clone();
        Some(Box::new(Stream::new(context_id, worker.zip(plugin))))
    }
}

/// Validates the configuration and loads the signing key it names.
fn load_plugin(text: &[u8]) -> Result<Plugin, Error> {
    let config = Config::from_json(text)?;
    let variable = &config.signing.private_key_env;
    let pem = std::env::var(variable).map_err(|_| Error::SigningKey {
        variable: variable.clone(),
        reason: "is not set; list it in vm_config.environment_variables".into(),
    })?;
    let signer = Signer::from_pem(&config.signing, &pem)?;
    Ok(Plugin { config, signer })
}
