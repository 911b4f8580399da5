//! Checks of the files Rulegate ships for running it: `envoy.yaml` and
//! `docker-compose.yml`.
//!
//! Nothing here needs a Docker engine or a running server. The Compose file
//! is checked against the Compose specification's JSON Schema (a copy in
//! `tests/fixtures`) and against what `envoy.yaml` expects to find; the
//! Envoy configuration is read for the few settings the filter depends on,
//! then handed to Envoy 1.40's validate mode, which also loads the built
//! filter and runs its configuration step. That last test needs the tools
//! `make envoy` and `make build` put in place, and says so when they are
//! missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use jsonschema::Validator;
use jwt_simple::prelude::ES256KeyPair;
use serde_json::{json, Value};

const COMPOSE_FILE: &str = "docker-compose.yml";
const ENVOY_YAML: &str = "envoy.yaml";
const COMPOSE_SCHEMA: &str = "tests/fixtures/compose-spec.schema.json";
/// Where envoy.yaml loads the filter from, relative to Envoy's working
/// directory (the repository root when run from the Makefile).
const FILTER_WASM: &str = "target/rulegate.wasm";
/// The Envoy binary `make envoy` installs.
const ENVOY_BIN: &str = ".venv/bin/envoy";
const SIGNING_KEY_VAR: &str = "RULEGATE_SIGNING_KEY";
/// The cluster of the demo page, served by the stand-ins.
const DEMO_PAGE_CLUSTER: &str = "demo_page";

/// The routes the filter must see, and no others.
const FILTER_ROUTES: [&str; 3] = [
    "/token",
    "/.well-known/openid-configuration",
    "/.well-known/rulegate/jwks.json",
];

#[test]
fn docker_compose_file_follows_the_compose_specification() {
    let validator = compose_validator();

    let errors: Vec<String> = schema_errors(&validator, &read_yaml(COMPOSE_FILE))
        .into_iter()
        .map(|(at, error)| format!("at '{at}': {error}"))
        .collect();

    assert!(
        errors.is_empty(),
        "{} does not follow the Compose specification ({COMPOSE_SCHEMA}):\n  {}",
        repo_path(COMPOSE_FILE).display(),
        errors.join("\n  "),
    );
}

/// A way to break a Compose file: its name, the JSON pointer the schema
/// error must point at, and the edit.
type Breakage = (&'static str, &'static str, fn(&mut Value));

/// Proves the check above can fail: each broken copy of the shipped file
/// must be rejected, with an error pointing into the part that was broken.
#[test]
fn compose_schema_check_rejects_broken_compose_files() {
    let validator = compose_validator();
    let shipped = read_yaml(COMPOSE_FILE);
    let cases: [Breakage; 4] = [
        ("unknown service key", "/services/envoy", |c| {
            c["services"]["envoy"]["mount_read_only"] = json!(true);
        }),
        ("ports as a number", "/services/envoy/ports", |c| {
            c["services"]["envoy"]["ports"] = json!(5);
        }),
        (
            "network_mode as a list",
            "/services/provider/network_mode",
            |c| {
                c["services"]["provider"]["network_mode"] = json!(["host"]);
            },
        ),
        ("misspelt top-level key", "", |c| {
            c["service"] = c["services"].clone();
        }),
    ];

    let mut accepted = Vec::new();
    for (name, pointer, break_it) in cases {
        let mut broken = shipped.clone();
        break_it(&mut broken);
        let errors = schema_errors(&validator, &broken);
        if !errors.iter().any(|(at, _)| at == pointer) {
            accepted.push(format!(
                "{name}: expected an error at '{pointer}', got {errors:?}"
            ));
        }
    }

    assert!(
        accepted.is_empty(),
        "the Compose schema check let broken copies of {COMPOSE_FILE} through:\n  {}",
        accepted.join("\n  "),
    );
}

