//! Stand-ins for the outside services the built-in steps call: Slack
//! incoming webhooks, Segment, Keen.io, Zapier, Salesforce and FullContact,
//! all served on one loopback port.
//!
//! The end-to-end tests and the demo must run offline, and they must catch
//! an adapter that sends the wrong thing. So each stand-in checks a request
//! the way `shared/reference/wire-formats.md` says the real service does,
//! and answers with that service's own success or error. Where the spec
//! names no error for a case (a wrong method, an unknown Keen project, an
//! unknown Zapier hook), the stand-in answers with its best guess at the
//! real one, in that service's error format.
//!
//! Envoy clusters point at this one port and keep the real host name as
//! `:authority`, so requests are routed by path and method alone; the Host
//! header is recorded, never used.
//!
//! Every request is recorded, valid or not, with what was answered. A record
//! is `valid` when the request follows the spec. A request can be invalid
//! and still get a 2xx where the real service answers 2xx and silently drops
//! or alters it (a Segment `track` without `event`, a Slack text over the
//! length limit); its `problems` then say what the real service would do.
//! The pipeline's own delivery rules count too: an event without the
//! `messageId` Segment dedups on is flagged.
//!
//! Failures are made on demand through a control API on the same port,
//! never recorded. Its answers are JSON: `{"ok": true, …}`, or
//! `{"error": "…"}` with 400 or 404.
//!
//! - `GET /_control/received[?service=NAME]`: the records in arrival order;
//!   NAME matches a service or an endpoint (`salesforce_lead`).
//! - `POST /_control/script` `{"service": NAME, "answers": [...]}`, each
//!   answer a [`ScriptedAnswer`]: the next requests to NAME get these
//!   answers in order, after any already queued; then normal behaviour
//!   resumes.
//! - `POST /_control/down` `{"service": NAME, "status": 503}` (`status`
//!   defaults to 503, `body` is optional): answer `status` to everything
//!   until `up`. A queued script still goes first.
//! - `POST /_control/up` `{"service": NAME}`.
//! - `POST /_control/expire_salesforce_tokens`: every token issued so far is
//!   refused with `INVALID_SESSION_ID`.
//! - `POST /_control/clear`: forget records, scripts, outages and created
//!   Leads. Issued tokens stay valid, so a cached token keeps working.
//! - `GET /_control/health`.
//!
//! Under `/demo/` the same port serves the demo page and a read-only view
//! of the records that hides every credential (see [`page`]); Envoy routes
//! the page there, never the control API.
//!
//! [`Standins`] is the client the tests use; the `standins` binary serves
//! the same thing for the demo.
//!
//! The server never panics on a request: every bad request gets an error
//! answer. Only HTTP/1.1 is served, which is what Envoy speaks to an
//! upstream cluster unless told otherwise.

