//! Building the Redis client: the URL, and for `rediss://` the PEM files it trusts and presents.
//!
//! TLS is rustls with Mozilla's public roots compiled in (webpki-roots), so managed services
//! with public certificates need no file, and a host without a CA bundle still works. A private
//! CA replaces those roots. Files are read and checked here, once, at start-up: a missing,
//! unreadable or empty one is refused with its key and path, never its contents.

use std::path::{Path, PathBuf};

use redis::IntoConnectionInfo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::NAME;
use crate::secret::SecretUrl;
use crate::StoreError;

/// What a `rediss://` connection trusts and presents. The default (public roots, no client
/// certificate) is what managed services with public certificates need.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    /// PEM CA certificate(s) trusted *instead of* the public roots, for a private CA.
    pub ca_file: Option<PathBuf>,
    /// A certificate to present, for a server that requires client certificates.
    pub client: Option<RedisClientCert>,
}

/// A client certificate (chain) and its private key, both PEM files.
#[derive(Debug, Clone)]
pub struct RedisClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Builds the client for `url`, with the TLS files of `tls` read and checked.
pub(super) fn client(url: &SecretUrl, tls: &RedisTls) -> Result<redis::Client, StoreError> {
    // Only the kind of a parse error: its text could quote the URL, password included.
    let info = url.expose().into_connection_info().map_err(|e| {
        StoreError::other(
            NAME,
            format!("{url}: not a usable Redis URL ({:?})", e.kind()),
        )
    })?;
    if tls.ca_file.is_none() && tls.client.is_none() {
        return redis::Client::open(info)
            .map_err(|e| StoreError::other(NAME, format!("{url}: {e}")));
    }
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|p| read_certs("ca_file", p))
        .transpose()?;
    let client_tls = match &tls.client {
        Some(c) => Some(redis::ClientTlsConfig {
            client_cert: read_certs("client_cert_file", &c.cert_file)?,
            client_key: read_key("client_key_file", &c.key_file)?,
        }),
        None => None,
    };
    let certs = redis::TlsCertificates {
        client_tls,
        root_cert,
    };
    redis::Client::build_with_tls(info, certs).map_err(|e| {
        let mut files: Vec<String> = Vec::new();
        if let Some(p) = &tls.ca_file {
            files.push(format!("ca_file {}", p.display()));
        }
        if let Some(c) = &tls.client {
            files.push(format!("client_cert_file {}", c.cert_file.display()));
            files.push(format!("client_key_file {}", c.key_file.display()));
        }
        StoreError::other(
            NAME,
            format!("{url}: TLS files refused ({}): {e}", files.join(", ")),
        )
    })
}

fn file_error(key: &str, path: &Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::other(NAME, format!("{key} {}: {why}", path.display()))
}

fn read_file(key: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| file_error(key, path, e))
}

/// A PEM file of one or more certificates. One with none is refused here: the TLS layer would
/// take it, trust nothing, and fail every connection with a less helpful message.
fn read_certs(key: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    let pem = read_file(key, path)?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| file_error(key, path, format_args!("not a PEM certificate file ({e})")))?;
        count += 1;
    }
    if count == 0 {
        return Err(file_error(
            key,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(pem)
}

/// A PEM private key. Errors say what is wrong, never what the file holds.
fn read_key(key: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    let pem = read_file(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        file_error(
            key,
            path,
            format_args!("holds no usable PEM private key ({e})"),
        )
    })?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{RedisOptions, RedisStore};

    fn tls_options(tls: RedisTls) -> RedisOptions {
        RedisOptions {
            url: SecretUrl::new("rediss://:pw@127.0.0.1:1"),
            namespace: "prewarm".into(),
            ttl: Duration::from_secs(60),
            max_object_bytes: 1 << 20,
            timeout: Duration::from_millis(300),
            tls,
        }
    }

    #[test]
    fn unusable_tls_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for (file, why) in [
            (&missing, "No such file"),
            (&garbage, "no PEM certificate"),
            (&broken, "not a PEM certificate"),
        ] {
            let e = RedisStore::new(tls_options(RedisTls {
                ca_file: Some(file.clone()),
                client: None,
            }))
            .unwrap_err()
            .to_string();
            let named = format!("ca_file {}", file.display());
            assert!(e.contains(&named) && e.contains(why), "{e}");
            assert!(!e.contains(":pw@"), "password leaked: {e}");
        }
        // PEM, but not a certificate a CA store can take: the TLS layer refuses it, named.
        let not_der = dir.path().join("not-der.pem");
        std::fs::write(
            &not_der,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = RedisStore::new(tls_options(RedisTls {
            ca_file: Some(not_der.clone()),
            client: None,
        }))
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("ca_file {}", not_der.display())), "{e}");
        // A client key file without a key: named, its contents not echoed.
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "hunter2-looking text\n").unwrap();
        let e = RedisStore::new(tls_options(RedisTls {
            ca_file: None,
            client: Some(RedisClientCert {
                cert_file: not_der,
                key_file: key.clone(),
            }),
        }))
        .unwrap_err()
        .to_string();
        let named = format!("client_key_file {}", key.display());
        assert!(e.contains(&named) && !e.contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn rediss_with_public_roots_needs_no_files() {
        let store = RedisStore::new(tls_options(RedisTls::default())).unwrap();
        assert!(format!("{store:?}").contains("rediss://:***@127.0.0.1:1"));
    }
}
