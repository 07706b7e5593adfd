//! Connections and the server handle: hyper serves each connection itself
//! (so a handler can drop its connection without a response), and
//! [`StubServer`] stops it all when dropped.

use crate::routes::{ConnReset, Shared, router, shared};
use crate::{StubConfig, StubStats};
use axum::Router;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long open connections get to finish when the server shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A TCP stream that closes with RST (SO_LINGER 0) when its request asked for a reset.
struct ConnIo {
    stream: TcpStream,
    reset: CancellationToken,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.reset.is_cancelled() {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

async fn serve_connection(stream: TcpStream, app: Router, shutdown: CancellationToken) {
    use tower_service::Service;
    let _ = stream.set_nodelay(true);
    let reset = CancellationToken::new();
    let io = hyper_util::rt::TokioIo::new(ConnIo {
        stream,
        reset: reset.clone(),
    });
    let handle = ConnReset(reset.clone());
    let svc =
        hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(handle.clone());
            let mut app = app.clone();
            async move { app.call(req).await }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // hyper's default 30 s header timeout also closes idle keep-alive
        // connections, which races with pooled clients sending on them.
        .header_read_timeout(None)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        // Dropping the connection closes the socket mid-request: no response.
        _ = reset.cancelled() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await;
        }
    }
}

async fn serve_shared(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(shared);
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tracker.spawn(serve_connection(stream, app.clone(), stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "stub: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, tracker.wait()).await;
    Ok(())
}

/// Connections a stub's listener queues before it accepts them (the kernel
/// caps it at `net.core.somaxconn`). Model servers queue many: Go's
/// `net.Listen` (Ollama) takes `somaxconn`, uvicorn (vLLM) 2,048. A worker
/// opens up to its concurrency in connections at once; tokio's
/// `TcpListener::bind` queues 128, and a connection beyond a full queue has
/// its SYN dropped and waits out TCP's 1 s retransmission, which a stub
/// slowed by a busy machine made the benchmark's latency-bound rows pay.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a queue of [`LISTEN_BACKLOG`] connections, as
/// `vigil stub`, [`StubServer`] and the capture proxy (`vigil proxy`) bind.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let listener = vigil_stub::bind("127.0.0.1:0".parse().unwrap())?;
/// assert!(listener.local_addr()?.port() > 0);
/// # Ok(()) }
/// ```
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind`: a restarted stub can take its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves the stub on `listener` until `shutdown` completes; then lets open
/// requests finish for about a second. For `vigil stub`.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let listener = vigil_stub::bind("127.0.0.1:8000".parse().unwrap())?;
/// let stop = async { let _ = tokio::signal::ctrl_c().await; };
/// vigil_stub::serve(listener, Default::default(), stop).await
/// # }
/// ```
pub async fn serve(
    listener: TcpListener,
    cfg: StubConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_shared(
        listener,
        shared(cfg, Arc::new(StubStats::default())),
        shutdown,
    )
    .await
}

/// [`serve`], counting into the given stats.
pub async fn serve_with_stats(
    listener: TcpListener,
    cfg: StubConfig,
    stats: Arc<StubStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_shared(listener, shared(cfg, stats), shutdown).await
}

/// A stub running in the background on 127.0.0.1 and a random port; shuts
/// down when dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use vigil_stub::{StubConfig, StubServer};
/// let stub = StubServer::start(StubConfig::default()).await?;
/// assert!(stub.base_url().starts_with("http://127.0.0.1:"));
/// assert!(stub.base_url().ends_with("/v1"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StubServer {
    addr: SocketAddr,
    stats: Arc<StubStats>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl StubServer {
    /// Binds 127.0.0.1:0 and starts serving.
    pub async fn start(cfg: StubConfig) -> io::Result<StubServer> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(StubStats::default());
        let shared = shared(cfg, stats.clone());
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(serve_shared(listener, shared.clone(), async move {
            s.cancelled().await
        }));
        Ok(StubServer {
            addr,
            stats,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<StubStats> {
        self.stats.clone()
    }

    /// Swaps the model behind the same URL and name, as far as `/v1/models`
    /// tells: its entry's `created` becomes `created` (answers stay the same).
    pub fn set_model_created(&self, created: u64) {
        self.shared.model_created.store(created, Relaxed);
    }

    /// Stops accepting, lets open requests finish briefly, and waits.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
