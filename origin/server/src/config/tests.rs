//! Tests of the configuration: parsing, validation, overrides and redaction.

use super::*;

#[test]
fn the_documented_example_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/prewarm.toml");
    let c = Config::load(std::path::Path::new(path)).unwrap();
    assert_eq!(c.redis.as_ref().map(|r| r.ttl_secs), Some(3600));
    assert_eq!(
        c.s3.as_ref().map(|s| s.bucket.as_str()),
        Some("prewarm-runtimes")
    );
}

#[test]
fn unknown_keys_are_refused() {
    let e = Config::parse("[redis]\nurl = \"redis://x\"\nttl = 5\n").unwrap_err();
    assert!(e.to_string().contains("ttl"), "{e}");
    assert!(Config::parse("bogus = 1").is_err());
}

#[test]
fn secrets_never_print() {
    let c = Config::parse("[redis]\nurl = \"redis://app:hunter2@db:6379/0\"\n[s3]\nbucket = \"b\"\nsecret_access_key = \"hunter3\"\n").unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("hunter3"),
        "{shown}"
    );
    assert!(shown.contains("redis://app:***@db:6379/0"), "{shown}");
    assert_eq!(
        SecretUrl::new("redis://:pw@h:1").redacted(),
        "redis://:***@h:1"
    );
    assert_eq!(SecretUrl::new("redis://h:1/0").redacted(), "redis://h:1/0");
    assert_eq!(
        SecretUrl::new("rediss://default:pw@cache.example:6380").redacted(),
        "rediss://default:***@cache.example:6380"
    );
}

#[test]
fn redis_tls_files_need_a_rediss_url_and_a_client_cert_needs_its_key() {
    let resolve = |t: &str| {
        Config::parse(t)
            .unwrap()
            .resolve(Overrides::default(), |_| None)
    };
    let r = resolve("[redis]\nurl = \"rediss://:pw@cache:6380\"\nca_file = \"/etc/ca.pem\"\n")
        .unwrap()
        .redis
        .unwrap();
    assert!(r.is_tls());
    assert_eq!(r.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
    // A public CA needs no file; Valkey's scheme is TLS too.
    assert!(resolve("[redis]\nurl = \"rediss://cache:6380\"\n").is_ok());
    assert!(resolve("[redis]\nurl = \"valkeys://cache\"\nca_file = \"/c\"\n").is_ok());

    let e = resolve("[redis]\nurl = \"redis://:pw@cache:6379\"\nca_file = \"/etc/ca.pem\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ca_file") && e.contains("rediss://") && !e.contains(":pw@"),
        "{e}"
    );
    // A plain URL given as a flag over a TLS file is refused the same way.
    let e = Config::parse("[redis]\nurl = \"rediss://cache\"\nca_file = \"/c\"\n")
        .unwrap()
        .resolve(
            Overrides {
                redis_url: Some(SecretUrl::new("redis://cache")),
                ..Default::default()
            },
            |_| None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("not TLS"), "{e}");

    let e = resolve("[redis]\nurl = \"rediss://cache\"\nclient_cert_file = \"/c.pem\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("client_key_file"), "{e}");
    let mtls = "[redis]\nurl = \"rediss://cache\"\nclient_cert_file = \"/c.pem\"\nclient_key_file = \"/k.pem\"\n";
    assert!(resolve(mtls).is_ok());
    assert!(Config::parse("[redis]\nurl = \"rediss://cache\"\ncafile = \"/c\"\n").is_err());
}

#[test]
fn overrides_and_aws_env_win() {
    let c = Config::parse(
        "[s3]\nbucket = \"file\"\naccess_key_id = \"from-file\"\nsecret_access_key = \"s\"\n",
    )
    .unwrap();
    let o = Overrides {
        s3_bucket: Some("flag".into()),
        redis_url: Some(SecretUrl::new("redis://127.0.0.1:1")),
        ..Default::default()
    };
    let env = |k: &str| (k == overrides::AWS_ACCESS_KEY_ID).then(|| "from-env".to_string());
    let c = c.resolve(o, env).unwrap();
    let s3 = c.s3.unwrap();
    assert_eq!(
        (
            s3.bucket.as_str(),
            s3.access_key_id.as_deref(),
            s3.region.as_deref()
        ),
        ("flag", Some("from-env"), None)
    );
    assert_eq!(c.redis.unwrap().ttl_secs, 3600);
}

#[test]
fn s3_static_keys_win_and_without_them_the_aws_chain_decides() {
    let resolve = |toml: &str, vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(toml)
            .unwrap()
            .resolve(Overrides::default(), move |k| {
                vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            })
            .map(|c| c.s3.unwrap())
    };
    let keys = |s: &S3Config| {
        s.static_credentials().map(|c| {
            (
                c.access_key_id,
                c.secret_access_key.expose().to_string(),
                c.session_token.map(|t| t.expose().to_string()),
            )
        })
    };
    let file =
        "[s3]\nbucket = \"b\"\naccess_key_id = \"file-id\"\nsecret_access_key = \"file-secret\"\n";
    // Keys in the file, nothing in the environment: the file's.
    assert_eq!(
        keys(&resolve(file, &[]).unwrap()),
        Some(("file-id".into(), "file-secret".into(), None))
    );
    // The variables override the file, token included.
    let env = [
        (overrides::AWS_ACCESS_KEY_ID, "env-id"),
        (overrides::AWS_SECRET_ACCESS_KEY, "env-secret"),
        (overrides::AWS_SESSION_TOKEN, "env-token"),
    ];
    assert_eq!(
        keys(&resolve(file, &env).unwrap()),
        Some((
            "env-id".into(),
            "env-secret".into(),
            Some("env-token".into())
        ))
    );
    // No keys anywhere: no static credentials (the chain: AWS_PROFILE, roles), and no region
    // yet (the profile's, else us-east-1, is the store's to find).
    let bare = resolve("[s3]\nbucket = \"b\"\n", &[("AWS_PROFILE", "prod")]).unwrap();
    assert_eq!((keys(&bare), bare.region), (None, None));
    // A token alone is not a key pair: still the chain.
    let token_only = resolve(
        "[s3]\nbucket = \"b\"\n",
        &[(overrides::AWS_SESSION_TOKEN, "t")],
    );
    assert_eq!(keys(&token_only.unwrap()), None);
    // Half a pair is refused, wherever each half comes from.
    let half = resolve(
        "[s3]\nbucket = \"b\"\n",
        &[(overrides::AWS_ACCESS_KEY_ID, "id")],
    );
    assert!(half.unwrap_err().to_string().contains("together"));
    // The region variables, in order, when the file has none.
    let r = resolve(
        "[s3]\nbucket = \"b\"\n",
        &[
            (overrides::AWS_DEFAULT_REGION, "eu-west-1"),
            (overrides::AWS_REGION, "eu-central-1"),
        ],
    );
    assert_eq!(r.unwrap().region.as_deref(), Some("eu-central-1"));
}

