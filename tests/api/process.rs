//! The real binary in child processes, and a sink that records what the forward handler sends:
//! for crash and multi-process tests.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, http::HeaderMap, routing::post, Router};

/// One delivery the sink received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub attempt: u32,
    pub body: Vec<u8>,
}

/// An HTTP server standing in for the user's internal service behind `--forward-url`.
#[derive(Clone, Default)]
pub struct Sink {
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
    /// How long the sink takes to answer each delivery.
    pub delay: Duration,
}

impl Sink {
    /// Serves on 127.0.0.1 port 0; returns the forward URL.
    pub async fn start(&self) -> String {
        async fn record(
            State(sink): State<Sink>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> &'static str {
            tokio::time::sleep(sink.delay).await;
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            sink.deliveries.lock().unwrap().push(Delivery {
                id: header("x-okra-callback-id"),
                attempt: header("x-okra-attempt").parse().unwrap_or(0),
                body: body.to_vec(),
            });
            "ok"
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/sink", post(record))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/sink")
    }

    /// How many times each callback id was delivered.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.deliveries.lock().unwrap().iter() {
            *counts.entry(d.id.clone()).or_default() += 1;
        }
        counts
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `okra-callbacks serve` in a child process; killed (SIGKILL) when dropped.
pub struct ChildReceiver {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ChildReceiver {
    /// Starts the binary with `args` on a free port and waits until `/readyz` answers 200.
    pub async fn start(database_url: &str, args: &[&str]) -> Self {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_okra-callbacks"))
            .arg("serve")
            .args([
                "--listen",
                &addr.to_string(),
                "--database-url",
                database_url,
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn okra-callbacks");
        let mut receiver = Self { child, addr };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await {
                if r.status() == 200 {
                    return receiver;
                }
            }
            if let Ok(Some(status)) = receiver.child.try_wait() {
                panic!("okra-callbacks exited at start-up: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "okra-callbacks never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn callback_url(&self) -> String {
        format!("http://{}/v1/callback", self.addr)
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        self.child.wait().expect("wait for exit")
    }

    /// SIGKILL: no chance to drain or flush anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildReceiver {
    fn drop(&mut self) {
        self.kill9();
    }
}
