//! S3 store tests against a real S3-protocol server (moto) and a dead endpoint.

use super::*;
use crate::conformance;

/// A store on the S3 server at `PREWARM_TEST_S3_ENDPOINT`, in a fresh bucket (`None`: skip).
pub(super) async fn test_store() -> Option<S3Store> {
    let endpoint = crate::test_service_env("PREWARM_TEST_S3_ENDPOINT")?;
    let store = S3Store::new(&S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        bucket: format!("conformance-{:08x}", rand::random::<u32>()),
        prefix: "t/".into(),
        credentials: Some(S3Credentials {
            access_key_id: "test".into(),
            secret_access_key: Secret::new("test"),
            session_token: None,
        }),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(30),
    })
    .await;
    store.ensure_bucket().await.expect("create the test bucket");
    store.probe().await.unwrap();
    Some(store)
}

/// Runs the conformance suite against the S3 server at `PREWARM_TEST_S3_ENDPOINT`, in a fresh bucket.
#[tokio::test]
async fn conformance_suite() {
    let Some(store) = test_store().await else {
        return;
    };
    conformance::run_all(&store).await;
    conformance::tags(&store).await;
    conformance::records(&store).await;
    // Bigger than one part: a multipart upload, completed only because the digest matches.
    let big: Bytes = (0..PART_SIZE * 2 + 12345)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<_>>()
        .into();
    let d = Digest::of(&big);
    let chunks: Vec<Result<Bytes, StoreError>> = big
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    store
        .put(Kind::Manifest, &d, futures::stream::iter(chunks).boxed())
        .await
        .unwrap();
    assert_eq!(
        store
            .get(Kind::Manifest, &d)
            .await
            .unwrap()
            .unwrap()
            .into_bytes()
            .await
            .unwrap(),
        big
    );
    // A wrong digest after several parts: aborted, nothing visible.
    let wrong = Digest::of(b"not it");
    let chunks: Vec<Result<Bytes, StoreError>> = big
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let e = store
        .put(
            Kind::Manifest,
            &wrong,
            futures::stream::iter(chunks).boxed(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Integrity { .. }), "{e}");
    assert_eq!(store.head(Kind::Manifest, &wrong).await.unwrap(), None);
}

#[tokio::test]
async fn dead_endpoint_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = S3Store::new(&S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        bucket: "b".into(),
        prefix: String::new(),
        credentials: Some(S3Credentials {
            access_key_id: "k".into(),
            secret_access_key: Secret::new("s"),
            session_token: None,
        }),
        connect_timeout: Duration::from_millis(300),
        timeout: Duration::from_secs(1),
    })
    .await;
    let e = store
        .head(Kind::Block, &Digest::of(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
    assert!(matches!(
        store.probe().await,
        Err(StoreError::Unavailable { .. })
    ));
}

/// When the credentials provider finds nothing, a request fails with that, in words, before
/// anything is sent (the endpoint is dead, and that is not what is reported).
#[tokio::test]
async fn missing_credentials_are_named_not_an_sdk_dispatch_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nothing = aws_credential_types::credential_fn::provide_credentials_fn(|| async {
        Err(aws_credential_types::provider::error::CredentialsError::not_loaded("no keys here"))
    });
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .force_path_style(true)
        .credentials_provider(nothing)
        .build();
    let store = S3Store {
        client: aws_sdk_s3::Client::from_conf(conf),
        bucket: "b".into(),
        prefix: String::new(),
        timeout: Duration::from_secs(1),
    };
    let e = store.probe().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, StoreError::Other { .. }), "{text}");
    assert!(text.contains(credentials::NO_CREDENTIALS), "{text}");
    assert!(!text.contains("dispatch"), "{text}");
}

/// A multipart upload whose body fails in its second part (the client went away): the upload
/// is aborted and no object appears, not even the first part's bytes.
#[tokio::test]
async fn upload_cut_off_mid_multipart_stores_nothing() {
    let Some(store) = test_store().await else {
        return;
    };
    let big: Bytes = (0..PART_SIZE * 2)
        .map(|i| (i % 249) as u8)
        .collect::<Vec<_>>()
        .into();
    let d = Digest::of(&big);
    let mut pieces: Vec<Result<Bytes, StoreError>> = big
        .slice(..PART_SIZE + (1 << 20))
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    pieces.push(Err(StoreError::other(
        "test",
        std::io::Error::from_raw_os_error(5),
    )));
    let e = store
        .put(Kind::Block, &d, futures::stream::iter(pieces).boxed())
        .await
        .unwrap_err();
    assert!(!matches!(e, StoreError::Integrity { .. }), "{e}");
    assert_eq!(store.head(Kind::Block, &d).await.unwrap(), None);
    assert!(store.get(Kind::Block, &d).await.unwrap().is_none());
}
