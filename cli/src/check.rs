//! `rulegate check`: the filter's load-time validation, run by hand.
//!
//! It goes through the same two steps as the filter when Envoy configures
//! it: [`Config::from_json`] with the environment, then the signing key the
//! configuration names. A refusal is printed as the very line the filter
//! logs, so that what an operator sees here is what Envoy's log would say.

use rules::config::Config;
use rules::sign::Signer;
use rules::Error;

use crate::error::CliError;
use crate::source::{self, Plugin};
use crate::CheckArgs;

/// Checks every plugin configuration in the file; a refusal of any fails.
pub fn run(args: &CheckArgs) -> Result<(), CliError> {
    let plugins = source::load(
        &args.config.config,
        args.config.filter.as_deref(),
        args.config.fake_secrets,
    )?;
    let several = plugins.len() > 1;
    let mut refused = false;
    for plugin in &plugins {
        let prefix = match (&plugin.filter, several) {
            (Some(name), true) => format!("filter {name}: "),
            _ => String::new(),
        };
        match check(plugin, args.no_signing_key) {
            Ok(lines) => lines.iter().for_each(|line| println!("{prefix}{line}")),
            Err(err) => {
                refused = true;
                eprintln!("{prefix}rulegate refused its configuration: {err}");
                for variable in plugin.env.unlisted() {
                    eprintln!(
                        "{prefix}hint: {variable} is set here, but the filter cannot see it: \
                         list it in vm_config.environment_variables.host_env_keys"
                    );
                }
            }
        }
    }
    if refused {
        return Err(CliError::AlreadyReported);
    }
    Ok(())
}

/// What the filter would do with one configuration: the lines to print, or
/// the error it would refuse the configuration with.
fn check(plugin: &Plugin, skip_key: bool) -> Result<Vec<String>, Error> {
    let config = Config::from_json(plugin.text.as_bytes(), &|name| plugin.env.get(name))?;
    let names: Vec<&str> = config.rules.iter().map(|rule| rule.name.as_str()).collect();
    let mut lines = vec![match names.len() {
        0 => "ok: 0 rules".to_string(),
        n => format!("ok: {n} rules ({})", names.join(", ")),
    }];
    lines.extend(config.warnings.iter().map(|w| format!("warning: {w}")));

    let signing = &config.signing;
    let variable = &signing.private_key_env;
    match plugin.env.real(variable) {
        _ if skip_key => lines.push(format!(
            "note: signing key not checked (--no-signing-key); the filter refuses to load \
             without a key in {variable}"
        )),
        None if !plugin.env.fakes_secrets() => {
            // The same refusal as the filter's load_plugin.
            return Err(Error::SigningKey {
                variable: variable.clone(),
                reason: "is not set; list it in vm_config.environment_variables".into(),
            });
        }
        None => lines.push(format!(
            "note: signing key not checked: {variable} is not set (--fake-secrets)"
        )),
        Some(pem) => {
            Signer::from_pem(signing, &pem)?;
            lines.push(format!(
                "signing key: {} key {} from {variable}",
                signing.algorithm.name(),
                signing.key_id
            ));
        }
    }

    let faked = plugin.env.faked();
    if !faked.is_empty() {
        lines.push(format!(
            "note: placeholder values for {} (--fake-secrets)",
            faked.join(", ")
        ));
    }
    Ok(lines)
}
