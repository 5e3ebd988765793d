//! A TCP proxy the test controls, between the receiver and a service it depends on (PostgreSQL,
//! a broker): it forwards, stalls (a partition) or refuses (the service is down), and can be
//! switched between those at any moment.
//!
//! ```ignore
//! let proxy = Proxy::start(upstream).await; // forwards
//! proxy.set(Link::Refuse);                  // every connection cut, new ones closed at once
//! proxy.set(Link::Up);                      // forwards again
//! ```

use std::net::SocketAddr;

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
    /// Closes every connection and refuses new ones (the service is down).
    Refuse,
}

/// A TCP proxy on 127.0.0.1 port 0 in front of `upstream`; stops when dropped.
pub struct Proxy {
    /// Where clients connect instead of the upstream.
    pub addr: SocketAddr,
    link: watch::Sender<Link>,
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

    /// A proxy that starts in state `link` (e.g. [`Link::Refuse`], to see a client start while
    /// its service is down and recover once it is [`Link::Up`]).
    pub async fn start_as(upstream: SocketAddr, link: Link) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (link, rx) = watch::channel(link);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(connection(socket, upstream, rx.clone()));
            }
        });
        Self { addr, link, task }
    }

    /// Switches what the proxy does, for open connections and new ones.
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    /// `url` with its host and port replaced by the proxy's (e.g. a database or broker URL).
    pub fn url_through(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).expect("a URL with a host");
        url.set_host(Some(&self.addr.ip().to_string())).unwrap();
        url.set_port(Some(self.addr.port())).unwrap();
        url.to_string()
    }
}

/// The socket address `url`'s host and port (or `default_port`) resolve to.
pub async fn upstream_of(url: &str, default_port: u16) -> SocketAddr {
    let url = reqwest::Url::parse(url).expect("a URL with a host");
    let host = url.host_str().expect("a URL with a host").to_owned();
    tokio::net::lookup_host((host, url.port().unwrap_or(default_port)))
        .await
        .expect("the upstream host resolves")
        .next()
        .expect("the upstream host has an address")
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

/// The proxy itself: refused connections are closed at once without reaching the upstream, and
/// once switched up the same proxy forwards both ways.
#[tokio::test]
async fn the_proxy_refuses_then_forwards() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reached.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = upstream.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let proxy = Proxy::start_as(upstream_addr, Link::Refuse).await;
    let mut refused = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), refused.read(&mut buf))
        .await
        .expect("a refused connection is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0);

    proxy.set(Link::Up);
    let mut through = TcpStream::connect(proxy.addr).await.unwrap();
    through.write_all(b"ping").await.unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        through.read_exact(&mut buf),
    )
    .await
    .expect("the echo comes back through the proxy")
    .unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        proxy.url_through("postgres://u@db.example:5432/x"),
        format!("postgres://u@127.0.0.1:{}/x", proxy.addr.port())
    );
}
