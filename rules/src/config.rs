//! The plugin configuration: its JSON shape, its defaults, and every check
//! that can be made before the first request.
//!
//! Envoy hands the filter the configuration once, when it loads the plugin.
//! [`Config::from_json`] is the only way to get a [`Config`]: it either
//! returns a configuration that the request path can use without further
//! checks, or one [`Error::Config`] naming the JSON path of the bad value, so
//! that the log line tells the operator exactly what to fix.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::actions::{Actions, ClaimNaming, WebhookOrigins};
use crate::claims::RESERVED_CLAIMS;
use crate::delivery::Policy;
use crate::error::Error;
use crate::expr::Expr;
use crate::steps::slack::SlackAlert;
use crate::steps::{Builtin, OnError};

/// Largest configuration accepted, in bytes. A configuration is a few
/// kilobytes; anything near this is a mistake (a key pasted in, a loop in a
/// generator) and is refused before it is parsed.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// A JWS algorithm Rulegate can verify or sign with.
///
/// There is deliberately no `none` and no HMAC: an id_token signed with a
/// shared secret cannot be checked by a proxy, and accepting HMAC is how a
/// public key ends up used as a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    /// Every name accepted in `allowed_algorithms`.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm an `alg` header names, if Rulegate knows it.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }
}

/// What the client gets when the provider's token does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidTokenPolicy {
    /// Answer `502` with an OAuth `server_error`: no rule was applied, so
    /// the tokens must not reach the app as if they had been.
    Reject,
    /// Pass the provider's response through untouched and count it. Only for
    /// deployments where rules are a convenience, never a control.
    Pass,
}

/// Where the provider's JWKS is fetched from, through Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The Envoy cluster that reaches the provider.
    pub cluster: String,
    /// `:authority` of the JWKS request; defaults to the issuer's.
    pub authority: String,
    /// Path of the provider's JWKS on that cluster.
    pub jwks_path: String,
    /// Timeout of one JWKS fetch.
    pub timeout_ms: u64,
}

/// How tokens are checked before anything in them is believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// The exact `iss` expected.
    pub issuer: String,
    /// Audiences accepted besides the client id of the token request.
    pub audiences: Vec<String>,
    /// Algorithms accepted in the token header.
    pub allowed_algorithms: Vec<Algorithm>,
    /// Tolerance for `exp`, `nbf` and `iat`, in seconds.
    pub clock_skew_s: u64,
    /// Longest token even looked at.
    pub max_token_bytes: usize,
}

/// Rulegate's own signing key, used for tokens that gained claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    pub algorithm: Algorithm,
    /// `kid` of the key, published in the merged JWKS.
    pub key_id: String,
    /// Environment variable (exposed to the VM) holding the PEM private key.
    pub private_key_env: String,
}

/// One step of the pipeline, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// A disabled rule is skipped and reported as such.
    pub enabled: bool,
    /// What a failure of the rule does to the login.
    pub on_error: OnError,
    /// The rule runs only when this is true.
    pub when: Option<Expr>,
    /// The rule runs only for these clients (all when empty).
    pub clients: Vec<String>,
    /// The rule runs only for these protocols; when empty, a default that
    /// depends on what the rule does (see [`Rule::runs_for`]).
    pub protocols: Vec<String>,
    /// In shadow mode the rule is evaluated, and what it would have done
    /// logged and counted, but nothing is changed or called.
    pub shadow: bool,
    pub step: Step,
    /// Whether any expression of the rule reads `context`, which earlier
    /// rules change; worked out once, at load.
    reads_context: bool,
}

impl Rule {
    /// Whether any expression of the rule reads `context`, which earlier
    /// rules change.
    pub fn reads_context(&self) -> bool {
        self.reads_context
    }

    /// Whether the rule runs for a token exchange of `protocol` (its name
    /// or alias) by `client_id`.
    ///
    /// Without `protocols`: rules that only set claims or deny run on every
    /// token issued for a user (logins, refreshes, token exchanges), so a
    /// refreshed token keeps its claims; rules with side effects (calls,
    /// metadata) on interactive logins only; nothing runs for client
    /// credentials unless it lists `client_credentials`. Built-in steps
    /// choose their logins themselves.
    pub fn runs_for(&self, protocol: &crate::event::Protocol, client_id: Option<&str>) -> bool {
        if !self.clients.is_empty()
            && !client_id.is_some_and(|id| self.clients.iter().any(|c| c == id))
        {
            return false;
        }
        if !self.protocols.is_empty() {
            return self
                .protocols
                .iter()
                .any(|p| p == protocol.name() || p == protocol.alias());
        }
        use crate::event::Protocol::*;
        match (&self.step, protocol) {
            (_, ClientCredentials) => false,
            (Step::Builtin(_), _) => true,
            (Step::Rule(actions), _) if actions.has_side_effects() => {
                protocol.is_interactive_login()
            }
            _ => true,
        }
    }
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Add `claim` (the full, namespaced name) to the id_token.
    SetClaim { claim: String, value: ClaimValue },
    /// One of the built-in integrations.
    Builtin(Box<Builtin>),
    /// A configured rule: claims, denial, metadata, webhook.
    Rule(Box<Actions>),
}

