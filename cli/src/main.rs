//! `rulegate`: the filter's companion on the command line.
//!
//! An operator should not have to start Envoy to learn that a configuration
//! is refused, or to see what a rule would do to a login. `rulegate check`
//! runs the very validation the filter runs when Envoy loads it, and
//! `rulegate try` runs the rules on a recorded token response, answering
//! awaited calls from a file, and shows everything the login would change
//! and send. Both read the plugin configuration on its own (JSON) or inside
//! an Envoy configuration (YAML).
//!
//! Exit codes: 0 when all went well, 1 when a configuration is refused, 2
//! for a usage or input error (a file that cannot be read or parsed).
//! Output never holds a secret: see [`report`].

mod check;
mod dry_run;
mod error;
mod report;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Check a Rulegate configuration, or dry-run its rules on a recorded login.
#[derive(Parser)]
#[command(name = "rulegate", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration exactly as the filter does when Envoy loads
    /// it, secrets and signing key included. Exit 0 valid, 1 refused, 2
    /// usage or input error.
    Check(CheckArgs),
    /// Run the rules on a recorded token response, WITHOUT verifying its
    /// signature, and show what the login would get, send and store.
    /// Nothing is sent: awaited calls are answered from --responses.
    Try(TryArgs),
}

/// Where the configuration comes from and how its secrets are found.
#[derive(Args)]
struct ConfigArgs {
    /// The plugin configuration (JSON), or an Envoy configuration (YAML)
    /// whose wasm HTTP filters hold it. From an Envoy configuration only the
    /// variables listed in the filter's
    /// vm_config.environment_variables are visible, as in Envoy.
    config: PathBuf,
    /// Of several wasm filters in an Envoy configuration, use the one with
    /// this name.
    #[arg(long, value_name = "NAME")]
    filter: Option<String>,
    /// Give every secret variable that is not set a placeholder
    /// ("fake-VAR"; "https://example.invalid/fake-VAR" for names ending in
    /// _URL; a whsec_ secret for a webhook's signing_secret_env), so that a
    /// configuration can be tried without real keys. A signing key cannot
    /// be faked: when it is missing, it is left unchecked.
    #[arg(long)]
    fake_secrets: bool,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Do not load the signing key (the filter refuses to start without
    /// it); check everything else.
    #[arg(long)]
    no_signing_key: bool,
}

#[derive(Args)]
struct TryArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The provider's token response (JSON with an id_token), or the bare
    /// id_token. Its signature is not checked.
    #[arg(long, value_name = "FILE")]
    token_response: PathBuf,
    /// Canned answers to awaited calls: a JSON object keyed by rule name or
    /// by call target ("fullcontact person.enrich"), each
    /// {"status": 200, "headers": {...}, "body": ...}. A call without one is
    /// answered as not sent.
    #[arg(long, value_name = "FILE")]
    responses: Option<PathBuf>,
    /// The token request's grant_type.
    #[arg(long, value_name = "G", default_value = "authorization_code")]
    grant_type: String,
    /// The requesting client; default: the id_token's azp, else its aud.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// The user's stored record before this login (JSON: logins_count,
    /// app_metadata, user_metadata); default: a new user. An interactive
    /// grant counts this login on top, as the filter does before the rules
    /// run.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// The client's address (context.request.ip).
    #[arg(long, value_name = "IP")]
    ip: Option<String>,
    /// The client's User-Agent (context.request.user_agent).
    #[arg(long, value_name = "UA")]
    user_agent: Option<String>,
    /// Print one JSON document instead of the plain-text report.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Check(args) => check::run(args),
        Command::Try(args) => dry_run::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(message) = err.message() {
                eprintln!("{message}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
