//! Broker outputs against the real servers: NATS JetStream, Redis Streams, RabbitMQ.
//!
//! Each server's URL comes from `OKRA_TEST_NATS_URL`, `OKRA_TEST_REDIS_URL` and
//! `OKRA_TEST_AMQP_URL` (`.ci/run` starts the servers and sets them). Unset, the tests skip with
//! a message — except under `CI=true`, where they must run. Every test publishes to a stream,
//! key or exchange of its own, so tests run in parallel and leave nothing behind.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream;
use lapin::{
    options::{
        BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
        QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    Connection, ConnectionProperties, ExchangeKind,
};
use okra_callbacks::{output::OutputConfig, Handler};
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};

use crate::support::{self, Backend, TestApp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broker {
    Nats,
    Redis,
    Amqp,
}

impl Broker {
    fn env(self) -> &'static str {
        match self {
            Broker::Nats => "OKRA_TEST_NATS_URL",
            Broker::Redis => "OKRA_TEST_REDIS_URL",
            Broker::Amqp => "OKRA_TEST_AMQP_URL",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Broker::Nats => "nats://127.0.0.1:4222",
            Broker::Redis => "redis://127.0.0.1:6379",
            Broker::Amqp => "amqp://guest:guest@127.0.0.1:5672/%2f",
        }
    }

    /// The server URL for tests, or `None` (with a message) when it is not configured.
    fn url(self) -> Option<String> {
        crate::support::services::service_url(self.env(), self.example(), "broker output")
    }
}

/// `url` with its host and port replaced by `addr` (to go through a proxy).
fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_host(Some(&addr.ip().to_string())).unwrap();
    u.set_port(Some(addr.port())).unwrap();
    u.to_string()
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{name}={value}")
}

/// One message as a consumer reads it from the broker.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    id: String,
    /// `Okra-Source` (NATS, AMQP) or the `source` field (Redis).
    source: String,
    record: String,
    callback_type: String,
    callback_code: String,
    body: Vec<u8>,
}

/// A destination of this test's own on a real broker, and what arrived there.
enum Sink {
    Nats {
        js: jetstream::Context,
        stream: String,
        prefix: String,
    },
    Redis {
        conn: redis::aio::MultiplexedConnection,
        key: String,
    },
    Amqp {
        channel: lapin::Channel,
        _conn: Connection,
        exchange: String,
        queue: String,
        got: Mutex<Vec<Message>>,
    },
}

fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl Sink {
    /// Creates the destination (a JetStream stream capturing the test's subjects; a stream key;
    /// an exchange with a queue bound to every key).
    async fn new(broker: Broker, url: &str) -> Self {
        let id = unique();
        match broker {
            Broker::Nats => {
                let client = async_nats::connect(url).await.expect("connect to NATS");
                let js = jetstream::new(client);
                let stream = format!("OKRA_TEST_{id}");
                let prefix = format!("okratest.{id}");
                js.create_stream(jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![format!("{prefix}.>")],
                    ..Default::default()
                })
                .await
                .expect("create the test stream");
                Sink::Nats { js, stream, prefix }
            }
            Broker::Redis => {
                let conn = redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connect to Redis");
                Sink::Redis {
                    conn,
                    key: format!("okra:test:{id}"),
                }
            }
            Broker::Amqp => {
                let conn = Connection::connect(url, ConnectionProperties::default())
                    .await
                    .expect("connect to RabbitMQ");
                let channel = conn.create_channel().await.unwrap();
                let exchange = format!("okra.test.{id}");
                let queue = format!("okra.test.{id}");
                channel
                    .exchange_declare(
                        exchange.as_str().into(),
                        ExchangeKind::Topic,
                        ExchangeDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .unwrap();
                channel
                    .queue_declare(
                        queue.as_str().into(),
                        QueueDeclareOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .unwrap();
                channel
                    .queue_bind(
                        queue.as_str().into(),
                        exchange.as_str().into(),
                        "#".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .unwrap();
                Sink::Amqp {
                    channel,
                    _conn: conn,
                    exchange,
                    queue,
                    got: Mutex::default(),
                }
            }
        }
    }

    /// The `--output` URL that publishes here, on the server `url` names.
    fn output_url(&self, url: &str) -> String {
        match self {
            Sink::Nats { prefix, .. } => {
                with_param(url, "subject", &format!("{prefix}.{{callback_type}}"))
            }
            Sink::Redis { key, .. } => with_param(url, "stream", key),
            Sink::Amqp { exchange, .. } => with_param(url, "exchange", exchange),
        }
    }

    /// Everything that arrived so far, in the broker's order.
    async fn messages(&self) -> Vec<Message> {
        match self {
            Sink::Nats { js, stream, .. } => {
                let stream = js.get_stream(stream).await.unwrap();
                let count = stream.get_info().await.unwrap().state.messages;
                let mut out = Vec::new();
                for seq in 1..=count {
                    let m = stream.get_raw_message(seq).await.unwrap();
                    let h = |name: &str| {
                        m.headers
                            .get(name)
                            .map(|v| v.as_str().to_owned())
                            .unwrap_or_default()
                    };
                    out.push(Message {
                        id: h("Nats-Msg-Id"),
                        source: h("Okra-Source"),
                        record: h("Okra-Record"),
                        callback_type: h("Okra-Callback-Type"),
                        callback_code: h("Okra-Callback-Code"),
                        body: m.payload.to_vec(),
                    });
                }
                out
            }
            Sink::Redis { conn, key } => {
                let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(key)
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn.clone())
                    .await
                    .unwrap();
                reply
                    .ids
                    .iter()
                    .map(|e| Message {
                        id: e.get("id").unwrap_or_default(),
                        source: e.get("source").unwrap_or_default(),
                        record: e.get("record").unwrap_or_default(),
                        callback_type: e.get("callback_type").unwrap_or_default(),
                        callback_code: e.get("callback_code").unwrap_or_default(),
                        body: e.get("body").unwrap_or_default(),
                    })
                    .collect()
            }
            Sink::Amqp {
                channel,
                queue,
                got,
                ..
            } => {
                while let Some(m) = channel
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                    .await
                    .unwrap()
                {
                    let p = &m.delivery.properties;
                    let headers = p.headers().clone().unwrap_or_default();
                    let h = |name: &str| match headers.inner().get(name) {
                        Some(AMQPValue::LongString(s)) => {
                            String::from_utf8_lossy(s.as_bytes()).into_owned()
                        }
                        other => panic!("header {name}: {other:?}"),
                    };
                    assert_eq!(p.delivery_mode(), &Some(2), "a persistent message");
                    got.lock().unwrap().push(Message {
                        id: p
                            .message_id()
                            .as_ref()
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                        source: h("Okra-Source"),
                        record: h("record"),
                        callback_type: h("callback_type"),
                        callback_code: h("callback_code"),
                        body: m.delivery.data.clone(),
                    });
                }
                got.lock().unwrap().clone()
            }
        }
    }

    /// Waits until messages with at least `n` distinct callback ids arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.messages().await;
            let distinct: std::collections::HashSet<&str> =
                got.iter().map(|m| m.id.as_str()).collect();
            if distinct.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} messages arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn cleanup(self) {
        match self {
            Sink::Nats { js, stream, .. } => {
                let _ = js.delete_stream(&stream).await;
            }
            Sink::Redis { mut conn, key } => {
                let _: Result<i64, _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            }
            Sink::Amqp {
                channel,
                exchange,
                queue,
                ..
            } => {
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = channel
                    .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            }
        }
    }
}

async fn output(url: &str) -> Arc<dyn Handler> {
    OutputConfig::parse(url)
        .expect("a valid output URL")
        .connect()
        .await
        .expect("the output is created")
}

/// A receiver whose handlers are `out`, then the recording fake (which so sees a callback only
/// once the broker confirmed it). Retries are fast and never give up during a test.
async fn app_with(out: Arc<dyn Handler>) -> TestApp {
    app_with_sources(out, None).await
}

/// [`app_with`], serving the sources of this sources file too.
async fn app_with_sources(out: Arc<dyn Handler>, sources: Option<&str>) -> TestApp {
    let mut builder = support::app(Backend::Sqlite)
        .await
        .config(|c| c.delivery.max_attempts = 100_000)
        .before(out);
    if let Some(toml) = sources {
        builder = builder.sources(toml);
    }
    builder.spawn().await
}

/// Polls a callback's state until `ok` holds for it.
async fn wait_state(app: &TestApp, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = app.get_json(&format!("/v1/callbacks/{id}")).await;
        assert_eq!(code, 200, "{body}");
        if ok(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs each test against the three brokers: `name::nats`, `name::redis`, `name::amqp`.
macro_rules! each_broker {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::Broker;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats() {
                if let Some(url) = Broker::Nats.url() { super::$name(Broker::Nats, url).await }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                if let Some(url) = Broker::Redis.url() { super::$name(Broker::Redis, url).await }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn amqp() {
                if let Some(url) = Broker::Amqp.url() { super::$name(Broker::Amqp, url).await }
            }
        }
    )*};
}