/// Where the value of a claim comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimValue {
    /// A fixed JSON value from the configuration.
    Fixed(Value),
    /// The value of another claim of the verified id_token; when that claim
    /// is absent, the rule adds nothing.
    FromClaim(String),
}

/// A validated configuration. Built only by [`Config::from_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub token_path: String,
    pub discovery_path: String,
    /// Where Rulegate serves the merged JWKS.
    pub jwks_path: String,
    /// The `jwks_uri` written into the discovery document.
    pub jwks_uri: String,
    pub provider: Provider,
    pub verify: VerifyPolicy,
    /// Least time between two JWKS refreshes caused by an unknown `kid`.
    pub jwks_refresh_interval_s: u64,
    /// Age after which cached provider keys are refreshed on the next use.
    pub jwks_max_age_s: u64,
    pub on_invalid_token: InvalidTokenPolicy,
    /// Largest token response buffered; larger ones pass through untouched.
    pub max_response_bytes: usize,
    pub signing: Signing,
    pub rules: Vec<Rule>,
    /// Display names of clients, by client id.
    pub clients: std::collections::BTreeMap<String, String>,
    pub client_ip: ClientIp,
    pub connection: Connection,
    /// Time all awaited calls of one login may take together.
    pub call_budget_ms: u64,
    pub delivery: Policy,
    /// Where step failures are reported, if anywhere.
    pub alerts: Option<SlackAlert>,
    /// Largest claims payload (JSON bytes) a rewritten token may have; a
    /// rule whose claims would pass it is reported and its claims skipped.
    pub max_claims_bytes: usize,
    /// Whether the provider's access tokens are JWTs Rulegate can extend.
    pub access_tokens: AccessTokens,
    /// Things worth knowing that do not stop the configuration from
    /// loading (logged at warn by the filter, printed by `rulegate check`).
    pub warnings: Vec<String>,
}

/// The provider's access-token format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessTokens {
    /// JWTs: verified like the id_token (audience aside) and re-signed when
    /// rules add claims.
    Jwt,
    /// Opaque strings: rules cannot add claims to them.
    Opaque,
}

/// Where the client's address comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIp {
    /// Header that trusted proxies append the client's address to.
    #[serde(default = "default_forwarded_header")]
    pub forwarded_header: String,
    /// Proxies in front of Envoy that append to it; 0 uses the downstream
    /// peer and ignores the header (anyone can send one).
    #[serde(default)]
    pub trusted_hops: u32,
}

/// Where `context.connection` comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// A claim of the id_token naming the upstream login (e.g. `idp`).
    pub claim: Option<String>,
    /// The value when the claim is absent or not configured.
    #[serde(default = "default_connection")]
    pub default: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default = "default_token_path")]
    token_path: String,
    #[serde(default = "default_discovery_path")]
    discovery_path: String,
    #[serde(default = "default_jwks_path")]
    jwks_path: String,
    jwks_uri: Option<String>,
    provider: RawProvider,
    #[serde(default = "default_allowed_algorithms")]
    allowed_algorithms: Vec<Algorithm>,
    #[serde(default = "default_clock_skew_s")]
    clock_skew_s: u64,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "default_jwks_refresh_interval_s")]
    jwks_refresh_interval_s: u64,
    #[serde(default = "default_jwks_max_age_s")]
    jwks_max_age_s: u64,
    #[serde(default = "default_on_invalid_token")]
    on_invalid_token: InvalidTokenPolicy,
    #[serde(default = "default_max_response_bytes")]
    max_response_bytes: usize,
    namespace: Option<String>,
    #[serde(default)]
    signing: RawSigning,
    #[serde(default)]
    rules: Vec<Value>,
    #[serde(default)]
    clients: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_client_ip")]
    client_ip: ClientIp,
    #[serde(default = "default_connection_config")]
    connection: Connection,
    #[serde(default = "default_call_budget_ms")]
    call_budget_ms: u64,
    #[serde(default)]
    delivery: RawDelivery,
    alerts: Option<Value>,
    #[serde(default)]
    user_store: RawUserStore,
    #[serde(default)]
    allow_plain_claims: bool,
    #[serde(default)]
    webhook_origins: WebhookOrigins,
    #[serde(default = "default_max_claims_bytes")]
    max_claims_bytes: usize,
    #[serde(default = "default_access_tokens")]
    access_tokens: AccessTokens,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    #[serde(default = "default_max_age_s")]
    max_age_s: u64,
    #[serde(default = "default_initial_backoff_ms")]
    initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    max_backoff_ms: u64,
    #[serde(default = "default_outbox_size")]
    outbox_size: usize,
}

