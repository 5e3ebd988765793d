//! The real binary in child processes — one at a time ([`ChildReceiver`]) or as replicas on one
//! database ([`Replicas`]) — and the one [`Sink`] the forward handler delivers to: for crash and
//! multi-process tests.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};

use crate::support::{eventually, paths};

/// One delivery the sink answered, in the order it answered them.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `X-Okra-Callback-Id`.
    pub id: String,
    /// `X-Okra-Attempt` (0 when absent).
    pub attempt: u32,
    /// `X-Okra-Source` (empty when absent).
    pub source: String,
    /// The forwarded bytes.
    pub body: Vec<u8>,
    /// The body's `record` field, when it is JSON with one.
    pub record: Option<String>,
    /// The body's `seq` field (the marker [`crate::support::callback`] writes), when present.
    pub seq: Option<u64>,
    /// Whether the sink answered 200 (`false`: 500, as its `fail` rule asked).
    pub ok: bool,
    /// When it arrived.
    pub at: Instant,
}

/// Decides, from a delivery as it arrives, whether the sink answers it with a 500.
pub type FailRule = Arc<dyn Fn(&Delivery) -> bool + Send + Sync>;

/// An HTTP server standing in for the user's internal service behind `--forward-url`: it
/// records every delivery, can take its time and fail some on purpose, and notes any moment
/// two deliveries of one record were in flight at once.
#[derive(Clone, Default)]
pub struct Sink {
    /// Every delivery answered, in answer order.
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
    /// How long the sink takes to answer each delivery.
    pub delay: Duration,
    /// Records whose deliveries take another time than `delay`.
    pub delays: HashMap<String, Duration>,
    /// Which deliveries to answer with a 500; `None` answers all 200.
    pub fail: Option<FailRule>,
    /// Deliveries that arrived, answered or not (a delivery counts here as soon as it arrives).
    pub arrived: Arc<AtomicUsize>,
    /// Every delivery as it arrived, in arrival order (answered or not).
    pub arrivals: Arc<Mutex<Vec<Delivery>>>,
    /// Records with a delivery in flight now, and how many.
    pub in_flight: Arc<Mutex<HashMap<String, u32>>>,
    /// "record seq N" for every delivery that arrived while another of its record was in flight.
    pub overlaps: Arc<Mutex<Vec<String>>>,
}

/// Leaves the in-flight count even when the call is cancelled (the receiver hung up).
struct InFlight(Sink, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.0.in_flight.lock().unwrap().get_mut(&self.1) {
            *n -= 1;
        }
    }
}

impl Sink {
    /// A sink that takes `delay` to answer each delivery.
    pub fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// The same sink, answering 500 to the deliveries `rule` picks.
    pub fn failing(mut self, rule: impl Fn(&Delivery) -> bool + Send + Sync + 'static) -> Self {
        self.fail = Some(Arc::new(rule));
        self
    }

