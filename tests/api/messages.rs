//! What a new user reads when something is wrong: each message names its cause (the server's
//! own words, the network's error, the variable a bad value came from) and what to do.

use std::{
    io::Read,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::process::{free_port, Sink};
use crate::support::{callback, eventually, postgres_url, Backend, TestDb};

/// `okra-callbacks ARGS` with a clean environment plus `env`, killed after `within`; its output.
async fn run(args: &[&str], env: &[(&str, &str)], within: Duration) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_okra-callbacks"));
    command
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .kill_on_drop(true);
    tokio::time::timeout(within, command.output())
        .await
        .unwrap_or_else(|_| panic!("okra-callbacks {args:?} still ran after {within:?}"))
        .expect("run okra-callbacks")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `serve` on `database_url`, expected to stop at start-up: its message.
async fn start_failure(database_url: &str, extra: &[&str]) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        &["serve", "--listen", &listen, "--database-url", database_url][..],
        extra,
    ]
    .concat();
    let output = run(&args, &[], Duration::from_secs(60)).await;
    assert!(
        !output.status.success(),
        "serve on {database_url} should stop"
    );
    stderr(&output)
}

/// The test server's URL with another database, user or query.
fn postgres_variant(base: &str, edit: impl FnOnce(&mut reqwest::Url)) -> String {
    let mut url = reqwest::Url::parse(base).expect("a PostgreSQL URL");
    edit(&mut url);
    url.to_string()
}

#[tokio::test]
async fn postgres_says_which_database_is_missing_and_to_create_it() {
    let Some(base) = postgres_url() else { return };
    let name = format!("okra_missing_{}", uuid::Uuid::now_v7().simple());
    let url = postgres_variant(&base, |u| u.set_path(&name));
    let err = start_failure(&url, &[]).await;
    assert!(
        err.contains(&format!("database \"{name}\" does not exist")),
        "{err}"
    );
    assert!(err.contains("create"), "{err}");
}

#[tokio::test]
async fn postgres_says_which_role_is_missing() {
    let Some(base) = postgres_url() else { return };
    let url = postgres_variant(&base, |u| {
        u.set_username("okra_no_such_role").unwrap();
    });
    let err = start_failure(&url, &[]).await;
    assert!(
        err.contains("role \"okra_no_such_role\" does not exist"),
        "{err}"
    );
    assert!(err.contains("user"), "{err}");
}