impl Default for RawDelivery {
    fn default() -> Self {
        RawDelivery {
            max_attempts: default_max_attempts(),
            max_age_s: default_max_age_s(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            outbox_size: default_outbox_size(),
        }
    }
}

/// Only the embedded store exists today; the field is there so that a
/// configuration naming another store is refused rather than ignored.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
enum RawUserStore {
    #[default]
    Embedded,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    cluster: String,
    authority: Option<String>,
    #[serde(default = "default_provider_jwks_path")]
    jwks_path: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    #[serde(default = "default_signing_algorithm")]
    algorithm: Algorithm,
    #[serde(default = "default_key_id")]
    key_id: String,
    #[serde(default = "default_private_key_env")]
    private_key_env: String,
}

impl Default for RawSigning {
    fn default() -> Self {
        RawSigning {
            algorithm: default_signing_algorithm(),
            key_id: default_key_id(),
            private_key_env: default_private_key_env(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSetClaim {
    claim: String,
    value: Option<Value>,
    from_claim: Option<String>,
}

fn default_token_path() -> String {
    "/token".into()
}
fn default_discovery_path() -> String {
    "/.well-known/openid-configuration".into()
}
fn default_jwks_path() -> String {
    "/.well-known/rulegate/jwks.json".into()
}
fn default_provider_jwks_path() -> String {
    "/jwks".into()
}
fn default_timeout_ms() -> u64 {
    2_000
}
fn default_allowed_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ]
}
fn default_clock_skew_s() -> u64 {
    60
}
fn default_max_token_bytes() -> usize {
    16 * 1024
}
fn default_jwks_refresh_interval_s() -> u64 {
    30
}
fn default_jwks_max_age_s() -> u64 {
    3_600
}
fn default_on_invalid_token() -> InvalidTokenPolicy {
    InvalidTokenPolicy::Reject
}
fn default_max_response_bytes() -> usize {
    64 * 1024
}
fn default_signing_algorithm() -> Algorithm {
    Algorithm::ES256
}
fn default_key_id() -> String {
    "rulegate-1".into()
}
fn default_private_key_env() -> String {
    "RULEGATE_SIGNING_KEY".into()
}
fn default_forwarded_header() -> String {
    "x-forwarded-for".into()
}
fn default_client_ip() -> ClientIp {
    ClientIp {
        forwarded_header: default_forwarded_header(),
        trusted_hops: 0,
    }
}
fn default_connection() -> String {
    "oidc".into()
}
fn default_connection_config() -> Connection {
    Connection {
        claim: None,
        default: default_connection(),
    }
}
fn default_max_claims_bytes() -> usize {
    8 * 1024
}
fn default_access_tokens() -> AccessTokens {
    AccessTokens::Jwt
}
fn default_call_budget_ms() -> u64 {
    3_000
}
fn default_max_attempts() -> u32 {
    Policy::default().max_attempts
}
fn default_max_age_s() -> u64 {
    Policy::default().max_age_ms / 1000
}
fn default_initial_backoff_ms() -> u64 {
    Policy::default().initial_backoff_ms
}
fn default_max_backoff_ms() -> u64 {
    Policy::default().max_backoff_ms
}
fn default_outbox_size() -> usize {
    Policy::default().capacity
}

/// Algorithms Rulegate can sign rewritten tokens with.
const SIGNING_ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

impl Config {
    /// Whether any rule opts into client-credentials exchanges, which have
    /// no user and run nothing else.
    pub fn has_client_credentials_rules(&self) -> bool {
        self.rules.iter().any(|rule| {
            rule.protocols
                .iter()
                .any(|p| p == "client_credentials" || p == "oauth2-client-credentials")
        })
    }

    /// Every secret of the configuration as it could show up in text: the
    /// value itself, its HTTP Basic form, and for secret URLs their path.
    /// Used to mask answers before they reach a log line or an alert.
    pub fn secret_values(&self) -> Vec<String> {
        use base64::Engine as _;
        let mut secrets: Vec<&crate::steps::Secret> = Vec::new();
        for rule in &self.rules {
            match &rule.step {
                Step::Builtin(step) => secrets.extend(step.secrets()),
                Step::Rule(actions) => secrets.extend(
                    actions
                        .webhook
                        .iter()
                        .filter_map(|hook| hook.signing_key.as_ref().map(|(secret, _)| secret)),
                ),
                Step::SetClaim { .. } => {}
            }
        }
        if let Some(alerts) = &self.alerts {
            secrets.push(&alerts.webhook.secret);
        }
        let mut values = Vec::new();
        for secret in secrets {
            let value = secret.expose();
            values.push(value.to_string());
            values.push(base64::engine::general_purpose::STANDARD.encode(format!("{value}:")));
            values.push(form_urlencoded::byte_serialize(value.as_bytes()).collect());
            if let Some((origin, _)) = split_origin(value) {
                values.push(value[origin.len()..].to_string());
            }
        }
        values.retain(|value| value.len() >= 6);
        // Longest first, so a secret containing another is masked whole.
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        values.dedup();
        values
    }

    /// Parses and validates the plugin configuration. Secrets named by the
    /// configuration are read through `env` (the VM's environment in the
    /// filter).
    ///
    /// The first problem found is returned; the error names its field.
    pub fn from_json(text: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(Error::config(
                "(configuration)",
                format!(
                    "{} bytes is over the limit of {MAX_CONFIG_BYTES}",
                    text.len()
                ),
            ));
        }
        let raw: RawConfig = parse_at("", text)?;

        let (origin, issuer_authority) = split_origin(&raw.issuer)
            .ok_or_else(|| Error::config("issuer", "must be an absolute http(s) URL"))?;
        check_path("token_path", &raw.token_path)?;
        check_path("discovery_path", &raw.discovery_path)?;
        check_path("jwks_path", &raw.jwks_path)?;
        check_path("provider.jwks_path", &raw.provider.jwks_path)?;
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        if same(&raw.jwks_path, &raw.token_path) || same(&raw.jwks_path, &raw.discovery_path) {
            return Err(Error::config(
                "jwks_path",
                "must differ from the token and discovery paths",
            ));
        }
        if same(&raw.token_path, &raw.discovery_path) {
            return Err(Error::config(
                "discovery_path",
                "must differ from token_path",
            ));
        }
        let jwks_uri = match raw.jwks_uri {
            Some(uri) if split_origin(&uri).is_none() => {
                return Err(Error::config("jwks_uri", "must be an absolute http(s) URL"))
            }
            Some(uri) => uri,
            None => format!("{origin}{}", raw.jwks_path),
        };
        let provider = validate_provider(raw.provider, issuer_authority)?;
        let verify = validate_verify_policy(
            raw.issuer,
            raw.audiences,
            raw.allowed_algorithms,
            raw.clock_skew_s,
            raw.max_token_bytes,
        )?;
        let signing = validate_signing(raw.signing)?;
        for (origin, cluster) in &raw.webhook_origins {
            let field = format!("webhook_origins.{origin}");
            if split_origin(origin).map(|(o, _)| o) != Some(origin.as_str()) {
                return Err(Error::config(
                    field,
                    "must be an origin like https://hooks.example.com",
                ));
            }
            if cluster.is_empty() {
                return Err(Error::config(field, "must name an Envoy cluster"));
            }
        }
        let naming = ClaimNaming {
            namespace: raw.namespace.as_deref(),
            allow_plain: raw.allow_plain_claims,
        };
        let rules = validate_rules(raw.rules, naming, &raw.webhook_origins, env)?;
        if !(256..=1024 * 1024).contains(&raw.max_claims_bytes) {
            return Err(Error::config(
                "max_claims_bytes",
                "must be between 256 and 1048576",
            ));
        }
        let mut warnings = Vec::new();
        if raw.access_tokens == AccessTokens::Opaque {
            for rule in &rules {
                if let Step::Rule(actions) = &rule.step {
                    if !actions.access_token.is_empty() || !actions.remove_access_token.is_empty() {
                        warnings.push(format!(
                            "rule {} changes the access token, but access_tokens is \"opaque\": \
                             those changes will be skipped and counted",
                            rule.name
                        ));
                    }
                }
            }
        }
        let alerts = match raw.alerts {
            Some(alerts) => Some(validate_alerts(alerts, env)?),
            None => None,
        };
        let delivery = validate_delivery(&raw.delivery)?;
        if raw.call_budget_ms == 0 || raw.call_budget_ms > 60_000 {
            return Err(Error::config(
                "call_budget_ms",
                "must be between 1 and 60000",
            ));
        }
        if raw.client_ip.forwarded_header.is_empty() {
            return Err(Error::config(
                "client_ip.forwarded_header",
                "must name a header",
            ));
        }
        let RawUserStore::Embedded = raw.user_store;
        if raw.jwks_max_age_s == 0 {
            return Err(Error::config("jwks_max_age_s", "must be at least 1"));
        }
        if raw.max_response_bytes < 1024 {
            return Err(Error::config("max_response_bytes", "must be at least 1024"));
        }

        Ok(Config {
            token_path: raw.token_path,
            discovery_path: raw.discovery_path,
            jwks_path: raw.jwks_path,
            jwks_uri,
            provider,
            verify,
            jwks_refresh_interval_s: raw.jwks_refresh_interval_s,
            jwks_max_age_s: raw.jwks_max_age_s,
            on_invalid_token: raw.on_invalid_token,
            max_response_bytes: raw.max_response_bytes,
            signing,
            rules,
            clients: raw.clients,
            client_ip: ClientIp {
                forwarded_header: raw.client_ip.forwarded_header.to_ascii_lowercase(),
                trusted_hops: raw.client_ip.trusted_hops,
            },
            connection: raw.connection,
            call_budget_ms: raw.call_budget_ms,
            delivery,
            alerts,
            max_claims_bytes: raw.max_claims_bytes,
            access_tokens: raw.access_tokens,
            warnings,
        })
    }
}

fn validate_delivery(raw: &RawDelivery) -> Result<Policy, Error> {
    if raw.max_attempts == 0 || raw.max_attempts > 100 {
        return Err(Error::config(
            "delivery.max_attempts",
            "must be between 1 and 100",
        ));
    }
    if raw.max_age_s == 0 || raw.max_age_s > 86_400 {
        return Err(Error::config(
            "delivery.max_age_s",
            "must be between 1 and 86400",
        ));
    }
    if raw.initial_backoff_ms == 0 || raw.initial_backoff_ms > raw.max_backoff_ms {
        return Err(Error::config(
            "delivery.initial_backoff_ms",
            "must be at least 1 and at most delivery.max_backoff_ms",
        ));
    }
    if raw.outbox_size == 0 || raw.outbox_size > 1_000_000 {
        return Err(Error::config(
            "delivery.outbox_size",
            "must be between 1 and 1000000",
        ));
    }
    Ok(Policy {
        max_attempts: raw.max_attempts,
        max_age_ms: raw.max_age_s * 1000,
        initial_backoff_ms: raw.initial_backoff_ms,
        max_backoff_ms: raw.max_backoff_ms,
        capacity: raw.outbox_size,
    })
}

fn validate_alerts(
    value: Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SlackAlert, Error> {
    match value.get("type").and_then(Value::as_str) {
        Some("slack_alert") => SlackAlert::parse("alerts", value, env),
        Some(other) => Err(Error::config(
            "alerts.type",
            format!("unknown alert type {other:?}; known: slack_alert"),
        )),
        None => Err(Error::config(
            "alerts.type",
            "is required (\"slack_alert\")",
        )),
    }
}

fn validate_provider(raw: RawProvider, issuer_authority: &str) -> Result<Provider, Error> {
    if raw.cluster.is_empty() {
        return Err(Error::config(
            "provider.cluster",
            "must name an Envoy cluster",
        ));
    }
    if raw.timeout_ms == 0 || raw.timeout_ms > 60_000 {
        return Err(Error::config(
            "provider.timeout_ms",
            "must be between 1 and 60000",
        ));
    }
    let authority = raw
        .authority
        .unwrap_or_else(|| issuer_authority.to_string());
    if authority.is_empty() {
        return Err(Error::config("provider.authority", "must not be empty"));
    }
    Ok(Provider {
        cluster: raw.cluster,
        authority,
        jwks_path: raw.jwks_path,
        timeout_ms: raw.timeout_ms,
    })
}

fn validate_verify_policy(
    issuer: String,
    audiences: Vec<String>,
    allowed_algorithms: Vec<Algorithm>,
    clock_skew_s: u64,
    max_token_bytes: usize,
) -> Result<VerifyPolicy, Error> {
    if allowed_algorithms.is_empty() {
        return Err(Error::config(
            "allowed_algorithms",
            "must name at least one algorithm",
        ));
    }
    if let Some(index) = audiences.iter().position(String::is_empty) {
        return Err(Error::config(
            format!("audiences[{index}]"),
            "must not be empty",
        ));
    }
    if clock_skew_s > 600 {
        return Err(Error::config("clock_skew_s", "must be at most 600 seconds"));
    }
    if !(1024..=1024 * 1024).contains(&max_token_bytes) {
        return Err(Error::config(
            "max_token_bytes",
            "must be between 1024 and 1048576",
        ));
    }
    Ok(VerifyPolicy {
        issuer,
        audiences,
        allowed_algorithms,
        clock_skew_s,
        max_token_bytes,
    })
}

fn validate_signing(raw: RawSigning) -> Result<Signing, Error> {
    if !SIGNING_ALGORITHMS.contains(&raw.algorithm) {
        return Err(Error::config(
            "signing.algorithm",
            format!(
                "{} cannot sign; use ES256, RS256 or EdDSA",
                raw.algorithm.name()
            ),
        ));
    }
    if raw.key_id.is_empty() {
        return Err(Error::config("signing.key_id", "must not be empty"));
    }
    if raw.private_key_env.is_empty() {
        return Err(Error::config(
            "signing.private_key_env",
            "must name a variable",
        ));
    }
    Ok(Signing {
        algorithm: raw.algorithm,
        key_id: raw.key_id,
        private_key_env: raw.private_key_env,
    })
}

/// Fields every rule has, whatever its type.
#[derive(Deserialize)]
struct RawRuleHead {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "default_enabled")]
    enabled: bool,
    /// Unset: `deny` for a rule that can deny, `continue` otherwise.
    on_error: Option<OnError>,
    when: Option<String>,
    #[serde(default)]
    clients: Vec<String>,
    #[serde(default)]
    protocols: Vec<String>,
    #[serde(default = "default_mode")]
    mode: Mode,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Enforce,
    Shadow,
}

fn default_mode() -> Mode {
    Mode::Enforce
}

/// Protocol names accepted in `protocols`, with their aliases.
const PROTOCOL_NAMES: [&str; 10] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "token_exchange",
    "oidc-basic-profile",
    "oauth2-refresh-token",
    "oauth2-client-credentials",
    "oauth2-password",
    "delegation",
];

