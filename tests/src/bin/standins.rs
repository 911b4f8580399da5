//! `standins --port N`: the stand-ins for Slack, Segment, Keen.io, Zapier,
//! Salesforce and FullContact on one loopback port, for the demo and for
//! anything that wants them in a process of their own.
//!
//! The tests start the same server in-process through
//! `rulegate_tests::standins::Standins`; this binary exists so that Envoy's
//! clusters in the demo have something to point at. It prints exactly one
//! line on stdout, `standins listening on http://127.0.0.1:PORT`, once the
//! port is bound (port 0 picks a free one), then serves until killed,
//! logging one line per request on stderr.

use std::io::Write as _;
use std::process::ExitCode;

use rulegate_tests::standins;

const USAGE: &str = "usage: standins [--port N]   (N = 0, the default, picks a free port)";

fn main() -> ExitCode {
    let port = match port_from_args(std::env::args().skip(1)) {
        Ok(Some(port)) => port,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("standins: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let listener = match standins::bind(port) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("standins: failed to listen on 127.0.0.1:{port}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bound = match listener.local_addr() {
        Ok(address) => address.port(),
        Err(err) => {
            eprintln!("standins: failed to read the bound port: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "standins listening on http://127.0.0.1:{bound}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        eprintln!("standins: failed to announce the port on stdout");
        return ExitCode::FAILURE;
    }

    match standins::serve_forever(listener) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("standins: failed to serve: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` when help was asked for.
fn port_from_args(mut args: impl Iterator<Item = String>) -> Result<Option<u16>, String> {
    let mut port = 0;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => args.next().ok_or("--port needs a value")?,
            other => match other.strip_prefix("--port=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unknown argument {other:?}")),
            },
        };
        port = value
            .parse()
            .map_err(|_| format!("--port {value:?} is not a port number (0 to 65535)"))?;
    }
    Ok(Some(port))
}