/// A stand-in for a PostgreSQL server that demands a password and refuses the one given, as a
/// real server (or a proxy such as PgBouncer) answers: `28P01 password authentication failed`.
/// The test server trusts every local connection, so it cannot refuse a password itself.
async fn password_refusing_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The startup message (after an SSLRequest, answered "no TLS", if one comes).
                loop {
                    let len = socket.read_i32().await? as usize;
                    let code = socket.read_i32().await?;
                    let mut rest = vec![0; len.saturating_sub(8)];
                    socket.read_exact(&mut rest).await?;
                    if code == 80877103 {
                        socket.write_all(b"N").await?;
                        continue;
                    }
                    let user = rest
                        .split(|b| *b == 0)
                        .skip_while(|field| *field != b"user")
                        .nth(1)
                        .map(|u| String::from_utf8_lossy(u).into_owned())
                        .unwrap_or_default();
                    // AuthenticationCleartextPassword, then the password message.
                    socket.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await?;
                    let _tag = socket.read_u8().await?;
                    let len = socket.read_i32().await? as usize;
                    let mut password = vec![0; len.saturating_sub(4)];
                    socket.read_exact(&mut password).await?;
                    let mut fields = Vec::new();
                    for (tag, value) in [
                        (b'S', "FATAL".to_owned()),
                        (b'V', "FATAL".to_owned()),
                        (b'C', "28P01".to_owned()),
                        (
                            b'M',
                            format!("password authentication failed for user \"{user}\""),
                        ),
                    ] {
                        fields.push(tag);
                        fields.extend_from_slice(value.as_bytes());
                        fields.push(0);
                    }
                    fields.push(0);
                    let mut message = vec![b'E'];
                    message.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
                    message.extend_from_slice(&fields);
                    socket.write_all(&message).await?;
                    return Ok::<_, std::io::Error>(());
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn postgres_passes_on_a_refused_password_and_says_to_check_it() {
    let port = password_refusing_server().await;
    let url = format!("postgres://okra:not-the-password@127.0.0.1:{port}/okra");
    let err = start_failure(&url, &[]).await;
    assert!(
        err.contains("password authentication failed for user \"okra\""),
        "{err}"
    );
    assert!(err.contains("password"), "{err}");
    assert!(!err.contains("not-the-password"), "no secret in it: {err}");
}

#[tokio::test]
async fn postgres_on_a_closed_port_or_an_unknown_host_says_so() {
    let port = free_port();
    let err = start_failure(&format!("postgres://okra@127.0.0.1:{port}/okra"), &[]).await;
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");

    let err = start_failure("postgres://okra@okra-no-such-host.invalid/okra", &[]).await;
    assert!(err.contains("unknown host"), "{err}");
    assert!(err.contains("okra-no-such-host.invalid"), "{err}");
}

#[tokio::test]
async fn postgres_asked_for_tls_says_it_is_not_supported_and_what_to_do() {
    let url = "postgres://okra@127.0.0.1:5432/okra?sslmode=require";
    let err = start_failure(url, &[]).await;
    assert!(err.contains("TLS"), "{err}");
    assert!(err.contains("not supported"), "{err}");
    assert!(err.contains("sslmode"), "{err}");
}

#[tokio::test]
async fn a_bad_value_from_the_environment_names_its_variable() {
    let within = Duration::from_secs(30);
    let output = run(&["serve"], &[("OKRA_LEASE", "10")], within).await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("'10' for '--lease <LEASE>' (from the environment variable OKRA_LEASE)"),
        "{err}"
    );
    // The same value on the command line is the flag's, as clap says.
    let output = run(&["serve", "--lease", "10"], &[], within).await;
    let err = stderr(&output);
    assert!(err.contains("'10' for '--lease <LEASE>'"), "{err}");
    assert!(!err.contains("OKRA_LEASE"), "{err}");
}

#[tokio::test]
async fn boolean_variables_take_the_usual_spellings() {
    let within = Duration::from_secs(30);
    // --max-connections 0 stops the start-up right after the settings were read and logged.
    for (value, on) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("true", true),
        ("0", false),
        ("no", false),
        ("off", false),
        ("false", false),
    ] {
        let env = [("OKRA_LOG_BODIES", value), ("RUST_LOG", "info")];
        let output = run(&["serve", "--max-connections", "0"], &env, within).await;
        let err = stderr(&output);
        assert!(
            err.contains(&format!("log_bodies={on}")),
            "OKRA_LOG_BODIES={value}: {err}"
        );
    }
    let env = [("OKRA_LOG_BODIES", "maybe")];
    let err = stderr(&run(&["serve"], &env, within).await);
    assert!(
        err.contains("(from the environment variable OKRA_LOG_BODIES)"),
        "{err}"
    );
}

/// `serve` with `--forward-url` in a child process whose log is kept; killed when dropped.
struct Forwarding {
    child: Child,
    base: String,
    log: std::fs::File,
}

