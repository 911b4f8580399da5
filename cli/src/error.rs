//! The command's one error type, and the exit code each kind maps to.
//!
//! Scripts and CI tell a refused configuration (1) from a command that could
//! not do its work at all (2), so the two never share a code.

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// An input could not be used: a file that cannot be read, YAML or JSON
    /// that does not parse, an Envoy configuration without a wasm filter, a
    /// token response without an id_token. The message names the file and
    /// what is wrong with it. Exit code 2.
    Input(String),
    /// A configuration was refused; the message is the line the filter
    /// would log ("rulegate refused its configuration: ..."). Exit code 1.
    Refused(String),
    /// One or more configurations were refused and every refusal has
    /// already been printed. Exit code 1.
    AlreadyReported,
}

impl CliError {
    /// An input error about `path`.
    pub fn input(path: &std::path::Path, reason: impl std::fmt::Display) -> CliError {
        CliError::Input(format!("rulegate: {}: {reason}", path.display()))
    }

    /// The line to print on stderr, if one is still due.
    pub fn message(&self) -> Option<&str> {
        match self {
            CliError::Input(message) | CliError::Refused(message) => Some(message),
            CliError::AlreadyReported => None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Refused(_) | CliError::AlreadyReported => 1,
        }
    }
}
