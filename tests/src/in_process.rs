//! The origin in this process: `prewarm_server::app(state)` on a free port, for the HTTP
//! contract tests that do not need the binary (no process to spawn and wait for).

use std::path::Path;
use std::thread::JoinHandle;

use prewarm_server::config::{Config, Given, Kind, Overrides, SETTINGS};
use tokio_util::sync::CancellationToken;

use crate::wait_healthy;

/// An origin started with [`prewarm_server::start`] and served on its own runtime thread;
/// shut down through its token on drop.
pub struct InProcess {
    pub url: String,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl InProcess {
    /// As [`crate::Origin::start`]: `extra` are `prewarm serve` flags (`--token-file F`, …),
    /// read through the same settings table. Sandboxes are off unless a flag turns them on.
    pub fn start(data_dir: &Path, extra: &[&str]) -> InProcess {
        let mut given = vec![
            given("listen", "127.0.0.1:0"),
            given("data-dir", data_dir.to_str().expect("UTF-8 data dir")),
            given("no-sandboxes", "true"),
        ];
        let mut args = extra.iter().peekable();
        while let Some(arg) = args.next() {
            let flag = arg.strip_prefix("--").expect("a --flag");
            let setting = setting(flag);
            let value = match setting.kind {
                Kind::Switch | Kind::Off if !matches!(args.peek(), Some(a) if !a.starts_with("--")) => {
                    "true"
                }
                _ => args.next().expect("a value"),
            };
            given.push(given_for(setting, value));
        }
        let cfg = Config::load_with(None, &given)
            .and_then(|c| c.resolve(Overrides::default(), |_| None))
            .expect("config");
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let started = prewarm_server::start(&cfg).await.expect("start the origin");
                let listener = tokio::net::TcpListener::bind(cfg.listen_addr())
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("local addr");
                let _ = tx.send((addr, started.shutdown.clone()));
                let shutdown = started.shutdown.clone();
                axum::serve(listener, prewarm_server::app(started.state.clone()))
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await
                    .expect("serve");
                started.stopped().await;
            });
        });
        let (addr, shutdown) = rx.recv().expect("the origin started");
        let url = format!("http://{addr}");
        wait_healthy(&url);
        InProcess {
            url,
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn setting(flag: &str) -> prewarm_server::config::Setting {
    *SETTINGS
        .iter()
        .find(|s| s.flag == flag)
        .unwrap_or_else(|| panic!("no setting has the flag --{flag}"))
}

fn given_for(setting: prewarm_server::config::Setting, value: &str) -> Given {
    Given {
        setting,
        value: value.to_string(),
    }
}

fn given(flag: &str, value: &str) -> Given {
    given_for(setting(flag), value)
}
