//! The root context: one per worker VM and plugin configuration.
//!
//! It validates the configuration and loads the signing key once, when
//! Envoy configures the plugin. A bad configuration is refused there with
//! one log line naming the field; Envoy then keeps the previous one (or
//! refuses to start), and no request ever sees a half-valid configuration.
//!
//! It also delivers the calls logins do not wait for. A call sent from a
//! stream's context is cancelled when the stream ends, so streams hand
//! their jobs to this worker's outbox, and the root context sends them on
//! its timer. The timer runs only while there is something to send: a
//! stream that queues a job sets it to fire at once, and after each tick
//! the root sets it to the next job's due time, or stops it when the outbox
//! holds nothing waiting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use rules::config::Config;
use rules::delivery::{Event, Outbox};
use rules::record;
use rules::sign::Signer;
use rules::Error;

use crate::host;
use crate::keys::KeyCache;
use crate::metrics::{name, Metrics};
use crate::store::EmbeddedStore;
use crate::stream::Stream;

/// A configuration that loaded, with the key it names.
pub struct Plugin {
    pub config: Config,
    pub signer: Signer,
}

/// What every stream of this worker shares with the root context.
pub struct Worker {
    pub keys: RefCell<KeyCache>,
    pub metrics: Metrics,
    pub outbox: RefCell<Outbox>,
    pub store: EmbeddedStore,
}

impl Worker {
    /// Hands background jobs to the outbox and wakes the root context.
    pub fn enqueue(&self, jobs: Vec<rules::delivery::Job>, now_ms: u64) {
        if jobs.is_empty() {
            return;
        }
        let mut outbox = self.outbox.borrow_mut();
        for job in jobs {
            if let Some(event) = outbox.push(job, now_ms) {
                report(&self.metrics, &self.store, &event);
            }
        }
        self.metrics.gauge(name::OUTBOX_DEPTH, outbox.len() as u64);
        wake_in(Duration::from_millis(1));
    }
}

/// Sets this plugin's root timer (from any of its contexts).
fn wake_in(delay: Duration) {
    if hostcalls::set_tick_period(delay).is_err() {
        log::warn!("failed to set the delivery timer");
    }
}

pub struct Root {
    worker: Option<Rc<Worker>>,
    plugin: Option<Rc<Plugin>>,
    /// Outbox entries of the calls in flight, by call token.
    in_flight: HashMap<u32, u64>,
}

impl Root {
    pub fn new() -> Self {
        Root {
            worker: None,
            plugin: None,
            in_flight: HashMap::new(),
        }
    }

    /// Sends every due job; schedules the next tick.
    fn deliver(&mut self, worker: &Worker) {
        let now = host::now_ms();
        let due = worker.outbox.borrow_mut().due(now);
        for dispatch in due {
            let request = &dispatch.request;
            match host::dispatch_request(request) {
                Some(token) => {
                    self.in_flight.insert(token, dispatch.entry);
                }
                None => {
                    let reason = format!(
                        "Envoy refused the call (is cluster {} defined?)",
                        request.cluster
                    );
                    let answer = rules::http::Answer::NotSent(reason);
                    let events = worker
                        .outbox
                        .borrow_mut()
                        .on_answer(dispatch.entry, &answer, now);
                    self.report_all(worker, dispatch.service, &events);
                }
            }
        }
        self.schedule(worker, now);
    }

    fn schedule(&self, worker: &Worker, now: u64) {
        let outbox = worker.outbox.borrow();
        worker
            .metrics
            .gauge(name::OUTBOX_DEPTH, outbox.len() as u64);
        match outbox.next_due_ms() {
            Some(due) => wake_in(Duration::from_millis(due.saturating_sub(now).max(1))),
            None => wake_in(Duration::ZERO),
        }
    }

    fn report_all(&self, worker: &Worker, service: &str, events: &[Event]) {
        for event in events {
            report(&worker.metrics, &worker.store, event);
        }
        if events.is_empty() {
            log::debug!("{service} delivery continues");
        }
    }
}