#[test]
fn nothing_durable_is_refused() {
    let c = Config::parse("[local]\nenabled = false\n").unwrap();
    assert!(c.resolve(Overrides::default(), |_| None).is_err());
    let c = Config::parse("").unwrap().resolve(
        Overrides {
            s3_endpoint: Some("http://x".into()),
            ..Default::default()
        },
        |_| None,
    );
    assert!(c.unwrap_err().to_string().contains("bucket"));
}

#[test]
fn connection_limits_come_from_file_flags_or_defaults_and_are_checked() {
    let c = Config::parse("")
        .unwrap()
        .resolve(Overrides::default(), |_| None)
        .unwrap();
    assert_eq!(
        (
            c.http.header_timeout_ms,
            c.http.idle_timeout_secs,
            c.http.max_connections
        ),
        (10_000, 120, 4096)
    );
    let file = "[http]\nheader_timeout_ms = 500\nmax_connections = 8\n";
    let c = Config::parse(file).unwrap();
    let o = Overrides {
        max_connections: Some(2),
        ..Default::default()
    };
    let c = c.resolve(o, |_| None).unwrap();
    assert_eq!((c.http.header_timeout_ms, c.http.max_connections), (500, 2));
    let e = Config::parse("[http]\nmax_connections = 0\n")
        .unwrap()
        .resolve(Overrides::default(), |_| None)
        .unwrap_err();
    assert!(e.to_string().contains("max_connections"), "{e}");
    assert!(Config::parse("[http]\nheader_timeout = 1\n").is_err());
}

#[test]
fn predict_names_a_policy_and_a_clock_and_refuses_others() {
    let resolve = |toml: &str| {
        Config::parse(toml)
            .unwrap()
            .resolve(Overrides::default(), |_| None)
    };
    let c = resolve("").unwrap();
    assert_eq!(
        c.predict.policy_kind(),
        Ok(prewarm_predict::PolicyKind::None)
    );
    assert_eq!(c.predict.manual_clock(), Ok(false));
    let c = resolve("[predict]\npolicy = \"user-history\"\nclock = \"manual\"\n").unwrap();
    assert_eq!(
        c.predict.policy_kind(),
        Ok(prewarm_predict::PolicyKind::UserHistory)
    );
    assert_eq!(c.predict.manual_clock(), Ok(true));
    let e = resolve("[predict]\npolicy = \"lru\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"lru\"") && e.contains("user-history"), "{e}");
    let e = resolve("[predict]\nclock = \"fast\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("system, manual"), "{e}");
    let e = resolve("[predict]\nmax_events_per_hour = 100000\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 10000"), "{e}");
    assert!(resolve("[predict]\nretention_hours = 0\n").is_err());
    // The flag goes through the same table and checks.
    let given = [Given {
        setting: *SETTINGS.iter().find(|s| s.key == "predict.policy").unwrap(),
        value: "prewarm".into(),
    }];
    let c = Config::load_with(None, &given).unwrap();
    assert_eq!(
        c.predict.policy_kind(),
        Ok(prewarm_predict::PolicyKind::Prewarm)
    );
}
