//! One HTTP request through an enabled route.
//!
//! Three kinds of request matter; everything else continues untouched:
//!
//! - `POST` to the token path: the request's grant and client are read (the
//!   request itself is forwarded unchanged); the response is held, its
//!   id_token verified, the user's record loaded (and the login counted),
//!   the rules run, and the token re-signed when it gained claims. Anything
//!   that is not a successful JSON token response passes through as it came.
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
use rules::claims::VerifiedClaims;
use rules::config::{AccessTokens, InvalidTokenPolicy};
use rules::delivery::Work;
use rules::discovery::{merged_jwks, rewrite_discovery};
use rules::event::{client_ip, LoginEvent, LoginInfo, Protocol};
use rules::exchange::{TokenRequest, TokenResponse, NO_ID_TOKEN};
use rules::http::Request;
use rules::pipeline::{Next, Outcome, Pipeline, RuleResult};
use rules::record::{self, RecordChange};
use rules::verify::{verify, verify_access_token, MAX_JWKS_BYTES};
use rules::{Error, Rejection};
use serde_json::json;

use crate::host;
use crate::metrics::name;
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
    Token(Box<Exchange>),
    Discovery {
        hold: bool,
    },
    Jwks,
}

/// What a token exchange is waiting for.
enum Waiting {
    Nothing,
    /// The provider's keys, to verify this response.
    Keys(TokenResponse),
    /// An awaited call of a rule.
    Rule(TokenResponse, Box<Pipeline>),
}

/// A token exchange in progress.
struct Exchange {
    authorization: Option<Vec<u8>>,
    /// Read with the request headers: later callbacks cannot see them.
    user_agent: Option<String>,
    forwarded_for: Option<String>,
    downstream: Option<String>,
    request: TokenRequest,
    /// The request body has been read (or given up on).
    request_read: bool,
    /// The response is not Rulegate's to change.
    pass: bool,
    /// Size of the buffered response body.
    body_size: usize,
    waiting: Waiting,
    /// Time spent in the filter so far, calls and key fetches excluded.
    busy_ns: u128,
}

