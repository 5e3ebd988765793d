//! `okra-callbacks send --source NAME`: the real binary signs as each source's provider would,
//! from the same sources file the receiver reads, and the receiver stores what it sent; a
//! wrong secret, a Plaid source, an unknown source or sample are refused saying why. `send
//! --list` names every provider's samples, and stops cleanly when its reader does.

use std::process::{Output, Stdio};

use serde_json::Value;

use crate::cli::{run, stderr};
use crate::support::process::ChildReceiver;
use crate::support::{Backend, TestDb};

/// One source of every signable kind, and a Plaid one. Mono's secret comes from `${MONO_SECRET}`
/// on both sides, as a deployment would write it.
const SOURCES: &str = r#"
[sources.mono]
preset = "mono"
secret = "${MONO_SECRET}"

[sources.paystack]
preset = "paystack"
secret = "sk_test_send"

[sources.stitch]
preset = "standard-webhooks"
secrets = ["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
record = "/data/id"

[sources.bearer]
preset = "generic"
type = "/event"
[sources.bearer.verify]
scheme = "token"
secret = "tok-send"

[sources.flutterwave]
preset = "generic"
type = "/event"
[sources.flutterwave.verify]
scheme = "header-secret"
header = "verif-hash"
secret = "hash-send"

[sources.github]
preset = "generic"
type = "/event"
[sources.github.verify]
scheme = "hmac"
header = "X-Hub-Signature-256"
algorithm = "sha256"
prefix = "sha256="
secret = "gh-send"

[sources.shop]
preset = "generic"
type = "/event"
[sources.shop.verify]
scheme = "hmac"
header = "x-signature"
algorithm = "sha512"
encoding = "base64"
secret = "shop-send"

[sources.svixlike]
preset = "generic"
type = "/event"
[sources.svixlike.verify]
scheme = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[sources.open]
preset = "generic"
type = "/event"
[sources.open.verify]
scheme = "none"

[sources.plaid]
preset = "plaid"
client_id = "client-send"
secret = "plaid-send"
api_url = "http://127.0.0.1:9"
"#;

const MONO_SECRET: &str = "mono-send-secret";

/// A receiver serving `SOURCES`, and the sources file's path.
struct Setup {
    _db: TestDb,
    dir: tempfile::TempDir,
    receiver: ChildReceiver,
}

impl Setup {
    async fn start() -> Self {
        let db = TestDb::new(Backend::Sqlite).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sources.toml");
        std::fs::write(&file, SOURCES).unwrap();
        let receiver = ChildReceiver::spawn(
            &db.url,
            &["--sources", file.to_str().unwrap()],
            &[("MONO_SECRET", MONO_SECRET)],
        )
        .ready()
        .await;
        Self {
            _db: db,
            dir,
            receiver,
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// `send --source NAME WHAT --sources sources.toml --url <the receiver's callback URL>`.
    async fn send(&self, source: &str, what: &[&str]) -> Output {
        let (file, url) = (self.file("sources.toml"), self.receiver.callback_url());
        let args = [
            &[
                "send",
                "--source",
                source,
                "--sources",
                &file,
                "--url",
                &url,
            ],
            what,
        ]
        .concat();
        run(&args, &[("MONO_SECRET", MONO_SECRET)]).await
    }

    /// The callbacks the receiver stored from `source`.
    async fn stored(&self, source: &str) -> Vec<Value> {
        let url = self.receiver.url(&format!("/v1/callbacks?source={source}"));
        let listed: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        listed["callbacks"].as_array().unwrap().clone()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The answer `send` printed, after checking it succeeded for `source`.
fn acknowledged(output: &Output, source: &str) -> Value {
    assert!(output.status.success(), "{source}: {}", stderr(output));
    let ack: Value = serde_json::from_str(stdout(output).trim()).unwrap();
    assert_eq!(ack["source"], source, "{ack}");
    assert_eq!(ack["duplicate"], false, "{ack}");
    ack
}

#[tokio::test]
async fn send_signs_as_each_source_s_provider_and_the_receiver_stores_it() {
    let setup = Setup::start().await;

    // The presets, with their providers' samples by name.
    for (source, sample, callback_type) in [
        ("mono", "account_updated", "mono.events.account_updated"),
        ("paystack", "charge_success", "charge.success"),
        ("stitch", "payment", "payment"),
    ] {
        let ack = acknowledged(&setup.send(source, &[sample]).await, source);
        assert_eq!(ack["callback_type"], callback_type, "{ack}");
        let stored = setup.stored(source).await;
        assert_eq!(stored.len(), 1, "{source}: {stored:?}");
        assert_eq!(stored[0]["id"], ack["id"]);
    }
    // Mono's record and code, read from the sample as Mono sends it.
    let mono = &setup.stored("mono").await[0];
    assert_eq!(mono["record"], "5feec8ce95e8dc6a52e53257");
    assert_eq!(mono["callback_code"], "AVAILABLE");
    // Stitch's event id is the webhook-id send made up; its record the payment's id.
    let id = setup.stored("stitch").await[0]["id"].clone();
    let url = setup
        .receiver
        .url(&format!("/v1/callbacks/{}", id.as_str().unwrap()));
    let stitch: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(
        stitch["record"],
        "cGF5cmVxLzk1YTRkYzYzLTc0ZjQtNDJjMS05ZjFmLTBjNWM1ZTQ3YjA4Yg=="
    );
    assert!(
        stitch["event_id"].as_str().unwrap().starts_with("msg_"),
        "{stitch}"
    );
    // A sample chosen by type, the sources file from OKRA_SOURCES.
    let url = setup.receiver.callback_url();
    let by_type = run(
        &[
            "send",
            "--source",
            "paystack",
            "--type",
            "TRANSFER.SUCCESS",
            "--url",
            &url,
        ],
        &[
            ("OKRA_SOURCES", &setup.file("sources.toml")),
            ("MONO_SECRET", MONO_SECRET),
        ],
    )
    .await;
    assert_eq!(
        acknowledged(&by_type, "paystack")["callback_type"],
        "transfer.success"
    );

    // Every generic scheme, with a hand-made body from a file; one from standard input.
    let body = setup.file("event.json");
    for source in [
        "bearer",
        "flutterwave",
        "github",
        "shop",
        "svixlike",
        "open",
    ] {
        std::fs::write(&body, format!(r#"{{"event":"{source}.happened","n":1}}"#)).unwrap();
        let ack = acknowledged(&setup.send(source, &[&body]).await, source);
        assert_eq!(ack["callback_type"], format!("{source}.happened"));
        assert_eq!(setup.stored(source).await.len(), 1, "{source}");
    }
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_okra-callbacks"))
        .env_clear()
        .env("MONO_SECRET", MONO_SECRET)
        .args([
            "send",
            "--source",
            "github",
            "-",
            "--sources",
            &setup.file("sources.toml"),
            "--url",
            &url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, br#"{"event":"from.stdin"}"#)
        .await
        .unwrap();
    drop(stdin);
    let piped = child.wait_with_output().await.unwrap();
    assert_eq!(
        acknowledged(&piped, "github")["callback_type"],
        "from.stdin"
    );
    assert_eq!(setup.stored("github").await.len(), 2);
}

#[tokio::test]
async fn send_with_a_wrong_secret_or_for_plaid_fails_saying_why() {
    let setup = Setup::start().await;

    // The client's file holds other secrets than the receiver's: 401, which check, the fix.
    let wrong = setup.file("wrong.toml");
    std::fs::write(
        &wrong,
        SOURCES
            .replace("sk_test_send", "sk_test_other")
            .replace("tok-send", "tok-other"),
    )
    .unwrap();
    let url = setup.receiver.callback_url();
    let send_wrong = |source: &'static str, what: &'static str, mono: &'static str| {
        let (wrong, url) = (wrong.clone(), url.clone());
        async move {
            run(
                &[
                    "send",
                    "--source",
                    source,
                    what,
                    "--sources",
                    &wrong,
                    "--url",
                    &url,
                ],
                &[("MONO_SECRET", mono)],
            )
            .await
        }
    };
    for (source, what, mono, check) in [
        (
            "mono",
            "account_updated",
            "not-mono's",
            "`mono-webhook-secret` header",
        ),
        (
            "paystack",
            "charge_success",
            MONO_SECRET,
            "no signature matches",
        ),
    ] {
        let refused = send_wrong(source, what, mono).await;
        assert!(!refused.status.success(), "{source}");
        let err = stderr(&refused);
        assert!(err.contains("401"), "{err}");
        assert!(err.contains(check), "{err}");
        assert!(
            err.contains("the sources file the receiver was started with"),
            "{err}"
        );
        assert!(
            !err.contains("sk_test_send") && !err.contains(MONO_SECRET),
            "{err}"
        );
        assert_eq!(setup.stored(source).await, Vec::<Value>::new(), "{source}");
    }

    // Plaid signs with its own private key: refused before anything is sent, saying what to do.
    let plaid = setup.send("plaid", &["item_error"]).await;
    assert!(!plaid.status.success());
    let err = stderr(&plaid);
    assert!(err.contains("source `plaid` (preset plaid)"), "{err}");
    assert!(err.contains("private key"), "{err}");
    assert!(err.contains("/sandbox/item/fire_webhook"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(setup.stored("plaid").await, Vec::<Value>::new());

    // An unknown source lists the file's; an unknown sample lists the source's.
    let unknown = setup.send("monzo", &["account_updated"]).await;
    assert!(!unknown.status.success());
    let err = stderr(&unknown);
    assert!(err.contains("no source `monzo`"), "{err}");
    assert!(
        err.contains(
            "bearer, flutterwave, github, mono, open, paystack, plaid, shop, stitch, svixlike"
        ),
        "{err}"
    );
    let unknown = setup.send("mono", &["account_deleted"]).await;
    assert!(!unknown.status.success());
    let err = stderr(&unknown);
    assert!(
        err.contains("no built-in sample `account_deleted` for source `mono` (preset mono)"),
        "{err}"
    );
    assert!(
        err.contains("account_connected, account_updated, reauthorisation_required"),
        "{err}"
    );
    let generic = setup.send("bearer", &["push"]).await;
    let err = stderr(&generic);
    assert!(
        err.contains("source `bearer` (preset generic) has no built-in samples"),
        "{err}"
    );
    // Without the sources file, --source says where it comes from.
    let without = run(&["send", "--source", "mono", "account_updated"], &[]).await;
    assert!(stderr(&without).contains("--sources FILE (or OKRA_SOURCES)"));
}

#[tokio::test]
async fn send_list_names_every_provider_s_samples_with_their_types() {
    let listed = run(&["send", "--list"], &[]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listing = stdout(&listed);
    assert!(listing.starts_with("okra ("), "{listing}");
    let samples = crate::support::samples_dir();
    for folder in ["plaid", "mono", "paystack", "stitch"] {
        // The folder's heading, then each of its files' names with the type it carries.
        let (_, section) = listing
            .split_once(&format!("\n{folder} ("))
            .unwrap_or_else(|| panic!("no {folder} section in {listing}"));
        let section: Vec<&str> = section
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .collect();
        for entry in std::fs::read_dir(samples.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap();
            let line = section
                .iter()
                .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{folder}/{name} is not listed: {listing}"));
            let body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let kind = ["webhook_type", "event", "type"]
                .iter()
                .find_map(|k| body[k].as_str())
                .unwrap();
            assert!(line.contains(kind), "{line}");
        }
    }
    assert!(
        listing.contains("mono.events.account_updated AVAILABLE"),
        "{listing}"
    );
}

/// `send --list | head -1`: the reader closes the pipe; the command ends with 0, no panic.
#[tokio::test]
async fn send_list_into_a_closed_pipe_exits_cleanly() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_okra-callbacks"))
        .env_clear()
        .args(["send", "--list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the command writes: its first write meets a broken pipe.
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}
