//! Where a plugin configuration comes from, and what environment it sees.
//!
//! The configuration is either a JSON file of its own or the `configuration`
//! of a wasm HTTP filter inside an Envoy configuration. In the second case
//! the filter sees only the variables its `vm_config.environment_variables`
//! hands it (`host_env_keys` from Envoy's environment, `key_values` fixed),
//! so the lookups here see only those too: a key set in the shell but not
//! listed would pass a check and then be missing in Envoy.
//!
//! With `--fake-secrets` a variable that is not set gets a placeholder of
//! the shape its field needs, so that a configuration can be tried without
//! the real keys. Every placeholder handed out is remembered and reported.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use crate::error::CliError;

/// The `@type` of Envoy's wasm HTTP filter.
const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// One plugin configuration and the environment it is loaded with.
pub struct Plugin {
    /// The Envoy filter it belongs to; `None` for a JSON file.
    pub filter: Option<String>,
    pub text: String,
    pub env: Environment,
}

/// The variables a plugin sees, as the filter would see them.
pub struct Environment {
    /// Variables taken from this process's environment; `None`: all.
    host_keys: Option<Vec<String>>,
    /// Fixed values from `environment_variables.key_values`.
    fixed: BTreeMap<String, String>,
    fake_secrets: bool,
    /// Variables named by a webhook's `signing_secret_env`, whose
    /// placeholder must look like a Standard Webhooks secret.
    webhook_secrets: Vec<String>,
    /// Variables named by a field that holds a URL (`webhook_url_env`,
    /// `hook_url_env`), whose placeholder must be a URL.
    url_variables: Vec<String>,
    /// Placeholders handed out.
    faked: RefCell<Vec<String>>,
    /// Variables asked for that are set here but not listed for the VM.
    unlisted: RefCell<Vec<String>>,
}

impl Environment {
    /// A variable as the filter would read it, or its placeholder.
    pub fn get(&self, variable: &str) -> Option<String> {
        if let Some(value) = self.real(variable) {
            return Some(value);
        }
        if !self.fake_secrets {
            return None;
        }
        remember(&self.faked, variable);
        Some(self.placeholder(variable))
    }

    /// A variable as the filter would read it, never a placeholder.
    pub fn real(&self, variable: &str) -> Option<String> {
        let value = match (&self.host_keys, self.fixed.get(variable)) {
            (_, Some(fixed)) => Some(fixed.clone()),
            (None, None) => std::env::var(variable).ok(),
            (Some(keys), None) if keys.iter().any(|key| key == variable) => {
                std::env::var(variable).ok()
            }
            (Some(_), None) => {
                if std::env::var_os(variable).is_some() {
                    remember(&self.unlisted, variable);
                }
                None
            }
        };
        value.filter(|value| !value.trim().is_empty())
    }

    /// Whether missing variables get placeholders (`--fake-secrets`).
    pub fn fakes_secrets(&self) -> bool {
        self.fake_secrets
    }

    /// Variables that got a placeholder, in the order they were asked for.
    pub fn faked(&self) -> Vec<String> {
        self.faked.borrow().clone()
    }

    /// Variables set in this shell that the filter would not see.
    pub fn unlisted(&self) -> Vec<String> {
        self.unlisted.borrow().clone()
    }

    fn placeholder(&self, variable: &str) -> String {
        let fake = format!("fake-{variable}");
        if self.webhook_secrets.iter().any(|name| name == variable) {
            return format!("whsec_{}", STANDARD.encode(fake));
        }
        if variable.ends_with("_URL") || self.url_variables.iter().any(|name| name == variable) {
            return format!("https://example.invalid/{fake}");
        }
        fake
    }
}

fn remember(list: &RefCell<Vec<String>>, variable: &str) {
    let mut list = list.borrow_mut();
    if !list.iter().any(|known| known == variable) {
        list.push(variable.to_string());
    }
}