/// Fields every rule may have, whatever its type.
pub(crate) const COMMON_RULE_FIELDS: [&str; 8] = [
    "name",
    "type",
    "enabled",
    "on_error",
    "when",
    "clients",
    "protocols",
    "mode",
];

fn default_enabled() -> bool {
    true
}

fn validate_rules(
    raw: Vec<Value>,
    naming: ClaimNaming,
    origins: &WebhookOrigins,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Rule>, Error> {
    let namespace = naming.namespace;
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.len());
    for (index, value) in raw.into_iter().enumerate() {
        let at = format!("rules[{index}]");
        if !value.is_object() {
            return Err(Error::config(at, "must be an object with name and type"));
        }
        let head: RawRuleHead = parse_value_at(&at, without_fields(&value))?;
        if head.name.is_empty()
            || !head
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::config(
                format!("{at}.name"),
                "must be letters, digits, '_' or '-'",
            ));
        }
        if rules.iter().any(|rule| rule.name == head.name) {
            return Err(Error::config(
                format!("{at}.name"),
                "is used by an earlier rule",
            ));
        }
        if let Some(index) = head
            .protocols
            .iter()
            .position(|p| !PROTOCOL_NAMES.contains(&p.as_str()))
        {
            return Err(Error::config(
                format!("{at}.protocols[{index}]"),
                format!("unknown protocol; known: {}", PROTOCOL_NAMES.join(", ")),
            ));
        }
        let when = match &head.when {
            Some(source) => Some(Expr::compile(&format!("{at}.when"), source)?),
            None => None,
        };
        let step = match head.kind.as_str() {
            "set_claim" => validate_set_claim(&at, value, namespace)?,
            "rule" => Step::Rule(Box::new(Actions::parse(
                &at,
                without_common(value),
                naming,
                origins,
                env,
            )?)),
            kind if Builtin::TYPES.contains(&kind) => {
                Step::Builtin(Box::new(Builtin::parse(kind, &at, value, namespace, env)?))
            }
            other => {
                return Err(Error::config(
                    format!("{at}.type"),
                    format!(
                        "unknown rule type {other:?}; known: rule, set_claim, {}",
                        Builtin::TYPES.join(", ")
                    ),
                ))
            }
        };
        // A rule that can deny fails closed unless told otherwise: a
        // condition that cannot be evaluated (a claim the user left out of
        // the token, say, by asking for fewer scopes) must not let the
        // login through.
        let can_deny = matches!(&step, Step::Rule(actions) if actions.deny.is_some());
        let on_error = head.on_error.unwrap_or(if can_deny {
            OnError::Deny
        } else {
            OnError::Continue
        });
        let actions = match &step {
            Step::Rule(actions) => Some(actions.as_ref()),
            _ => None,
        };
        let reads_context = when.iter().any(Expr::reads_context)
            || actions.is_some_and(|actions| actions.expressions().any(Expr::reads_context));
        rules.push(Rule {
            name: head.name,
            enabled: head.enabled,
            on_error,
            when,
            clients: head.clients,
            protocols: head.protocols,
            shadow: head.mode == Mode::Shadow,
            step,
            reads_context,
        });
    }
    Ok(rules)
}