#[test]
fn docker_compose_runs_the_shipped_envoy_yaml_and_filter() {
    let compose = read_yaml(COMPOSE_FILE);
    let services = &compose["services"];
    let envoy = &services["envoy"];
    let provider = &services["provider"];
    let context = format!("in {}", repo_path(COMPOSE_FILE).display());

    let image = envoy["image"].as_str().unwrap_or_default();
    let tag = image.strip_prefix("envoyproxy/envoy:").unwrap_or_default();
    assert!(
        tag == "v1.40" || tag.starts_with("v1.40.") || tag.starts_with("v1.40-"),
        "{context}: envoy image {image:?} is not envoyproxy/envoy with a v1.40 tag",
    );

    // Every variable the plugin reads from Envoy's environment is given to
    // the envoy container, or the plugin refuses its configuration.
    let envoy_yaml = read_yaml(ENVOY_YAML);
    let wanted = wasm_environment_keys(&envoy_yaml);
    assert!(
        !wanted.is_empty(),
        "{context}: envoy.yaml lists no host_env_keys"
    );
    for variable in &wanted {
        assert!(
            environment(envoy, variable).is_some(),
            "{context}: envoy's environment lacks {variable}, which envoy.yaml's plugin reads",
        );
    }

    let working_dir = envoy["working_dir"].as_str().unwrap_or_default();
    let config_target = mount_target(envoy, ENVOY_YAML)
        .unwrap_or_else(|| panic!("{context}: envoy does not mount ./{ENVOY_YAML} read-only"));
    let wasm_target = mount_target(envoy, FILTER_WASM)
        .unwrap_or_else(|| panic!("{context}: envoy does not mount ./{FILTER_WASM} read-only"));
    assert_eq!(
        wasm_target,
        format!("{working_dir}/{FILTER_WASM}"),
        "{context}: envoy.yaml loads {FILTER_WASM} relative to the working directory \
         {working_dir:?}, so the filter must be mounted there",
    );

    let command = words(&envoy["command"]);
    let config_arg = command
        .iter()
        .position(|w| w == "-c" || w == "--config-path")
        .and_then(|i| command.get(i + 1));
    assert_eq!(
        config_arg.map(|c| absolute(working_dir, c)),
        Some(config_target.clone()),
        "{context}: envoy's command {command:?} does not run the mounted {config_target}",
    );

    let key = environment(envoy, SIGNING_KEY_VAR);
    assert!(
        key.as_deref()
            .is_some_and(|k| k.starts_with(&format!("${{{SIGNING_KEY_VAR}"))),
        "{context}: envoy must take {SIGNING_KEY_VAR} from the host environment, has {key:?}",
    );

    // envoy.yaml listens on, and reaches the provider at, 127.0.0.1: every
    // service runs in the host's network so that 127.0.0.1 means the same
    // thing to all of them, and nothing is published beyond the loopback.
    for (name, service) in services.as_object().into_iter().flatten() {
        assert_eq!(
            service["network_mode"].as_str(),
            Some("host"),
            "{context}: service {name} is not on the host's network",
        );
        assert!(
            service.get("ports").is_none(),
            "{context}: service {name} publishes ports; host networking needs none",
        );
    }

    let plugin = plugin_configuration();
    assert_eq!(
        environment(provider, "ISSUER").map(Value::String),
        Some(plugin["issuer"].clone()),
        "{context}: the provider's ISSUER differs from the issuer in {ENVOY_YAML}",
    );
    let cluster = plugin["provider"]["cluster"].as_str().unwrap_or_default();
    assert_eq!(
        environment(provider, "PORT"),
        Some(cluster_port(cluster)),
        "{context}: the provider must listen where {ENVOY_YAML}'s cluster {cluster} points",
    );
}

#[test]
fn shipped_envoy_yaml_passes_envoy_validate_mode() {
    let (ok, output) = envoy_validate(&repo_path(ENVOY_YAML));
    assert!(
        ok,
        "`envoy --mode validate -c {ENVOY_YAML}` failed:\n{output}"
    );
}

