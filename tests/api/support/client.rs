//! Requests to a [`TestApp`]: one typed helper per endpoint, the contract's [`paths`], and
//! [`error_body`], which checks an error answer's shape.

use super::app::TestApp;

impl TestApp {
    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a callback body as Okra would.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_callback(body).await
    }

    /// `POST /v1/callback` with a JSON body, as Okra sends it; the raw answer.
    pub async fn post_callback(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.callback_request()
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// A `POST /v1/callback` request with nothing set yet, for tests that craft the headers
    /// (content type, token, signature) themselves.
    pub fn callback_request(&self) -> reqwest::RequestBuilder {
        self.client.post(self.url(paths::CALLBACK))
    }

    /// `GET /v1/callbacks/{id}`: the status and the JSON answer (`Null` when not JSON).
    pub async fn get_callback(&self, id: &str) -> (u16, serde_json::Value) {
        self.get_json(&paths::callback(id)).await
    }

    /// `GET /v1/callback?record=..&method=..`: the status and the JSON answer.
    pub async fn record_query(&self, record: &str, method: &str) -> (u16, serde_json::Value) {
        self.get_json(&paths::record_query(record, method)).await
    }

    /// `POST /v1/callbacks/{id}/replay`; the raw answer.
    pub async fn replay(&self, id: &str) -> reqwest::Response {
        self.client
            .post(self.url(&paths::replay(id)))
            .send()
            .await
            .expect("request")
    }

    /// `POST /v1/callbacks/replay?status=dead`; the raw answer.
    pub async fn replay_dead(&self) -> reqwest::Response {
        self.client
            .post(self.url(paths::REPLAY_DEAD))
            .send()
            .await
            .expect("request")
    }

    /// POSTs and returns the JSON answer, asserting 200.
    pub async fn post_ok(&self, body: impl Into<reqwest::Body>) -> serde_json::Value {
        let response = self.post(body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `GET /metrics`, asserting 200: the Prometheus text.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// `GET {path}`: the status and the JSON answer (`Null` when not JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }
}

/// The paths of the contract's callback endpoints, so no test spells them out.
pub mod paths {
    /// `POST` a callback here; `GET` it with `?record=&method=` to list a record's callbacks.
    pub const CALLBACK: &str = "/v1/callback";
    /// `POST`: hand every dead callback over again.
    pub const REPLAY_DEAD: &str = "/v1/callbacks/replay?status=dead";

    /// `GET` one callback's state.
    pub fn callback(id: &str) -> String {
        format!("/v1/callbacks/{id}")
    }

    /// `POST`: hand one callback over again.
    pub fn replay(id: &str) -> String {
        format!("/v1/callbacks/{id}/replay")
    }

    /// `GET`: the callbacks of `record` for the product `method`.
    pub fn record_query(record: &str, method: &str) -> String {
        list(&[("record", record), ("method", method)])
    }

    /// `GET /v1/callback` with exactly these query parameters (e.g. one missing, for a 400).
    pub fn list(params: &[(&str, &str)]) -> String {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{CALLBACK}?{}", query.join("&"))
    }
}

/// An error answer's status, `error.code` and `error.message` — checking the body has the
/// contract's shape and a message that says something.
pub async fn error_body(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("error bodies are JSON");
    let field = |name: &str| {
        body["error"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no error.{name} in the {status} answer {body}"))
            .to_owned()
    };
    let (code, message) = (field("code"), field("message"));
    assert!(!message.is_empty(), "an empty error message for {code}");
    (status, code, message)
}