/// The rule without the fields every rule has: what is left belongs to its
/// type.
pub(crate) fn without_common(mut value: Value) -> Value {
    if let Some(fields) = value.as_object_mut() {
        for common in COMMON_RULE_FIELDS {
            fields.remove(common);
        }
    }
    value
}

/// The rule with only the fields every rule has.
fn without_fields(value: &Value) -> Value {
    let mut head = serde_json::Map::new();
    for field in COMMON_RULE_FIELDS {
        if let Some(v) = value.get(field) {
            head.insert(field.into(), v.clone());
        }
    }
    Value::Object(head)
}

fn validate_set_claim(at: &str, value: Value, namespace: Option<&str>) -> Result<Step, Error> {
    let raw: RawSetClaim = parse_value_at(at, without_common(value))?;
    check_claim_name(&format!("{at}.claim"), &raw.claim)?;
    let namespace = check_namespace(namespace)?;
    let value = match (raw.value, raw.from_claim) {
        (Some(value), None) => ClaimValue::Fixed(value),
        (None, Some(source)) if !source.is_empty() => ClaimValue::FromClaim(source),
        (None, Some(_)) => {
            return Err(Error::config(
                format!("{at}.from_claim"),
                "must not be empty",
            ))
        }
        _ => {
            return Err(Error::config(
                format!("{at}.value"),
                "give exactly one of value and from_claim",
            ))
        }
    };
    Ok(Step::SetClaim {
        claim: format!("{namespace}{}", raw.claim),
        value,
    })
}

