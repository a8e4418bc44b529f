//! A thread-based, fault-injecting TCP proxy.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::SockRef;

/// How often blocked threads wake up to look at flags.
const POLL: Duration = Duration::from_millis(25);
/// Timeout for connecting to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of the forwarding buffer (one "chunk").
const CHUNK: usize = 16 * 1024;

/// Behaviour of a [`FaultProxy`]; switch it at run time with
/// [`FaultProxy::set_mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultMode {
    /// Forward bytes unchanged (the default).
    #[default]
    PassThrough,
    /// Forward bytes, but sleep this long before forwarding each chunk read
    /// (in both directions, for existing and new connections).
    Latency(Duration),
    /// Black hole: keep all sockets open but silently discard every byte in
    /// both directions (also FINs). New connections are accepted but never
    /// connected upstream; they stay black holes even after the mode changes.
    Blackhole,
    /// Reset (RST, via `SO_LINGER` 0) all existing connections when the mode
    /// is set, and reset every new connection right after accepting it.
    Reset,
    /// Close the listening socket so new connects fail with "connection
    /// refused"; existing connections keep working (pass-through).
    Refuse,
}

/// A TCP proxy on a free port on 127.0.0.1 that forwards to an upstream
/// address and can inject faults (see [`FaultMode`]).
///
/// Uses one acceptor thread plus two threads per connection; all of them are
/// stopped and joined on drop (connections are closed with a FIN then).
///
/// ```no_run
/// use pool_testkit::{FaultMode, FaultProxy};
/// # fn demo(upstream: std::net::SocketAddr) -> std::io::Result<()> {
/// let proxy = FaultProxy::start(upstream)?;
/// let url = format!("postgres://u:p@127.0.0.1:{}/db", proxy.port());
/// proxy.set_mode(FaultMode::Blackhole); // the network "hangs"
/// proxy.set_mode(FaultMode::PassThrough);
/// # let _ = url; Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: Mutex<FaultMode>,
    listener: Mutex<Option<TcpListener>>,
    stop: AtomicBool,
    accepted: AtomicU64,
    conns: Mutex<Vec<Conn>>,
}

#[derive(Debug)]
struct Conn {
    state: Arc<ConnState>,
    thread: JoinHandle<()>,
}

#[derive(Debug)]
struct ConnState {
    abort: AtomicBool,
    /// Clones of the connection's sockets, so that a reset can set
    /// `SO_LINGER` 0 on them. Emptied when the connection ends so the
    /// sockets really close when the worker drops its handles.
    sockets: Mutex<Vec<TcpStream>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Arms a socket so that closing it sends RST instead of FIN.
fn arm_reset(s: &TcpStream) {
    let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
}

fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    // std sets SO_REUSEADDR, so re-binding the same port after `Refuse` works.
    let l = TcpListener::bind(addr)?;
    // SO_RCVTIMEO makes accept() return periodically, so the acceptor can
    // notice shutdown and mode changes.
    SockRef::from(&l).set_read_timeout(Some(POLL))?;
    Ok(l)
}

impl ConnState {
    fn aborted(&self, shared: &Shared) -> bool {
        self.abort.load(Ordering::Acquire) || shared.stop.load(Ordering::Acquire)
    }
    fn reset(&self) {
        for s in lock(&self.sockets).iter() {
            arm_reset(s);
        }
        self.abort.store(true, Ordering::Release);
    }
}

impl Shared {
    fn mode(&self) -> FaultMode {
        *lock(&self.mode)
    }

    fn ensure_listening(&self) -> io::Result<()> {
        let mut l = lock(&self.listener);
        if l.is_none() {
            *l = Some(bind_listener(self.addr)?);
        }
        Ok(())
    }

    fn accept_loop(self: Arc<Self>) {
        while !self.stop.load(Ordering::Acquire) {
            self.reap_finished();
            let res = lock(&self.listener).as_ref().map(TcpListener::accept);
            match res {
                None => {
                    if self.mode() != FaultMode::Refuse {
                        let _ = self.ensure_listening();
                    }
                    thread::sleep(POLL);
                }
                Some(Ok((stream, _))) => self.handle(stream),
                Some(Err(e)) if is_timeout(&e) => {}
                Some(Err(_)) => thread::sleep(POLL),
            }
        }
    }

    fn handle(self: &Arc<Self>, client: TcpStream) {
        self.accepted.fetch_add(1, Ordering::AcqRel);
        // Holding `conns` while reading the mode orders us against reset_all().
        let mut conns = lock(&self.conns);
        let mode = self.mode();
        if matches!(mode, FaultMode::Reset | FaultMode::Refuse) {
            arm_reset(&client);
            return;
        }
        let state = Arc::new(ConnState {
            abort: AtomicBool::new(false),
            sockets: Mutex::new(client.try_clone().into_iter().collect()),
        });
        let shared = Arc::clone(self);
        let st = Arc::clone(&state);
        let blackholed = mode == FaultMode::Blackhole;
        let reset_handle = client.try_clone();
        let spawned = thread::Builder::new()
            .name("ptk-proxy-conn".into())
            .spawn(move || shared.run_conn(&st, client, blackholed));
        match spawned {
            Ok(thread) => conns.push(Conn { state, thread }),
            Err(_) => {
                if let Ok(c) = reset_handle {
                    arm_reset(&c);
                }
                lock(&state.sockets).clear();
            }
        }
    }

    fn run_conn(&self, state: &ConnState, client: TcpStream, blackholed: bool) {
        self.serve(state, &client, blackholed);
        // Drop the clones first so that our handles are the last ones.
        lock(&state.sockets).clear();
    }