/// Counts and logs what happened to a delivery, and applies the record
/// changes it calls for.
fn report(metrics: &Metrics, store: &EmbeddedStore, event: &Event) {
    match event {
        Event::Delivered { service, step } => {
            log::debug!("delivered {service} call of rule {step}");
            metrics.count(&name::call(service, "success"));
        }
        Event::WillRetry {
            service,
            step,
            in_ms,
            reason,
        } => {
            log::info!("{service} call of rule {step} failed ({reason}); retrying in {in_ms} ms");
            metrics.count(&name::call(service, "retry"));
            metrics.count(name::RETRIES);
        }
        Event::Dropped {
            service,
            step,
            reason,
        } => {
            log::error!("dropped {service} call of rule {step}: {reason}");
            metrics.count(&name::call(service, "dropped"));
            metrics.count(name::DROPS);
        }
        Event::Failed {
            service,
            step,
            reason,
        } => {
            log::error!("{service} refused the call of rule {step}: {reason}");
            metrics.count(&name::call(service, "failed"));
        }
        Event::Record { user_id, change } => {
            if let Err(err) = record::update(store, user_id, change) {
                log::error!("failed to record a delivery's result for a user: {err}");
                metrics.count(name::STORE_FAILED);
            }
        }
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new()
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let Some(entry) = self.in_flight.remove(&token) else {
            return;
        };
        let answer = host::call_answer(body_size);
        let now = host::now_ms();
        let events = worker.outbox.borrow_mut().on_answer(entry, &answer, now);
        self.report_all(&worker, "background", &events);
        self.schedule(&worker, now);
    }
}

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
        let plugin = match load_plugin(&text) {
            Ok(plugin) => plugin,
            Err(err) => {
                log::error!("rulegate refused its configuration: {err}");
                return false;
            }
        };
        log::info!(
            "rulegate {} configured: {} rules, issuer {}, signing {} key {}",
            env!("CARGO_PKG_VERSION"),
            plugin.config.rules.len(),
            plugin.config.verify.issuer,
            plugin.config.signing.algorithm.name(),
            plugin.config.signing.key_id,
        );
        let config = &plugin.config;
        for warning in &config.warnings {
            log::warn!("rulegate configuration: {warning}");
        }
        match &self.worker {
            Some(worker) => {
                let mut outbox = worker.outbox.borrow_mut();
                outbox.reconfigure(config.delivery.clone(), config.alerts.clone());
                outbox.mask_secrets(config.secret_values());
            }
            None => {
                let mut outbox = Outbox::new(config.delivery.clone(), config.alerts.clone());
                outbox.mask_secrets(config.secret_values());
                self.worker = Some(Rc::new(Worker {
                    keys: RefCell::new(KeyCache::new()),
                    metrics: Metrics::new(),
                    outbox: RefCell::new(outbox),
                    store: EmbeddedStore,
                }));
            }
        }
        self.plugin = Some(Rc::new(plugin));
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = self.worker.clone() {
            self.deliver(&worker);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates streams only for a plugin that configured; without
        // one the stream passes everything through.
        let state = self.worker.clone().zip(self.plugin.clone());
        Some(Box::new(Stream::new(context_id, state)))
    }
}

/// Validates the configuration and loads the signing key it names.
fn load_plugin(text: &[u8]) -> Result<Plugin, Error> {
    let env = |variable: &str| std::env::var(variable).ok();
    let config = Config::from_json(text, &env)?;
    let variable = &config.signing.private_key_env;
    let pem = env(variable).ok_or_else(|| Error::SigningKey {
        variable: variable.clone(),
        reason: "is not set; list it in vm_config.environment_variables".into(),
    })?;
    let signer = Signer::from_pem(&config.signing, &pem)?;
    Ok(Plugin { config, signer })
}
