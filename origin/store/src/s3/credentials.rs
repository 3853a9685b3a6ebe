//! Where the S3 tier's credentials and region come from: static keys, else the standard AWS chain.
//!
//! Static keys (`access_key_id` / `secret_access_key` in `[s3]`, overridden by
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`) win; `config::S3Config::static_credentials`
//! decides. Without them the S3 client asks aws-config's default chain, in its order:
//! 1. the `AWS_*` key variables;
//! 2. the profile files: `AWS_PROFILE` (else `default`) in `AWS_CONFIG_FILE` /
//!    `AWS_SHARED_CREDENTIALS_FILE` (else `~/.aws/config`, `~/.aws/credentials`), with
//!    `role_arn` + `source_profile`, `credential_process` and `web_identity_token_file`
//!    (SSO profiles are not built in: they need the SDK's `sso` feature);
//! 3. web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (EKS IRSA), via STS;
//! 4. the container endpoint: `AWS_CONTAINER_CREDENTIALS_*` (ECS task roles, EKS Pod Identity);
//! 5. the EC2 instance profile over IMDSv2 (`AWS_EC2_METADATA_DISABLED=true` skips it).
//!
//! Off EC2, IMDS gets little time ([`IMDS_CONNECT_TIMEOUT`], [`IMDS_ATTEMPTS`]), and one whole
//! load is bounded by [`CHAIN_TIMEOUT`], so a host without credentials fails at start-up in about
//! a second with [`NO_CREDENTIALS`], not after a long wait on an opaque SDK error.
//! Credentials are refreshed before they expire by the client's identity cache. Secrets are
//! never logged: [`Credentials`] redacts them and no message here carries them.

use std::error::Error;
use std::time::Duration;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::imds::client::error::ImdsError;
use aws_config::meta::region::ProvideRegion;
use aws_config::meta::ProviderChainError;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_sdk_s3::config::{
    timeout::TimeoutConfig, Credentials, Region, SharedCredentialsProvider, SharedHttpClient,
};

use super::{S3Options, StoreError, NAME};

/// What start-up says when the chain found nothing.
pub(super) const NO_CREDENTIALS: &str = "no AWS credentials: set access_key_id/secret_access_key \
     in [s3], the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables or AWS_PROFILE, or run with a \
     role (EC2 instance profile, ECS task role, EKS web identity)";
/// Region signed for when neither `[s3]`, the flags, `AWS_REGION`, `AWS_DEFAULT_REGION` nor the
/// profile give one.
const DEFAULT_REGION: &str = "us-east-1";
/// Limit on one load of credentials through the whole chain (STS calls included).
const CHAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// IMDS is a link-local service: on EC2 it answers in milliseconds, elsewhere not at all.
const IMDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IMDS_READ_TIMEOUT: Duration = Duration::from_secs(1);
const IMDS_ATTEMPTS: u32 = 2;

/// The region to sign for and the credentials to sign with, for `o`, and which kind those are
/// (for the start-up log).
pub(super) async fn resolve(
    o: &S3Options,
    http: SharedHttpClient,
) -> (Region, SharedCredentialsProvider, &'static str) {
    let providers = provider_config(http, o.connect_timeout, o.timeout);
    let region = match &o.region {
        Some(r) => Region::new(r.clone()),
        None => profile_region(&providers).await,
    };
    match &o.credentials {
        Some(c) => {
            let token = c.session_token.as_ref().map(|t| t.expose().to_string());
            let keys = Credentials::new(
                &c.access_key_id,
                c.secret_access_key.expose(),
                token,
                None,
                "prewarm-config",
            );
            (region, SharedCredentialsProvider::new(keys), "static keys")
        }
        None => {
            let chain = default_chain(&providers, region.clone()).await;
            (region, chain, "the AWS default chain")
        }
    }
}

/// What every provider of the chain shares: the S3 client's HTTP client (rustls + ring) and
/// its timeouts, the process environment and the profile files.
fn provider_config(
    http: SharedHttpClient,
    connect_timeout: Duration,
    timeout: Duration,
) -> ProviderConfig {
    ProviderConfig::without_region()
        .with_http_client(http)
        .with_timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(connect_timeout)
                .operation_attempt_timeout(timeout)
                .build(),
        )
}

/// The selected profile's `region` (`AWS_PROFILE`, `AWS_CONFIG_FILE`), else [`DEFAULT_REGION`].
/// Called only when the configuration and the region variables gave none. IMDS is not asked:
/// on EC2, set the bucket's region explicitly.
async fn profile_region(conf: &ProviderConfig) -> Region {
    ProfileFileRegionProvider::builder()
        .configure(conf)
        .build()
        .region()
        .await
        .unwrap_or_else(|| Region::new(DEFAULT_REGION))
}

/// aws-config's default chain, with short IMDS timeouts, bounded by [`CHAIN_TIMEOUT`]. STS
/// (web identity, assumed roles) is called in `region`.
async fn default_chain(conf: &ProviderConfig, region: Region) -> SharedCredentialsProvider {
    let imds = aws_config::imds::Client::builder()
        .configure(conf)
        .connect_timeout(IMDS_CONNECT_TIMEOUT)
        .read_timeout(IMDS_READ_TIMEOUT)
        .max_attempts(IMDS_ATTEMPTS)
        .build();
    let chain = DefaultCredentialsChain::builder()
        .configure(conf.clone())
        .region(region)
        .imds_client(imds)
        .build()
        .await;
    SharedCredentialsProvider::new(Bounded {
        inner: chain,
        limit: CHAIN_TIMEOUT,
    })
}

/// A provider that gives up after `limit` with a typed timeout, which [`explain`] words.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    limit: Duration,
}

impl<P: ProvideCredentials> ProvideCredentials for Bounded<P> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            tokio::time::timeout(self.limit, self.inner.provide_credentials())
                .await
                .unwrap_or_else(|_| Err(CredentialsError::provider_timed_out(self.limit)))
        })
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        self.inner.fallback_on_interrupt()
    }
}

/// If loading credentials is what failed (anywhere in `e`'s sources), the error to report, in
/// words for the operator; `None` otherwise. Nothing found is `Other` (configuration), a
/// provider that timed out or failed (IMDS, STS) is `Unavailable`.
pub(super) fn explain(e: &(dyn Error + 'static)) -> Option<StoreError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<CredentialsError>() {
            return Some(describe(c));
        }
        cur = err.source();
    }
    None
}

fn describe(e: &CredentialsError) -> StoreError {
    match e {
        CredentialsError::CredentialsNotLoaded(_) => {
            let tried = tried(e);
            StoreError::other(
                NAME,
                if tried.is_empty() {
                    NO_CREDENTIALS.to_string()
                } else {
                    format!("{NO_CREDENTIALS} (tried {tried})")
                },
            )
        }
        CredentialsError::ProviderTimedOut(t) => StoreError::unavailable(
            NAME,
            format!(
                "loading AWS credentials timed out after {:?}",
                t.timeout_duration()
            ),
        ),
        // Every other provider declined and IMDS answered with an error (IMDS disabled on the
        // instance, or a proxy in the way): still "nothing found", with the reason.
        _ if has_imds_error(e) => StoreError::unavailable(
            NAME,
            format!(
                "{NO_CREDENTIALS}; none in the variables, profile files, web identity or ECS, and \
                 the EC2 instance profile could not be read: {}",
                chain_text(e)
            ),
        ),
        CredentialsError::InvalidConfiguration(_) => StoreError::other(
            NAME,
            format!("AWS credentials are misconfigured: {}", chain_text(e)),
        ),
        _ => StoreError::unavailable(
            NAME,
            format!("loading AWS credentials failed: {}", chain_text(e)),
        ),
    }
}

fn has_imds_error(e: &CredentialsError) -> bool {
    let mut cur = e.source();
    while let Some(err) = cur {
        if err.is::<ImdsError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// `Environment: why; Profile: why; …` from the chain's record of each provider.
fn tried(e: &CredentialsError) -> String {
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(chain) = err.downcast_ref::<ProviderChainError<CredentialsError>>() {
            return chain
                .attempts()
                .iter()
                .map(|a| format!("{}: {}", a.name(), innermost(a.error())))
                .collect::<Vec<_>>()
                .join("; ");
        }
        cur = err.source();
    }
    String::new()
}

/// The deepest cause: "environment variable not set" rather than "the credential provider was
/// not enabled" (which, with no cause, is what a provider with nothing to go on says).
fn innermost(e: &CredentialsError) -> String {
    let mut cur: &(dyn Error + 'static) = e;
    let mut depth = 0;
    while let Some(next) = cur.source() {
        cur = next;
        depth += 1;
    }
    if depth == 0 {
        "nothing configured".into()
    } else {
        cur.to_string()
    }
}

/// `e` and its causes on one line.
fn chain_text(e: &CredentialsError) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::meta::credentials::CredentialsProviderChain;
    use aws_credential_types::credential_fn::provide_credentials_fn;

    /// A chain whose every provider declines, as on a host with nothing configured.
    fn empty_chain() -> CredentialsProviderChain {
        CredentialsProviderChain::first_try(
            "Environment",
            provide_credentials_fn(|| async {
                Err(CredentialsError::not_loaded("environment variable not set"))
            }),
        )
        .or_else(
            "Profile",
            provide_credentials_fn(|| async { Err(CredentialsError::not_loaded_no_source()) }),
        )
        .or_else(
            "Ec2InstanceMetadata",
            provide_credentials_fn(|| async {
                Err(CredentialsError::not_loaded(
                    "IMDS disabled by AWS_EC2_METADATA_DISABLED env var set to `true`",
                ))
            }),
        )
    }

    #[tokio::test]
    async fn nothing_found_says_so_and_what_was_tried() {
        let e = empty_chain().provide_credentials().await.unwrap_err();
        let err = explain(&e).expect("a credentials error");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Other { .. }), "{text}");
        assert!(text.contains(NO_CREDENTIALS), "{text}");
        assert!(
            text.contains(
                "Environment: environment variable not set; Profile: nothing configured; \
                 Ec2InstanceMetadata: IMDS disabled"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_slow_chain_is_cut_off_with_a_typed_timeout() {
        let slow = Bounded {
            inner: provide_credentials_fn(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Credentials::new("id", "secret", None, None, "test"))
            }),
            limit: Duration::from_millis(20),
        };
        let e = slow.provide_credentials().await.unwrap_err();
        let err = explain(&e).unwrap();
        assert!(matches!(err, StoreError::Unavailable { .. }));
        assert!(err.to_string().contains("timed out after 20ms"), "{err}");
    }

    #[test]
    fn errors_that_are_not_about_credentials_are_left_alone() {
        let io = std::io::Error::other("connection refused");
        assert!(explain(&io).is_none());
        let bad = CredentialsError::invalid_configuration("profile `p`: role_arn without source");
        let text = explain(&bad).unwrap().to_string();
        assert!(
            text.contains("misconfigured") && text.contains("role_arn"),
            "{text}"
        );
    }
}
