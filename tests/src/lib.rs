//! The end-to-end harness: real Envoy running the built filter, in front of
//! the real OpenID provider, on free loopback ports.
//!
//! A [`Stack`] starts both from the files the project ships (`envoy.yaml`,
//! `provider/server.mjs`), changing only ports and, where a test says so,
//! the plugin configuration. [`Browser`] logs in the way a person would,
//! through Envoy, following the provider's login and consent pages with a
//! cookie jar. When a test fails, the stack prints the configuration it ran
//! with, every request and response it saw, and the logs of Envoy and the
//! provider.

// A harness that cannot start its servers has nothing to report but the
// failure itself: it panics with what it knows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_simple::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
pub mod standins;

/// The project's top folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built filter; the tests never build it themselves.
pub fn wasm_path() -> PathBuf {
    repo_root().join("target/rulegate.wasm")
}

fn envoy_binary() -> PathBuf {
    let envoy = repo_root().join(".venv/bin/envoy");
    assert!(
        envoy.exists(),
        "{} is missing: run `make envoy`",
        envoy.display()
    );
    envoy
}

/// A port that is free now, below Linux's ephemeral range (32768 and up),
/// so that no outgoing connection takes it before the server binds it.
fn free_port() -> u16 {
    for _ in 0..200 {
        let seed = u16::from_str_radix(&random_token("port")[..4], 16).unwrap_or(0);
        let port = 20_000 + seed % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// Something unique enough for PKCE verifiers, states and test users.
pub fn random_token(label: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seed = format!(
        "{label}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    hex(&Sha256::digest(seed.as_bytes()))[..24].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// How a test wants the shipped configuration changed.
#[derive(Default, Clone)]
pub struct Options {
    /// Replaces the plugin configuration (the JSON in envoy.yaml).
    pub plugin_config: Option<Value>,
    /// Starts the provider with this private JWKS file (kept across restarts).
    pub provider_keys_file: Option<PathBuf>,
    /// Leave RULEGATE_SIGNING_KEY unset in Envoy's environment.
    pub without_signing_key: bool,
    /// Envoy worker threads (each runs its own VM); 2 when unset.
    pub workers: Option<u32>,
    /// Load the test build with the trap switch (`make build-test-trap`).
    pub trap_build: bool,
    /// Send the token endpoint to the stand-ins' fake identity provider
    /// (`/fake-idp/token`, cluster `fake_idp`), which answers what the test
    /// scripts; the plugin configuration should name `fake_idp` and
    /// `/fake-idp/jwks` as its provider.
    pub fake_provider: bool,
}

/// The services' credentials as Envoy's environment holds them in the
/// demo: the stand-ins' test values.
pub fn service_environment() -> Vec<(&'static str, String)> {
    use standins::*;
    vec![
        ("FULLCONTACT_API_KEY", FULLCONTACT_API_KEY.into()),
        (
            "SLACK_SIGNUP_WEBHOOK_URL",
            format!("https://hooks.slack.com{SLACK_SIGNUPS_PATH}"),
        ),
        (
            "SLACK_ALERT_WEBHOOK_URL",
            format!("https://hooks.slack.com{SLACK_ALERTS_PATH}"),
        ),
        ("SEGMENT_WRITE_KEY", SEGMENT_WRITE_KEY.into()),
        ("KEEN_WRITE_KEY", KEEN_WRITE_KEY.into()),
        (
            "ZAPIER_HOOK_URL",
            format!("https://hooks.zapier.com{ZAPIER_HOOK_PATH}"),
        ),
        ("SALESFORCE_CLIENT_ID", SALESFORCE_CLIENT_ID.into()),
        ("SALESFORCE_CLIENT_SECRET", SALESFORCE_CLIENT_SECRET.into()),
        ("WEBHOOK_SIGNING_SECRET", WEBHOOK_SECRET.into()),
    ]
}

/// Envoy, the provider and the stand-ins, running.
pub struct Stack {
    /// What clients use: Envoy's listener, the provider's issuer.
    pub base: String,
    /// The provider directly, bypassing Envoy.
    pub provider_base: String,
    /// What the outside services received, and their fault switches.
    pub services: standins::Standins,
    admin: String,
    envoy: Option<Child>,
    provider: Option<Child>,
    provider_port: u16,
    provider_keys_file: Option<PathBuf>,
    dir: PathBuf,
    envoy_yaml: String,
    /// Every HTTP exchange made through [`Stack::http`], for failure reports.
    journal: RefCell<Vec<String>>,
}

impl Stack {
    /// The shipped stack, as `make demo` runs it.
    pub fn start() -> Stack {
        Stack::start_with(Options::default())
    }

    /// Starts the stack, on other ports if one was taken between choosing
    /// it and binding it.
    pub fn start_with(options: Options) -> Stack {
        let mut last = String::new();
        for _ in 0..3 {
            let mut stack = Stack::launch(options.clone());
            match stack.wait_until_ready() {
                Ok(()) => return stack,
                Err(why) if why.contains("Address already in use") => last = why,
                Err(why) => panic!("{why}"),
            }
        }
        panic!("envoy could not bind its ports three times: {last}");
    }

    /// Starts Envoy expecting it to refuse its configuration; returns its log.
    pub fn expect_refused(options: Options) -> String {
        let mut stack = Stack::launch(options);
        let deadline = Instant::now() + Duration::from_secs(20);
        let envoy = stack.envoy.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Some(status) = envoy.try_wait().unwrap() {
                assert!(!status.success(), "envoy exited successfully");
                return stack.envoy_log();
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("envoy did not refuse its configuration within 20 s");
    }

    fn launch(options: Options) -> Stack {
        assert!(
            wasm_path().exists(),
            "{} is missing: run `make build` first",
            wasm_path().display()
        );
        let (envoy_port, provider_port, admin_port) = (free_port(), free_port(), free_port());
        let dir = repo_root().join(".run/tests").join(random_token("stack"));
        fs::create_dir_all(&dir).unwrap();
        let base = format!("http://127.0.0.1:{envoy_port}");
        let services = standins::Standins::start();

        let ports = Ports {
            envoy: envoy_port,
            provider: provider_port,
            admin: admin_port,
            services: services.port(),
        };
        let envoy_yaml = shipped_envoy_yaml(&ports, &options);
        let config_path = dir.join("envoy.yaml");
        fs::write(&config_path, &envoy_yaml).unwrap();

        let mut stack = Stack {
            base,
            provider_base: format!("http://127.0.0.1:{provider_port}"),
            services,
            admin: format!("http://127.0.0.1:{admin_port}"),
            envoy: None,
            provider: None,
            provider_port,
            provider_keys_file: options.provider_keys_file,
            dir,
            envoy_yaml,
            journal: RefCell::new(Vec::new()),
        };
        stack.start_provider();
        let workers = options.workers.unwrap_or(2);
        stack.start_envoy(&config_path, options.without_signing_key, workers);
        stack
    }

    fn start_provider(&mut self) {
        let log = fs::File::create(self.dir.join("provider.log")).unwrap();
        let mut command = Command::new("node");
        command
            .arg(repo_root().join("provider/server.mjs"))
            .env("ISSUER", &self.base)
            .env("PORT", self.provider_port.to_string())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(keys) = &self.provider_keys_file {
            command.env("KEYS_FILE", keys);
        }
        let mut child = command.spawn().expect("start node provider/server.mjs");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(
            ready.contains("provider listening"),
            "provider did not start: {ready:?}"
        );
        // Keep draining stdout so the provider never blocks on a full pipe.
        thread::spawn(move || lines.for_each(drop));
        self.provider = Some(child);
    }

    fn start_envoy(&mut self, config_path: &Path, without_signing_key: bool, workers: u32) {
        let log = fs::File::create(self.dir.join("envoy.log")).unwrap();
        let mut command = Command::new(envoy_binary());
        command
            .current_dir(repo_root())
            .arg("-c")
            .arg(config_path)
            .args(["--concurrency", &workers.to_string()])
            .args(["--disable-hot-restart", "--log-level", "info"])
            .args(["--component-log-level", "wasm:debug"])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if without_signing_key {
            command.env_remove("RULEGATE_SIGNING_KEY");
        } else {
            command.env("RULEGATE_SIGNING_KEY", signing_key_pem());
        }
        command.envs(service_environment());
        self.envoy = Some(command.spawn().expect("start envoy"));
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let exited = self
                .envoy
                .as_mut()
                .and_then(|envoy| envoy.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!(
                    "envoy exited ({status}):\n{}",
                    tail(&self.envoy_log(), 20)
                ));
            }
            let ready = agent()
                .get(&format!("{}/ready", self.admin))
                .call()
                .ok()
                .is_some_and(|response| response.status().as_u16() == 200);
            if ready {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "envoy was not ready within 30 s:\n{}",
            tail(&self.envoy_log(), 20)
        ))
    }

    /// Stops the provider and starts it again with the same port and keys
    /// file (sessions are lost, keys are kept or replaced as the file says).
    pub fn restart_provider(&mut self, keys_file: Option<PathBuf>) {
        if let Some(mut child) = self.provider.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.provider_keys_file = keys_file;
        self.start_provider();
    }

    /// Envoy's log so far.
    pub fn envoy_log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// A Rulegate counter, as Envoy reports it (0 when never incremented).
    pub fn counter(&self, name: &str) -> u64 {
        self.stat(&format!("wasmcustom.rulegate.{name}"))
    }

    /// Any Envoy stat by its full name (0 when Envoy has not created it).
    pub fn stat(&self, stat: &str) -> u64 {
        let url = format!("{}/stats?filter=^{}$", self.admin, stat.replace('.', "\\."));
        let text = agent()
            .get(&url)
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{stat}: ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Verifies `token` against the JWKS that discovery, fetched through
    /// Envoy, points at: as an id_token issued to `client`, or, without a
    /// client, as an access token (any audience). Returns its claims.
    pub fn verify_published(&self, token: &str, client: Option<Client>) -> Value {
        use rules::config::{Algorithm, VerifyPolicy};
        use rules::verify::{verify, verify_access_token, ProviderKeys};

        let discovery = self.get(&format!("{}/.well-known/openid-configuration", self.base));
        assert_eq!(discovery.status, 200);
        let jwks_uri = discovery.json()["jwks_uri"].as_str().unwrap().to_string();
        assert_eq!(
            jwks_uri,
            format!("{}/.well-known/rulegate/jwks.json", self.base)
        );
        let jwks = self.get(&jwks_uri);
        assert_eq!(jwks.status, 200, "{}", jwks.summary());

        let keys = ProviderKeys::from_jwks(&jwks.body, &Algorithm::ALL).unwrap();
        let policy = VerifyPolicy {
            issuer: self.base.clone(),
            audiences: Vec::new(),
            allowed_algorithms: Algorithm::ALL.to_vec(),
            clock_skew_s: 5,
            max_token_bytes: 16 * 1024,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let verified = match client {
            Some(client) => verify(&keys, &policy, token, Some(client.id()), now),
            None => verify_access_token(&keys, &policy, token, now),
        };
        let claims = verified
            .unwrap_or_else(|err| panic!("token does not verify with the published keys: {err}"));
        Value::Object(claims.as_map().clone())
    }

    /// Records one exchange for the failure report.
    pub fn note(&self, entry: String) {
        self.journal.borrow_mut().push(entry);
    }

    /// GET through Envoy (or any URL), recorded.
    pub fn get(&self, url: &str) -> Reply {
        let response = agent().get(url).call().expect("GET");
        let reply = Reply::from(response);
        self.note(format!("GET {url}\n<- {}", reply.summary()));
        reply
    }

    /// POST a form to the token endpoint through Envoy, recorded.
    pub fn token_request(&self, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
        self.token_request_to(&self.base, form, basic)
    }

    /// POST a form to `base`/token (Envoy, or the provider directly).
    pub fn token_request_to(
        &self,
        base: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Reply {
        self.post_form(&format!("{base}/token"), form, basic, &[])
    }

    /// POSTs a form to `url` with extra headers, recorded.
    pub fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = agent().post(url);
        if let Some((id, secret)) = basic {
            let credentials = STANDARD.encode(format!("{id}:{secret}"));
            request = request.header("authorization", &format!("Basic {credentials}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send_form(form.iter().copied())
            .expect("POST a form");
        let reply = Reply::from(response);
        let fields: Vec<&str> = form.iter().map(|(name, _)| *name).collect();
        self.note(format!(
            "POST {url} fields {fields:?} headers {headers:?}\n<- {}",
            reply.summary()
        ));
        reply
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in [self.envoy.as_mut(), self.provider.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("==== envoy.yaml the test ran with\n{}", self.envoy_yaml);
            eprintln!(
                "==== requests and responses\n{}",
                self.journal.borrow().join("\n")
            );
            let received = self.services.received_all();
            eprintln!("==== what the stand-ins received\n{received:#?}");
            eprintln!(
                "==== envoy log (last 150 lines)\n{}",
                tail(&self.envoy_log(), 150)
            );
            let provider_log =
                fs::read_to_string(self.dir.join("provider.log")).unwrap_or_default();
            eprintln!(
                "==== provider log (last 60 lines)\n{}",
                tail(&provider_log, 60)
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

struct Ports {
    envoy: u16,
    provider: u16,
    admin: u16,
    services: u16,
}

/// The shipped envoy.yaml with test ports, and the plugin configuration
/// replaced when a test asks.
fn shipped_envoy_yaml(ports: &Ports, options: &Options) -> String {
    let shipped = fs::read_to_string(repo_root().join("envoy.yaml")).expect("read envoy.yaml");
    let mut yaml = shipped
        .replace("port_value: 10000", &format!("port_value: {}", ports.envoy))
        .replace(
            "port_value: 3000",
            &format!("port_value: {}", ports.provider),
        )
        .replace(
            "port_value: 4000",
            &format!("port_value: {}", ports.services),
        )
        .replace("port_value: 9901", &format!("port_value: {}", ports.admin));
    if let Some(config) = &options.plugin_config {
        yaml = replace_plugin_config(&yaml, config);
    }
    if options.fake_provider {
        yaml = with_fake_provider(&yaml, ports.services);
    }
    if options.trap_build {
        let trap = repo_root().join("target/rulegate-test-trap.wasm");
        assert!(
            trap.exists(),
            "{} is missing: run `make build-test-trap`",
            trap.display()
        );
        yaml = yaml.replace(
            "filename: target/rulegate.wasm",
            "filename: target/rulegate-test-trap.wasm",
        );
    }
    yaml.replace(
        "http://127.0.0.1:10000",
        &format!("http://127.0.0.1:{}", ports.envoy),
    )
}

/// Routes the token endpoint to the stand-ins' fake identity provider.
fn with_fake_provider(yaml: &str, services_port: u16) -> String {
    let token_route = "- match: { safe_regex: { regex: \"(?i)/token/?\" } }\n                          route: { cluster: oidc_provider, idle_timeout: 15s }";
    assert!(
        yaml.contains(token_route),
        "envoy.yaml's token route changed shape"
    );
    let fake_route = "- match: { safe_regex: { regex: \"(?i)/token/?\" } }\n                          route: { cluster: fake_idp, idle_timeout: 15s, regex_rewrite: { pattern: { regex: \".*\" }, substitution: /fake-idp/token } }";
    let cluster = format!(
        "    - name: fake_idp\n      type: STATIC\n      connect_timeout: 1s\n      load_assignment:\n        cluster_name: fake_idp\n        endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {services_port}}}}}}}}}]}}]\n    - name: oidc_provider\n"
    );
    yaml.replacen(token_route, fake_route, 1)
        .replacen("    - name: oidc_provider\n", &cluster, 1)
}

/// The plugin configuration of the shipped envoy.yaml, as JSON.
pub fn shipped_plugin_config() -> Value {
    let shipped = fs::read_to_string(repo_root().join("envoy.yaml")).expect("read envoy.yaml");
    let (_, block) = plugin_config_block(&shipped);
    serde_json::from_str(&block).expect("the plugin configuration in envoy.yaml is JSON")
}

/// Where the `value: |` block of the plugin configuration starts and what
/// it holds (indentation removed).
fn plugin_config_block(yaml: &str) -> ((usize, usize), String) {
    let marker = "value: |\n";
    let start = yaml.find(marker).expect("plugin configuration block") + marker.len();
    let indent = yaml[start..].len() - yaml[start..].trim_start_matches(' ').len();
    let mut end = start;
    let mut block = String::new();
    for line in yaml[start..].split_inclusive('\n') {
        let leading = line.len() - line.trim_start_matches(' ').len();
        if line.trim().is_empty() || leading < indent {
            break;
        }
        block.push_str(&line[indent..]);
        end += line.len();
    }
    ((start, end), block)
}

fn replace_plugin_config(yaml: &str, config: &Value) -> String {
    let ((start, end), block) = plugin_config_block(yaml);
    let indent = yaml[start..].len() - yaml[start..].trim_start_matches(' ').len();
    let _ = block;
    let pretty = serde_json::to_string_pretty(config).unwrap();
    let indented: String = pretty
        .lines()
        .map(|line| format!("{}{line}\n", " ".repeat(indent)))
        .collect();
    format!("{}{}{}", &yaml[..start], indented, &yaml[end..])
}

/// The signing key every test stack uses, made once per test run.
pub fn signing_key() -> &'static ES256KeyPair {
    use std::sync::OnceLock;
    static KEY: OnceLock<ES256KeyPair> = OnceLock::new();
    KEY.get_or_init(ES256KeyPair::generate)
}

fn signing_key_pem() -> String {
    signing_key().to_pem().expect("PEM of the test signing key")
}

/// An HTTP client that shows every status and follows no redirect.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn from(response: ureq::http::Response<ureq::Body>) -> Reply {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into(),
                )
            })
            .collect();
        let body = response.into_body().read_to_vec().unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status, headers and body, with token values shortened.
    pub fn summary(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let mut body = self.text();
        if body.len() > 1500 {
            body.truncate(1500);
            body.push_str("...");
        }
        format!("{}\n   {}\n   {}", self.status, headers.join("\n   "), body)
    }
}

/// The clients the demo provider knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// Public single-page app: PKCE, no secret, RS256 id_tokens.
    Spa,
    /// Confidential backend: client_secret_basic, ES256 id_tokens.
    Backend,
}

impl Client {
    pub fn id(self) -> &'static str {
        match self {
            Client::Spa => "rulegate-spa",
            Client::Backend => "rulegate-backend",
        }
    }

    pub fn secret(self) -> Option<&'static str> {
        match self {
            Client::Spa => None,
            Client::Backend => Some("backend-secret"),
        }
    }
}

/// An authorization response: what the provider redirected the browser to.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub client: Client,
    pub callback_url: String,
    pub code: String,
    pub verifier: String,
    pub state: String,
    pub nonce: String,
}

/// A person at a browser: a cookie jar and a way through the login pages.
pub struct Browser<'s> {
    stack: &'s Stack,
    agent: ureq::Agent,
}

impl<'s> Browser<'s> {
    pub fn new(stack: &'s Stack) -> Self {
        Browser {
            stack,
            agent: agent(),
        }
    }

    /// Logs `email` in with `password`, through Envoy, up to the redirect
    /// back to the client with a code.
    pub fn authorize(&self, client: Client, email: &str, password: &str) -> Authorization {
        let base = &self.stack.base;
        let verifier = format!("verifier-{}-{}", random_token("v"), random_token("w"));
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let (state, nonce) = (random_token("state"), random_token("nonce"));
        let mut next = format!(
            "{base}/auth?response_type=code&client_id={}&redirect_uri={base}/callback\
             &scope=openid%20email%20profile&state={state}&nonce={nonce}\
             &code_challenge={challenge}&code_challenge_method=S256",
            client.id()
        );
        for _ in 0..12 {
            if next.starts_with(&format!("{base}/callback")) {
                let code = query_value(&next, "code").expect("code in the callback");
                assert_eq!(query_value(&next, "state").as_deref(), Some(state.as_str()));
                return Authorization {
                    client,
                    callback_url: next,
                    code,
                    verifier,
                    state,
                    nonce,
                };
            }
            let page = self.request("GET", &next, &[]);
            next = match (page.status, page.header("location")) {
                (300..=399, Some(location)) => absolute(base, location),
                (200, None) => self.submit_form(&page, email, password),
                _ => panic!(
                    "unexpected answer on the way to the callback: {}",
                    page.summary()
                ),
            };
        }
        panic!("the login did not reach the callback in 12 steps");
    }

    /// Posts the first form of a login or consent page; returns where the
    /// provider redirects next.
    fn submit_form(&self, page: &Reply, email: &str, password: &str) -> String {
        let html = page.text();
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form on the page: {html}"));
        let url = absolute(&self.stack.base, action);
        let fields: Vec<(&str, &str)> = if action.ends_with("/login") {
            vec![("email", email), ("password", password)]
        } else {
            Vec::new()
        };
        let reply = self.request("POST", &url, &fields);
        match reply.header("location") {
            Some(location) => absolute(&self.stack.base, location),
            None => panic!("the form at {url} did not redirect: {}", reply.summary()),
        }
    }

    fn request(&self, method: &str, url: &str, form: &[(&str, &str)]) -> Reply {
        let response = match method {
            "POST" => self.agent.post(url).send_form(form.iter().copied()),
            _ => self.agent.get(url).call(),
        };
        let reply = Reply::from(response.unwrap_or_else(|err| panic!("{method} {url}: {err}")));
        self.stack
            .note(format!("{method} {url}\n<- {}", reply.status));
        reply
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Exchanges an authorization code at the token endpoint through Envoy.
pub fn exchange_code(stack: &Stack, authorization: &Authorization) -> Reply {
    let redirect_uri = format!("{}/callback", stack.base);
    let client = authorization.client;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", authorization.code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", authorization.verifier.as_str()),
    ];
    if client.secret().is_none() {
        form.push(("client_id", client.id()));
    }
    let basic = client.secret().map(|secret| (client.id(), secret));
    stack.token_request(&form, basic)
}

/// Exchanges a refresh token through Envoy.
pub fn refresh(stack: &Stack, client: Client, refresh_token: &str) -> Reply {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    if client.secret().is_none() {
        form.push(("client_id", client.id()));
    }
    let basic = client.secret().map(|secret| (client.id(), secret));
    stack.token_request(&form, basic)
}

/// The header and claims of a JWT, decoded without verification.
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let decode = |part: Option<&str>| -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.expect("jwt part"))
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("json")
    };
    (decode(parts.next()), decode(parts.next()))
}

/// Runs the standard OpenID client (`tests/oidc-client/client.mjs`) and
/// returns its JSON answer, or its error output.
pub fn openid_client(args: &[&str]) -> Result<Value, String> {
    let script = repo_root().join("tests/oidc-client/client.mjs");
    let output = Command::new("node")
        .arg(script)
        .args(args)
        .output()
        .map_err(|err| format!("failed to run node: {err}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|err| format!("not JSON: {err}"))
}

/// A new user's email address: each test logs in someone new.
pub fn new_email(label: &str) -> String {
    format!("{label}.{}@example.org", random_token(label))
}

/// The password of every user not in provider/accounts.json.
pub const DEMO_PASSWORD: &str = "rulegate";