/// A claim name a rule may set: not empty, not reserved.
pub(crate) fn check_claim_name(field: &str, claim: &str) -> Result<(), Error> {
    if claim.is_empty() {
        return Err(Error::config(field, "must not be empty"));
    }
    if RESERVED_CLAIMS.contains(&claim) {
        return Err(Error::config(
            field,
            format!("{claim:?} is a reserved claim and cannot be set"),
        ));
    }
    Ok(())
}

/// Custom claims live under a URL prefix so that they never collide with
/// standard claims, now or in a later version of a specification.
pub(crate) fn check_namespace(namespace: Option<&str>) -> Result<&str, Error> {
    let Some(namespace) = namespace else {
        return Err(Error::config(
            "namespace",
            "is required when a rule sets claims, e.g. \"https://example.com/claims/\"",
        ));
    };
    if split_origin(namespace).is_none() {
        return Err(Error::config(
            "namespace",
            "must be an absolute http(s) URL",
        ));
    }
    if !namespace.ends_with('/') {
        return Err(Error::config(
            "namespace",
            format!("must end with '/' so that claim names read {namespace}/NAME"),
        ));
    }
    Ok(namespace)
}

fn check_path(field: &str, path: &str) -> Result<(), Error> {
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err(Error::config(
            field,
            "must be a path starting with '/', without query",
        ));
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err(Error::config(
            field,
            "must not end with '/' (requests with a trailing slash match anyway)",
        ));
    }
    Ok(())
}

