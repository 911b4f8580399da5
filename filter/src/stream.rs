//! One HTTP request through an enabled route.
//!
//! Three kinds of request matter; everything else continues untouched:
//!
//! - `POST` to the token path: the request's grant and client are read (the
//!   request itself is forwarded unchanged); the response is held, its
//!   id_token verified, the rules run, and the token re-signed when it
//!   gained claims. Anything that is not a successful JSON token response
//!   passes through as it came.
//! - `GET` of the discovery document: `jwks_uri` is pointed at Rulegate's
//!   merged key set.
//! - `GET` of the merged key set: answered here, with the provider's keys
//!   and Rulegate's own.
//!
//! [`Stream::respond`] is the one place that turns a decision into what the
//! client receives.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType};
use rules::discovery::{merged_jwks, rewrite_discovery};
use rules::engine;
use rules::exchange::{TokenRequest, TokenResponse};
use rules::verify::verify;
use rules::{Error, Rejection};
use serde_json::json;

use crate::host;
use crate::metrics::Counter;
use crate::root::{Plugin, Worker};

/// Largest token request body read for its grant type and client id.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// What became of a request, for the client.
enum Decision {
    /// Let the response go on, with whatever changes were made to it.
    Forward,
    /// Answer with Rulegate's own reply instead.
    Reply {
        status: u32,
        body: Vec<u8>,
        cache: bool,
    },
    /// Wait for an outbound call.
    Wait,
}

/// What a request on an enabled route is.
enum Route {
    /// Nothing Rulegate acts on.
    Other,
    Token(Exchange),
    Discovery {
        hold: bool,
    },
    Jwks,
}

/// A token exchange in progress.
#[derive(Default)]
struct Exchange {
    authorization: Option<Vec<u8>>,
    request: TokenRequest,
    /// The response is not Rulegate's to change.
    pass: bool,
    /// Size of the buffered response body.
    body_size: usize,
    /// The parsed response, while keys are being fetched.
    waiting: Option<TokenResponse>,
}

pub struct Stream {
    id: u32,
    state: Option<(Rc<Worker>, Rc<Plugin>)>,
    route: Route,
    /// The JWKS fetch this stream waits for.
    pending_call: Option<u32>,
}

impl Stream {
    pub fn new(id: u32, state: Option<(Rc<Worker>, Rc<Plugin>)>) -> Self {
        Stream {
            id,
            state,
            route: Route::Other,
            pending_call: None,
        }
    }

    fn classify(&self, plugin: &Plugin) -> Route {
        let (Some(method), Some(path)) = (
            host::request_header_str(":method"),
            host::request_header_str(":path"),
        ) else {
            return Route::Other;
        };
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let config = &plugin.config;
        match method.as_str() {
            "POST" if path == config.token_path => Route::Token(Exchange {
                authorization: host::request_header("authorization"),
                ..Exchange::default()
            }),
            "GET" if path == config.discovery_path => Route::Discovery { hold: false },
            "GET" | "HEAD" if path == config.jwks_path => Route::Jwks,
            _ => Route::Other,
        }
    }

    /// Reads the token request's form body once it is complete.
    fn read_token_request(&mut self, body_size: usize) {
        let Route::Token(exchange) = &mut self.route else {
            return;
        };
        let body = host::body(BufferType::HttpRequestBody, body_size, MAX_FORM_BYTES);
        let body = body.unwrap_or_default();
        exchange.request = TokenRequest::parse(&body, exchange.authorization.as_deref());
        log::debug!(
            "{}: token request grant={:?} client={:?}",
            self.id,
            exchange.request.grant_type,
            exchange.request.client_id
        );
    }

    /// The buffered token response is complete: verify, run the rules,
    /// re-sign.
    fn on_token_response(
        &mut self,
        worker: &Worker,
        plugin: &Plugin,
        body_size: usize,
    ) -> Decision {
        let Route::Token(exchange) = &mut self.route else {
            return Decision::Forward;
        };
        exchange.body_size = body_size;
        let body = host::body(
            BufferType::HttpResponseBody,
            body_size,
            plugin.config.max_response_bytes,
        );
        let parsed = body
            .ok_or(Error::NotTokenResponse("body too large"))
            .and_then(|body| TokenResponse::parse(&body));
        let response = match parsed {
            Ok(response) => response,
            Err(err) => {
                log::debug!("{}: passing through: {err}", self.id);
                worker.metrics.count(Counter::PassedThrough);
                return Decision::Forward;
            }
        };

        let now = host::now_unix();
        if worker.keys.borrow_mut().needs_fetch(&plugin.config, now) {
            exchange.waiting = Some(response);
            return self.fetch_keys(worker, plugin, now);
        }
        self.verify_and_apply(worker, plugin, response, now, true)
    }