/// Every plugin configuration in `path` (one for a JSON file), or only the
/// filter named `only`.
pub fn load(path: &Path, only: Option<&str>, fake_secrets: bool) -> Result<Vec<Plugin>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| CliError::input(path, err))?;

    // A plugin configuration is JSON and never holds a wasm filter; an
    // Envoy configuration may be YAML or JSON and holds at least one.
    let json = text.trim_start().starts_with('{');
    let envoy: Option<Value> = if json {
        serde_json::from_str(&text).ok()
    } else {
        let envoy = serde_norway::from_str(&text)
            .map_err(|err| CliError::input(path, format!("neither JSON nor YAML: {err}")))?;
        Some(envoy)
    };
    let mut found = Vec::new();
    if let Some(envoy) = &envoy {
        find_wasm_filters(envoy, None, &mut found);
    }
    if found.is_empty() && json {
        if only.is_some() {
            return Err(CliError::input(
                path,
                "--filter applies to an Envoy configuration, and this is a plugin configuration",
            ));
        }
        // Handed over as it is, so that a syntax error is reported by the
        // same parser, in the same words, as in the filter.
        let env = environment(None, BTreeMap::new(), fake_secrets, &text);
        return Ok(vec![Plugin {
            filter: None,
            text,
            env,
        }]);
    }
    if found.is_empty() {
        return Err(CliError::input(
            path,
            format!("no wasm HTTP filter ({WASM_FILTER_TYPE}) in this Envoy configuration"),
        ));
    }
    let names: Vec<String> = found.iter().map(|(name, _)| name.clone()).collect();
    let chosen: Vec<(String, &Value)> = found
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|only| only == name))
        .collect();
    if chosen.is_empty() {
        return Err(CliError::input(
            path,
            format!(
                "no wasm filter named by --filter; found: {}",
                names.join(", ")
            ),
        ));
    }
    chosen
        .into_iter()
        .map(|(name, filter)| plugin_of(path, name, filter, fake_secrets))
        .collect()
}

/// The one plugin configuration in `path`; several need `--filter`.
pub fn load_one(path: &Path, only: Option<&str>, fake_secrets: bool) -> Result<Plugin, CliError> {
    let mut plugins = load(path, only, fake_secrets)?;
    if plugins.len() > 1 {
        let names: Vec<String> = plugins.iter().filter_map(|p| p.filter.clone()).collect();
        return Err(CliError::input(
            path,
            format!(
                "several wasm filters ({}); choose one with --filter",
                names.join(", ")
            ),
        ));
    }
    plugins
        .pop()
        .ok_or_else(|| CliError::input(path, "no plugin configuration"))
}

/// Collects every wasm filter's typed config with the name of the filter
/// that holds it.
fn find_wasm_filters<'a>(
    value: &'a Value,
    name: Option<&str>,
    found: &mut Vec<(String, &'a Value)>,
) {
    match value {
        Value::Object(fields) => {
            let name = fields.get("name").and_then(Value::as_str).or(name);
            if fields.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                let label = name
                    .or_else(|| value["config"]["name"].as_str())
                    .unwrap_or("(unnamed)");
                found.push((label.to_string(), value));
                return;
            }
            for child in fields.values() {
                find_wasm_filters(child, name, found);
            }
        }
        Value::Array(items) => {
            for item in items {
                find_wasm_filters(item, name, found);
            }
        }
        _ => {}
    }
}

fn plugin_of(path: &Path, name: String, filter: &Value, fake: bool) -> Result<Plugin, CliError> {
    let config = &filter["config"];
    let text = match &config["configuration"] {
        // Envoy hands the plugin an empty configuration, which it refuses.
        Value::Null => String::new(),
        configuration => configuration["value"]
            .as_str()
            .ok_or_else(|| {
                CliError::input(
                    path,
                    format!(
                        "filter {name}: configuration must be a \
                         google.protobuf.StringValue with a value"
                    ),
                )
            })?
            .to_string(),
    };
    let variables = &config["vm_config"]["environment_variables"];
    let host_keys = variables["host_env_keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let fixed = variables["key_values"]
        .as_object()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let env = environment(Some(host_keys), fixed, fake, &text);
    Ok(Plugin {
        filter: Some(name),
        text,
        env,
    })
}

fn environment(
    host_keys: Option<Vec<String>>,
    fixed: BTreeMap<String, String>,
    fake_secrets: bool,
    text: &str,
) -> Environment {
    let mut webhook_secrets = Vec::new();
    let mut url_variables = Vec::new();
    if let Ok(config) = serde_json::from_str::<Value>(text) {
        collect_strings_of(&config, "signing_secret_env", &mut webhook_secrets);
        for field in URL_FIELDS {
            collect_strings_of(&config, field, &mut url_variables);
        }
    }
    Environment {
        host_keys,
        fixed,
        fake_secrets,
        webhook_secrets,
        url_variables,
        faked: RefCell::new(Vec::new()),
        unlisted: RefCell::new(Vec::new()),
    }
}

/// Fields naming a variable that holds a URL.
const URL_FIELDS: [&str; 2] = ["webhook_url_env", "hook_url_env"];

/// Every string value of a field named `field`, at any depth.
fn collect_strings_of(value: &Value, field: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (name, child) in fields {
                match child.as_str() {
                    Some(text) if name == field => out.push(text.to_string()),
                    _ => collect_strings_of(child, field, out),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_strings_of(item, field, out)),
        _ => {}
    }
}
