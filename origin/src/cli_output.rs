//! The CLI's only door to stdout: results as text or JSON. Logs go to stderr through tracing.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use serde::Serialize;

/// Prints a result: pretty JSON with `--json`, else the human line.
pub(crate) fn result<T: Serialize>(value: &T, json: bool, human: impl FnOnce(&T) -> String) {
    if json {
        match serde_json::to_string(value) {
            Ok(s) => println!("{s}"),
            Err(e) => println!("{{\"error\":{{\"code\":\"internal\",\"message\":\"{e}\"}}}}"),
        }
    } else {
        println!("{}", human(value));
    }
}

/// Prints one plain line (e.g. the address a server listens on, for scripts and tests).
#[cfg(feature = "server")]
pub(crate) fn line(s: &str) {
    println!("{s}");
}

/// Prints a command's failure on stderr as one plain line, with its whole cause chain.
pub(crate) fn error(message: &str) {
    eprintln!("error: {message}");
}

/// Writes a piece of a command's output as it comes, to stdout or stderr, unbuffered.
pub(crate) fn stream(to_stdout: bool, data: &str) {
    use std::io::Write;
    if to_stdout {
        print!("{data}");
        let _ = std::io::stdout().flush();
    } else {
        eprint!("{data}");
    }
}