each_broker!(
    the_bytes_received_arrive_with_the_callback_id,
    every_message_carries_its_source,
    a_records_100_callbacks_arrive_in_order,
    a_broker_away_keeps_callbacks_pending_then_all_arrive_in_order,
);

async fn the_bytes_received_arrive_with_the_callback_id(broker: Broker, url: String) {
    let sink = Sink::new(broker, &url).await;
    let mut app = app_with(output(&sink.output_url(&url)).await).await;
    // A large real delivery, and a body whose spacing a re-serialisation would lose.
    let bodies: Vec<Vec<u8>> = vec![
        support::fixture("identity_is_ready"),
        b"{ \"callback_type\" : \"AUTH\",\n  \"record\": \"rec-\xc3\xa9\" , \"n\": 1.50 }".to_vec(),
    ];
    let mut answers = Vec::new();
    for body in &bodies {
        answers.push(app.post_ok(body.clone()).await);
    }
    let got = sink.wait_for(2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    // Two records: their order between them is free.
    for (body, answer) in bodies.iter().zip(&answers) {
        let message = got
            .iter()
            .find(|m| m.id == answer["id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("no message carries the id {}: {got:?}", answer["id"]));
        assert_eq!(message.body, *body, "the bytes received, unchanged");
        assert_eq!(message.id, answer["id"].as_str().unwrap());
        assert_eq!(message.record, answer["record"].as_str().unwrap());
        assert_eq!(
            message.callback_type,
            answer["callback_type"].as_str().unwrap()
        );
        assert_eq!(
            message.callback_code,
            answer["callback_code"].as_str().unwrap_or("")
        );
    }
    for answer in &answers {
        app.wait_status(answer["id"].as_str().unwrap(), "delivered")
            .await;
    }
    assert_eq!(app.seen_n(2).await.len(), 2);
    app.stop().await;
    sink.cleanup().await;
}

/// Okra's callback and a Mono one: each message says its source (NATS/AMQP `Okra-Source`,
/// Redis `source`).
async fn every_message_carries_its_source(broker: Broker, url: String) {
    let sink = Sink::new(broker, &url).await;
    let mut app = app_with_sources(
        output(&sink.output_url(&url)).await,
        Some("[sources.mono]\npreset = \"mono\"\nsecret = \"mono-s3cret\"\n"),
    )
    .await;
    let okra = app.post_ok(support::fixture("auth_success")).await;
    let secret = [("mono-webhook-secret".to_owned(), "mono-s3cret".to_owned())];
    let mono = app
        .post_source_ok("mono", &secret, support::fixture("mono/account_updated"))
        .await;
    let got = sink.wait_for(2).await;
    for (ack, source) in [(&okra, "okra"), (&mono, "mono")] {
        let message = got
            .iter()
            .find(|m| m.id == ack["id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("no message carries the id {}: {got:?}", ack["id"]));
        assert_eq!(
            (message.source.as_str(), message.record.as_str()),
            (source, ack["record"].as_str().unwrap()),
            "{broker:?}"
        );
    }
    assert_eq!(app.seen_n(2).await.len(), 2);
    app.stop().await;
    sink.cleanup().await;
}

async fn a_records_100_callbacks_arrive_in_order(broker: Broker, url: String) {
    let sink = Sink::new(broker, &url).await;
    let app = app_with(output(&sink.output_url(&url)).await).await;
    let record = format!("rec_{}", unique());
    let mut ids = Vec::new();
    for n in 0..100 {
        let answer = app
            .post_ok(support::callback(
                &record,
                "TRANSACTIONS",
                "PERIODIC_TRANSACTIONS",
                n,
            ))
            .await;
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    let got = sink.wait_for(100).await;
    // At least once: a publish whose confirmation timed out may repeat; a consumer drops
    // repeats by id, and what is left must be every callback, in the order received.
    let mut seen = std::collections::HashSet::new();
    let got: Vec<&Message> = got.iter().filter(|m| seen.insert(m.id.clone())).collect();
    let got_ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(got_ids, ids, "every callback, in the order received");
    for (n, m) in got.iter().enumerate() {
        let body: Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(body["seq"], n, "message {n}");
    }
    app.stop().await;
    sink.cleanup().await;
}

/// A TCP proxy on 127.0.0.1 in front of a broker: while refusing, nothing listens on its port
/// (connections are refused and open ones cut); while forwarding, it pipes to the broker.
struct Proxy {
    addr: std::net::SocketAddr,
    target: String,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    /// A proxy that starts out refusing.
    async fn refusing(target: &str) -> Self {
        let u = url::Url::parse(target).unwrap();
        let target = format!(
            "{}:{}",
            u.host_str().unwrap(),
            u.port_or_known_default().unwrap()
        );
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        Self {
            addr,
            target,
            task: Mutex::default(),
        }
    }

    /// Listens again on the same port and pipes every connection to the broker.
    async fn forward(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind the proxy port");
        let target = self.target.clone();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                pipes.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Proxy {
    /// Stops listening and cuts every open connection.
    fn refuse(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }
}

async fn a_broker_away_keeps_callbacks_pending_then_all_arrive_in_order(
    broker: Broker,
    url: String,
) {
    let sink = Sink::new(broker, &url).await;
    let proxy = Proxy::refusing(&url).await;
    // The broker is away from the start: the receiver still starts and acknowledges Okra.
    let mut app = app_with(output(&sink.output_url(&via(&url, proxy.addr))).await).await;
    let records = [format!("a_{}", unique()), format!("b_{}", unique())];
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for n in 0..20 {
        let record = &records[n % 2];
        let answer = app
            .post_ok(support::callback(record, "BALANCE", "PERIODIC_BALANCE", n))
            .await;
        sent.entry(record.clone())
            .or_default()
            .push(answer["id"].as_str().unwrap().to_owned());
    }
    for ids in sent.values() {
        let state = wait_state(&app, &ids[0], "failed twice", |s| {
            s["attempts"].as_u64().unwrap_or(0) >= 2
        })
        .await;
        assert_eq!(state["status"], "pending", "{state}");
        assert!(
            state["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "a failed attempt says why: {state}"
        );
        // The record's later callbacks wait behind its first.
        let (_, later) = app.get_json(&format!("/v1/callbacks/{}", ids[1])).await;
        assert_eq!(later["status"], "pending", "{later}");
        assert_eq!(later["attempts"], 0, "{later}");
    }
    assert!(
        sink.messages().await.is_empty(),
        "nothing reached the broker"
    );
    app.assert_quiet(Duration::from_millis(100)).await;

    proxy.forward().await;
    let got = sink.wait_for(20).await;
    // A consumer drops repeats by id; then each record's messages are its callbacks, in order.
    let mut seen = std::collections::HashSet::new();
    let mut per_record: HashMap<String, Vec<String>> = HashMap::new();
    for m in got.iter().filter(|m| seen.insert(m.id.clone())) {
        per_record
            .entry(m.record.clone())
            .or_default()
            .push(m.id.clone());
    }
    assert_eq!(per_record, sent, "all arrive, none lost, order kept");
    for ids in sent.values() {
        for id in ids {
            app.wait_status(id, "delivered").await;
        }
    }

    // Away again after it was connected: the output notices and reconnects by itself.
    proxy.refuse();
    let mut again = Vec::new();
    for n in 20..26 {
        let record = &records[n % 2];
        let answer = app
            .post_ok(support::callback(record, "BALANCE", "PERIODIC_BALANCE", n))
            .await;
        let id = answer["id"].as_str().unwrap().to_owned();
        sent.get_mut(record).unwrap().push(id.clone());
        again.push(id);
    }
    let state = wait_state(&app, &again[0], "failed twice", |s| {
        s["attempts"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(state["status"], "pending", "{state}");
    proxy.forward().await;
    let got = sink.wait_for(26).await;
    let mut seen = std::collections::HashSet::new();
    let mut per_record: HashMap<String, Vec<String>> = HashMap::new();
    for m in got.iter().filter(|m| seen.insert(m.id.clone())) {
        per_record
            .entry(m.record.clone())
            .or_default()
            .push(m.id.clone());
    }
    assert_eq!(per_record, sent, "all arrive after a reconnect, order kept");
    for id in &again {
        app.wait_status(id, "delivered").await;
    }
    app.stop().await;
    sink.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_publish_without_a_stream_is_a_failed_attempt() {
    let Some(url) = Broker::Nats.url() else {
        return;
    };
    let subject = format!("okratest.nostream.{}", unique());
    let out = output(&with_param(&url, "subject", &subject)).await;
    let mut app = app_with(out).await;
    let answer = app
        .post_ok(support::callback("r1", "AUTH", "AUTH_SUCCESS", 1))
        .await;
    let id = answer["id"].as_str().unwrap();
    // The first attempts may find the client still connecting; wait for one that reached
    // JetStream and was refused for want of a stream.
    let state = wait_state(&app, id, "failed for want of a stream", |s| {
        s["attempts"].as_u64().unwrap_or(0) >= 2
            && s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("check that a stream captures this subject"))
    })
    .await;
    assert_eq!(
        state["status"], "pending",
        "a rejected publish is no delivery: {state}"
    );
    app.assert_quiet(Duration::from_millis(100)).await;

    // Once a stream captures the subject, the retry lands in it.
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    let name = format!("OKRA_TEST_{}", unique());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    app.wait_status(id, "delivered").await;
    let m = stream.get_raw_message(1).await.unwrap();
    assert_eq!(m.headers.get("Nats-Msg-Id").unwrap().as_str(), id);
    assert_eq!(app.next_seen().await.id, id);
    app.stop().await;
    let _ = js.delete_stream(&name).await;
}

/// The binary: `--output` (and `OKRA_OUTPUTS`) wire a real output; a callback it acknowledges
/// lands on the broker with the bytes received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_publishes_through_its_output_flag() {
    let Some(url) = Broker::Redis.url() else {
        return;
    };
    let sink = Sink::new(Broker::Redis, &url).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("okra.db").display());
    let out = sink.output_url(&url);
    let receiver = crate::support::process::ChildReceiver::start(&db, &["--output", &out]).await;
    let body = support::fixture("balance_success");
    let response = reqwest::Client::new()
        .post(receiver.callback_url())
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let got = sink.wait_for(1).await;
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].id, answer["id"].as_str().unwrap());
    drop(receiver);
    sink.cleanup().await;
}

/// The binary refuses a bad `--output` at start-up, says what to fix, and shows no password.
#[test]
fn the_binary_fails_fast_on_a_bad_output_without_showing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("okra.db").display());
    let run = |flag: Option<&str>, env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_okra-callbacks"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db])
            .env_remove("OKRA_OUTPUTS");
        if let Some(flag) = flag {
            cmd.args(["--output", flag]);
        }
        if let Some(env) = env {
            cmd.env("OKRA_OUTPUTS", env);
        }
        let out = cmd.output().expect("run okra-callbacks");
        assert!(!out.status.success(), "a bad --output must stop start-up");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("s3cret"), "the password leaked: {text}");
        text
    };
    let text = run(
        Some("amqp://guest:s3cret@127.0.0.1:5672/%2f?routing_key={callback_kind}"),
        None,
    );
    assert!(
        text.contains("unknown placeholder {callback_kind}"),
        "{text}"
    );
    assert!(text.contains("amqp://guest:***@127.0.0.1:5672"), "{text}");
    let text = run(
        None,
        Some("redis://127.0.0.1:6379,kafka://user:s3cret@127.0.0.1:9092"),
    );
    assert!(text.contains("unknown scheme `kafka`"), "{text}");
    let text = run(Some("nats://:s3cret@"), None);
    assert!(text.contains("--output"), "{text}");
    assert!(
        !dir.path().join("okra.db").exists(),
        "it stopped before opening the store"
    );
}

/// RabbitMQ: a message no queue is bound to receive comes back (it is published `mandatory`) and
/// is a failed attempt, not a delivery; once a queue is bound, the retry lands in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_message_no_queue_receives_is_a_failed_attempt() {
    let Some(url) = Broker::Amqp.url() else {
        return;
    };
    let exchange = format!("okra.test.unbound.{}", unique());
    let mut app = app_with(output(&with_param(&url, "exchange", &exchange)).await).await;
    let answer = app
        .post_ok(support::callback("r1", "AUTH", "AUTH_SUCCESS", 1))
        .await;
    let id = answer["id"].as_str().unwrap();
    let state = wait_state(&app, id, "failed for want of a queue", |s| {
        s["attempts"].as_u64().unwrap_or(0) >= 2
            && s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("no queue is bound"))
    })
    .await;
    assert_eq!(
        state["status"], "pending",
        "a returned message is no delivery: {state}"
    );
    app.assert_quiet(Duration::from_millis(100)).await;

    // The output declared the exchange; bind a queue and the retry is routed to it.
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let queue = exchange.clone();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "AUTH.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    app.wait_status(id, "delivered").await;
    let m = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message is in the queue");
    assert_eq!(
        m.delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        id
    );
    assert_eq!(app.next_seen().await.id, id);
    app.stop().await;
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
}