/// The README's Envoy snippets (the services' clusters, the routes for a
/// provider) are meant to be copied: pasted into the shipped envoy.yaml,
/// they must pass Envoy's validate mode.
#[test]
fn readme_envoy_examples_pass_envoy_validate_mode() {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("read README.md");
    let mut config = read_yaml(ENVOY_YAML);
    let (mut clusters, mut routes) = (0, 0);
    for block in readme.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        let snippet: Value = serde_norway::from_str(block)
            .unwrap_or_else(|e| panic!("a yaml block of the README is not YAML: {e}\n{block}"));
        if let Some(new_clusters) = snippet.as_array() {
            let shipped = config["static_resources"]["clusters"]
                .as_array_mut()
                .expect("envoy.yaml has clusters");
            shipped.retain(|c| !new_clusters.iter().any(|n| n["name"] == c["name"]));
            shipped.extend(new_clusters.iter().cloned());
            clusters += new_clusters.len();
        } else if let Some(new_routes) = snippet["routes"].as_array() {
            let manager = &mut config["static_resources"]["listeners"][0]["filter_chains"][0]
                ["filters"][0]["typed_config"];
            manager["route_config"]["virtual_hosts"][0]["routes"] =
                Value::Array(new_routes.clone());
            // Every cluster the routes name, as a placeholder on loopback.
            for cluster in new_routes
                .iter()
                .filter_map(|r| r["route"]["cluster"].as_str())
            {
                let shipped = config["static_resources"]["clusters"]
                    .as_array_mut()
                    .unwrap();
                if !shipped.iter().any(|c| c["name"] == cluster) {
                    shipped.push(json!({
                        "name": cluster, "type": "STATIC", "connect_timeout": "1s",
                        "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [
                            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}
                        ]}]},
                    }));
                }
            }
            routes += new_routes.len();
        }
    }
    assert!(
        clusters >= 6 && routes >= 4,
        "the README's cluster and route examples were not found"
    );

    let dir = repo_path(".run/tests");
    std::fs::create_dir_all(&dir).expect("create .run/tests");
    let file = dir.join(format!("readme-envoy-{}.json", std::process::id()));
    std::fs::write(&file, config.to_string()).expect("write the assembled configuration");
    let (ok, output) = envoy_validate(&file);
    let _ = std::fs::remove_file(&file);
    assert!(
        ok,
        "envoy.yaml with the README's examples pasted in fails validation:\n{output}"
    );
}

#[test]
fn envoy_yaml_enables_the_filter_only_on_its_routes() {
    let manager_settings = read_yaml(ENVOY_YAML);
    for manager in http_connection_managers(&manager_settings) {
        for setting in ["normalize_path", "merge_slashes"] {
            assert_eq!(
                manager[setting], true,
                "envoy.yaml must set {setting}: paths are matched normalised"
            );
        }
    }
    let config = read_yaml(ENVOY_YAML);
    let context = format!("in {}", repo_path(ENVOY_YAML).display());
    let managers = http_connection_managers(&config);
    assert!(
        !managers.is_empty(),
        "{context}: no http_connection_manager"
    );

    for manager in managers {
        let filters = manager["http_filters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let position = |name: &str| filters.iter().position(|f| f["name"] == name);
        let (Some(rulegate), Some(router)) =
            (position("rulegate"), position("envoy.filters.http.router"))
        else {
            panic!("{context}: a listener lacks the rulegate or the router http filter");
        };
        assert!(
            rulegate < router,
            "{context}: rulegate must come before the router"
        );

        let filter = &filters[rulegate];
        let wasm = &filter["typed_config"]["config"];
        assert_eq!(
            filter["disabled"], true,
            "{context}: rulegate must be off by default"
        );
        assert_eq!(
            wasm["failure_policy"], "FAIL_RELOAD",
            "{context}: failure_policy"
        );
        assert_eq!(
            wasm["allow_on_headers_stop_iteration"], true,
            "{context}: allow_on_headers_stop_iteration",
        );

        let enabled = routes_enabling_rulegate(manager, &context);
        let expected: BTreeSet<String> = FILTER_ROUTES.iter().map(|r| r.to_string()).collect();
        assert_eq!(enabled, expected, "{context}: routes that enable rulegate");
    }

    let plugin = plugin_configuration();
    for key in ["token_path", "jwks_path"] {
        let path = plugin[key].as_str().unwrap_or_default();
        assert!(
            FILTER_ROUTES.contains(&path),
            "{context}: the plugin's {key} {path:?} has no route enabling the filter",
        );
    }
}

/// Envoy leads only the demo page's paths to the stand-ins, and only to
/// their `/demo/` paths: the stand-ins' control API, which changes what
/// the services answer, must not be reachable through Envoy.
#[test]
fn envoy_yaml_routes_only_the_demo_page_to_the_stand_ins() {
    let config = read_yaml(ENVOY_YAML);
    let context = format!("in {}", repo_path(ENVOY_YAML).display());
    let plugin = plugin_configuration();
    let provider = plugin["provider"]["cluster"].as_str().unwrap_or_default();

    let mut page_routes = 0;
    for manager in http_connection_managers(&config) {
        let hosts = manager["route_config"]["virtual_hosts"].as_array();
        for route in hosts
            .into_iter()
            .flatten()
            .flat_map(|host| host["routes"].as_array().into_iter().flatten())
        {
            let action = &route["route"];
            if action["cluster"] == provider {
                continue;
            }
            assert_eq!(
                action["cluster"], DEMO_PAGE_CLUSTER,
                "{context}: a route leads to a cluster other than the provider's and the page's: {route}"
            );
            assert!(
                action["regex_rewrite"].is_null(),
                "{context}: the page's routes must not rewrite by regex: {route}"
            );
            let matched = route["match"]["prefix"]
                .as_str()
                .or_else(|| route["match"]["path"].as_str())
                .unwrap_or_else(|| {
                    panic!("{context}: a page route matches by neither prefix nor path: {route}")
                });
            let upstream = action["prefix_rewrite"].as_str().unwrap_or(matched);
            assert!(
                upstream.starts_with("/demo/"),
                "{context}: a page route reaches the stand-ins at {upstream:?}, outside /demo/: {route}"
            );
            page_routes += 1;
        }
    }
    assert!(
        page_routes > 0,
        "{context}: no route leads to the demo page"
    );

    let compose = read_yaml(COMPOSE_FILE);
    let command = words(&compose["services"]["standins"]["command"]);
    let port = command
        .iter()
        .position(|word| word == "--port")
        .and_then(|i| command.get(i + 1));
    assert_eq!(
        port,
        Some(&cluster_port(DEMO_PAGE_CLUSTER)),
        "{COMPOSE_FILE}: the stand-ins must listen where {ENVOY_YAML}'s {DEMO_PAGE_CLUSTER} cluster points",
    );
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs Envoy 1.40's validate mode on `config` from the repository root,
/// which also loads the built filter and runs its configuration step.
/// Whether it passed, and what it printed.
fn envoy_validate(config: &Path) -> (bool, String) {
    let envoy = repo_path(ENVOY_BIN);
    assert!(
        envoy.is_file(),
        "{} is missing: run `make envoy` first",
        envoy.display()
    );
    let wasm = repo_path(FILTER_WASM);
    assert!(
        wasm.is_file(),
        "{} is missing (validate mode loads it): run `make build` first",
        wasm.display()
    );
    // Validate mode runs the plugin's configuration step, which refuses to
    // start without a signing key and the services' credentials: a fresh
    // key, and the demo's credentials.
    let key = ES256KeyPair::generate().to_pem().expect("P-256 key as PEM");

    let output = Command::new(&envoy)
        .args(["--mode", "validate", "-c"])
        .arg(config)
        .current_dir(repo_root())
        .env(SIGNING_KEY_VAR, key)
        .envs(rulegate_tests::service_environment())
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", envoy.display()));

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let ok = output.status.success() && stdout.contains("OK");
    let report = format!(
        "{} in {} ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        envoy.display(),
        repo_root().display(),
        output.status,
    );
    (ok, report)
}

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("repository root {}: {e}", root.display()))
}