    fn serve(&self, state: &ConnState, client: &TcpStream, blackholed: bool) {
        let _ = client.set_read_timeout(Some(POLL));
        let _ = client.set_write_timeout(Some(POLL));
        let _ = client.set_nodelay(true);
        if blackholed {
            let mut buf = vec![0u8; CHUNK];
            while !state.aborted(self) {
                match (&*client).read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => return,
                }
            }
            return;
        }
        let upstream = match TcpStream::connect_timeout(&self.upstream, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(_) => {
                arm_reset(client);
                return;
            }
        };
        let _ = upstream.set_read_timeout(Some(POLL));
        let _ = upstream.set_write_timeout(Some(POLL));
        let _ = upstream.set_nodelay(true);
        {
            let mut socks = lock(&state.sockets);
            if let Ok(c) = upstream.try_clone() {
                socks.push(c);
            }
        }
        if state.abort.load(Ordering::Acquire) {
            // A reset raced with the upstream connect.
            arm_reset(client);
            arm_reset(&upstream);
            return;
        }
        thread::scope(|s| {
            let spawned = thread::Builder::new()
                .name("ptk-proxy-pump".into())
                .spawn_scoped(s, || self.pump(state, client, &upstream));
            if spawned.is_err() {
                arm_reset(client);
                arm_reset(&upstream);
                return;
            }
            self.pump(state, &upstream, client);
        });
    }

    /// Copies `from` → `to` until EOF, error, or abort.
    fn pump(&self, state: &ConnState, from: &TcpStream, to: &TcpStream) {
        let mut buf = vec![0u8; CHUNK];
        loop {
            if state.aborted(self) {
                return;
            }
            match (&*from).read(&mut buf) {
                Ok(0) => {
                    if self.mode() != FaultMode::Blackhole {
                        let _ = to.shutdown(Shutdown::Write);
                    }
                    return;
                }
                Ok(n) => {
                    match self.mode() {
                        FaultMode::Blackhole => continue,
                        FaultMode::Latency(d) if !self.sleep_unless_aborted(state, d) => return,
                        _ => {}
                    }
                    if self.write_all(state, to, &buf[..n]).is_err() {
                        state.abort.store(true, Ordering::Release);
                        return;
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::ConnectionReset {
                        // Propagate the reset to the other side.
                        arm_reset(to);
                    }
                    state.abort.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    fn write_all(&self, state: &ConnState, to: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            if state.aborted(self) {
                return Err(io::ErrorKind::ConnectionAborted.into());
            }
            match (&*to).write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sleeps `d` in small steps; returns false if the connection was aborted.
    fn sleep_unless_aborted(&self, state: &ConnState, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            if state.aborted(self) {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            thread::sleep((deadline - now).min(POLL));
        }
    }

    /// Joins connection threads that have finished.
    fn reap_finished(&self) {
        let finished: Vec<Conn> = {
            let mut conns = lock(&self.conns);
            let (done, live): (Vec<Conn>, Vec<Conn>) = std::mem::take(&mut *conns)
                .into_iter()
                .partition(|c| c.thread.is_finished());
            *conns = live;
            done
        };
        for c in finished {
            let _ = c.thread.join();
        }
    }

    /// Resets all current connections and waits until they are closed.
    fn reset_all(&self) {
        let conns = std::mem::take(&mut *lock(&self.conns));
        for c in &conns {
            c.state.reset();
        }
        for c in conns {
            let _ = c.thread.join();
        }
    }
}

impl FaultProxy {
    /// Starts a proxy on a free port on 127.0.0.1 forwarding to `upstream`,
    /// in [`FaultMode::PassThrough`].
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = bind_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            addr,
            upstream,
            mode: Mutex::new(FaultMode::PassThrough),
            listener: Mutex::new(Some(listener)),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("ptk-proxy-accept".into())
            .spawn(move || s.accept_loop())?;
        Ok(FaultProxy {
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The proxy's listening address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The proxy's port (handy for building URLs).
    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// The upstream address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> FaultMode {
        self.shared.mode()
    }

    /// Switches the mode. Takes effect before this returns: after
    /// `set_mode(Refuse)` connects are refused, after `set_mode(Reset)` all
    /// previously open connections have been reset, and after switching away
    /// from `Refuse` the port accepts connections again.
    pub fn set_mode(&self, mode: FaultMode) {
        *lock(&self.shared.mode) = mode;
        match mode {
            FaultMode::Refuse => {
                // Dropping the only handle closes the listening socket.
                lock(&self.shared.listener).take();
            }
            FaultMode::Reset => {
                let _ = self.shared.ensure_listening();
                self.shared.reset_all();
            }
            _ => {
                if let Err(e) = self.shared.ensure_listening() {
                    // The acceptor keeps retrying.
                    eprintln!(
                        "pool-testkit FaultProxy: cannot re-bind {}: {e}",
                        self.shared.addr
                    );
                }
            }
        }
    }

    /// Resets (RST) all currently open connections, waits until they are
    /// closed, and keeps the current mode for new connections.
    pub fn reset_all(&self) {
        self.shared.reset_all();
    }

    /// Total number of connections accepted so far (including ones that were
    /// reset right away; refused connects are never accepted).
    pub fn accepted_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Acquire)
    }

    /// Number of connections currently being proxied (or black-holed).
    pub fn active_connections(&self) -> usize {
        lock(&self.shared.conns)
            .iter()
            .filter(|c| !c.thread.is_finished())
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        lock(&self.shared.listener).take();
        let conns = std::mem::take(&mut *lock(&self.shared.conns));
        for c in conns {
            let _ = c.thread.join();
        }
    }
}