impl Forwarding {
    async fn start(forward_url: &str, extra: &[&str]) -> (Self, TestDb) {
        let db = TestDb::new(Backend::Sqlite).await;
        let port = free_port();
        let log = tempfile::tempfile().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_okra-callbacks"))
            .env_clear()
            .env("RUST_LOG", "warn,okra_callbacks=info")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &db.url, "--forward-url", forward_url])
            .args(["--max-attempts", "1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let ready = format!("{base}/readyz");
        eventually(Duration::from_secs(30), "the receiver is ready", || {
            let ready = ready.clone();
            async move {
                let r = reqwest::get(ready).await.ok()?;
                (r.status() == 200).then_some(())
            }
        })
        .await;
        (Self { child, base, log }, db)
    }

    /// Posts a callback and waits until its one attempt failed: its `GET /v1/callbacks/{id}`.
    async fn dead_callback(&self) -> serde_json::Value {
        let client = reqwest::Client::new();
        let ack: serde_json::Value = client
            .post(format!("{}/v1/callback", self.base))
            .body(callback("rec-forward", "AUTH", "AUTH_SUCCESS", 0))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = format!("{}/v1/callbacks/{}", self.base, ack["id"].as_str().unwrap());
        eventually(Duration::from_secs(30), "the callback is dead", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let state: serde_json::Value =
                    client.get(url).send().await.ok()?.json().await.ok()?;
                (state["status"] == "dead").then_some(state)
            }
        })
        .await
    }

    /// The console's page of one callback.
    async fn console_page(&self, id: &str) -> String {
        reqwest::get(format!("{}/console/callbacks/{id}", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn log(&mut self) -> String {
        let mut text = String::new();
        use std::io::Seek;
        self.log.rewind().unwrap();
        self.log.read_to_string(&mut text).unwrap();
        text
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cause of a failed forward is in `last_error`, the history, the console and the log.
async fn forward_failure_names(forward_url: &str, extra: &[&str], cause: &str) {
    let (mut receiver, _db) = Forwarding::start(forward_url, extra).await;
    let state = receiver.dead_callback().await;
    let last_error = state["last_error"].as_str().unwrap();
    assert!(last_error.contains(cause), "last_error: {last_error}");
    let history = state["history"][0]["error"].as_str().unwrap();
    assert!(history.contains(cause), "history: {history}");
    let page = receiver.console_page(state["id"].as_str().unwrap()).await;
    assert!(page.contains(cause), "the console page lacks {cause:?}");
    let log = receiver.log();
    assert!(log.contains(cause), "the log lacks {cause:?}:\n{log}");
}

#[tokio::test]
async fn a_forward_to_a_closed_port_says_connection_refused() {
    let url = format!("http://127.0.0.1:{}/okra", free_port());
    forward_failure_names(&url, &[], "connection refused").await;
}

#[tokio::test]
async fn a_forward_to_an_unknown_host_says_no_such_host() {
    forward_failure_names("http://okra-no-such-host.invalid/okra", &[], "no such host").await;
}

#[tokio::test]
async fn a_forward_that_takes_too_long_says_timed_out_after() {
    let sink = Sink::slow(Duration::from_secs(5));
    let url = sink.start().await;
    // 1500ms reads as 1.5s, the way the flag takes it.
    forward_failure_names(
        &url,
        &["--forward-timeout", "1500ms"],
        "timed out after 1.5s",
    )
    .await;
}

#[tokio::test]
async fn a_forward_answered_with_a_redirect_fails_naming_it_and_is_not_followed() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    // The forward URL answers 302 to `/final`, which counts every request of any method.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let final_url = format!("{base}/final");
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let location = final_url.clone();
    let stand_in = axum::Router::new()
        .route(
            "/okra",
            axum::routing::post(move || {
                let location = location.clone();
                async move {
                    (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, location)],
                    )
                }
            }),
        )
        .route(
            "/final",
            axum::routing::any(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { axum::http::StatusCode::OK }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, stand_in).await });

    // The whole message: the status, where it pointed, and what to change.
    let cause = format!(
        "answered 302 Found, a redirect to {final_url}: redirects are not followed, so set --forward-url to the final URL"
    );
    forward_failure_names(&format!("{base}/okra"), &[], &cause).await;
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the redirect target must never receive the callback"
    );
}

#[tokio::test]
async fn replay_and_send_to_a_closed_port_say_connection_refused() {
    let base = format!("http://127.0.0.1:{}", free_port());
    let within = Duration::from_secs(30);
    let replay = run(&["replay", "--dead", "--url", &base], &[], within).await;
    assert!(!replay.status.success());
    let err = stderr(&replay);
    assert!(err.contains("connection refused"), "{err}");

    let url = format!("{base}/v1/callback");
    let send = run(&["send", "--type", "AUTH", "--url", &url], &[], within).await;
    assert!(!send.status.success());
    let err = stderr(&send);
    assert!(err.contains("connection refused"), "{err}");
}

/// `okra-callbacks ARGS` in `dir` with a clean environment, expected to stop at start-up: its
/// message.
async fn start_failure_in(dir: &std::path::Path, args: &[&str]) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_okra-callbacks"))
            .env_clear()
            .current_dir(dir)
            .args([&["serve", "--listen", &listen][..], args].concat())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("stops within a minute")
    .expect("run okra-callbacks");
    assert!(!output.status.success(), "serve {args:?} should stop");
    stderr(&output)
}