fn repo_path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

fn read_yaml(relative: &str) -> Value {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// The Compose schema, compiled as the draft it declares (draft-07). The
/// draft is chosen here rather than read from `$schema`, whose spelling in
/// the file ("https://…/draft-07/schema", no "#") a validator may not know.
fn compose_validator() -> Validator {
    let path = repo_path(COMPOSE_SCHEMA);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let declared = schema["$schema"].as_str().unwrap_or_default();
    assert!(
        declared.contains("draft-07"),
        "{} declares {declared:?}; the test compiles it as draft-07",
        path.display()
    );
    jsonschema::draft7::new(&schema)
        .unwrap_or_else(|e| panic!("{} does not compile as draft-07: {e}", path.display()))
}

/// Every schema violation in `instance`: where (a JSON pointer) and what.
fn schema_errors(validator: &Validator, instance: &Value) -> Vec<(String, String)> {
    validator
        .iter_errors(instance)
        .map(|e| (e.instance_path().to_string(), e.to_string()))
        .collect()
}

/// A string or a list of strings (Compose accepts both in several places),
/// as a list of words.
fn words(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Where `service` mounts the repository file `relative` read-only, from
/// either the short ("src:dst:ro") or the long volume syntax.
fn mount_target(service: &Value, relative: &str) -> Option<String> {
    let is_source = |s: &str| s.trim_start_matches("./") == relative;
    service["volumes"]
        .as_array()?
        .iter()
        .find_map(|volume| match volume {
            Value::String(short) => {
                let parts: Vec<&str> = short.split(':').collect();
                match parts.as_slice() {
                    [source, target, mode]
                        if is_source(source) && mode.split(',').any(|m| m == "ro") =>
                    {
                        Some(target.to_string())
                    }
                    _ => None,
                }
            }
            Value::Object(long) => {
                let source = long.get("source")?.as_str()?;
                let read_only = long.get("read_only") == Some(&Value::Bool(true));
                let target = long.get("target")?.as_str()?;
                (is_source(source) && read_only).then(|| target.to_string())
            }
            _ => None,
        })
}

/// The value of `name` in a service's `environment`, map or list form.
/// The `host_env_keys` of every wasm filter in an Envoy configuration.
fn wasm_environment_keys(config: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    for manager in http_connection_managers(config) {
        for filter in manager["http_filters"].as_array().into_iter().flatten() {
            let vm = &filter["typed_config"]["config"]["vm_config"];
            let listed = vm["environment_variables"]["host_env_keys"].as_array();
            keys.extend(
                listed
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(String::from),
            );
        }
    }
    keys
}

fn environment(service: &Value, name: &str) -> Option<String> {
    match &service["environment"] {
        Value::Object(map) => map.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        Value::Array(list) => list.iter().filter_map(Value::as_str).find_map(|entry| {
            let (key, value) = entry.split_once('=')?;
            (key == name).then(|| value.to_string())
        }),
        _ => None,
    }
}

fn absolute(working_dir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{working_dir}/{path}")
    }
}

/// The typed_config of every HTTP connection manager in envoy.yaml.
fn http_connection_managers(config: &Value) -> Vec<&Value> {
    let listeners = config["static_resources"]["listeners"].as_array();
    listeners
        .into_iter()
        .flatten()
        .flat_map(|l| l["filter_chains"].as_array().into_iter().flatten())
        .flat_map(|chain| chain["filters"].as_array().into_iter().flatten())
        .filter(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .map(|f| &f["typed_config"])
        .collect()
}

/// The paths of the routes whose per-filter config turns rulegate on. Each
/// must match its path the way the provider does (any case, an optional
/// trailing slash: `(?i)PATH/?` with the dots escaped), or a client could
/// reach the provider's endpoint on a route without the filter. A virtual
/// host turning it on would cover every route, so that fails.
fn routes_enabling_rulegate(manager: &Value, context: &str) -> BTreeSet<String> {
    let mut enabled = BTreeSet::new();
    let hosts = manager["route_config"]["virtual_hosts"].as_array();
    for host in hosts.into_iter().flatten() {
        assert!(
            host["typed_per_filter_config"]["rulegate"].is_null(),
            "{context}: virtual host {} configures rulegate for all its routes",
            host["name"],
        );
        for route in host["routes"].as_array().into_iter().flatten() {
            let per_route = &route["typed_per_filter_config"]["rulegate"];
            if per_route.is_null() || per_route["disabled"] == true {
                continue;
            }
            let regex = route["match"]["safe_regex"]["regex"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!(
                        "{context}: rulegate is enabled on a route without a path regex: {route}"
                    )
                });
            let path = regex
                .strip_prefix("(?i)")
                .and_then(|rest| rest.strip_suffix("/?"))
                .map(|escaped| escaped.replace("\\.", "."))
                .unwrap_or_else(|| {
                    panic!("{context}: route regex {regex:?} is not of the form (?i)PATH/?")
                });
            enabled.insert(path);
        }
    }
    enabled
}

/// The filter's own JSON configuration, embedded in envoy.yaml.
fn plugin_configuration() -> Value {
    let config = read_yaml(ENVOY_YAML);
    let managers = http_connection_managers(&config);
    let text = managers
        .iter()
        .flat_map(|m| m["http_filters"].as_array().into_iter().flatten())
        .find(|f| f["name"] == "rulegate")
        .and_then(|f| f["typed_config"]["config"]["configuration"]["value"].as_str())
        .unwrap_or_else(|| panic!("{ENVOY_YAML}: no rulegate configuration value"));
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{ENVOY_YAML}: rulegate configuration is not JSON: {e}"))
}

/// The port of the first endpoint of the envoy.yaml cluster named `name`.
fn cluster_port(name: &str) -> String {
    let config = read_yaml(ENVOY_YAML);
    let clusters = config["static_resources"]["clusters"].as_array();
    let cluster = clusters
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{ENVOY_YAML}: no cluster named {name:?}"));
    let endpoint = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
    endpoint["address"]["socket_address"]["port_value"].to_string()
}
