//! A TCP proxy the test controls, between the receiver and a service it depends on (PostgreSQL,
//! a broker): it forwards, stalls (a partition) or refuses (the service is down: nothing listens
//! on its port, so connections are refused, and open ones are cut), and can be switched between
//! those at any moment.
//!
//! ```ignore
//! let proxy = Proxy::refusing(&broker_url).await; // the service is away from the start
//! let url = proxy.url_through(&broker_url);        // what the receiver is given
//! proxy.forward().await;                           // it is back, on the same port
//! proxy.refuse();                                  // away again: connections cut
//! ```

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::watch,
};

/// What the proxy does with the connections through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwards both ways.
    Up,
    /// Half-dead: connections stay open but nothing passes (a network partition).
    Stall,
    /// Nothing listens on the proxy's port and every open connection is cut (the service is
    /// down).
    Refuse,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, on one port for its whole life; stops when
/// dropped.
pub struct Proxy {
    /// Where clients connect instead of the upstream.
    pub addr: SocketAddr,
    link: watch::Sender<Link>,
    listening: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.link.send_replace(Link::Refuse);
        self.task.abort();
    }
}

impl Proxy {
    /// A proxy that forwards to `upstream` from the start.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_as(upstream, Link::Up).await
    }

    /// A proxy in front of the host and port of `url` that starts out refusing, to see a client
    /// start while its service is down and recover once it is back ([`Proxy::forward`]).
    pub async fn refusing(url: &str) -> Self {
        let upstream = upstream_of(url).await;
        Self::start_as(upstream, Link::Refuse).await
    }

    /// A proxy that starts in state `link`.
    pub async fn start_as(upstream: SocketAddr, link: Link) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (link_tx, link_rx) = watch::channel(link);
        let (listening_tx, listening) = watch::channel(true);
        let task = tokio::spawn(serve(listener, upstream, link_rx, listening_tx));
        let proxy = Self {
            addr,
            link: link_tx,
            listening,
            task,
        };
        proxy.settled(link).await;
        proxy
    }

    /// Switches what the proxy does, for open connections and new ones. (A switch to or from
    /// [`Link::Refuse`] closes or reopens the port a moment later; [`Proxy::forward`] waits.)
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    /// Forwards again, on the same port; returns once it listens.
    pub async fn forward(&self) {
        self.set(Link::Up);
        self.settled(Link::Up).await;
    }

    /// Refuses: cuts every open connection and stops listening.
    pub fn refuse(&self) {
        self.set(Link::Refuse);
    }

    /// Waits until the port is open or closed as `link` says.
    async fn settled(&self, link: Link) {
        let mut listening = self.listening.clone();
        let want = link != Link::Refuse;
        tokio::time::timeout(Duration::from_secs(10), listening.wait_for(|l| *l == want))
            .await
            .expect("the proxy opens or closes its port within 10 s")
            .expect("the proxy task runs");
    }

    /// `url` with its host and port replaced by the proxy's (e.g. a database or broker URL).
    pub fn url_through(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).expect("a URL with a host");
        url.set_host(Some(&self.addr.ip().to_string())).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.to_string()
    }
}

/// The socket address `url`'s host and port (or its scheme's usual port) resolve to.
pub async fn upstream_of(url: &str) -> SocketAddr {
    let url = reqwest::Url::parse(url).expect("a URL with a host");
    let host = url.host_str().expect("a URL with a host").to_owned();
    let port = url.port().unwrap_or(match url.scheme() {
        "postgres" | "postgresql" => 5432,
        "nats" => 4222,
        "redis" => 6379,
        "amqp" => 5672,
        other => url
            .port_or_known_default()
            .unwrap_or_else(|| panic!("no port in the {other} URL")),
    });
    tokio::net::lookup_host((host, port))
        .await
        .expect("the upstream host resolves")
        .next()
        .expect("the upstream host has an address")
}

/// Accepts while the link is up or stalled; while it refuses, holds no listener at all, and
/// binds the same port again when it comes back.
async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    mut link: watch::Receiver<Link>,
    listening: watch::Sender<bool>,
) {
    let addr = listener.local_addr().unwrap();
    let mut listener = Some(listener);
    loop {
        let now = *link.borrow_and_update();
        if now == Link::Refuse {
            listener = None;
            listening.send_replace(false);
            if link.changed().await.is_err() {
                return;
            }
            continue;
        }
        let bound = match listener.take() {
            Some(bound) => bound,
            None => rebind(addr).await,
        };
        listening.send_replace(true);
        tokio::select! {
            accepted = bound.accept() => {
                if let Ok((socket, _)) = accepted {
                    tokio::spawn(connection(socket, upstream, link.clone()));
                }
            }
            changed = link.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        listener = Some(bound);
    }
}

/// Binds `addr` again (the port it held before refusing), retrying briefly.
async fn rebind(addr: SocketAddr) -> TcpListener {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the proxy cannot listen on {addr} again: {e}"),
        }
    }
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<Link>) {
    loop {
        let link = *rx.borrow_and_update();
        match link {
            Link::Up => break,
            Link::Refuse => return,
            Link::Stall => {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, rx.clone()),
        pump(server_read, client_write, rx),
    );
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut rx: watch::Receiver<Link>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let link = *rx.borrow_and_update();
        match link {
            Link::Refuse => return,
            Link::Stall => {
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Link::Up => {}
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// The proxy itself: while refusing nothing listens and nothing reaches the upstream; once
/// forwarding, the same port pipes both ways; refusing again cuts the open connection.
#[tokio::test]
async fn the_proxy_refuses_then_forwards() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let counted = reached.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = upstream.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let proxy = Proxy::refusing(&format!("tcp://{upstream_addr}")).await;
    let refused = TcpStream::connect(proxy.addr).await;
    assert_eq!(
        refused.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    assert_eq!(reached.load(Ordering::SeqCst), 0);

    proxy.forward().await;
    let mut through = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = [0u8; 4];
    through.write_all(b"ping").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), through.read_exact(&mut buf))
        .await
        .expect("the echo comes back through the proxy")
        .unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(reached.load(Ordering::SeqCst), 1);

    proxy.refuse();
    let cut = tokio::time::timeout(Duration::from_secs(5), through.read(&mut buf))
        .await
        .expect("an open connection is cut when the proxy refuses");
    assert!(matches!(cut, Ok(0) | Err(_)), "{cut:?}");
    proxy.settled(Link::Refuse).await;
    assert!(TcpStream::connect(proxy.addr).await.is_err());
    assert_eq!(
        proxy.url_through("postgres://u@db.example:5432/x"),
        format!("postgres://u@127.0.0.1:{}/x", proxy.addr.port())
    );
}
