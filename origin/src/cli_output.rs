//! The CLI's only door to stdout: results as text or JSON. Logs go to stderr through tracing.

use std::io::Write;

use serde::Serialize;

/// Prints a result: pretty JSON with `--json`, else the human line.
pub(crate) fn result<T: Serialize>(value: &T, json: bool, human: impl FnOnce(&T) -> String) {
    let text = if json {
        serde_json::to_string(value).unwrap_or_else(|e| {
            let body = serde_json::json!({"error": {"code": "internal", "message": e.to_string()}});
            body.to_string()
        })
    } else {
        human(value)
    };
    emit(true, &format!("{text}\n"));
}

/// Prints one plain line (e.g. the address a server listens on, for scripts and tests).
#[cfg(feature = "server")]
pub(crate) fn line(s: &str) {
    emit(true, &format!("{s}\n"));
}

/// Prints a command's failure on stderr as one plain line, with its whole cause chain.
pub(crate) fn error(message: &str) {
    emit(false, &format!("error: {message}\n"));
}

/// Writes a piece of a command's output as it comes, to stdout or stderr, unbuffered.
pub(crate) fn stream(to_stdout: bool, data: &str) {
    emit(to_stdout, data);
}

/// Writes and flushes `data`. A reader that went away (`prewarm … | head`) ends the process
/// quietly with 141 (128 + SIGPIPE), as a program killed by SIGPIPE would, instead of the
/// panic `println!` gives; other write errors are ignored, as `eprintln!` would fail too.
fn emit(to_stdout: bool, data: &str) {
    let written = if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(data.as_bytes()).and_then(|()| out.flush())
    } else {
        let mut err = std::io::stderr().lock();
        err.write_all(data.as_bytes()).and_then(|()| err.flush())
    };
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
    }
}