    fn verify_and_apply(
        &mut self,
        worker: &Worker,
        plugin: &Plugin,
        response: TokenResponse,
        now: u64,
        may_refresh: bool,
    ) -> Decision {
        let Route::Token(exchange) = &mut self.route else {
            return Decision::Forward;
        };
        let config = &plugin.config;
        let keys = worker.keys.borrow_mut().current(config);
        let client_id = exchange.request.client_id.as_deref();
        let claims = match verify(&keys, &config.verify, response.id_token(), client_id, now) {
            Ok(claims) => claims,
            Err(Rejection::UnknownKey(kid))
                if may_refresh && worker.keys.borrow().may_refresh(config, now) =>
            {
                log::debug!(
                    "{}: unknown key {kid:?}, refreshing the provider's keys",
                    self.id
                );
                exchange.waiting = Some(response);
                return self.fetch_keys(worker, plugin, now);
            }
            Err(rejection) => return self.refuse(worker, plugin, &Error::InvalidToken(rejection)),
        };

        let outcome = engine::evaluate(&config.rules, &claims);
        if !outcome.changes_token() {
            log::debug!("{}: token verified, no rule changed it", self.id);
            worker.metrics.count(Counter::Unchanged);
            return Decision::Forward;
        }
        let token = match plugin.signer.resign(&claims, &outcome.id_token_claims) {
            Ok(token) => token,
            Err(err) => return self.refuse(worker, plugin, &err),
        };
        let body = response.with_id_token(token);
        if !host::replace_response_body(exchange.body_size, &body)
            || !host::set_response_header("content-length", &body.len().to_string())
        {
            return self.refuse(
                worker,
                plugin,
                &Error::Signing("the host refused the new body".into()),
            );
        }
        log::debug!(
            "{}: id_token re-signed with {} claims from rules {:?}",
            self.id,
            outcome.id_token_claims.len(),
            outcome.applied
        );
        worker.metrics.count(Counter::Rewritten);
        Decision::Forward
    }

    /// A token could not be trusted or rewritten: answer per the
    /// `on_invalid_token` policy.
    fn refuse(&self, worker: &Worker, plugin: &Plugin, err: &Error) -> Decision {
        worker.metrics.count(Counter::InvalidToken);
        match plugin.config.on_invalid_token {
            rules::config::InvalidTokenPolicy::Pass => {
                log::warn!("{}: {err}; passing the response through untouched", self.id);
                worker.metrics.count(Counter::PassedThrough);
                Decision::Forward
            }
            rules::config::InvalidTokenPolicy::Reject => {
                log::warn!("{}: {err}; answering server_error", self.id);
                worker.metrics.count(Counter::Rejected);
                let body = json!({
                    "error": "server_error",
                    "error_description": "the identity provider's token could not be verified",
                });
                Decision::Reply {
                    status: 502,
                    body: body.to_string().into_bytes(),
                    cache: false,
                }
            }
        }
    }