pub struct Stream {
    id: u32,
    state: Option<(Rc<Worker>, Rc<Plugin>)>,
    route: Route,
    /// The call this stream waits for.
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
        // The path first: on a route that is none of Rulegate's, one host
        // call is all the filter costs.
        let Some(path) = host::request_header_str(":path") else {
            return Route::Other;
        };
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let config = &plugin.config;
        let ours = [
            &config.token_path,
            &config.discovery_path,
            &config.jwks_path,
        ];
        if !ours.iter().any(|candidate| same_path(path, candidate)) {
            return Route::Other;
        }
        let Some(method) = host::request_header_str(":method") else {
            return Route::Other;
        };
        match method.as_str() {
            "POST" if same_path(path, &config.token_path) => Route::Token(Box::new(Exchange {
                authorization: host::request_header("authorization"),
                user_agent: host::request_header_lossy("user-agent"),
                forwarded_for: host::request_header_lossy(&config.client_ip.forwarded_header),
                downstream: host::property(&["source", "address"]),
                request: TokenRequest::default(),
                request_read: false,
                pass: false,
                body_size: 0,
                waiting: Waiting::Nothing,
                busy_ns: 0,
            })),
            "GET" if same_path(path, &config.discovery_path) => Route::Discovery { hold: false },
            "GET" | "HEAD" if same_path(path, &config.jwks_path) => Route::Jwks,
            _ => Route::Other,
        }
    }

    fn exchange(&mut self) -> Option<&mut Exchange> {
        match &mut self.route {
            Route::Token(exchange) => Some(exchange),
            _ => None,
        }
    }

    /// Reads the token request's form body once it is complete.
    fn read_token_request(&mut self, body_size: usize) {
        let id = self.id;
        let Some(exchange) = self.exchange() else {
            return;
        };
        let body = host::body(BufferType::HttpRequestBody, body_size, MAX_FORM_BYTES);
        let body = body.unwrap_or_default();
        exchange.request = TokenRequest::parse(&body, exchange.authorization.as_deref());
        log::debug!(
            "{id}: token request grant={:?} client={:?}",
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
        let limit = plugin.config.max_response_bytes;
        let body = host::body(BufferType::HttpResponseBody, body_size, limit);
        let body = body.ok_or(Error::NotTokenResponse("body too large"));
        let client_only = self
            .exchange()
            .is_some_and(|e| e.request.grant_type.as_deref() == Some("client_credentials"))
            && plugin.config.has_client_credentials_rules();
        let parsed = body.and_then(|body| match TokenResponse::parse(&body) {
            Err(Error::NotTokenResponse(NO_ID_TOKEN)) if client_only => {
                TokenResponse::parse_client_only(&body)
            }
            other => other,
        });
        let response = match parsed {
            Ok(response) => response,
            Err(err) => {
                log::debug!("{}: passing through: {err}", self.id);
                worker.metrics.count(name::PASSED_THROUGH);
                return Decision::Forward;
            }
        };
        if let Some(exchange) = self.exchange() {
            exchange.body_size = body_size;
        }

        let now = host::now_unix();
        if worker.keys.borrow_mut().needs_fetch(&plugin.config, now) {
            return self.fetch_keys(worker, plugin, Waiting::Keys(response), now);
        }
        self.verify_and_run(worker, plugin, response, now, true)
    }

    fn verify_and_run(
        &mut self,
        worker: &Worker,
        plugin: &Plugin,
        response: TokenResponse,
        now: u64,
        may_refresh: bool,
    ) -> Decision {
        let config = &plugin.config;
        let keys = worker.keys.borrow_mut().current(config);
        let client_id = self.exchange().and_then(|e| e.request.client_id.clone());
        let verified = match (response.has_id_token(), response.access_token()) {
            (true, _) => verify(
                &keys,
                &config.verify,
                response.id_token(),
                client_id.as_deref(),
                now,
            ),
            // A client-credentials exchange for the rules that opt in: its
            // access token is all there is to verify.
            (false, Some(access)) => verify_access_token(&keys, &config.verify, access, now),
            (false, None) => Err(Rejection::Malformed),
        };
        match verified {
            Ok(claims) => self.run_rules(worker, plugin, response, claims),
            // A key the provider rotated under the same kid shows as a bad
            // signature: a refresh (rate-limited) settles both cases.
            Err(rejection @ (Rejection::UnknownKey(_) | Rejection::BadSignature))
                if may_refresh && worker.keys.borrow().may_refresh(config, now) =>
            {
                log::debug!("{}: {rejection}; refreshing the provider's keys", self.id);
                self.fetch_keys(worker, plugin, Waiting::Keys(response), now)
            }
            Err(rejection) => self.refuse(worker, plugin, &Error::InvalidToken(rejection)),
        }
    }

    /// Loads the user's record (counting an interactive login), builds the
    /// login event and starts the pipeline.
    fn run_rules(
        &mut self,
        worker: &Worker,
        plugin: &Plugin,
        response: TokenResponse,
        claims: VerifiedClaims,
    ) -> Decision {
        let config = &plugin.config;
        let request = self
            .exchange()
            .map(|e| e.request.clone())
            .unwrap_or_default();
        let protocol = Protocol::from_grant_type(request.grant_type.as_deref());
        worker
            .metrics
            .count(&name::protocol(protocol.metric_label()));

        let change = RecordChange {
            count_login: protocol.is_interactive_login(),
            ..RecordChange::default()
        };
        // A client-credentials exchange has no user, and so no record.
        let store_result = if response.has_id_token() {
            record::update(&worker.store, claims.subject(), &change)
        } else {
            Ok(record::UserRecord::default())
        };
        let record = store_result.unwrap_or_else(|err| {
            log::error!(
                "{}: {err}; running the rules without the user's record",
                self.id
            );
            worker.metrics.count(name::STORE_FAILED);
            record::UserRecord::default()
        });

        let info = self.login_info(plugin, protocol, request.client_id, &claims);
        let event = LoginEvent::new(&claims, &record, &info);
        if event.is_first_login() {
            worker.metrics.count(name::FIRST_LOGINS);
        }
        let pipeline = Pipeline::new(config, event, claims.clone(), host::now_ms());
        self.drive(worker, plugin, response, Box::new(pipeline), claims)
    }

    fn login_info(
        &mut self,
        plugin: &Plugin,
        protocol: Protocol,
        client_id: Option<String>,
        claims: &VerifiedClaims,
    ) -> LoginInfo {
        let config = &plugin.config;
        let (downstream, forwarded, user_agent) = match self.exchange() {
            Some(e) => (
                e.downstream.take(),
                e.forwarded_for.take(),
                e.user_agent.take(),
            ),
            None => (None, None, None),
        };
        let connection = config
            .connection
            .claim
            .as_deref()
            .and_then(|claim| claims.get(claim))
            .and_then(|value| value.as_str())
            .unwrap_or(&config.connection.default)
            .to_string();
        let client_name = client_id
            .as_ref()
            .and_then(|id| config.clients.get(id))
            .cloned();
        LoginInfo {
            protocol,
            client_name,
            client_id,
            ip: client_ip(
                downstream.as_deref(),
                forwarded.as_deref(),
                config.client_ip.trusted_hops,
            ),
            user_agent,
            connection,
        }
    }

    /// Runs rules until one needs a call (sent from this stream, which
    /// waits) or all have run.
    fn drive(
        &mut self,
        worker: &Worker,
        plugin: &Plugin,
        response: TokenResponse,
        mut pipeline: Box<Pipeline>,
        claims: VerifiedClaims,
    ) -> Decision {
        match pipeline.next(&plugin.config, host::now_ms()) {
            Next::Call(request) => match self.dispatch(&request) {
                Some(token) => {
                    self.pending_call = Some(token);
                    if let Some(exchange) = self.exchange() {
                        exchange.waiting = Waiting::Rule(response, pipeline);
                    }
                    Decision::Wait
                }
                None => {
                    let reason = format!(
                        "Envoy refused the call (is cluster {} defined?)",
                        request.cluster
                    );
                    pipeline.resume(&plugin.config, &rules::http::Answer::NotSent(reason));
                    self.drive(worker, plugin, response, pipeline, claims)
                }
            },
            Next::Done => {
                let outcome = pipeline.finish(&plugin.config);
                self.apply(worker, plugin, response, &claims, outcome)
            }
        }
    }

    fn dispatch(&self, request: &Request) -> Option<u32> {
        log::debug!("{}: awaited call: {}", self.id, request.target);
        host::dispatch_request(request)
    }

    /// Carries out what the rules decided.
    fn apply(
        &mut self,
        worker: &Worker,
        plugin: &Plugin,
        response: TokenResponse,
        claims: &VerifiedClaims,
        outcome: Outcome,
    ) -> Decision {
        self.report_rules(worker, &outcome);
        let mut outcome = outcome;
        let mut jobs = std::mem::take(&mut outcome.jobs);
        if !outcome.record.is_empty() && response.has_id_token() {
            match record::update(&worker.store, claims.subject(), &outcome.record) {
                // Of two logins racing to queue the user's lead, the one the
                // store recorded sends it.
                Ok(stored) => jobs.retain(|job| match &job.work {
                    Work::Lead(lead) => stored.lead_queued_by == Some(lead.queued_by()),
                    Work::Send(_) => true,
                }),
                Err(err) => {
                    log::error!("{}: failed to save the user's record: {err}", self.id);
                    worker.metrics.count(name::STORE_FAILED);
                }
            }
        }
        worker.enqueue(jobs, host::now_ms());

        if let Some(reason) = outcome.deny {
            log::info!("{}: login denied: {reason}", self.id);
            worker.metrics.count(name::DENIED);
            let body = json!({"error": "access_denied", "error_description": reason});
            return Decision::Reply {
                status: 403,
                body: body.to_string().into_bytes(),
                cache: false,
            };
        }
        let access_token = self.rewrite_access_token(worker, plugin, &response, &outcome);
        if !outcome.changes_id_token() && access_token.is_none() {
            log::debug!("{}: token verified, no rule changed it", self.id);
            worker.metrics.count(name::UNCHANGED);
            return Decision::Forward;
        }
        let id_token = if outcome.changes_id_token() && response.has_id_token() {
            let signed =
                plugin
                    .signer
                    .resign(claims, &outcome.id_token_claims, &outcome.remove_id_token);
            match signed {
                Ok(token) => Some(token),
                Err(err) => return self.refuse(worker, plugin, &err),
            }
        } else {
            None
        };
        let body_size = self.exchange().map_or(0, |e| e.body_size);
        let body = response.with_tokens(id_token, access_token);
        if !host::replace_response_body(body_size, &body)
            || !host::set_response_header("content-length", &body.len().to_string())
        {
            let err = Error::Signing("the host refused the new body".into());
            return self.refuse(worker, plugin, &err);
        }
        log::debug!(
            "{}: tokens re-signed: {} claims added to the id_token, {} to the access token",
            self.id,
            outcome.id_token_claims.len(),
            outcome.access_token_claims.len()
        );
        worker.metrics.count(name::REWRITTEN);
        Decision::Forward
    }

    /// The access token with the rules' changes, re-signed; `None` when it
    /// does not change or cannot: an opaque token cannot carry claims, and
    /// a JWT that does not verify is not extended (both counted).
    fn rewrite_access_token(
        &self,
        worker: &Worker,
        plugin: &Plugin,
        response: &TokenResponse,
        outcome: &Outcome,
    ) -> Option<String> {
        if !outcome.changes_access_token() {
            return None;
        }
        let token = response.access_token()?;
        let is_jwt = token.split('.').count() == 3;
        if !is_jwt || plugin.config.access_tokens == AccessTokens::Opaque {
            log::debug!(
                "{}: the access token is opaque; its claim changes are skipped",
                self.id
            );
            worker.metrics.count(name::ACCESS_TOKEN_OPAQUE);
            return None;
        }
        let keys = worker.keys.borrow_mut().current(&plugin.config);
        let now = host::now_unix();
        let claims = match verify_access_token(&keys, &plugin.config.verify, token, now) {
            Ok(claims) => claims,
            Err(rejection) => {
                log::warn!("{}: access token not extended: {rejection}", self.id);
                worker.metrics.count(name::ACCESS_TOKEN_INVALID);
                return None;
            }
        };
        let signed = plugin.signer.resign(
            &claims,
            &outcome.access_token_claims,
            &outcome.remove_access_token,
        );
        match signed {
            Ok(token) => Some(token),
            Err(err) => {
                log::error!("{}: access token not extended: {err}", self.id);
                None
            }
        }
    }

    fn report_rules(&self, worker: &Worker, outcome: &Outcome) {
        for report in &outcome.reports {
            let label = match &report.result {
                RuleResult::Ran => "ran",
                RuleResult::Skipped(why) => {
                    log::debug!("{}: rule {} skipped: {why}", self.id, report.rule);
                    "skipped"
                }
                RuleResult::Failed(why) => {
                    log::warn!("{}: rule {} failed: {why}", self.id, report.rule);
                    "failed"
                }
                RuleResult::Shadowed => "shadow",
            };
            worker.metrics.count(&name::rule(&report.rule, label));
        }
        for shadow in &outcome.shadows {
            log::info!(
                "{}: shadow rule {} would add id_token claims {:?}, access token claims {:?}, \
                 remove {:?}, deny {:?}, call {:?}, change the record: {}",
                self.id,
                shadow.rule,
                shadow.id_token_claims.keys().collect::<Vec<_>>(),
                shadow.access_token_claims.keys().collect::<Vec<_>>(),
                shadow.removed_claims,
                shadow.deny,
                shadow.calls,
                shadow.record_changed,
            );
        }
        for rule in &outcome.over_budget {
            log::warn!(
                "{}: rule {rule}: claims skipped, the token would pass max_claims_bytes",
                self.id
            );
            worker.metrics.count(&name::rule(rule, "over_budget"));
        }
    }

    /// A token could not be trusted or rewritten: answer per the
    /// `on_invalid_token` policy.
    fn refuse(&self, worker: &Worker, plugin: &Plugin, err: &Error) -> Decision {
        worker.metrics.count(name::INVALID_TOKEN);
        match plugin.config.on_invalid_token {
            InvalidTokenPolicy::Pass => {
                log::warn!("{}: {err}; passing the response through untouched", self.id);
                worker.metrics.count(name::PASSED_THROUGH);
                Decision::Forward
            }
            InvalidTokenPolicy::Reject => {
                log::warn!("{}: {err}; answering server_error", self.id);
                worker.metrics.count(name::REJECTED);
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

    fn fetch_keys(
        &mut self,
        worker: &Worker,
        plugin: &Plugin,
        waiting: Waiting,
        now: u64,
    ) -> Decision {
        let provider = &plugin.config.provider;
        worker.keys.borrow_mut().attempting(now);
        let headers = vec![
            (":method", "GET"),
            (":path", provider.jwks_path.as_str()),
            (":authority", provider.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(provider.timeout_ms);
        if let Some(exchange) = self.exchange() {
            exchange.waiting = waiting;
        }
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
                worker.metrics.count(name::JWKS_FAILED);
                self.after_keys(worker, plugin, host::now_unix())
            }
        }
    }

    /// Continues whatever waited for the provider's keys.
    fn after_keys(&mut self, worker: &Worker, plugin: &Plugin, now: u64) -> Decision {
        match &mut self.route {
            Route::Token(exchange) => {
                match std::mem::replace(&mut exchange.waiting, Waiting::Nothing) {
                    Waiting::Keys(response) => {
                        self.verify_and_run(worker, plugin, response, now, false)
                    }
                    _ => Decision::Forward,
                }
            }
            Route::Jwks => self.serve_jwks(worker, plugin),
            _ => Decision::Forward,
        }
    }

    /// Hands an awaited call's answer to the pipeline and goes on.
    fn after_rule_call(&mut self, worker: &Worker, plugin: &Plugin, body_size: usize) -> Decision {
        let Some(exchange) = self.exchange() else {
            return Decision::Forward;
        };
        let Waiting::Rule(response, mut pipeline) =
            std::mem::replace(&mut exchange.waiting, Waiting::Nothing)
        else {
            return Decision::Forward;
        };
        let answer = host::call_answer(body_size);
        pipeline.resume(&plugin.config, &answer);
        let claims = pipeline.claims().clone();
        self.drive(worker, plugin, response, pipeline, claims)
    }

    fn load_keys(&self, worker: &Worker, plugin: &Plugin, body_size: usize) {
        let now = host::now_unix();
        let answer = host::call_answer(body_size);
        let loaded = match answer.code() {
            Some(200) if body_size > MAX_JWKS_BYTES => Err(Error::Jwks(format!(
                "larger than {MAX_JWKS_BYTES} bytes ({body_size})"
            ))),
            Some(200) => worker
                .keys
                .borrow_mut()
                .load(&plugin.config, answer.body(), now),
            Some(status) => Err(Error::Jwks(format!("provider answered status {status}"))),
            None => Err(Error::Jwks("no answer (connection failed or reset)".into())),
        };
        match loaded {
            Ok(count) => {
                log::info!("loaded {count} provider keys");
                worker.metrics.count(name::JWKS_LOADED);
            }
            Err(err) => {
                log::warn!(
                    "failed to refresh the provider's keys, keeping the last good ones: {err}"
                );
                worker.metrics.count(name::JWKS_FAILED);
            }
        }
    }

    fn serve_jwks(&mut self, worker: &Worker, plugin: &Plugin) -> Decision {
        let now = host::now_unix();
        if self.pending_call.is_none() && worker.keys.borrow_mut().needs_fetch(&plugin.config, now)
        {
            return self.fetch_keys(worker, plugin, Waiting::Nothing, now);
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
        worker.metrics.count(name::JWKS_SERVED);
        Decision::Reply {
            status: 200,
            body: merged_jwks(&keys, plugin.signer.public_jwk()),
            cache: true,
        }
    }

    fn rewrite_discovery(&self, worker: &Worker, plugin: &Plugin, body_size: usize) {
        let limit = plugin.config.max_response_bytes;
        let Some(body) = host::body(BufferType::HttpResponseBody, body_size, limit) else {
            return;
        };
        match rewrite_discovery(&body, &plugin.config.jwks_uri) {
            Ok(document) => {
                if host::replace_response_body(body_size, &document)
                    && host::set_response_header("content-length", &document.len().to_string())
                {
                    worker.metrics.count(name::DISCOVERY_REWRITTEN);
                }
            }
            Err(err) => log::warn!("{}: discovery document left as is: {err}", self.id),
        }
    }

    /// Turns a decision into what Envoy does with the stream, and records
    /// the time the filter spent once the exchange is decided.
    fn respond(&mut self, worker: &Worker, decision: Decision, started_ns: u128) -> Action {
        if let Some(exchange) = self.exchange() {
            exchange.busy_ns += host::now_ns().saturating_sub(started_ns);
            if !matches!(decision, Decision::Wait) {
                let micros = (exchange.busy_ns / 1000) as u64;
                worker.metrics.record(name::PROCESSING_US, micros);
            }
        }
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
                let mut headers = vec![
                    ("content-type", "application/json"),
                    ("cache-control", cache_control),
                ];
                if matches!(self.route, Route::Jwks) {
                    // Browser apps fetch keys from other origins, as they do
                    // the provider's own key set.
                    headers.push(("access-control-allow-origin", "*"));
                }
                host::send_response(status, headers, &body);
                Action::Pause
            }
        }
    }

    fn shared(&self) -> Option<(Rc<Worker>, Rc<Plugin>)> {
        self.state.clone()
    }
}

/// Whether a request path names a configured path: ignoring case and one
/// trailing slash, as the providers Rulegate sits in front of do. Anything
/// they would answer on the token endpoint must reach the filter too.
fn same_path(path: &str, configured: &str) -> bool {
    let path = match path.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => path,
    };
    path.eq_ignore_ascii_case(configured)
}

/// What a held response (token endpoint or discovery) is.
enum Readability {
    /// A successful JSON response Rulegate can read.
    Readable,
    /// Not a token response (an error, another content type): pass it on.
    NotTokenResponse,
    /// A successful response Rulegate cannot read (compressed, too large):
    /// it may hold an id_token that cannot be verified.
    Unreadable(&'static str),
}

/// Classifies a held response from its headers.
fn response_readability(max_bytes: usize) -> Readability {
    if host::response_header(":status").as_deref() != Some("200") {
        return Readability::NotTokenResponse;
    }
    let json = host::response_header("content-type")
        .is_some_and(|value| value.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Readability::NotTokenResponse;
    }
    let identity = host::response_header("content-encoding")
        .is_none_or(|value| value.eq_ignore_ascii_case("identity"));
    if !identity {
        return Readability::Unreadable("the response is compressed");
    }
    let fits = host::response_header("content-length")
        .and_then(|value| value.parse::<usize>().ok())
        .is_none_or(|length| length <= max_bytes);
    if !fits {
        return Readability::Unreadable("the response is larger than max_response_bytes");
    }
    Readability::Readable
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
        self.pending_call = None;
        let Some((worker, plugin)) = self.shared() else {
            return;
        };
        let started = host::now_ns();
        let waiting_for_rule = matches!(
            &self.route,
            Route::Token(exchange) if matches!(exchange.waiting, Waiting::Rule(..))
        );
        let decision = if waiting_for_rule {
            self.after_rule_call(&worker, &plugin, body_size)
        } else {
            self.load_keys(&worker, &plugin, body_size);
            self.after_keys(&worker, &plugin, host::now_unix())
        };
        let is_token = matches!(self.route, Route::Token(_));
        if let (Action::Continue, true) = (self.respond(&worker, decision, started), is_token) {
            host::resume_response();
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "test-trap")]
        if host::request_header("x-rulegate-test-trap").is_some() {
            // Only in the test build: a trap, exactly as a bug would cause.
            std::process::abort();
        }
        let Some((worker, plugin)) = self.shared() else {
            return Action::Continue;
        };
        self.route = self.classify(&plugin);
        if matches!(self.route, Route::Token(_)) {
            // The token response is read and rewritten: it must arrive
            // uncompressed, whatever the client accepts.
            host::remove_request_header("accept-encoding");
        }
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
                self.respond(&worker, decision, 0)
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(exchange) = self.exchange() else {
            return Action::Continue;
        };
        if exchange.request_read {
            return Action::Continue;
        }
        exchange.request_read = true;
        if !end_of_stream && body_size <= MAX_FORM_BYTES {
            exchange.request_read = false;
            return Action::Pause;
        }
        self.read_token_request(body_size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if matches!(self.route, Route::Other) {
            return Action::Continue;
        }
        let Some((worker, plugin)) = self.shared() else {
            return Action::Continue;
        };
        let max_bytes = plugin.config.max_response_bytes;
        if let Route::Token(exchange) = &mut self.route {
            let readability = response_readability(max_bytes);
            exchange.pass = !matches!(readability, Readability::Readable) || end_of_stream;
            return match readability {
                Readability::Unreadable(why) => {
                    let decision = self.refuse(&worker, &plugin, &Error::NotTokenResponse(why));
                    self.respond(&worker, decision, 0)
                }
                _ if exchange.pass => {
                    log::debug!(
                        "{}: passing through: not a successful JSON response",
                        self.id
                    );
                    worker.metrics.count(name::PASSED_THROUGH);
                    Action::Continue
                }
                Readability::Readable | Readability::NotTokenResponse => Action::Pause,
            };
        }
        // Other routes read nothing: the filter must cost them as little
        // as a filter can.
        let Route::Discovery { hold } = &mut self.route else {
            return Action::Continue;
        };
        *hold = !end_of_stream && matches!(response_readability(max_bytes), Readability::Readable);
        if *hold {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if matches!(self.route, Route::Other) {
            return Action::Continue;
        }
        let Some((worker, plugin)) = self.shared() else {
            return Action::Continue;
        };
        let too_large = body_size > plugin.config.max_response_bytes;
        match &mut self.route {
            Route::Token(exchange) if !exchange.pass => {
                if too_large {
                    exchange.pass = true;
                    let why = "the response is larger than max_response_bytes";
                    let decision = self.refuse(&worker, &plugin, &Error::NotTokenResponse(why));
                    return self.respond(&worker, decision, 0);
                }
                if !end_of_stream {
                    return Action::Pause;
                }
                let started = host::now_ns();
                let decision = self.on_token_response(&worker, &plugin, body_size);
                self.respond(&worker, decision, started)
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