    /// Serves on 127.0.0.1 port 0; returns the forward URL.
    pub async fn start(&self) -> String {
        async fn deliver(
            State(sink): State<Sink>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> StatusCode {
            sink.arrived.fetch_add(1, Ordering::SeqCst);
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
            let field = |name: &str| json.as_ref().map(|j| j[name].clone());
            let mut delivery = Delivery {
                id: header("x-okra-callback-id"),
                attempt: header("x-okra-attempt").parse().unwrap_or(0),
                source: header("x-okra-source"),
                body: body.to_vec(),
                record: field("record").and_then(|r| r.as_str().map(str::to_owned)),
                seq: field("seq").and_then(|s| s.as_u64()),
                ok: true,
                at: Instant::now(),
            };
            delivery.ok = !sink.fail.as_ref().is_some_and(|fail| fail(&delivery));
            sink.arrivals.lock().unwrap().push(delivery.clone());
            let record = delivery.record.clone().unwrap_or_default();
            let delay = sink.delays.get(&record).copied().unwrap_or(sink.delay);
            {
                let mut in_flight = sink.in_flight.lock().unwrap();
                let n = in_flight.entry(record.clone()).or_default();
                *n += 1;
                if *n > 1 && !record.is_empty() {
                    sink.overlaps
                        .lock()
                        .unwrap()
                        .push(format!("{record} seq {:?}", delivery.seq));
                }
            }
            let _guard = InFlight(sink.clone(), record);
            tokio::time::sleep(delay).await;
            let ok = delivery.ok;
            sink.deliveries.lock().unwrap().push(delivery);
            if ok {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/sink", post(deliver))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/sink")
    }

    /// How many times each callback id was delivered (answered, whether 200 or 500).
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.deliveries.lock().unwrap().iter() {
            *counts.entry(d.id.clone()).or_default() += 1;
        }
        counts
    }

    /// The deliveries answered so far, per record, in answer order.
    pub fn by_record(&self) -> HashMap<String, Vec<Delivery>> {
        let mut out: HashMap<String, Vec<Delivery>> = HashMap::new();
        for d in self.deliveries.lock().unwrap().iter() {
            out.entry(d.record.clone().unwrap_or_default())
                .or_default()
                .push(d.clone());
        }
        out
    }

    /// The deliveries that arrived so far, per record, in arrival order (answered or not).
    pub fn arrivals_by_record(&self) -> HashMap<String, Vec<Delivery>> {
        let mut out: HashMap<String, Vec<Delivery>> = HashMap::new();
        for d in self.arrivals.lock().unwrap().iter() {
            out.entry(d.record.clone().unwrap_or_default())
                .or_default()
                .push(d.clone());
        }
        out
    }

    /// How many deliveries have arrived, answered or still in flight.
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
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

/// Whether child processes log to the test's stderr (`TEST_LOG` set).
fn verbose() -> bool {
    std::env::var_os("TEST_LOG").is_some()
}

/// `okra-callbacks serve` in a child process; killed (SIGKILL) when dropped.
pub struct ChildReceiver {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ChildReceiver {
    /// Starts the binary with `args` on a free port and waits until `/readyz` answers 200.
    pub async fn start(database_url: &str, args: &[&str]) -> Self {
        let receiver = Self::spawn(database_url, args, &[]);
        receiver.ready().await
    }

    /// Starts the binary with `args` on a free port, with a clean environment plus `env`;
    /// returns at once (see [`ChildReceiver::ready`]).
    pub fn spawn(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_okra-callbacks"));
        if !env.is_empty() {
            command.env_clear().env(
                "RUST_LOG",
                if verbose() {
                    "info"
                } else {
                    "error,okra_callbacks=warn"
                },
            );
            command.envs(env.iter().copied());
        }
        let child = command
            .arg("serve")
            .args([
                "--listen",
                &addr.to_string(),
                "--database-url",
                database_url,
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(if verbose() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("spawn the okra-callbacks binary");
        Self { child, addr }
    }

    /// Waits until `/readyz` answers 200; panics if the process exits first.
    pub async fn ready(mut self) -> Self {
        let client = reqwest::Client::new();
        let url = self.url("/readyz");
        eventually(
            Duration::from_secs(30),
            "okra-callbacks became ready",
            || {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("okra-callbacks exited at start-up: {status}");
                }
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let ready = client.get(url).send().await;
                    ready.is_ok_and(|r| r.status() == 200).then_some(())
                }
            },
        )
        .await;
        self
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Where Okra POSTs callbacks.
    pub fn callback_url(&self) -> String {
        self.url(paths::CALLBACK)
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

/// Replica processes on one database, each named `replica-N` (its `HOSTNAME`, so its lease
/// owner starts with it); killed (SIGKILL) when the test ends or panics.
pub struct Replicas {
    children: Vec<Mutex<Option<ChildReceiver>>>,
    /// `http://ADDR` of each replica.
    pub bases: Vec<String>,
    alive: Vec<AtomicBool>,
}

impl Replicas {
    /// Starts `n` replicas with `args` and waits until each is ready.
    pub async fn start(n: usize, database_url: &str, args: &[&str]) -> Self {
        let spawned: Vec<ChildReceiver> = (0..n)
            .map(|i| {
                let name = format!("replica-{i}");
                ChildReceiver::spawn(database_url, args, &[("HOSTNAME", name.as_str())])
            })
            .collect();
        let mut replicas = Replicas {
            children: Vec::new(),
            bases: Vec::new(),
            alive: Vec::new(),
        };
        for child in spawned {
            let child = child.ready().await;
            replicas.bases.push(format!("http://{}", child.addr));
            replicas.children.push(Mutex::new(Some(child)));
            replicas.alive.push(AtomicBool::new(true));
        }
        replicas
    }

    /// Whether replica `i` still runs.
    pub fn is_alive(&self, i: usize) -> bool {
        self.alive[i].load(Ordering::SeqCst)
    }

    /// SIGKILL replica `i`: no draining, no lease release.
    pub fn kill(&self, i: usize) {
        self.alive[i].store(false, Ordering::SeqCst);
        let mut child = self.children[i].lock().unwrap().take().expect("alive");
        child.kill9();
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to replica `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.children[i]
            .lock()
            .unwrap()
            .as_ref()
            .expect("alive")
            .child
            .id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Replica `i`'s `/metrics` value of `name`, summed over its labels (0 when not exported
    /// yet).
    pub async fn metric(&self, i: usize, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.bases[i]))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}