    fn fetch_keys(&mut self, worker: &Worker, plugin: &Plugin, now: u64) -> Decision {
        let provider = &plugin.config.provider;
        worker.keys.borrow_mut().attempting(now);
        let headers = vec![
            (":method", "GET"),
            (":path", provider.jwks_path.as_str()),
            (":authority", provider.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(provider.timeout_ms);
        match host::dispatch(&provider.cluster, headers, None, timeout) {
            Some(token) => {
                self.pending_call = Some(token);
                Decision::Wait
            }
            None => {
                log::warn!(
                    "{}: failed to request the provider's keys from cluster {}",
                    self.id,
                    provider.cluster
                );
                worker.metrics.count(Counter::JwksFailed);
                self.after_keys(worker, plugin, host::now_unix())
            }
        }
    }

    /// Continues whatever waited for the provider's keys.
    fn after_keys(&mut self, worker: &Worker, plugin: &Plugin, now: u64) -> Decision {
        match &mut self.route {
            Route::Token(exchange) => match exchange.waiting.take() {
                Some(response) => self.verify_and_apply(worker, plugin, response, now, false),
                None => Decision::Forward,
            },
            Route::Jwks => self.serve_jwks(worker, plugin),
            _ => Decision::Forward,
        }
    }

    fn load_keys(&self, worker: &Worker, plugin: &Plugin, body_size: usize) {
        let status = host::call_response_header(":status");
        let now = host::now_unix();
        let body = host::body(
            BufferType::HttpCallResponseBody,
            body_size,
            rules::verify::MAX_JWKS_BYTES,
        );
        let loaded = match (status.as_deref(), body) {
            (Some("200"), Some(body)) => worker.keys.borrow_mut().load(&plugin.config, &body, now),
            (Some(status), _) => Err(Error::Jwks(format!("provider answered status {status}"))),
            (None, _) => Err(Error::Jwks("no answer (connection failed or reset)".into())),
        };
        match loaded {
            Ok(count) => {
                log::info!("loaded {count} provider keys");
                worker.metrics.count(Counter::JwksLoaded);
            }
            Err(err) => {
                log::warn!(
                    "failed to refresh the provider's keys, keeping the last good ones: {err}"
                );
                worker.metrics.count(Counter::JwksFailed);
            }
        }
    }

    fn serve_jwks(&mut self, worker: &Worker, plugin: &Plugin) -> Decision {
        let now = host::now_unix();
        if self.pending_call.is_none() && worker.keys.borrow_mut().needs_fetch(&plugin.config, now)
        {
            return self.fetch_keys(worker, plugin, now);
        }
        let keys = worker.keys.borrow_mut().current(&plugin.config);
        if keys.is_empty() {
            let body = json!({"error": "temporarily_unavailable"})
                .to_string()
                .into_bytes();
            return Decision::Reply {
                status: 503,
                body,
                cache: false,
            };
        }
        worker.metrics.count(Counter::JwksServed);
        Decision::Reply {
            status: 200,
            body: merged_jwks(&keys, plugin.signer.public_jwk()),
            cache: true,
        }
    }

    fn rewrite_discovery(&self, worker: &Worker, plugin: &Plugin, body_size: usize) {
        let Some(body) = host::body(
            BufferType::HttpResponseBody,
            body_size,
            plugin.config.max_response_bytes,
        ) else {
            return;
        };
        match rewrite_discovery(&body, &plugin.config.jwks_uri) {
            Ok(document) => {
                if host::replace_response_body(body_size, &document)
                    && host::set_response_header("content-length", &document.len().to_string())
                {
                    worker.metrics.count(Counter::DiscoveryRewritten);
                }
            }
            Err(err) => log::warn!("{}: discovery document left as is: {err}", self.id),
        }
    }

    /// Turns a decision into what Envoy does with the stream.
    fn respond(&self, decision: Decision) -> Action {
        match decision {
            Decision::Forward => Action::Continue,
            Decision::Wait => Action::Pause,
            Decision::Reply {
                status,
                body,
                cache,
            } => {
                let cache_control = if cache {
                    "public, max-age=300"
                } else {
                    "no-store"
                };
                let headers = vec![
                    ("content-type", "application/json"),
                    ("cache-control", cache_control),
                ];
                host::send_response(status, headers, &body);
                Action::Pause
            }
        }
    }

    fn shared(&self) -> Option<(Rc<Worker>, Rc<Plugin>)> {
        self.state.clone()
    }
}

/// Whether the held response is a plain (uncompressed) successful JSON
/// answer Rulegate may read and rewrite.
fn is_plain_json_ok(max_bytes: usize) -> bool {
    let status_ok = host::response_header(":status").as_deref() == Some("200");
    let json = host::response_header("content-type")
        .is_some_and(|value| value.to_ascii_lowercase().starts_with("application/json"));
    let identity = host::response_header("content-encoding")
        .is_none_or(|value| value.eq_ignore_ascii_case("identity"));
    let fits = host::response_header("content-length")
        .and_then(|value| value.parse::<usize>().ok())
        .is_none_or(|length| length <= max_bytes);
    status_ok && json && identity && fits
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.pending_call != Some(token) {
            return;
        }
        let Some((worker, plugin)) = self.shared() else {
            return;
        };
        self.load_keys(&worker, &plugin, body_size);
        self.pending_call = None;
        let decision = self.after_keys(&worker, &plugin, host::now_unix());
        let is_token = matches!(self.route, Route::Token(_));
        match self.respond(decision) {
            Action::Continue if is_token => host::resume_response(),
            _ => {}
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some((worker, plugin)) = self.shared() else {
            return Action::Continue;
        };
        self.route = self.classify(&plugin);
        match self.route {
            Route::Token(_) if end_of_stream => {
                self.read_token_request(0);
                Action::Continue
            }
            Route::Discovery { .. } => {
                // The document is rewritten, so it must arrive uncompressed.
                host::remove_request_header("accept-encoding");
                Action::Continue
            }
            Route::Jwks => {
                let decision = self.serve_jwks(&worker, &plugin);
                self.respond(decision)
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.route, Route::Token(_)) {
            return Action::Continue;
        }
        if !end_of_stream && body_size <= MAX_FORM_BYTES {
            return Action::Pause;
        }
        self.read_token_request(body_size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some((worker, plugin)) = self.shared() else {
            return Action::Continue;
        };
        let readable = !end_of_stream && is_plain_json_ok(plugin.config.max_response_bytes);
        match &mut self.route {
            Route::Token(exchange) => {
                exchange.pass = !readable;
                if exchange.pass {
                    worker.metrics.count(Counter::PassedThrough);
                    return Action::Continue;
                }
                Action::Pause
            }
            Route::Discovery { hold } => {
                *hold = readable;
                if readable {
                    Action::Pause
                } else {
                    Action::Continue
                }
            }
            _ => Action::Continue,
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some((worker, plugin)) = self.shared() else {
            return Action::Continue;
        };
        let too_large = body_size > plugin.config.max_response_bytes;
        match &mut self.route {
            Route::Token(exchange) if !exchange.pass => {
                if too_large {
                    exchange.pass = true;
                    worker.metrics.count(Counter::PassedThrough);
                    return Action::Continue;
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                let decision = self.on_token_response(&worker, &plugin, body_size);
                self.respond(decision)
            }
            Route::Discovery { hold: true } => {
                if too_large {
                    return Action::Continue;
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                self.rewrite_discovery(&worker, &plugin, body_size);
                Action::Continue
            }
            _ => Action::Continue,
        }
    }
}
