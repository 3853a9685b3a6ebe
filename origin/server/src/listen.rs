//! The accept loop: hyper-util's connection builder with a header timeout, an idle timeout and a cap on open connections.
//!
//! `axum::serve` sets none of these: a client that sends half a request line would keep its
//! connection, and a task, forever. The builder is the one `axum::serve` uses inside.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// What one client may hold of the origin; each is a `prewarm serve` setting (`[http]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time to receive a request's headers, from when the connection is ready for one (for
    /// HTTP/1 that includes the wait for the next request on a kept-alive connection).
    pub header_timeout: Duration,
    /// A connection with no request in flight that moves no byte for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once. The next is not accepted (it waits in the listen backlog)
    /// until one closes.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and waits for
/// the open connections to finish the requests they are serving (graceful shutdown).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without TCP_NODELAY, a body written in several pieces waits on delayed ACKs (~40 ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set: {e}");
        }
        let activity = Activity::new();
        let io = TokioIo::new(Watched {
            tcp,
            activity: activity.clone(),
        });
        let (app, seen) = (app.clone(), activity.clone());
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let in_flight = seen.begin();
            let app = app.clone();
            async move {
                let resp = app.oneshot(req.map(Body::new)).await?;
                Ok::<_, std::convert::Infallible>(resp.map(|body| {
                    Body::new(Tracked {
                        body,
                        _in_flight: in_flight,
                    })
                }))
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        let idle = limits.idle_timeout;
        conns.spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                },
                () = activity.idle_for(idle) => tracing::debug!("closing an idle connection"),
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    while conns.join_next().await.is_some() {}
}

/// When a connection last moved a byte, and how many of its requests are being served.
#[derive(Clone)]
struct Activity(Arc<(Mutex<Instant>, AtomicUsize)>);

impl Activity {
    fn new() -> Self {
        Self(Arc::new((Mutex::new(Instant::now()), AtomicUsize::new(0))))
    }

    fn touch(&self) {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// A request is being served until the returned guard (kept by its response body) drops.
    fn begin(&self) -> InFlight {
        self.0 .1.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Completes once nothing is in flight and no byte moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = *self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
            let quiet = last.elapsed();
            if quiet >= idle && self.0 .1.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(idle.saturating_sub(quiet).max(idle / 4)).await;
        }
    }
}

struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0 .0 .1.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in flight until it is sent or dropped.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The TCP stream, noting every byte read or written in its [`Activity`].
struct Watched {
    tcp: TcpStream,
    activity: Activity,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