/// What a directory holds, by name.
fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn an_empty_sqlite_path_is_refused_with_an_example_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["sqlite://", "sqlite:"] {
        let err = start_failure_in(dir.path(), &["--database-url", url]).await;
        assert!(
            err.contains("the SQLite database path is empty"),
            "{url}: {err}"
        );
        assert!(
            err.contains("e.g. sqlite://okra-callbacks.db"),
            "{url}: {err}"
        );
        assert!(!err.contains("no such table"), "{url}: {err}");
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "{url}: nothing created"
        );
    }
}

#[tokio::test]
async fn a_sqlite_file_in_a_missing_directory_names_it_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexistent").join("dir");
    let url = format!("sqlite://{}", missing.join("x.db").display());
    let err = start_failure_in(dir.path(), &["--database-url", &url]).await;
    let shown = missing.display().to_string();
    assert!(
        err.contains(&format!("the directory {shown} of the SQLite file")),
        "{err}"
    );
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        err.contains(&format!("create it (mkdir -p {shown})")),
        "{err}"
    );
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "nothing created");
}

#[tokio::test]
async fn the_lease_message_shows_durations_as_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("okra.db").display());
    let err = start_failure(&url, &["--lease", "5s"]).await;
    assert!(
        err.contains(
            "--lease 5s is too short for --database-timeout 5s: leases are renewed every 1.67s"
        ),
        "{err}"
    );
    assert!(err.contains("use --lease of more than 7.5s"), "{err}");
    assert!(!err.contains("666") && !err.contains("500ms"), "{err}");
}

#[tokio::test]
async fn sizes_take_units_and_a_bad_one_says_the_accepted_forms() {
    let within = Duration::from_secs(30);
    for (flag, bad) in [("--max-body-bytes", "4megs"), ("--dedup-filter-mb", "lots")] {
        let err = stderr(&run(&["serve", flag, bad], &[], within).await);
        assert!(
            err.contains(&format!("`{bad}` is not a size")),
            "{flag} {bad}: {err}"
        );
        assert!(err.contains("512KiB, 4MiB, 1GiB"), "{flag} {bad}: {err}");
        assert!(!err.contains("invalid digit"), "{flag} {bad}: {err}");
    }
    // A receiver started with a unit applies it: 1KiB is 1024 bytes.
    let db = TestDb::new(Backend::Sqlite).await;
    let receiver = crate::support::process::ChildReceiver::start(
        &db.url,
        &["--max-body-bytes", "1KiB", "--dedup-filter-mb", "2MiB"],
    )
    .await;
    let client = reqwest::Client::new();
    let big = format!(
        r#"{{"record":"rec-size","callback_type":"AUTH","pad":"{}"}}"#,
        "x".repeat(1100)
    );
    let refused = client
        .post(receiver.callback_url())
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1024-byte limit"),
        "{body}"
    );
    let small = client
        .post(receiver.callback_url())
        .body(callback("rec-size", "AUTH", "AUTH_SUCCESS", 0))
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
}

#[tokio::test]
async fn the_retry_delay_takes_a_duration_and_its_older_spelling_cannot_be_mixed_in() {
    let within = Duration::from_secs(30);
    let both = [
        "serve",
        "--retry-base-delay",
        "2s",
        "--retry-base-delay-ms",
        "250",
    ];
    let err = stderr(&run(&both, &[], within).await);
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(err.contains("--retry-base-delay-ms"), "{err}");
    // From the environment, the message names the variable the user has to remove.
    let env = [("OKRA_RETRY_BASE_DELAY_MS", "250")];
    let err = stderr(&run(&["serve", "--retry-base-delay", "2s"], &env, within).await);
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(
        err.contains("(from the environment variable OKRA_RETRY_BASE_DELAY_MS)"),
        "{err}"
    );
    let err = stderr(&run(&["serve", "--retry-base-delay", "1000"], &[], within).await);
    assert!(
        err.contains("500ms, 30s"),
        "a bare number is not a duration: {err}"
    );
    // The older spelling alone still starts, and says what to write instead.
    let env = [("OKRA_RETRY_BASE_DELAY_MS", "250"), ("RUST_LOG", "warn")];
    let err = stderr(&run(&["serve", "--max-connections", "0"], &env, within).await);
    assert!(
        err.contains("write --retry-base-delay 250ms (OKRA_RETRY_BASE_DELAY) instead"),
        "{err}"
    );
}
