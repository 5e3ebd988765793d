//! The binary's client commands (`send`, `replay`, `healthcheck`) against a real receiver: what
//! a new user sees when a command is refused or mistyped.

use std::process::Output;

use crate::support::process::{free_port, ChildReceiver};
use crate::support::{Backend, TestDb};

/// Runs `okra-callbacks ARGS` with a clean environment plus `env`; returns its output (also
/// for `send_sources.rs`).
pub(crate) async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_okra-callbacks"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .await
        .expect("run the okra-callbacks binary")
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn send_refused_for_its_token_says_to_pass_token() {
    let db = TestDb::new(Backend::Sqlite).await;
    let receiver = ChildReceiver::start(&db.url, &["--callback-token", "t0ken"]).await;
    let url = receiver.callback_url();
    let send = ["send", "--type", "AUTH", "--url", url.as_str()];

    let without = run(&send, &[]).await;
    assert!(!without.status.success());
    let err = stderr(&without);
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("pass it with --token"), "{err}");

    let wrong = run(&[&send[..], &["--token", "not-it"]].concat(), &[]).await;
    assert!(!wrong.status.success());
    let err = stderr(&wrong);
    assert!(err.contains("the --token given is not"), "{err}");

    let right = run(&[&send[..], &["--token", "t0ken"]].concat(), &[]).await;
    assert!(right.status.success(), "{}", stderr(&right));
    assert!(String::from_utf8_lossy(&right.stdout).contains("\"duplicate\":false"));
}

#[tokio::test]
async fn replay_refused_for_its_token_says_to_pass_admin_token() {
    let db = TestDb::new(Backend::Sqlite).await;
    let receiver = ChildReceiver::start(&db.url, &["--admin-token", "adm1n"]).await;
    let base = receiver.url("");
    let refused = run(&["replay", "--dead", "--url", base.as_str()], &[]).await;
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains("pass it with --admin-token"), "{err}");
}

#[tokio::test]
async fn an_unknown_sample_is_named_without_a_stray_space() {
    let output = run(&["send", "--type", "FOO"], &[]).await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("no built-in sample for FOO: choose one of"),
        "{err}"
    );
    assert!(err.contains("TRANSACTIONS PERIODIC_TRANSACTIONS"), "{err}");
    let output = run(&["send", "--type", "FOO", "--code", "BAR"], &[]).await;
    let err = stderr(&output);
    assert!(
        err.contains("no built-in sample for FOO BAR: choose"),
        "{err}"
    );
}

/// The image's HEALTHCHECK is `okra-callbacks healthcheck`: it checks the address in
/// OKRA_LISTEN, the one the receiver listens on, so a changed port stays healthy.
#[tokio::test]
async fn healthcheck_follows_okra_listen() {
    let db = TestDb::new(Backend::Sqlite).await;
    let receiver = ChildReceiver::start(&db.url, &[]).await;
    let listen = format!("0.0.0.0:{}", receiver.addr.port());
    let healthy = run(&["healthcheck"], &[("OKRA_LISTEN", &listen)]).await;
    assert!(healthy.status.success(), "{}", stderr(&healthy));

    let elsewhere = format!("127.0.0.1:{}", free_port());
    let unhealthy = run(&["healthcheck"], &[("OKRA_LISTEN", &elsewhere)]).await;
    assert!(!unhealthy.status.success());
    let err = stderr(&unhealthy);
    assert!(err.contains(&format!("http://{elsewhere}/readyz")), "{err}");
}