/// Splits `https://host:port/path` into the origin `https://host:port` and
/// the authority `host:port`; `None` for anything that is not http(s).
pub(crate) fn split_origin(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return None;
    }
    let origin_len = url.len() - rest.len() + authority_len;
    Some((&url[..origin_len], authority))
}

/// Parses `text` as JSON, then as `T`. Going through a JSON value first
/// means every configuration type is deserialized from one kind of
/// deserializer only, which keeps the filter's module smaller; a syntax
/// error still carries its line and column.
fn parse_at<T: DeserializeOwned>(prefix: &str, text: &[u8]) -> Result<T, Error> {
    let value: Value = serde_json::from_slice(text).map_err(|err| {
        let field = if prefix.is_empty() {
            "(configuration)"
        } else {
            prefix
        };
        Error::config(field, err.to_string())
    })?;
    parse_value_at(prefix, value)
}

pub(crate) fn parse_value_at<T: DeserializeOwned>(prefix: &str, value: Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|err| path_error(prefix, &err))
}

fn path_error<E: std::fmt::Display>(prefix: &str, err: &serde_path_to_error::Error<E>) -> Error {
    let path = err.path().to_string();
    let field = match (prefix.is_empty(), path.as_str()) {
        (true, ".") => "(configuration)".to_string(),
        (true, _) => path,
        (false, ".") => prefix.to_string(),
        (false, _) => format!("{prefix}.{path}"),
    };
    Error::config(field, err.inner().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({
            "issuer": "https://login.example.com",
            "provider": {"cluster": "idp"},
            "namespace": "https://example.com/claims/",
            "rules": [{"name": "plan", "type": "set_claim", "claim": "plan", "value": "gold"}]
        })
    }

    fn load(value: Value) -> Result<Config, Error> {
        Config::from_json(value.to_string().as_bytes(), &|_| None)
    }

    /// A configuration with only its required fields, plus `extra`.
    fn base_with(extra: Value) -> Value {
        let mut config = json!({"issuer": "https://a", "provider": {"cluster": "idp"}});
        for (name, value) in extra.as_object().into_iter().flatten() {
            config[name] = value.clone();
        }
        config
    }

    fn field_of(value: Value) -> String {
        match load(value) {
            Err(Error::Config { field, .. }) => field,
            other => format!("not a config error: {other:?}"),
        }
    }

    #[test]
    fn minimal_configuration_gets_documented_defaults() -> Result<(), Error> {
        let config = load(minimal())?;
        assert_eq!(config.token_path, "/token");
        assert_eq!(
            config.jwks_uri,
            "https://login.example.com/.well-known/rulegate/jwks.json"
        );
        assert_eq!(config.provider.authority, "login.example.com");
        assert_eq!(config.signing.algorithm, Algorithm::ES256);
        assert_eq!(config.on_invalid_token, InvalidTokenPolicy::Reject);
        assert_eq!(
            config.rules[0].step,
            Step::SetClaim {
                claim: "https://example.com/claims/plan".into(),
                value: ClaimValue::Fixed(json!("gold")),
            }
        );
        Ok(())
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "missing issuer",
                json!({"provider": {"cluster": "idp"}}),
                "(configuration)",
            ),
            (
                "issuer not a url",
                json!({"issuer": "login", "provider": {"cluster": "idp"}}),
                "issuer",
            ),
            (
                "unknown top-level field",
                base_with(json!({"tokn_path": "/t"})),
                "tokn_path",
            ),
            (
                "wrong type nested",
                json!({"issuer": "https://a", "provider": {"cluster": "idp", "timeout_ms": "x"}}),
                "provider.timeout_ms",
            ),
            (
                "hmac in allowlist",
                base_with(json!({"allowed_algorithms": ["HS256"]})),
                "allowed_algorithms[0]",
            ),
            (
                "none in allowlist",
                base_with(json!({"allowed_algorithms": ["none"]})),
                "allowed_algorithms[0]",
            ),
            (
                "signing with PS256",
                base_with(json!({"signing": {"algorithm": "PS256"}})),
                "signing.algorithm",
            ),
            (
                "relative token path",
                base_with(json!({"token_path": "token"})),
                "token_path",
            ),
        ];
        for (name, value, field) in cases {
            assert_eq!(field_of(value), field, "case {name:?}");
        }
    }

    #[test]
    fn reserved_claims_are_refused_with_the_rule_named() {
        for claim in RESERVED_CLAIMS {
            let mut config = minimal();
            config["rules"][0]["claim"] = json!(claim);
            let err = load(config).err();
            let Some(Error::Config { field, reason }) = err else {
                panic!("claim {claim:?} was accepted");
            };
            assert_eq!(field, "rules[0].claim", "claim {claim:?}");
            assert!(reason.contains("reserved"), "claim {claim:?}: {reason}");
        }
    }

    #[test]
    fn set_claim_needs_exactly_one_source() {
        let mut both = minimal();
        both["rules"][0]["from_claim"] = json!("email");
        assert_eq!(field_of(both), "rules[0].value");

        let mut neither = minimal();
        neither["rules"][0]
            .as_object_mut()
            .map(|rule| rule.remove("value"));
        assert_eq!(field_of(neither), "rules[0].value");
    }

    #[test]
    fn namespace_without_a_trailing_slash_is_refused() {
        let mut config = minimal();
        config["namespace"] = json!("https://example.com/claims");
        assert_eq!(field_of(config), "namespace");
    }

    #[test]
    fn token_and_discovery_paths_must_differ() {
        let mut config = minimal();
        config["discovery_path"] = json!("/TOKEN");
        assert_eq!(field_of(config), "discovery_path");
    }

    #[test]
    fn rules_without_namespace_are_refused() {
        let mut config = minimal();
        if let Some(config) = config.as_object_mut() {
            config.remove("namespace");
        }
        assert_eq!(field_of(config), "namespace");
    }

    #[test]
    fn unknown_rule_field_and_type_are_named() {
        let mut typo = minimal();
        typo["rules"][0]["valeu"] = json!(1);
        assert_eq!(field_of(typo), "rules[0].valeu");

        let mut unknown = minimal();
        unknown["rules"][0]["type"] = json!("delete_user");
        assert_eq!(field_of(unknown), "rules[0].type");
    }

    #[test]
    fn duplicate_rule_names_are_refused() {
        let mut config = minimal();
        let rule = config["rules"][0].clone();
        if let Some(rules) = config["rules"].as_array_mut() {
            rules.push(rule);
        }
        assert_eq!(field_of(config), "rules[1].name");
    }

    #[test]
    fn oversized_configuration_is_refused_before_parsing() {
        let text = vec![b' '; MAX_CONFIG_BYTES + 1];
        assert!(matches!(
            Config::from_json(&text, &|_| None),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn split_origin_handles_paths_and_rejects_other_schemes() {
        assert_eq!(
            split_origin("https://idp.example.com:8443/realms/x"),
            Some(("https://idp.example.com:8443", "idp.example.com:8443"))
        );
        assert_eq!(
            split_origin("http://127.0.0.1:10000"),
            Some(("http://127.0.0.1:10000", "127.0.0.1:10000"))
        );
        assert_eq!(split_origin("ftp://x"), None);
        assert_eq!(split_origin("https://"), None);
        assert_eq!(split_origin("https://user@host"), None);
    }
}
