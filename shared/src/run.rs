//! Wire types of `POST /v1/sandboxes/{id}/run`: code run in the sandbox's long-lived interpreter.

use serde::{Deserialize, Serialize};

use crate::limits::LimitHit;

/// Largest `code` of one run request: it travels as data on the interpreter's pipe, never on a
/// command line, so only the request body bounds it.
pub const MAX_CODE_BYTES: usize = 512 << 10;

fn python() -> String {
    "python".into()
}

/// `POST /v1/sandboxes/{id}/run` (or the first message of the `run` WebSocket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunRequest {
    /// Source run with notebook semantics: the body is executed, and the last statement, if
    /// an expression, is evaluated and returned as `result`.
    pub code: String,
    /// A key of the runtime's `meta.json` `interpreters`. Default `python`.
    #[serde(default = "python")]
    pub language: String,
    /// Kill the interpreter after this long (default: the server's exec timeout); the next run
    /// gets a fresh one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl RunRequest {
    /// Checks what the interpreter could not be given.
    pub fn check(&self) -> Result<(), crate::sandbox::InputError> {
        if self.code.len() > MAX_CODE_BYTES {
            return Err(crate::sandbox::InputError::TooLarge {
                field: "code".into(),
                size: self.code.len(),
                limit: MAX_CODE_BYTES,
            });
        }
        Ok(())
    }
}

/// An exception the code raised: a result, not an HTTP error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunError {
    /// The exception's type (`ZeroDivisionError`).
    pub name: String,
    /// Its message (`division by zero`).
    pub value: String,
    /// The formatted traceback, the driver's own frames left out.
    pub traceback: String,
}

/// `POST /v1/sandboxes/{id}/run` response. Output is what the code (and processes it started)
/// wrote to stdout and stderr during the call, capped per stream like exec's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunResult {
    pub stdout: String,
    pub stderr: String,
    /// `repr()` of the last expression's value, unless it was `None` or there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The exception the code raised, if it raised one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    pub duration_ms: u64,
    /// The call ran out of time: the interpreter was killed, its state is gone.
    pub timed_out: bool,
    /// The interpreter died during the call (a signal, `os._exit`, the OOM killer): what
    /// happened, in words. Its state is gone; the next call starts a fresh one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub died: Option<String>,
    /// The signal the interpreter died of, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Set when a resource limit ended the interpreter (as for exec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitHit>,
    pub truncated: bool,
    /// This call started a new interpreter (the first call of a sandbox that did not come
    /// from the pool, or the call after a timeout or death).
    pub fresh_interpreter: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let r: RunRequest = serde_json::from_str(r#"{"code":"1+1"}"#).unwrap();
        assert_eq!(r.language, "python");
        assert!(serde_json::from_str::<RunRequest>(r#"{"code":"1","timeout":5}"#).is_err());
        let big = RunRequest {
            code: "x".repeat(MAX_CODE_BYTES + 1),
            language: python(),
            timeout_ms: None,
        };
        assert!(big.check().unwrap_err().to_string().contains("code"));
        let res = RunResult {
            stdout: "2\n".into(),
            stderr: String::new(),
            result: Some("4".into()),
            error: None,
            duration_ms: 1,
            timed_out: false,
            died: None,
            signal: None,
            limit: None,
            truncated: false,
            fresh_interpreter: false,
        };
        let v = serde_json::to_value(&res).unwrap();
        assert_eq!(v["result"], "4");
        assert!(v.get("error").is_none() && v.get("died").is_none());
    }
}
