//! The HTTP plumbing: binding, serving, going offline and back, and the request path every product
//! shares (counting, body limit, latency, injected failures).

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ekuiper::EkuiperState;
use super::nanomq::NanomqState;
use super::neuron::NeuronState;
use super::plumbing::{Counters, Faults};
use super::reply::{BodyError, Flavor, SimRequest, parse_query};
use super::token::TokenStore;
use super::{SimConfig, SimError, SimKind};

/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an oversized body is read and discarded so the client can finish sending and read
/// the error; past this the connection is closed after the reply.
const DRAIN_LIMIT: usize = 64 << 20;
/// How long going offline waits for the server task to let go of the port.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a running simulated service shares between its connections and its handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    /// The bound address (the real port when the config asked for port 0).
    pub(crate) addr: SocketAddr,
    pub(crate) started: Instant,
    pub(crate) faults: Faults,
    pub(crate) counters: Counters,
    pub(crate) tokens: TokenStore,
    pub(crate) online: AtomicBool,
    /// Bumped each time the service goes offline: connections and requests of an older generation
    /// die.
    pub(crate) generation: watch::Sender<u64>,
    pub(crate) neuron: Option<Mutex<NeuronState>>,
    pub(crate) ekuiper: Option<Mutex<EkuiperState>>,
    pub(crate) nanomq: Option<Mutex<NanomqState>>,
}

impl Shared {
    pub(crate) fn new(config: SimConfig, addr: SocketAddr) -> Self {
        let kind = config.kind;
        Shared {
            addr,
            started: Instant::now(),
            faults: Faults::new(config.latency),
            counters: Counters::default(),
            tokens: TokenStore::new(config.token_lifetime),
            online: AtomicBool::new(false),
            generation: watch::Sender::new(0),
            neuron: matches!(kind, SimKind::Neuron | SimKind::NeuronEx).then(|| Mutex::new(NeuronState::new())),
            ekuiper: matches!(kind, SimKind::Ekuiper | SimKind::NeuronEx).then(|| Mutex::new(EkuiperState::default())),
            nanomq: matches!(kind, SimKind::NanoMq).then(|| Mutex::new(NanomqState::new(&config, addr.port()))),
            config,
        }
    }
}

/// Binds a listener, naming the address on failure.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, SimError> {
    TcpListener::bind(addr).await.map_err(|source| SimError::Bind { addr, source })
}

/// Serves `listener` until the service's generation moves on, then closes the listener and
/// every connection accepted under it.
pub(crate) fn spawn_serve(shared: Arc<Shared>, listener: TcpListener) -> JoinHandle<()> {
    let generation = shared.generation.subscribe();
    let current = *generation.borrow();
    let mut signal_rx = generation.clone();
    let signal = async move {
        let _ = signal_rx.wait_for(|g| *g != current).await;
    };
    let app = Router::new().fallback(entry).with_state(shared);
    let listener = SimListener { inner: listener, generation, current };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(signal).await;
    })
}

/// Waits (bounded) for a server task to end, aborting it if it does not.
pub(crate) async fn stop_task(task: JoinHandle<()>) {
    let abort = task.abort_handle();
    if tokio::time::timeout(STOP_TIMEOUT, task).await.is_err() {
        abort.abort();
    }
}

/// A TCP listener whose connections die when the service goes offline.
struct SimListener {
    inner: TcpListener,
    generation: watch::Receiver<u64>,
    current: u64,
}

impl axum::serve::Listener for SimListener {
    type Io = SimIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let mut rx = self.generation.clone();
                    let current = self.current;
                    let killed = Box::pin(async move {
                        let _ = rx.wait_for(|g| *g != current).await;
                    });
                    return (SimIo { inner: stream, killed, dead: false }, addr);
                }
                // Out of file descriptors and the like: wait a little, as axum's own listener does.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails all I/O (and resets) once its generation is over.
struct SimIo {
    inner: TcpStream,
    killed: Pin<Box<dyn Future<Output = ()> + Send>>,
    dead: bool,
}

impl SimIo {
    fn is_dead(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.dead && self.killed.as_mut().poll(cx).is_ready() {
            self.dead = true;
            let _ = self.inner.set_zero_linger();
        }
        self.dead
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "simulated service went offline")
}

impl AsyncRead for SimIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_dead(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Every request enters here: count it, read its body, apply the faults, then hand it to the product.
async fn entry(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    shared.counters.record(parts.method.as_str(), &path);
    let flavor = flavor(shared.config.kind, &path);
    let content_type = parts.headers.get(http::header::CONTENT_TYPE).cloned();

    let body = match read_body(body, shared.config.body_limit).await {
        Ok(body) => body,
        Err(e) => return flavor.body_error(e, content_type.as_ref()),
    };
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        let mut generation = shared.generation.subscribe();
        let current = *generation.borrow_and_update();
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            // Gone offline meanwhile: the connection is being reset, this reply is never sent.
            _ = generation.wait_for(|g| *g != current) => return flavor.injected_failure(content_type.as_ref()),
        }
    }
    if shared.faults.take_failure() {
        return flavor.injected_failure(content_type.as_ref());
    }

    let req = SimRequest { method: parts.method, query: parse_query(parts.uri.query()), path, headers: parts.headers, body };
    match shared.config.kind {
        SimKind::NeuronEx => super::neuronex::handle(&shared, &req),
        SimKind::Neuron => super::neuron::handle_standalone(&shared, &req),
        SimKind::Ekuiper => super::ekuiper::handle_standalone(&shared, &req),
        SimKind::NanoMq => super::nanomq::handle(&shared, &req),
    }
}

fn flavor(kind: SimKind, path: &str) -> Flavor {
    match kind {
        SimKind::NeuronEx if path.starts_with("/api/ekuiper") => Flavor::Ekuiper,
        SimKind::NeuronEx | SimKind::Neuron => Flavor::Neuron,
        SimKind::Ekuiper => Flavor::Ekuiper,
        SimKind::NanoMq => Flavor::Nanomq,
    }
}

/// Reads a body up to `limit` bytes. An oversized body is drained (up to [`DRAIN_LIMIT`]) so the
/// client gets the error reply instead of a reset while it is still sending.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let read = async move {
        let mut buf: Vec<u8> = Vec::new();
        let mut seen = 0usize;
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let Ok(frame) = frame else { return Err(BodyError::Broken) };
            let Ok(data) = frame.into_data() else { continue };
            seen = seen.saturating_add(data.len());
            if seen > limit {
                buf = Vec::new();
                if seen > DRAIN_LIMIT {
                    break;
                }
                continue;
            }
            buf.extend_from_slice(&data);
        }
        if seen > limit { Err(BodyError::TooLarge) } else { Ok(Bytes::from(buf)) }
    };
    tokio::time::timeout(BODY_TIMEOUT, read).await.unwrap_or(Err(BodyError::Broken))
}
