//! `kill -9` under load: every callback answered 200 reaches the handler after a restart.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::support::process::{ChildReceiver, Sink};
use crate::support::{callback, eventually_true, paths, try_eventually, Backend, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_callback_survives_sigkill() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = Sink::default();
    let forward = sink.start().await;
    let args = [
        "--forward-url",
        forward.as_str(),
        "--retry-base-delay",
        "50ms",
    ];
    let mut receiver = ChildReceiver::start(&db.url, &args).await;
    let url = receiver.callback_url();

    let acked: Arc<Mutex<HashSet<String>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (client, url, acked, stop) = (client.clone(), url.clone(), acked.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut sent = 0;
            for n in 0..1000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let body = callback(
                    &format!("rec-crash-{}", n % 25),
                    "TRANSACTIONS",
                    "PERIODIC_TRANSACTIONS",
                    worker * 10_000 + n,
                );
                sent += 1;
                let Ok(response) = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                else {
                    break; // the receiver is gone
                };
                if response.status() == 200 {
                    let answer: serde_json::Value = response.json().await.unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .insert(answer["id"].as_str().unwrap().to_owned());
                }
            }
            sent
        }));
    }
    // Kill it mid-run, once a few hundred are acknowledged.
    eventually_true(
        Duration::from_secs(30),
        "300 callbacks were acknowledged",
        || acked.lock().unwrap().len() >= 300,
    )
    .await;
    receiver.kill9();
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let delivered_before = sink.counts().len();
    assert!(acked.len() >= 300);

    // Restart on the same file: everything acknowledged is delivered.
    let _receiver = ChildReceiver::start(&db.url, &args).await;
    let missing = || -> Vec<String> {
        let counts = sink.counts();
        acked
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .cloned()
            .collect()
    };
    let delivered = try_eventually(Duration::from_secs(30), || {
        std::future::ready(missing().is_empty().then_some(()))
    });
    if delivered.await.is_none() {
        let missing = missing();
        panic!(
            "{} of {} acknowledged callbacks never delivered, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(3)]
        );
    }
    for d in sink.deliveries.lock().unwrap().iter() {
        assert!(d.attempt >= 1, "the forward handler numbers attempts");
        let body: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
        assert!(
            body["record"].as_str().unwrap().starts_with("rec-crash-"),
            "the original bytes are forwarded"
        );
    }
    eprintln!(
        "crash test: {} acknowledged, {} delivered before SIGKILL, {} deliveries in all",
        acked.len(),
        delivered_before,
        sink.deliveries.lock().unwrap().len()
    );
}

/// SIGTERM: the in-flight handler call finishes and is recorded, then the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_handler_calls_and_exits_zero() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sink = Sink::slow(Duration::from_millis(800));
    let forward = sink.start().await;
    let mut receiver = ChildReceiver::start(&db.url, &["--forward-url", forward.as_str()]).await;
    let client = reqwest::Client::new();
    let answer: serde_json::Value = client
        .post(receiver.callback_url())
        .body(callback("rec-term", "AUTH", "AUTH_SUCCESS", 0))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    // Wait until the forward request is in flight (the sink sleeps before answering it).
    eventually_true(
        Duration::from_secs(10),
        "the delivery reached the sink",
        || sink.arrived() == 1,
    )
    .await;
    assert!(sink.counts().is_empty());
    let status = receiver.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        sink.counts().get(&id),
        Some(&1),
        "the in-flight call completed before exit"
    );

    // After a restart it is recorded as delivered, not handed over again.
    let receiver = ChildReceiver::start(&db.url, &["--forward-url", forward.as_str()]).await;
    let state: serde_json::Value = client
        .get(receiver.url(&paths::callback(&id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["status"], "delivered", "{state}");
    assert_eq!(state["attempts"], 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.counts().get(&id), Some(&1));
}
