//! `[telemetry]`: exporting the origin's trace spans over OTLP, off unless an endpoint is given.

use serde::Deserialize;

use super::ConfigError;

/// `[telemetry]`. Without `otlp_endpoint` spans go to the log only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP (protobuf) collector, e.g. `http://127.0.0.1:4318`: spans are sent to
    /// `<endpoint>/v1/traces` (a URL that already ends in `/v1/traces` is used as it is).
    /// `--otlp-endpoint`. Default none.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. Default `prewarm-origin`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
        }
    }
}

fn default_service_name() -> String {
    "prewarm-origin".into()
}

impl TelemetryConfig {
    /// Where spans are posted: the endpoint with `/v1/traces` appended unless it ends so.
    pub fn traces_url(&self) -> Option<String> {
        let e = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(if e.ends_with("/v1/traces") {
            e.to_string()
        } else {
            format!("{e}/v1/traces")
        })
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let Some(e) = &self.otlp_endpoint {
            let scheme_ok = e.starts_with("http://") || e.starts_with("https://");
            if !scheme_ok || e.len() <= "https://".len() {
                return Err(ConfigError::Invalid(format!(
                    "telemetry.otlp_endpoint {e:?} is not an http:// or https:// URL"
                )));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "telemetry.service_name must not be empty".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(e: &str) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: Some(e.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(TelemetryConfig::default().traces_url(), None);
        assert_eq!(
            with("http://c:4318").traces_url().unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            with("http://c:4318/").traces_url().unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            with("https://c/otlp/v1/traces").traces_url().unwrap(),
            "https://c/otlp/v1/traces"
        );
    }

    #[test]
    fn an_endpoint_that_is_not_http_is_refused_by_name() {
        let e = with("grpc://c:4317").check().unwrap_err().to_string();
        assert!(
            e.contains("telemetry.otlp_endpoint") && e.contains("grpc://c:4317"),
            "{e}"
        );
        assert!(with("http://").check().is_err());
        assert!(with("http://c:4318").check().is_ok());
    }
}