// Request handling must answer, never crash the server. The test client at
// the end of this file opts back in, with its reason.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::http::request::Parts;
use hyper::http::{HeaderName, HeaderValue, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

mod page;

// ---------------------------------------------------------------------------
// The fixed test credentials and paths.
// ---------------------------------------------------------------------------

/// Slack incoming webhook of the sign-ups channel; recorded as `slack`.
/// The URL is Slack's only credential.
pub const SLACK_SIGNUPS_PATH: &str = "/services/T-RULEGATE-DEMO/B-SIGNUPS/signupsecret";
/// Slack incoming webhook of the alerts channel; recorded as `slack_alert`.
pub const SLACK_ALERTS_PATH: &str = "/services/T-RULEGATE-DEMO/B-ALERTS/alertsecret";
/// Slack cuts message text beyond this many characters.
pub const SLACK_TEXT_LIMIT: usize = 40_000;

/// Segment write key: the HTTP Basic user name, with an empty password
/// (`Authorization: Basic base64("segment-write-key:")`), or `writeKey` in
/// the body.
pub const SEGMENT_WRITE_KEY: &str = "segment-write-key";
/// Where the track step posts; `/v1/identify`, `/v1/batch` and the other
/// Tracking API calls are served too.
pub const SEGMENT_TRACK_PATH: &str = "/v1/track";
/// Tracking API calls the stand-in serves under `/v1/`.
const SEGMENT_CALLS: [&str; 8] = [
    "track", "identify", "page", "screen", "group", "alias", "batch", "import",
];
/// The `type`s a batch may hold.
const SEGMENT_EVENT_TYPES: [&str; 6] = ["track", "identify", "page", "screen", "group", "alias"];
const SEGMENT_EVENT_BYTES: usize = 32 * 1024;
const SEGMENT_BATCH_BYTES: usize = 500 * 1024;
const SEGMENT_BATCH_EVENTS: usize = 2_500;

/// Keen project id; events go to `POST /3.0/projects/rulegate-project/events/{COLLECTION}`.
pub const KEEN_PROJECT_ID: &str = "rulegate-project";
/// Keen write key, sent raw as `Authorization: keen-write-key` (no scheme
/// word), or as the `api_key` query parameter.
pub const KEEN_WRITE_KEY: &str = "keen-write-key";
/// The project's events; append `/{COLLECTION}` for one event, or post a
/// batch here.
pub const KEEN_EVENTS_PATH: &str = "/3.0/projects/rulegate-project/events";
const KEEN_EVENT_BYTES: usize = 1_000_000;

/// Zapier catch hook; the URL is Zapier's only credential.
pub const ZAPIER_HOOK_PATH: &str = "/hooks/catch/123456/rulegate/";

/// Salesforce OAuth token endpoint (form body).
pub const SALESFORCE_TOKEN_PATH: &str = "/services/oauth2/token";
/// Connected-app client id, for `client_credentials` and `password`.
pub const SALESFORCE_CLIENT_ID: &str = "sf-client-id";
/// Connected-app client secret.
pub const SALESFORCE_CLIENT_SECRET: &str = "sf-client-secret";
/// User name for the `password` grant.
pub const SALESFORCE_USERNAME: &str = "sf-user@example.com";
/// Password for the `password` grant.
pub const SALESFORCE_PASSWORD: &str = "sf-password";
/// Lead creation, under the `instance_url` the token answer gives (the
/// stand-ins' own base URL). A Lead whose `Email` matches an earlier one
/// gets `DUPLICATES_DETECTED`, as with Salesforce's default duplicate rule,
/// unless `Sforce-Duplicate-Rule-Header: allowSave=true` is sent.
pub const SALESFORCE_LEAD_PATH: &str = "/services/data/v67.0/sobjects/Lead/";

/// FullContact person enrichment.
pub const FULLCONTACT_ENRICH_PATH: &str = "/v3/person.enrich";
/// FullContact API key: `Authorization: Bearer fullcontact-api-key`.
pub const FULLCONTACT_API_KEY: &str = "fullcontact-api-key";
/// Emails whose local part starts with this get FullContact's 404 (no
/// profile); every other well-formed email gets a made-up person.
pub const FULLCONTACT_UNKNOWN_PREFIX: &str = "unknown";

/// The names records carry and scripts and outages target. `salesforce`
/// covers both Salesforce endpoints; `salesforce_token` and
/// `salesforce_lead` one each.
pub const SERVICES: [&str; 13] = [
    "slack",
    "slack_alert",
    "segment",
    "keen",
    "zapier",
    "salesforce",
    "salesforce_token",
    "salesforce_lead",
    "fullcontact",
    "webhook",
    "idp",
    "idp_token",
    "idp_jwks",
];

/// Where the control API lives; requests under it are never recorded.
pub const CONTROL_PREFIX: &str = "/_control/";

/// Larger bodies are refused with 413 before any stand-in sees them.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The longest a scripted answer may be held back.
const MAX_DELAY_MS: u64 = 300_000;

// ---------------------------------------------------------------------------
// What the stand-ins record and what a test can script.
// ---------------------------------------------------------------------------

/// One request a stand-in received, and what it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// `slack`, `slack_alert`, `segment`, `keen`, `zapier`, `salesforce`,
    /// `fullcontact`, or `unknown` when no stand-in serves the path.
    pub service: String,
    /// The finer name: `salesforce_token` or `salesforce_lead` for
    /// Salesforce, the service name for the others.
    pub endpoint: String,
    pub method: String,
    /// Path and query, as received.
    pub path: String,
    /// Every header, names in lowercase; repeated headers joined by ", ".
    pub headers: BTreeMap<String, String>,
    /// The raw body (invalid UTF-8 replaced).
    pub body: String,
    /// The body parsed as JSON, when it parses.
    pub json: Option<Value>,
    /// The status answered; 0 when the connection was closed unanswered.
    pub status: u16,
    /// Who chose the answer: `service` (the stand-in's normal behaviour),
    /// `script` or `down`.
    pub answered_by: String,
    /// Whether the request follows the spec.
    pub valid: bool,
    /// Why it does not; empty when valid.
    pub problems: Vec<String>,
    /// Arrival, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl Received {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// An answer a test puts in place of a stand-in's normal one.
///
/// With a `status`, that status is answered with `body` (empty by default)
/// and `headers`. Without one, the normal answer is given (late, if
/// `delay_ms` says so). With `reset`, the connection is closed without an
/// answer, after `delay_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

impl ScriptedAnswer {
    /// Answer `status` with an empty body.
    pub fn status(status: u16) -> ScriptedAnswer {
        ScriptedAnswer {
            status: Some(status),
            ..ScriptedAnswer::default()
        }
    }

    /// Close the connection without answering.
    pub fn reset() -> ScriptedAnswer {
        ScriptedAnswer {
            reset: true,
            ..ScriptedAnswer::default()
        }
    }

    /// The normal answer, `delay_ms` late.
    pub fn late(delay_ms: u64) -> ScriptedAnswer {
        ScriptedAnswer::default().with_delay_ms(delay_ms)
    }

    pub fn with_body(mut self, body: &str) -> ScriptedAnswer {
        self.body = Some(body.to_owned());
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> ScriptedAnswer {
        self.headers.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn with_delay_ms(mut self, delay_ms: u64) -> ScriptedAnswer {
        self.delay_ms = Some(delay_ms);
        self
    }

    /// Refuses what cannot be answered: a bad status or header, an
    /// answer that is both a reset and a reply, a delay beyond the limit.
    fn check(&self) -> Result<(), String> {
        if let Some(status) = self.status {
            if !(200..=599).contains(&status) {
                return Err(format!("status {status} is not between 200 and 599"));
            }
        }
        if self.reset && (self.status.is_some() || self.body.is_some()) {
            return Err("a reset answer takes no status and no body".into());
        }
        if self.status.is_none() && (self.body.is_some() || !self.headers.is_empty()) {
            return Err(
                "body and headers need a status (or omit all three for the normal answer)".into(),
            );
        }
        if self.delay_ms.is_some_and(|delay| delay > MAX_DELAY_MS) {
            return Err(format!("delay_ms is over the limit of {MAX_DELAY_MS}"));
        }
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a header name"))?;
            HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header {name:?} is not a header value"))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The server.
// ---------------------------------------------------------------------------

/// Binds `127.0.0.1:port`; port 0 picks a free one.
pub fn bind(port: u16) -> io::Result<StdTcpListener> {
    StdTcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// Serves on `listener` until the process ends, logging one line per
/// request on stderr (service, method, status, problems; never a body or
/// a credential). This is what the `standins` binary runs.
pub fn serve_forever(listener: StdTcpListener) -> io::Result<()> {
    let shared = Arc::new(Shared::new(listener.local_addr()?, true));
    runtime()?.block_on(serve(listener, shared, std::future::pending()))
}

/// The stand-ins, serving on a background thread of this process until
/// dropped.
pub struct Server {
    base_url: String,
    port: u16,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `127.0.0.1:port` (0 = any free port) and starts serving.
    pub fn spawn(port: u16) -> io::Result<Server> {
        let listener = bind(port)?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared::new(address, false));
        let base_url = shared.base_url.clone();
        let runtime = runtime()?;
        let (shutdown, stopped) = oneshot::channel::<()>();

        let thread = thread::Builder::new()
            .name("standins".into())
            .spawn(move || {
                let stop = async {
                    let _ = stopped.await;
                };
                if let Err(err) = runtime.block_on(serve(listener, shared, stop)) {
                    eprintln!("standins: failed to serve: {err}");
                }
            })?;
        Ok(Server {
            base_url,
            port: address.port(),
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("standins-worker")
        .enable_io()
        .enable_time()
        .build()
}

/// Accepts connections until `shutdown` completes; each connection runs on
/// its own task, so a delayed answer holds back nobody else.
async fn serve(
    listener: StdTcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::pin!(shutdown);

    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors and the like: wait instead of spinning.
                eprintln!("standins: failed to accept a connection: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(Arc::clone(&shared), request));
            // A scripted reset ends the connection with an error on purpose;
            // a client hanging up is no news either.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Returned to hyper to close the connection without answering: on
/// HTTP/1.1 a service error drops the connection.
#[derive(Debug)]
struct CloseConnection;

impl fmt::Display for CloseConnection {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("connection closed without an answer, as scripted")
    }
}

impl std::error::Error for CloseConnection {}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, CloseConnection> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|err| format!("the body could not be read whole: {err}"));
    let inbound = Inbound::new(&parts, body);

    if inbound.path.starts_with(CONTROL_PREFIX) {
        return Ok(control(&shared, &inbound).into_response());
    }
    if inbound.path.starts_with(page::PREFIX) {
        return Ok(page::answer(&shared, &inbound).into_response());
    }

    let decision = decide(&shared, &inbound);
    if let Some(delay) = decision.delay {
        tokio::time::sleep(delay).await;
    }
    match decision.reply {
        Some(answer) => Ok(answer.into_response()),
        None => Err(CloseConnection),
    }
}

// ---------------------------------------------------------------------------
// Shared state.
// ---------------------------------------------------------------------------

struct Shared {
    /// `http://127.0.0.1:PORT`: Salesforce's `instance_url`.
    base_url: String,
    /// Whether to log a line per request on stderr.
    log: bool,
    state: Mutex<State>,
}

impl Shared {
    fn new(address: SocketAddr, log: bool) -> Shared {
        Shared {
            base_url: format!("http://127.0.0.1:{}", address.port()),
            log,
            state: Mutex::new(State::default()),
        }
    }

    /// The state; a panic elsewhere while holding it leaves it usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    records: Vec<Received>,
    /// Scripted answers by service or endpoint name, first one next.
    scripts: HashMap<String, VecDeque<ScriptedAnswer>>,
    outages: HashMap<String, Outage>,
    /// Every Salesforce token issued, and whether it is still valid.
    tokens: HashMap<String, bool>,
    /// Emails of the Leads created, lowercase, for duplicate detection.
    lead_emails: HashSet<String>,
}

struct Outage {
    status: u16,
    body: Option<String>,
}

impl State {
    /// The next scripted answer for the endpoint, else for the service.
    fn next_script(&mut self, route: Route) -> Option<ScriptedAnswer> {
        [route.endpoint(), route.service()]
            .into_iter()
            .find_map(|name| self.scripts.get_mut(name)?.pop_front())
    }

    fn outage(&self, route: Route) -> Option<&Outage> {
        self.outages
            .get(route.endpoint())
            .or_else(|| self.outages.get(route.service()))
    }

    /// Makes the side effect of a normal answer real.
    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::IssueToken(token) => {
                self.tokens.insert(token, true);
            }
            Effect::CreateLead(email) => {
                if let Some(email) = email {
                    self.lead_emails.insert(email);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A request as the stand-ins see it, and what they answer.
// ---------------------------------------------------------------------------

struct Inbound {
    method: String,
    /// The path without the query.
    path: String,
    /// Path and query, as recorded.
    target: String,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    body: String,
    body_len: usize,
    json: Option<Value>,
    /// Why the body could not be read, when it could not.
    unreadable: Option<String>,
}

impl Inbound {
    fn new(parts: &Parts, body: Result<Bytes, String>) -> Inbound {
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match headers.get_mut(name.as_str()) {
                Some(existing) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                None => {
                    headers.insert(name.as_str().to_owned(), value);
                }
            }
        }
        let (bytes, unreadable) = match body {
            Ok(bytes) => (bytes, None),
            Err(problem) => (Bytes::new(), Some(problem)),
        };
        let target = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());

        Inbound {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            target,
            query: parts.uri.query().map(str::to_owned),
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            body_len: bytes.len(),
            json: serde_json::from_slice(&bytes).ok(),
            unreadable,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The media type of the body, lowercase, without parameters.
    fn media_type(&self) -> Option<String> {
        let content_type = self.header("content-type")?;
        let media_type = content_type.split(';').next().unwrap_or_default();
        Some(media_type.trim().to_ascii_lowercase())
    }

    fn is_json(&self) -> bool {
        self.media_type().as_deref() == Some("application/json")
    }

    /// The content type, for a problem message.
    fn content_type_shown(&self) -> String {
        self.header("content-type")
            .map_or_else(|| "missing".to_owned(), |value| format!("{value:?}"))
    }

    fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The form fields of an `application/x-www-form-urlencoded` body,
    /// first occurrence of each name.
    fn form(&self) -> BTreeMap<String, String> {
        let mut fields = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(self.body.as_bytes()) {
            fields
                .entry(name.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        fields
    }
}

/// An HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.to_owned(),
        }
    }

    fn json(status: u16, body: &Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    fn with_header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn with_content_type(mut self, value: &str) -> Answer {
        self.headers.retain(|(name, _)| name != "content-type");
        self.with_header("content-type", value)
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut builder = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder
            .body(Full::new(Bytes::from(self.body)))
            .unwrap_or_else(|_| {
                let mut fallback = Response::new(Full::new(Bytes::from_static(
                    b"the stand-ins could not build their answer",
                )));
                *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                fallback
            })
    }
}

/// What happens to the stand-ins' state when the normal answer is given.
enum Effect {
    None,
    IssueToken(String),
    /// A Lead was created, with this email (lowercase) when it had one.
    CreateLead(Option<String>),
}

/// A stand-in's judgement of a request: its normal answer, what is wrong
/// with the request, and the side effect of answering normally.
struct Verdict {
    answer: Answer,
    problems: Vec<String>,
    effect: Effect,
}

impl Verdict {
    fn accept(answer: Answer) -> Verdict {
        Verdict {
            answer,
            problems: Vec::new(),
            effect: Effect::None,
        }
    }

    fn refuse(answer: Answer, problem: impl Into<String>) -> Verdict {
        Verdict {
            answer,
            problems: vec![problem.into()],
            effect: Effect::None,
        }
    }

    fn with_problems(mut self, problems: Vec<String>) -> Verdict {
        self.problems.extend(problems);
        self
    }

    fn with_effect(mut self, effect: Effect) -> Verdict {
        self.effect = effect;
        self
    }
}

/// A stand-in's check: `Err` holds a refusal and ends the check early.
type Checked = Result<Verdict, Verdict>;

fn require_post(inbound: &Inbound) -> Result<(), Verdict> {
    if inbound.method == "POST" {
        return Ok(());
    }
    Err(Verdict::refuse(
        Answer::text(405, "method not allowed").with_header("allow", "POST"),
        format!("{} instead of POST", inbound.method),
    ))
}

/// What to answer, and when.
struct Decision {
    delay: Option<Duration>,
    /// None: close the connection without answering.
    reply: Option<Answer>,
}

/// Judges the request, picks the answer (script, outage or normal), applies
/// the normal answer's side effect and records the request.
fn decide(shared: &Shared, inbound: &Inbound) -> Decision {
    if let Some(reply) = mint(inbound) {
        // Minted logins are load, not evidence: they are not recorded.
        return Decision {
            delay: None,
            reply: Some(reply),
        };
    }
    let route = Route::of(&inbound.path);
    let mut state = shared.lock();
    let verdict = match &inbound.unreadable {
        Some(problem) => Verdict::refuse(Answer::text(413, "request body too large"), problem),
        None => check(route, inbound, &state, &shared.base_url),
    };
    let Verdict {
        answer,
        problems,
        effect,
    } = verdict;

    let (decision, answered_by) = if let Some(scripted) = state.next_script(route) {
        (
            scripted_decision(scripted, answer, effect, &mut state),
            "script",
        )
    } else if let Some(outage) = state.outage(route) {
        let reason = reason_phrase(outage.status);
        let body = outage.body.clone().unwrap_or(reason);
        let reply = Answer::text(outage.status, &body);
        (
            Decision {
                delay: None,
                reply: Some(reply),
            },
            "down",
        )
    } else {
        state.apply(effect);
        (
            Decision {
                delay: None,
                reply: Some(answer),
            },
            "service",
        )
    };

    let record = Received {
        service: route.service().to_owned(),
        endpoint: route.endpoint().to_owned(),
        method: inbound.method.clone(),
        path: inbound.target.clone(),
        headers: inbound.headers.clone(),
        body: inbound.body.clone(),
        json: inbound.json.clone(),
        status: decision.reply.as_ref().map_or(0, |reply| reply.status),
        answered_by: answered_by.to_owned(),
        valid: problems.is_empty(),
        problems,
        at_ms: now_ms(),
    };
    if shared.log {
        log_record(&record);
    }
    state.records.push(record);
    decision
}

fn scripted_decision(
    scripted: ScriptedAnswer,
    normal: Answer,
    effect: Effect,
    state: &mut State,
) -> Decision {
    let delay = scripted.delay_ms.map(Duration::from_millis);
    if scripted.reset {
        return Decision { delay, reply: None };
    }
    let Some(status) = scripted.status else {
        state.apply(effect);
        return Decision {
            delay,
            reply: Some(normal),
        };
    };
    let reply = Answer {
        status,
        headers: scripted.headers.into_iter().collect(),
        body: scripted.body.unwrap_or_default(),
    };
    Decision {
        delay,
        reply: Some(reply),
    }
}

fn log_record(record: &Received) {
    let verdict = if record.valid {
        String::new()
    } else {
        format!(" invalid: {}", record.problems.join("; "))
    };
    eprintln!(
        "standins: {} {} -> {} ({}){verdict}",
        record.endpoint, record.method, record.status, record.answered_by
    );
}

// ---------------------------------------------------------------------------
// Routing.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    SlackSignups,
    SlackAlerts,
    /// Under `/services/` but no webhook the stand-in knows.
    SlackUnknownHook,
    Segment,
    Keen,
    Zapier,
    SalesforceToken,
    /// Under `/services/data/`: the Lead endpoint or a wrong path.
    SalesforceData,
    FullContact,
    /// A team's own webhook endpoint (configured rules), under `/webhooks/`.
    Webhook,
    /// A fake identity provider's token endpoint, `/fake-idp/token`: answers
    /// only what a test scripts, to feed the filter hostile responses.
    FakeIdpToken,
    /// The fake identity provider's JWKS, `/fake-idp/jwks`.
    FakeIdpJwks,
    Unknown,
}

impl Route {
    /// By path alone: the Host header names the real service and the
    /// method is each stand-in's to check.
    fn of(path: &str) -> Route {
        if path == SALESFORCE_TOKEN_PATH {
            Route::SalesforceToken
        } else if path.starts_with("/services/data/") {
            Route::SalesforceData
        } else if path == SLACK_SIGNUPS_PATH {
            Route::SlackSignups
        } else if path == SLACK_ALERTS_PATH {
            Route::SlackAlerts
        } else if path.starts_with("/services/") {
            Route::SlackUnknownHook
        } else if path.starts_with("/v1/") {
            Route::Segment
        } else if path.starts_with("/3.0/") {
            Route::Keen
        } else if path.starts_with("/hooks/") {
            Route::Zapier
        } else if path.starts_with("/v3/") || path.starts_with("/v2/") {
            Route::FullContact
        } else if path.starts_with("/webhooks/") {
            Route::Webhook
        } else if path == "/fake-idp/jwks" {
            Route::FakeIdpJwks
        } else if path.starts_with("/fake-idp/") {
            Route::FakeIdpToken
        } else {
            Route::Unknown
        }
    }

    fn service(self) -> &'static str {
        match self {
            Route::SlackSignups | Route::SlackUnknownHook => "slack",
            Route::SlackAlerts => "slack_alert",
            Route::Segment => "segment",
            Route::Keen => "keen",
            Route::Zapier => "zapier",
            Route::SalesforceToken | Route::SalesforceData => "salesforce",
            Route::FullContact => "fullcontact",
            Route::Webhook => "webhook",
            Route::FakeIdpToken | Route::FakeIdpJwks => "idp",
            Route::Unknown => "unknown",
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Route::SalesforceToken => "salesforce_token",
            Route::SalesforceData => "salesforce_lead",
            Route::FakeIdpToken => "idp_token",
            Route::FakeIdpJwks => "idp_jwks",
            other => other.service(),
        }
    }
}

fn check(route: Route, inbound: &Inbound, state: &State, base_url: &str) -> Verdict {
    let checked = match route {
        Route::SlackSignups | Route::SlackAlerts => slack(inbound),
        Route::SlackUnknownHook => Err(Verdict::refuse(
            Answer::text(404, "no_service"),
            "no incoming webhook at this path",
        )),
        Route::Segment => segment(inbound),
        Route::Keen => keen(inbound),
        Route::Zapier => zapier(inbound),
        Route::SalesforceToken => salesforce_token(inbound, base_url),
        Route::SalesforceData => salesforce_lead(inbound, state),
        Route::FullContact => fullcontact(inbound),
        Route::Webhook => webhook(inbound),
        Route::FakeIdpToken | Route::FakeIdpJwks => Ok(Verdict::accept(Answer::json(
            503,
            &json!({"error": "temporarily_unavailable", "error_description": "nothing scripted"}),
        ))),
        Route::Unknown => Err(Verdict::refuse(
            Answer::text(404, "no stand-in serves this path"),
            format!("no stand-in serves {} {}", inbound.method, inbound.path),
        )),
    };
    checked.unwrap_or_else(|refused| refused)
}

// ---------------------------------------------------------------------------
// Slack incoming webhooks: text answers, `ok` or an error word.
// ---------------------------------------------------------------------------

fn slack(inbound: &Inbound) -> Checked {
    require_post(inbound)?;
    let invalid_payload =
        |problem: String| Verdict::refuse(Answer::text(400, "invalid_payload"), problem);
    if !inbound.is_json() {
        return Err(invalid_payload(format!(
            "content-type is {}; Slack wants application/json",
            inbound.content_type_shown()
        )));
    }
    let Some(Value::Object(message)) = &inbound.json else {
        return Err(invalid_payload("the body is not a JSON object".into()));
    };

    let text = match message.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.as_str()),
        Some(_) => return Err(invalid_payload("text is not a string".into())),
    };
    slack_list(message, "blocks", "invalid_blocks", true)?;
    slack_list(message, "attachments", "invalid_attachments", false)?;

    let has_text = text.is_some_and(|text| !text.trim().is_empty());
    let has_list = |field: &str| {
        message
            .get(field)
            .and_then(Value::as_array)
            .is_some_and(|items| !items.is_empty())
    };
    if !has_text && !has_list("blocks") && !has_list("attachments") {
        return Err(Verdict::refuse(
            Answer::text(400, "no_text"),
            "no text, blocks or attachments",
        ));
    }

    let mut problems = Vec::new();
    if text.is_some_and(|text| text.chars().count() > SLACK_TEXT_LIMIT) {
        problems.push(format!(
            "text is longer than {SLACK_TEXT_LIMIT} characters; Slack cuts it"
        ));
    }
    Ok(Verdict::accept(Answer::text(200, "ok")).with_problems(problems))
}

/// `blocks` and `attachments`, when present, are arrays of objects; each
/// block names its `type`.
fn slack_list(
    message: &Map<String, Value>,
    field: &str,
    error: &str,
    needs_type: bool,
) -> Result<(), Verdict> {
    let Some(value) = message.get(field) else {
        return Ok(());
    };
    let refuse = |problem: String| Verdict::refuse(Answer::text(400, error), problem);
    let Value::Array(items) = value else {
        return Err(refuse(format!("{field} is not an array")));
    };
    for (index, item) in items.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(refuse(format!("{field}[{index}] is not an object")));
        };
        if needs_type && !item.get("type").is_some_and(Value::is_string) {
            return Err(refuse(format!("{field}[{index}] has no type")));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Segment Tracking API: JSON success, RudderStack-style text errors.
// ---------------------------------------------------------------------------

fn segment(inbound: &Inbound) -> Checked {
    let call = inbound
        .path
        .trim_start_matches("/v1/")
        .trim_end_matches('/');
    if !SEGMENT_CALLS.contains(&call) {
        return Err(Verdict::refuse(
            Answer::text(404, "Not Found"),
            format!("no Segment call at {}", inbound.path),
        ));
    }
    require_post(inbound)?;
    if !inbound.is_json() {
        return Err(Verdict::refuse(
            Answer::text(
                400,
                "Invalid request: content-type must be application/json",
            ),
            format!(
                "content-type is {}; Segment wants application/json",
                inbound.content_type_shown()
            ),
        ));
    }
    let Some(Value::Object(payload)) = &inbound.json else {
        return Err(Verdict::refuse(
            Answer::text(400, "Invalid JSON"),
            "the body is not a JSON object",
        ));
    };
    let auth_problems = segment_write_key(inbound, payload)
        .map_err(|problem| Verdict::refuse(Answer::text(401, "Invalid Write Key"), problem))?;

    let event_problems = if call == "batch" || call == "import" {
        segment_batch(inbound, payload)?
    } else {
        if inbound.body_len > SEGMENT_EVENT_BYTES {
            return Err(segment_too_large(format!(
                "the event is over {SEGMENT_EVENT_BYTES} bytes"
            )));
        }
        segment_identity(payload, call)?;
        segment_event_problems(call, payload, call)
    };
    Ok(
        Verdict::accept(Answer::json(200, &json!({"success": true})))
            .with_problems(auth_problems)
            .with_problems(event_problems),
    )
}

fn segment_too_large(problem: String) -> Verdict {
    Verdict::refuse(Answer::text(413, "Request size too large"), problem)
}

/// Ok with soft problems when the write key is right; Err with the reason
/// otherwise.
fn segment_write_key(
    inbound: &Inbound,
    payload: &Map<String, Value>,
) -> Result<Vec<String>, String> {
    let Some(authorization) = inbound.header("authorization") else {
        return match payload.get("writeKey").and_then(Value::as_str) {
            Some(SEGMENT_WRITE_KEY) => Ok(Vec::new()),
            Some(_) => Err("writeKey in the body is not the stand-in's write key".into()),
            None => Err("no write key: no Basic authorization and no writeKey in the body".into()),
        };
    };
    let Some(encoded) = strip_scheme(authorization, "basic") else {
        return Err("authorization is not HTTP Basic".into());
    };
    let decoded = STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or("the Basic credentials are not base64 of text")?;
    let Some((key, password)) = decoded.split_once(':') else {
        return Err(
            "the Basic credentials have no colon; Segment wants base64(\"<writeKey>:\")".into(),
        );
    };
    if key != SEGMENT_WRITE_KEY {
        return Err("the Basic user name is not the stand-in's write key".into());
    }
    if password.is_empty() {
        Ok(Vec::new())
    } else {
        Ok(vec![
            "the Basic password is not empty; Segment ignores it, the spec wants it empty".into(),
        ])
    }
}

fn segment_batch(inbound: &Inbound, payload: &Map<String, Value>) -> Result<Vec<String>, Verdict> {
    if inbound.body_len > SEGMENT_BATCH_BYTES {
        return Err(segment_too_large(format!(
            "the batch is over {SEGMENT_BATCH_BYTES} bytes"
        )));
    }
    let Some(Value::Array(events)) = payload.get("batch") else {
        return Err(Verdict::refuse(
            Answer::text(400, "Invalid JSON"),
            "batch is missing or not an array",
        ));
    };
    if events.len() > SEGMENT_BATCH_EVENTS {
        return Err(segment_too_large(format!(
            "more than {SEGMENT_BATCH_EVENTS} events in the batch"
        )));
    }

    let mut problems = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let label = format!("batch[{index}]");
        let Value::Object(event) = event else {
            return Err(Verdict::refuse(
                Answer::text(400, "Invalid JSON"),
                format!("{label} is not an object"),
            ));
        };
        if serde_json::to_vec(event).map_or(0, |bytes| bytes.len()) > SEGMENT_EVENT_BYTES {
            return Err(segment_too_large(format!(
                "{label} is over {SEGMENT_EVENT_BYTES} bytes"
            )));
        }
        segment_identity(event, &label)?;
        let call = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !SEGMENT_EVENT_TYPES.contains(&call) {
            problems.push(format!("{label} has type {call:?}; Segment drops it"));
            continue;
        }
        problems.extend(segment_event_problems(call, event, &label));
    }
    Ok(problems)
}

/// One of `userId` and `anonymousId` is required.
fn segment_identity(event: &Map<String, Value>, label: &str) -> Result<(), Verdict> {
    let present = |field: &str| match event.get(field) {
        Some(Value::String(id)) => !id.trim().is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    };
    if present("userId") || present("anonymousId") {
        return Ok(());
    }
    Err(Verdict::refuse(
        Answer::text(400, "Request neither has anonymousId nor userId"),
        format!("{label} has neither userId nor anonymousId"),
    ))
}

/// What Segment would accept but drop or misread, and what the pipeline's
/// delivery rules need (a `messageId` to dedup retries on).
fn segment_event_problems(call: &str, event: &Map<String, Value>, label: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let required = match call {
        "track" => Some("event"),
        "group" => Some("groupId"),
        "alias" => Some("previousId"),
        _ => None,
    };
    if let Some(field) = required {
        if event
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            problems.push(format!("{label} ({call}) has no {field}; Segment drops it"));
        }
    }
    match event.get("messageId") {
        None => problems.push(format!(
            "{label} has no messageId; a retry would be counted twice"
        )),
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() < 100 => {}
        Some(_) => problems.push(format!(
            "{label} messageId is not a string of 1 to 99 characters"
        )),
    }
    if let Some(timestamp) = event.get("timestamp") {
        if !timestamp.as_str().is_some_and(looks_like_iso8601) {
            problems.push(format!("{label} timestamp is not an ISO-8601 string"));
        }
    }
    for field in ["context", "properties", "traits"] {
        if event.get(field).is_some_and(|value| !value.is_object()) {
            problems.push(format!("{label} {field} is not an object"));
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// Keen.io: JSON answers, errors as {"message", "error_code"}.
// ---------------------------------------------------------------------------

fn keen_error(status: u16, code: &str, message: &str) -> Answer {
    Answer::json(status, &json!({"message": message, "error_code": code}))
}

fn keen(inbound: &Inbound) -> Checked {
    let not_found = || keen_error(404, "ResourceNotFoundError", "Resource not found.");
    let Some(rest) = inbound.path.strip_prefix("/3.0/projects/") else {
        return Err(Verdict::refuse(
            not_found(),
            format!("no Keen resource at {}", inbound.path),
        ));
    };
    let mut segments = rest.trim_end_matches('/').split('/');
    let (project, events, collection) = (segments.next(), segments.next(), segments.next());
    if events != Some("events") || segments.next().is_some() {
        return Err(Verdict::refuse(
            not_found(),
            format!("no Keen resource at {}", inbound.path),
        ));
    }
    if project != Some(KEEN_PROJECT_ID) {
        return Err(Verdict::refuse(
            keen_error(404, "ProjectNotFoundError", "Project not found."),
            format!("unknown project; the stand-in's is {KEEN_PROJECT_ID}"),
        ));
    }
    require_post(inbound)?;
    keen_key(inbound)?;

    let bad_request =
        |code: &str, problem: String| Verdict::refuse(keen_error(400, code, &problem), problem);
    if !inbound.is_json() {
        let shown = inbound.content_type_shown();
        return Err(bad_request(
            "InvalidContentTypeError",
            format!("content-type is {shown}; Keen wants application/json"),
        ));
    }
    if inbound.body_len > KEEN_EVENT_BYTES {
        return Err(Verdict::refuse(
            keen_error(413, "EventTooLargeError", "The event is too large."),
            format!("the body is over {KEEN_EVENT_BYTES} bytes"),
        ));
    }
    let Some(Value::Object(body)) = &inbound.json else {
        return Err(bad_request(
            "InvalidEventError",
            "the body is not a JSON object".into(),
        ));
    };
    match collection {
        Some(collection) => keen_single(collection, body),
        None => keen_batch(body),
    }
}

/// The raw key in `Authorization`, or the `api_key` query parameter.
fn keen_key(inbound: &Inbound) -> Result<(), Verdict> {
    let refuse = |problem: &str| {
        Verdict::refuse(
            keen_error(401, "InvalidApiKeyError", "The API key is invalid."),
            problem,
        )
    };
    let key = inbound
        .header("authorization")
        .map(str::to_owned)
        .or_else(|| inbound.query_param("api_key"));
    let Some(key) = key else {
        return Err(refuse("no Authorization header and no api_key parameter"));
    };
    if key == KEEN_WRITE_KEY {
        return Ok(());
    }
    if key
        .split_once(' ')
        .is_some_and(|(_, rest)| rest.trim() == KEEN_WRITE_KEY)
    {
        return Err(refuse(
            "Keen wants the raw key in Authorization, without a scheme word",
        ));
    }
    Err(refuse("the key is not the stand-in's write key"))
}

fn keen_single(raw_collection: &str, event: &Map<String, Value>) -> Checked {
    let invalid =
        |code: &str, problem: String| Verdict::refuse(keen_error(400, code, &problem), problem);
    let collection = percent_decode(raw_collection).ok_or_else(|| {
        invalid(
            "InvalidCollectionNameError",
            "the collection name is not valid percent-encoded text".into(),
        )
    })?;
    keen_collection_name(&collection)
        .map_err(|problem| invalid("InvalidCollectionNameError", problem))?;
    keen_property_names(event, "")
        .map_err(|problem| invalid("InvalidPropertyNameError", problem))?;
    Ok(Verdict::accept(Answer::json(
        201,
        &json!({"created": true}),
    )))
}

/// `{"<collection>": [events…]}`, answered per event.
fn keen_batch(body: &Map<String, Value>) -> Checked {
    let invalid =
        |code: &str, problem: String| Verdict::refuse(keen_error(400, code, &problem), problem);
    if body.is_empty() {
        return Err(invalid(
            "InvalidBatchError",
            "the batch names no collection".into(),
        ));
    }
    let mut answer = Map::new();
    let mut problems = Vec::new();
    for (collection, events) in body {
        keen_collection_name(collection)
            .map_err(|problem| invalid("InvalidCollectionNameError", problem))?;
        let Value::Array(events) = events else {
            return Err(invalid(
                "InvalidBatchError",
                format!("{collection} is not an array of events"),
            ));
        };
        let mut results = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let checked = match event {
                Value::Object(properties) => keen_property_names(properties, ""),
                _ => Err("the event is not an object".to_owned()),
            };
            let result = match checked {
                Ok(()) => json!({"success": true}),
                Err(problem) => {
                    problems.push(format!("{collection}[{index}]: {problem}"));
                    let error = json!({"name": "InvalidPropertyNameError", "description": problem});
                    json!({"success": false, "error": error})
                }
            };
            results.push(result);
        }
        answer.insert(collection.clone(), Value::Array(results));
    }
    Ok(Verdict::accept(Answer::json(200, &Value::Object(answer))).with_problems(problems))
}

fn keen_collection_name(name: &str) -> Result<(), String> {
    let fits = !name.is_empty() && name.len() <= 64 && name.is_ascii();
    if fits && !name.contains('$') && !name.starts_with('_') {
        return Ok(());
    }
    Err(format!(
        "collection name {name:?} is not allowed by Keen \
         (1 to 64 ASCII characters, no '$', no leading '_')"
    ))
}

fn keen_property_names(properties: &Map<String, Value>, parent: &str) -> Result<(), String> {
    for (name, value) in properties {
        let path = if parent.is_empty() {
            name.clone()
        } else {
            format!("{parent}.{name}")
        };
        let allowed =
            !name.is_empty() && name.len() <= 256 && !name.contains('.') && !name.starts_with('$');
        if !allowed {
            return Err(format!(
                "property name {path:?} is not allowed by Keen \
                 (1 to 256 characters, no '.', no leading '$')"
            ));
        }
        if parent.is_empty() && name == "keen" && !value.is_object() {
            return Err("the keen property is reserved and must be an object".into());
        }
        if let Value::Object(inner) = value {
            keen_property_names(inner, &path)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Zapier catch hook: takes JSON or form bodies, answers with three uuids.
// ---------------------------------------------------------------------------

fn zapier(inbound: &Inbound) -> Checked {
    let hook = format!("{}/", inbound.path.trim_end_matches('/'));
    if hook != ZAPIER_HOOK_PATH {
        return Err(Verdict::refuse(
            Answer::json(
                404,
                &json!({"status": "error", "message": "hook not found"}),
            ),
            "no catch hook at this path",
        ));
    }
    require_post(inbound)?;

    let mut problems = Vec::new();
    match inbound.media_type().as_deref() {
        Some("application/json") if inbound.json.is_none() => problems.push(
            "content-type says JSON but the body does not parse; Zapier keeps it as raw text"
                .into(),
        ),
        Some("application/json" | "application/x-www-form-urlencoded") => {}
        _ => problems.push(format!(
            "content-type is {}; Zapier reads JSON or form bodies",
            inbound.content_type_shown()
        )),
    }
    let answer = json!({
        "attempt": uuid(),
        "id": uuid(),
        "request_id": uuid(),
        "status": "success",
    });
    Ok(Verdict::accept(Answer::json(200, &answer)).with_problems(problems))
}

// ---------------------------------------------------------------------------
// A provider that mints a login for a new user on every token request, for
// load: `/fake-idp/mint/token` and its key set `/fake-idp/mint/jwks`.
// ---------------------------------------------------------------------------

/// The minting provider's signing key, made once per process.
fn mint_key() -> &'static jwt_simple::prelude::ES256KeyPair {
    use std::sync::OnceLock;
    static KEY: OnceLock<jwt_simple::prelude::ES256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| jwt_simple::prelude::ES256KeyPair::generate().with_key_id("mint-1"))
}

/// Answers the minting provider's two paths; `None` for any other path.
/// The issuer is the Host the request came with (Envoy's listener), the
/// audience the form's `client_id`, the subject new every time.
fn mint(inbound: &Inbound) -> Option<Answer> {
    use jwt_simple::prelude::*;
    match inbound.path.as_str() {
        "/fake-idp/mint/jwks" => {
            let jwk: Value = serde_json::from_str(&mint_key().public_key().to_jwk()).ok()?;
            Some(Answer::json(200, &json!({ "keys": [jwk] })))
        }
        "/fake-idp/mint/token" => {
            let host = inbound.headers.get("host")?;
            let client = form_urlencoded::parse(inbound.body.as_bytes())
                .find(|(name, _)| name == "client_id")
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default();
            let user = format!("user-{}", uuid_simple());
            let custom: Map<String, Value> = json!({
                "email": format!("{user}@example.com"), "email_verified": true, "name": "Minted User"
            })
            .as_object()
            .cloned()
            .unwrap_or_default();
            let claims = Claims::with_custom_claims(custom, Duration::from_mins(5))
                .with_issuer(format!("http://{host}"))
                .with_audience(client)
                .with_subject(user);
            let token = mint_key().sign(claims).ok()?;
            let body = json!({"access_token": uuid_simple(), "token_type": "Bearer",
                              "expires_in": 300, "id_token": token});
            Some(Answer::json(200, &body))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// A team's own webhook, signed per Standard Webhooks.
// ---------------------------------------------------------------------------

/// The secret the webhook stand-in verifies signatures with.
pub const WEBHOOK_SECRET: &str = "whsec_cnVsZWdhdGUtd2ViaG9vay10ZXN0LXNlY3JldA==";

/// Accepts a JSON POST; when it carries Standard Webhooks headers, the
/// signature must verify with [`WEBHOOK_SECRET`] over
/// `{webhook-id}.{webhook-timestamp}.{body}`, else 401. Answers
/// `{"received": true, "tier": "gold"}`, which awaited webhooks hand to
/// later rules.
fn webhook(inbound: &Inbound) -> Checked {
    require_post(inbound)?;
    if inbound.json.is_none() {
        return Err(Verdict::refuse(
            Answer::json(400, &json!({"error": "body is not JSON"})),
            "the body is not JSON",
        ));
    }
    if let Some(signature) = inbound.headers.get("webhook-signature") {
        let id = inbound
            .headers
            .get("webhook-id")
            .cloned()
            .unwrap_or_default();
        let timestamp = inbound
            .headers
            .get("webhook-timestamp")
            .cloned()
            .unwrap_or_default();
        let key = STANDARD
            .decode(WEBHOOK_SECRET.trim_start_matches("whsec_"))
            .unwrap_or_default();
        let signed = format!("{id}.{timestamp}.{}", inbound.body);
        let expected = format!(
            "v1,{}",
            STANDARD.encode(hmac_sha256(&key, signed.as_bytes()))
        );
        if !signature.split(' ').any(|candidate| candidate == expected) {
            return Err(Verdict::refuse(
                Answer::json(401, &json!({"error": "bad signature"})),
                "webhook-signature does not verify",
            ));
        }
    }
    Ok(Verdict::accept(Answer::json(
        200,
        &json!({"received": true, "tier": "gold"}),
    )))
}

// ---------------------------------------------------------------------------
// Salesforce: OAuth token endpoint and Lead creation.
// ---------------------------------------------------------------------------

fn oauth_error(error: &str, description: &str) -> Answer {
    Answer::json(
        400,
        &json!({"error": error, "error_description": description}),
    )
}

fn salesforce_token(inbound: &Inbound, base_url: &str) -> Checked {
    require_post(inbound)?;
    let is_form = inbound.media_type().as_deref() == Some("application/x-www-form-urlencoded");
    let form = if is_form {
        inbound.form()
    } else {
        BTreeMap::new()
    };
    let field = |name: &str| form.get(name).map(String::as_str);

    let grant = field("grant_type");
    if !matches!(grant, Some("client_credentials" | "password")) {
        let problem = match grant {
            None if !is_form => format!(
                "content-type is {}; the token endpoint reads a form body",
                inbound.content_type_shown()
            ),
            None => "no grant_type in the form".to_owned(),
            Some(other) => {
                format!("grant_type {other:?}: the stand-in takes client_credentials and password")
            }
        };
        return Err(Verdict::refuse(
            oauth_error("unsupported_grant_type", "grant type not supported"),
            problem,
        ));
    }

    let basic = inbound.header("authorization").and_then(basic_credentials);
    let client_id = field("client_id").or(basic.as_ref().map(|(id, _)| id.as_str()));
    let client_secret =
        field("client_secret").or(basic.as_ref().map(|(_, secret)| secret.as_str()));
    if client_id != Some(SALESFORCE_CLIENT_ID) {
        return Err(Verdict::refuse(
            oauth_error("invalid_client_id", "client identifier invalid"),
            "unknown or missing client_id",
        ));
    }
    if client_secret != Some(SALESFORCE_CLIENT_SECRET) {
        return Err(Verdict::refuse(
            oauth_error("invalid_client", "invalid client credentials"),
            "wrong or missing client_secret",
        ));
    }
    let password_ok = field("username") == Some(SALESFORCE_USERNAME)
        && field("password") == Some(SALESFORCE_PASSWORD);
    if grant == Some("password") && !password_ok {
        return Err(Verdict::refuse(
            oauth_error("invalid_grant", "authentication failure"),
            "wrong or missing username or password",
        ));
    }

    let (answer, token) = salesforce_token_answer(base_url);
    Ok(Verdict::accept(Answer::json(200, &answer)).with_effect(Effect::IssueToken(token)))
}

/// A fresh token and the answer that carries it; the signature is
/// HMAC-SHA256 over `id` + `issued_at` keyed with the client secret, as
/// Salesforce documents it.
fn salesforce_token_answer(base_url: &str) -> (Value, String) {
    let org = salesforce_id("00D");
    let org_prefix: String = org.chars().take(15).collect();
    let token = format!("{org_prefix}!{}{}", uuid_simple(), uuid_simple());
    let id = format!("{base_url}/id/{org}/{}", salesforce_id("005"));
    let issued_at = now_ms().to_string();
    let signature = STANDARD.encode(hmac_sha256(
        SALESFORCE_CLIENT_SECRET.as_bytes(),
        format!("{id}{issued_at}").as_bytes(),
    ));
    let answer = json!({
        "access_token": token,
        "instance_url": base_url,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
        "scope": "api",
    });
    (answer, token)
}

/// Salesforce REST errors: a JSON array of `{message, errorCode, fields}`.
fn salesforce_error(status: u16, code: &str, message: &str, fields: Option<&[&str]>) -> Answer {
    let mut error = json!({"message": message, "errorCode": code});
    if let (Some(fields), Value::Object(error)) = (fields, &mut error) {
        error.insert("fields".into(), json!(fields));
    }
    Answer::json(status, &json!([error]))
}

fn salesforce_lead(inbound: &Inbound, state: &State) -> Checked {
    if inbound.path.trim_end_matches('/') != SALESFORCE_LEAD_PATH.trim_end_matches('/') {
        return Err(Verdict::refuse(
            salesforce_error(
                404,
                "NOT_FOUND",
                "The requested resource does not exist",
                None,
            ),
            format!("no Salesforce resource at {}", inbound.path),
        ));
    }
    if inbound.method != "POST" {
        let message = format!(
            "HTTP Method '{}' not allowed. Allowed are POST",
            inbound.method
        );
        return Err(Verdict::refuse(
            salesforce_error(405, "METHOD_NOT_ALLOWED", &message, None)
                .with_header("allow", "POST"),
            format!("{} instead of POST", inbound.method),
        ));
    }
    salesforce_session(inbound, state)?;
    if !inbound.is_json() {
        let shown = inbound.content_type_shown();
        let message =
            format!("Content-Type header specified in HTTP request is not supported: {shown}");
        return Err(Verdict::refuse(
            salesforce_error(415, "UNSUPPORTED_MEDIA_TYPE", &message, None),
            format!("content-type is {shown}; Salesforce wants application/json"),
        ));
    }
    let Some(Value::Object(lead)) = &inbound.json else {
        return Err(Verdict::refuse(
            salesforce_error(
                400,
                "JSON_PARSER_ERROR",
                "The body is not a JSON object",
                None,
            ),
            "the body is not a JSON object",
        ));
    };
    salesforce_lead_fields(lead)?;

    let email = lead_field(lead, "Email")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let allow_save = inbound
        .header("sforce-duplicate-rule-header")
        .is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .replace(' ', "")
                .contains("allowsave=true")
        });
    if email
        .as_ref()
        .is_some_and(|email| state.lead_emails.contains(email))
        && !allow_save
    {
        return Err(Verdict::refuse(
            salesforce_error(
                400,
                "DUPLICATES_DETECTED",
                "Use one of these records?",
                Some(&[]),
            ),
            "a Lead with this Email exists (duplicate rule)",
        ));
    }
    let created = json!({"id": salesforce_id("00Q"), "success": true, "errors": []});
    Ok(Verdict::accept(Answer::json(201, &created)).with_effect(Effect::CreateLead(email)))
}

fn salesforce_session(inbound: &Inbound, state: &State) -> Result<(), Verdict> {
    let Some(token) = inbound
        .header("authorization")
        .and_then(|value| strip_scheme(value, "bearer"))
    else {
        return Err(Verdict::refuse(
            salesforce_error(401, "INVALID_AUTH_HEADER", "INVALID_HEADER_TYPE", None),
            "no Bearer authorization",
        ));
    };
    let invalid_session = || {
        salesforce_error(
            401,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
            None,
        )
    };
    match state.tokens.get(token) {
        Some(true) => Ok(()),
        Some(false) => Err(Verdict::refuse(invalid_session(), "the token has expired")),
        None => Err(Verdict::refuse(
            invalid_session(),
            "the token was not issued by the stand-in",
        )),
    }
}

/// Standard Lead fields the stand-in knows, and their length limits where
/// the pipeline sets them. Custom fields (`…__c`) are accepted too.
const LEAD_FIELDS: [(&str, Option<usize>); 33] = [
    ("Salutation", None),
    ("FirstName", Some(40)),
    ("MiddleName", Some(40)),
    ("LastName", Some(80)),
    ("Suffix", Some(40)),
    ("Title", Some(128)),
    ("Company", Some(255)),
    ("Email", Some(80)),
    ("Phone", Some(40)),
    ("MobilePhone", Some(40)),
    ("Fax", Some(40)),
    ("Website", Some(255)),
    ("Street", None),
    ("City", Some(40)),
    ("State", Some(80)),
    ("PostalCode", Some(20)),
    ("Country", Some(80)),
    ("StateCode", None),
    ("CountryCode", None),
    ("LeadSource", Some(255)),
    ("Status", None),
    ("Industry", None),
    ("Rating", None),
    ("AnnualRevenue", None),
    ("NumberOfEmployees", None),
    ("Description", Some(32_000)),
    ("OwnerId", None),
    ("HasOptedOutOfEmail", None),
    ("HasOptedOutOfFax", None),
    ("DoNotCall", None),
    ("IndividualId", None),
    ("Latitude", None),
    ("Longitude", None),
];

/// Salesforce field names are case-insensitive.
fn lead_field<'a>(lead: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    lead.iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

fn salesforce_lead_fields(lead: &Map<String, Value>) -> Result<(), Verdict> {
    let refuse = |code: &str, message: String, fields: &[&str]| {
        Verdict::refuse(salesforce_error(400, code, &message, Some(fields)), message)
    };
    for (name, value) in lead {
        let known = name.eq_ignore_ascii_case("attributes")
            || name.ends_with("__c")
            || LEAD_FIELDS
                .iter()
                .any(|(field, _)| field.eq_ignore_ascii_case(name));
        if !known {
            let message = format!("No such column '{name}' on sobject of type Lead");
            return Err(refuse("INVALID_FIELD", message, &[]));
        }
        let nested =
            value.is_array() || value.is_object() && !name.eq_ignore_ascii_case("attributes");
        if nested {
            let message =
                format!("Cannot deserialize instance of {name} from a JSON object or array");
            return Err(refuse("JSON_PARSER_ERROR", message, &[]));
        }
    }

    let blank = |name: &str| {
        lead_field(lead, name)
            .and_then(Value::as_str)
            .is_none_or(|value| value.trim().is_empty())
    };
    let missing: Vec<&str> = ["LastName", "Company"]
        .into_iter()
        .filter(|name| blank(name))
        .collect();
    if !missing.is_empty() {
        let message = format!("Required fields are missing: [{}]", missing.join(", "));
        return Err(refuse("REQUIRED_FIELD_MISSING", message, &missing));
    }

    for (field, limit) in LEAD_FIELDS {
        let (Some(limit), Some(value)) = (limit, lead_field(lead, field).and_then(Value::as_str))
        else {
            continue;
        };
        if value.chars().count() > limit {
            let message = format!("{field}: data value too large: {value} (max length={limit})");
            return Err(refuse("STRING_TOO_LONG", message, &[field]));
        }
    }
    if let Some(email) = lead_field(lead, "Email").and_then(Value::as_str) {
        if !plausible_email(email) {
            let message = format!("Email: invalid email address: {email}");
            return Err(refuse("INVALID_EMAIL_ADDRESS", message, &["Email"]));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// FullContact person enrichment: JSON answers, errors as {"status", "message"}.
// ---------------------------------------------------------------------------

fn fullcontact_error(status: u16, message: &str) -> Answer {
    Answer::json(status, &json!({"status": status, "message": message}))
}

fn fullcontact(inbound: &Inbound) -> Checked {
    if inbound.path != FULLCONTACT_ENRICH_PATH {
        return Err(Verdict::refuse(
            fullcontact_error(404, "Not Found"),
            format!(
                "no FullContact endpoint at {}; enrichment is POST {FULLCONTACT_ENRICH_PATH}",
                inbound.path
            ),
        ));
    }
    require_post(inbound)?;
    fullcontact_key(inbound)?;
    let bad_request = |status: u16, message: &str, problem: String| {
        Verdict::refuse(fullcontact_error(status, message), problem)
    };
    if !inbound.is_json() {
        let problem = format!(
            "content-type is {}; FullContact wants application/json",
            inbound.content_type_shown()
        );
        return Err(bad_request(
            400,
            "Invalid request: content-type must be application/json",
            problem,
        ));
    }
    let Some(Value::Object(query)) = &inbound.json else {
        return Err(bad_request(
            400,
            "Invalid JSON",
            "the body is not a JSON object".into(),
        ));
    };

    let email = query
        .get("email")
        .or_else(|| query.get("emails").and_then(|emails| emails.get(0)));
    let email = match email {
        Some(Value::String(email)) if plausible_email(email) => email.clone(),
        Some(_) => {
            return Err(bad_request(
                422,
                "Invalid email address",
                "email is not a plausible address".into(),
            ))
        }
        None if ["phone", "phones", "profiles", "name", "location"]
            .iter()
            .any(|field| query.contains_key(*field)) =>
        {
            // Other identifiers are legal; the stand-in only knows emails.
            return Ok(Verdict::accept(fullcontact_error(404, "Profile not found")));
        }
        None => {
            return Err(bad_request(
                422,
                "At least one identifier is required",
                "no email or other identifier".into(),
            ))
        }
    };

    let local = email
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if local.starts_with(FULLCONTACT_UNKNOWN_PREFIX) {
        return Ok(Verdict::accept(fullcontact_error(404, "Profile not found")));
    }
    Ok(Verdict::accept(Answer::json(
        200,
        &fullcontact_person(&email),
    )))
}

/// Missing key: 401; wrong key: 403.
fn fullcontact_key(inbound: &Inbound) -> Result<(), Verdict> {
    let Some(key) = inbound
        .header("authorization")
        .and_then(|value| strip_scheme(value, "bearer"))
    else {
        return Err(Verdict::refuse(
            fullcontact_error(401, "Unauthorized: missing API key"),
            "no Bearer authorization",
        ));
    };
    if key == FULLCONTACT_API_KEY {
        return Ok(());
    }
    Err(Verdict::refuse(
        fullcontact_error(403, "Forbidden: API key is invalid"),
        "the API key is not the stand-in's",
    ))
}

/// A made-up but stable person for `email`: the name comes from the local
/// part, the organisation from the domain.
fn fullcontact_person(email: &str) -> Value {
    let (local, domain) = email.split_once('@').unwrap_or((email, ""));
    let words: Vec<String> = local
        .split(['.', '_', '-', '+'])
        .filter(|word| !word.is_empty())
        .map(capitalize)
        .collect();
    let full_name = words.join(" ");
    let given = words.first().cloned().unwrap_or_default();
    let family = words
        .get(1..)
        .map(|rest| rest.join(" "))
        .unwrap_or_default();
    let handle: String = local.chars().filter(char::is_ascii_alphanumeric).collect();
    let organization = capitalize(domain.split('.').next().unwrap_or_default());
    let digest = hex(&Sha256::digest(email.to_ascii_lowercase().as_bytes()));
    let avatar = format!(
        "https://img.fullcontact.com/static/{}",
        digest.get(..32).unwrap_or(&digest)
    );
    let twitter = format!("https://twitter.com/{handle}");
    let linkedin = format!("https://www.linkedin.com/in/{handle}");
    let location = "San Francisco, California, United States";

    json!({
        "fullName": full_name,
        "ageRange": "30-39",
        "gender": null,
        "location": location,
        "title": "Software Engineer",
        "organization": organization,
        "twitter": twitter,
        "linkedin": linkedin,
        "facebook": null,
        "bio": format!("Software Engineer at {organization}"),
        "avatar": avatar,
        "website": format!("https://{domain}"),
        "details": {
            "name": {"given": given, "family": family, "full": full_name},
            "age": null,
            "gender": null,
            "emails": [{"label": "work", "value": email}],
            "phones": [],
            "profiles": {
                "twitter": {"username": handle, "url": twitter},
                "linkedin": {"username": handle, "url": linkedin},
            },
            "locations": [{
                "label": "work",
                "city": "San Francisco",
                "region": "California",
                "regionCode": "CA",
                "country": "United States",
                "countryCode": "US",
                "formatted": location,
            }],
            "employment": [{"name": organization, "current": true, "title": "Software Engineer"}],
            "photos": [{"label": "avatar", "value": avatar}],
            "education": [],
            "urls": [{"label": "website", "value": format!("https://{domain}")}],
            "interests": [],
        },
        "updated": "2026-01-15",
    })
}

// ---------------------------------------------------------------------------
// The control API.
// ---------------------------------------------------------------------------

/// Answers a request under `/_control/` (see the module docs).
fn control(shared: &Shared, inbound: &Inbound) -> Answer {
    let action = inbound
        .path
        .strip_prefix(CONTROL_PREFIX)
        .unwrap_or_default();
    let result = match (inbound.method.as_str(), action) {
        ("GET", "received") => control_received(shared, inbound),
        ("GET", "health") => Ok(json!({"ok": true})),
        ("POST", "script") => control_script(shared, inbound),
        ("POST", "down") => control_down(shared, inbound),
        ("POST", "up") => control_up(shared, inbound),
        ("POST", "expire_salesforce_tokens") => Ok(control_expire(shared)),
        ("POST", "clear") => Ok(control_clear(shared)),
        (method, _) => Err((404, format!("no control action {method} {}", inbound.path))),
    };
    match result {
        Ok(body) => Answer::json(200, &body),
        Err((status, message)) => Answer::json(status, &json!({"error": message})),
    }
}

type ControlResult = Result<Value, (u16, String)>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptRequest {
    service: String,
    answers: Vec<ScriptedAnswer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DownRequest {
    service: String,
    #[serde(default = "default_down_status")]
    status: u16,
    #[serde(default)]
    body: Option<String>,
}

fn default_down_status() -> u16 {
    503
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpRequest {
    service: String,
}

fn control_body<T: DeserializeOwned>(inbound: &Inbound) -> Result<T, (u16, String)> {
    serde_json::from_str(&inbound.body)
        .map_err(|err| (400, format!("invalid control request: {err}")))
}

fn known_service(service: &str) -> Result<(), (u16, String)> {
    if SERVICES.contains(&service) {
        return Ok(());
    }
    Err((
        400,
        format!(
            "unknown service {service:?}; known: {}",
            SERVICES.join(", ")
        ),
    ))
}

fn control_received(shared: &Shared, inbound: &Inbound) -> ControlResult {
    let service = inbound.query_param("service");
    let state = shared.lock();
    let records: Vec<&Received> = state
        .records
        .iter()
        .filter(|record| {
            service
                .as_deref()
                .is_none_or(|name| record.service == name || record.endpoint == name)
        })
        .collect();
    serde_json::to_value(records)
        .map_err(|err| (500, format!("failed to encode the records: {err}")))
}

fn control_script(shared: &Shared, inbound: &Inbound) -> ControlResult {
    let request: ScriptRequest = control_body(inbound)?;
    known_service(&request.service)?;
    for (index, answer) in request.answers.iter().enumerate() {
        answer
            .check()
            .map_err(|problem| (400, format!("answers[{index}]: {problem}")))?;
    }
    let mut state = shared.lock();
    let queue = state.scripts.entry(request.service).or_default();
    queue.extend(request.answers);
    Ok(json!({"ok": true, "queued": queue.len()}))
}

fn control_down(shared: &Shared, inbound: &Inbound) -> ControlResult {
    let request: DownRequest = control_body(inbound)?;
    known_service(&request.service)?;
    if !(200..=599).contains(&request.status) {
        return Err((
            400,
            format!("status {} is not between 200 and 599", request.status),
        ));
    }
    let outage = Outage {
        status: request.status,
        body: request.body,
    };
    shared.lock().outages.insert(request.service, outage);
    Ok(json!({"ok": true}))
}

fn control_up(shared: &Shared, inbound: &Inbound) -> ControlResult {
    let request: UpRequest = control_body(inbound)?;
    known_service(&request.service)?;
    let was_down = shared.lock().outages.remove(&request.service).is_some();
    Ok(json!({"ok": true, "was_down": was_down}))
}

fn control_expire(shared: &Shared) -> Value {
    let mut state = shared.lock();
    let mut expired = 0;
    for valid in state.tokens.values_mut() {
        if *valid {
            *valid = false;
            expired += 1;
        }
    }
    json!({"ok": true, "expired": expired})
}

fn control_clear(shared: &Shared) -> Value {
    let mut state = shared.lock();
    state.records.clear();
    state.scripts.clear();
    state.outages.clear();
    state.lead_emails.clear();
    json!({"ok": true})
}

// ---------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

fn reason_phrase(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Unavailable")
        .to_owned()
}

/// The credentials after `scheme` (case-insensitive) in an Authorization
/// header.
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest.trim())
}

fn basic_credentials(value: &str) -> Option<(String, String)> {
    let decoded = STANDARD.decode(strip_scheme(value, "basic")?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn plausible_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let no_space = !text.chars().any(char::is_whitespace);
    no_space
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
}

/// `YYYY-MM-DDTHH:MM:SS`, then fractions and a zone or nothing.
fn looks_like_iso8601(text: &str) -> bool {
    const SHAPE: &str = "0000-00-00T00:00:00";
    let Some(head) = text.get(..SHAPE.len()) else {
        return false;
    };
    let head_fits = head.chars().zip(SHAPE.chars()).all(|(actual, shape)| {
        if shape == '0' {
            actual.is_ascii_digit()
        } else {
            actual == shape
        }
    });
    let tail = text.get(SHAPE.len()..).unwrap_or_default();
    head_fits
        && tail
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'Z' | '+' | '-' | ':'))
}

fn percent_decode(raw: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(position) = rest.find('%') {
        bytes.extend_from_slice(rest.get(..position)?.as_bytes());
        let hex = rest.get(position + 1..position + 3)?;
        bytes.push(u8::from_str_radix(hex, 16).ok()?);
        rest = rest.get(position + 3..)?;
    }
    bytes.extend_from_slice(rest.as_bytes());
    String::from_utf8(bytes).ok()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn uuid_simple() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// An 18-character Salesforce id: the 3-character key prefix, 12 random
/// base-62 characters, and the 3-character suffix Salesforce derives from
/// the case of the first 15.
fn salesforce_id(prefix: &str) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let random = uuid::Uuid::new_v4();
    let mut id: String = prefix.to_owned();
    for byte in random.as_bytes().iter().take(12) {
        let index = usize::from(byte % 62);
        id.push(BASE62.get(index).map_or('0', |&c| char::from(c)));
    }
    let suffix: String = id
        .as_bytes()
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |bits, (position, _)| bits | 1 << position);
            SUFFIX.get(bits).map_or('A', |&c| char::from(c))
        })
        .collect();
    id + &suffix
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

// ---------------------------------------------------------------------------
// The test client.
// ---------------------------------------------------------------------------

/// The stand-ins as a test uses them: started in this process (or reached
/// at a URL), controlled through the control API, stopped when dropped.
pub struct Standins {
    base_url: String,
    port: u16,
    agent: ureq::Agent,
    /// Serving on a thread of this process; None when reached by URL.
    _server: Option<Server>,
}

// A test fixture that cannot reach its stand-ins has nothing better to do
// than fail the test with what it knows.
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
impl Standins {
    /// Starts the stand-ins on a free loopback port, in this process.
    pub fn start() -> Standins {
        let server =
            Server::spawn(0).unwrap_or_else(|err| panic!("failed to start the stand-ins: {err}"));
        Standins {
            base_url: server.base_url().to_owned(),
            port: server.port(),
            agent: control_agent(),
            _server: Some(server),
        }
    }

    /// Stand-ins already running at `base_url` (the `standins` binary, say).
    pub fn connect(base_url: &str) -> Standins {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let port = base_url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {base_url:?}"));
        Standins {
            base_url,
            port,
            agent: control_agent(),
            _server: None,
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `path` on the stand-ins.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// What `service` (a service or endpoint name) received, in order.
    pub fn received(&self, service: &str) -> Vec<Received> {
        let service: String = form_urlencoded::byte_serialize(service.as_bytes()).collect();
        self.fetch(&format!("received?service={service}"))
    }

    /// Everything received, in order.
    pub fn received_all(&self) -> Vec<Received> {
        self.fetch("received")
    }

    /// The next requests to `service` get `answers`, in order.
    pub fn script(&self, service: &str, answers: impl IntoIterator<Item = ScriptedAnswer>) {
        let answers: Vec<ScriptedAnswer> = answers.into_iter().collect();
        self.post("script", &json!({"service": service, "answers": answers}));
    }

    /// `service` answers `status` to everything until [`Standins::up`].
    pub fn down(&self, service: &str, status: u16) {
        self.post("down", &json!({"service": service, "status": status}));
    }

    pub fn up(&self, service: &str) {
        self.post("up", &json!({"service": service}));
    }

    /// Every Salesforce token issued so far is refused from now on.
    pub fn expire_salesforce_tokens(&self) {
        self.post("expire_salesforce_tokens", &json!({}));
    }

    /// Forgets records, scripts, outages and created Leads.
    pub fn clear(&self) {
        self.post("clear", &json!({}));
    }

    /// Waits until `service` received at least `count` requests; panics
    /// after `timeout` with everything received so far.
    pub fn wait_for(&self, service: &str, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received(service);
            if received.len() >= count {
                return received;
            }
            if Instant::now() >= deadline {
                let everything = serde_json::to_string_pretty(&self.received_all()).unwrap();
                panic!(
                    "{service} received {} of {count} requests within {timeout:?}; \
                     everything received:\n{everything}",
                    received.len()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    fn fetch(&self, action: &str) -> Vec<Received> {
        let url = format!("{}{CONTROL_PREFIX}{action}", self.base_url);
        let response = self
            .agent
            .get(&url)
            .call()
            .unwrap_or_else(|err| panic!("GET {url}: {err}"));
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap();
        assert_eq!(status, 200, "GET {url}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("GET {url}: {err}: {text}"))
    }

    fn post(&self, action: &str, body: &Value) -> Value {
        let url = format!("{}{CONTROL_PREFIX}{action}", self.base_url);
        let response = self
            .agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|err| panic!("POST {url}: {err}"));
        let status = response.status().as_u16();
        let text = response.into_body().read_to_string().unwrap();
        assert_eq!(status, 200, "POST {url} {body}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// Shows every status and follows no redirect, like the harness's client.
fn control_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}
