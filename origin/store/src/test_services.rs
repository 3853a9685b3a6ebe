//! Which real test servers (Redis, S3) the store tests may use, from the environment.

/// The value of `var` (e.g. `PREWARM_TEST_REDIS_URL`) if set. Unset, the caller skips its test,
/// unless `PREWARM_REQUIRE_SERVICES=1` (as `scripts/test` sets): then the test fails loudly
/// instead of passing without having run.
pub fn test_service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("PREWARM_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set but PREWARM_REQUIRE_SERVICES=1: run scripts/services and export it"
            );
            None
        }
    }
}
