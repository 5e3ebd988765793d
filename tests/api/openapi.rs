//! `GET /openapi.json`: a valid OpenAPI 3 document that lists every route the router serves.

use serde_json::{json, Value};

use crate::support::{app, Backend};

/// The routes of the contract (README "HTTP API"), and the document itself.
const CONTRACT_ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/callback"),
    ("get", "/v1/callback"),
    ("get", "/v1/callbacks/{id}"),
    ("post", "/v1/callbacks/{id}/replay"),
    ("post", "/v1/callbacks/replay"),
    ("get", "/v1/callbacks"),
    ("get", "/v1/stats"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/v1/sources/{name}"),
];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];

/// `(method, path)` of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(*method).is_some() {
                ops.push((method.to_string(), path.clone()));
            }
        }
    }
    ops.sort();
    ops
}

#[tokio::test]
async fn openapi_is_a_valid_openapi_3_document_open_to_all() {
    let app = app(Backend::Sqlite)
        .await
        // The admin rule does not apply: the document holds no data.
        .config(|c| c.access.admin_token = Some(okra_callbacks::Secret::new("adm1n")))
        .spawn()
        .await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let version = doc["openapi"].as_str().expect("an `openapi` version field");
    assert!(version.starts_with("3."), "{version}");
    // A typed OpenAPI 3.1 parser accepts it (every reference, schema and response well formed).
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert_eq!(spec.info.title, "okra-callbacks");
    assert!(!spec.info.version.is_empty());

    // The error body of the contract is a component, used by the error responses.
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error"]), "{error}");
    let detail = &doc["components"]["schemas"]["ErrorDetail"];
    for field in ["code", "message"] {
        assert!(detail["properties"].get(field).is_some(), "{detail}");
    }
    let post = &doc["paths"]["/v1/callback"]["post"];
    for status in ["200", "400", "401", "413", "415", "422", "429", "503"] {
        assert!(
            post["responses"].get(status).is_some(),
            "POST /v1/callback documents {status}"
        );
    }
    let get = &doc["paths"]["/v1/callback"]["get"];
    let params: Vec<&str> = get["parameters"]
        .as_array()
        .expect("GET /v1/callback has parameters")
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["record", "method", "limit", "cursor"]);
    // The operator's list documents every filter and page parameter, and its 400s.
    let list = &doc["paths"]["/v1/callbacks"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .expect("GET /v1/callbacks has parameters")
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        [
            "status",
            "callback_type",
            "callback_code",
            "record",
            "received_after",
            "received_before",
            "source",
            "limit",
            "cursor"
        ]
    );
    assert!(list["responses"].get("400").is_some(), "{list}");
    // Bulk replay takes the list's filters: one object parameter, each property its own query
    // parameter (form, exploded), at least one of them required by its schema.
    let replay = &doc["paths"]["/v1/callbacks/replay"]["post"];
    let filter = &replay["parameters"][0];
    assert_eq!(
        replay["parameters"].as_array().map(Vec::len),
        Some(1),
        "{replay}"
    );
    assert_eq!(
        (
            &filter["in"],
            &filter["style"],
            &filter["explode"],
            &filter["required"]
        ),
        (&json!("query"), &json!("form"), &json!(true), &json!(true)),
        "{filter}"
    );
    let mut replay_filters: Vec<&str> = filter["schema"]["allOf"][0]["properties"]
        .as_object()
        .expect("the filter's properties")
        .keys()
        .map(String::as_str)
        .collect();
    let mut list_filters = params[..7].to_vec();
    replay_filters.sort();
    list_filters.sort();
    assert_eq!(
        replay_filters, list_filters,
        "bulk replay takes the list's filters: {replay}"
    );
    assert_eq!(
        filter["schema"]["allOf"][1]["anyOf"]
            .as_array()
            .map(Vec::len),
        Some(7),
        "at least one filter: {filter}"
    );
    // The cursor's format is declared, and the lists document the 400 `invalid_cursor`.
    for path in ["/v1/callbacks", "/v1/callback"] {
        let get = &doc["paths"][path]["get"];
        let cursor = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "cursor")
            .expect("a cursor parameter");
        assert_eq!(
            cursor["schema"]["pattern"], "^([A-Za-z0-9_-]{28})?$",
            "{cursor}"
        );
        let bad = get["responses"]["400"]["description"].as_str().unwrap();
        assert!(bad.contains("invalid_cursor"), "{path}: {bad}");
    }
    let detail = &doc["components"]["schemas"]["CallbackDetail"];
    assert!(
        detail.to_string().contains("history"),
        "GET /v1/callbacks/{{id}} documents the history: {detail}"
    );
}

#[tokio::test]
async fn openapi_lists_every_route_the_router_serves() {
    let app = app(Backend::Sqlite).await.spawn().await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let documented = operations(&doc);

    // The router and the document are built from the same registrations; the library's own
    // copy of the document is the same.
    let library = serde_json::to_value(okra_callbacks::openapi()).unwrap();
    assert_eq!(operations(&library), documented);

    // Every route of the contract is documented …
    let mut expected: Vec<(String, String)> = CONTRACT_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // … and every documented operation is served: not the 404 fallback, not a 405.
    for (method, path) in &documented {
        let url = app.url(&path.replace("{id}", "no-such-id"));
        let request = match method.as_str() {
            "get" => app.client.get(url),
            "post" => app
                .client
                .post(url)
                .header("content-type", "application/json"),
            other => panic!("unexpected method {other}"),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !body.contains("no such route"),
            "{method} {path} fell through to the fallback: {body}"
        );
    }
    // The fallback itself says where the API is described.
    let (status, body) = app.get_json("/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/openapi.json"),
        "{body}"
    );
}
