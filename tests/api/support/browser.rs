//! A real browser for the console's tests: headless Chromium driven over WebDriver
//! (`chromedriver`) by `fantoccini`, one at a time, and the page helpers the tests use.
//!
//! Reads `OKRA_TEST_CHROMEDRIVER` (default `/usr/bin/chromedriver`) and `OKRA_TEST_CHROMIUM`
//! (default `/usr/bin/chromium`). When either is missing the tests skip with a message, except
//! under `CI=true`, where they fail. The browser runs in [`BROWSER_ZONE`], not UTC, so that a
//! page showing times in the browser's zone instead of UTC would be seen.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::services::in_ci;

/// The browser's time zone (`TZ` of chromedriver and so of Chromium): UTC+1 all year, no
/// daylight saving, so its offset is known.
pub const BROWSER_ZONE: &str = "Africa/Lagos";

/// The browser tests share one machine's CPU: one at a time.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where chromedriver and Chromium are, or `None` (with a message) when they are not installed.
fn browser_paths() -> Option<(PathBuf, PathBuf)> {
    let path = |var: &str, default: &str| {
        PathBuf::from(
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or(default.into()),
        )
    };
    let driver = path("OKRA_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
    let chromium = path("OKRA_TEST_CHROMIUM", "/usr/bin/chromium");
    if driver.exists() && chromium.exists() {
        return Some((driver, chromium));
    }
    let missing = format!(
        "{} or {} is missing: install Debian's `chromium` and `chromium-driver` (or set OKRA_TEST_CHROMEDRIVER / OKRA_TEST_CHROMIUM)",
        driver.display(),
        chromium.display()
    );
    if in_ci() {
        panic!("CI=true, so the browser tests must run, but {missing}");
    }
    eprintln!("skipping a browser test: {missing}");
    None
}

/// A chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
    chromium: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(driver: PathBuf, chromium: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .env("TZ", BROWSER_ZONE)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let url = format!("http://127.0.0.1:{port}");
        let me = Self {
            child,
            url,
            _profile: tempfile::tempdir().expect("a profile dir"),
            chromium,
        };
        let status = format!("{}/status", me.url);
        for _ in 0..100 {
            if reqwest::get(&status)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return me;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on {} within 10 s", me.url);
    }

    /// A fresh headless Chromium session.
    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": self.chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", self._profile.path().display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

/// Runs `test` with a browser, bounded in time; skips (answering `false`) when there is no
/// browser.
pub async fn with_browser<F, Fut>(test: F) -> bool
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some((driver, chromium)) = browser_paths() else {
        return false;
    };
    let _one = ONE_BROWSER.lock().await;
    let driver = Driver::start(driver, chromium).await;
    let client = driver.browser().await;
    let outcome = tokio::time::timeout(Duration::from_secs(120), test(client.clone())).await;
    let _ = client.close().await;
    outcome.expect("the browser test finished within 120 s");
    true
}

/// Text of the first element `css` finds.
pub async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits (up to 15 s, the page reloading itself) until `css`'s text contains `want`.
pub async fn wait_text(client: &Client, css: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(el) = client.find(Locator::Css(css)).await {
            if el.text().await.is_ok_and(|t| t.contains(want)) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{css}` never showed `{want}`; the page:\n{}",
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Clicks the element `css` names.
pub async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} to click: {e}"))
        .click()
        .await
        .unwrap();
}

/// Types `keys` into the element `css` names.
pub async fn type_into(client: &Client, css: &str, keys: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} to type into: {e}"))
        .send_keys(keys)
        .await
        .unwrap();
}
