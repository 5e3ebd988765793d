//! The served OpenAPI document against the real router: requests generated from the document
//! (its parameters, their schemas and the callback body schema, plus hostile variants:
//! duplicates, odd and bad percent-encodings, bad UTF-8, oversized and blank values, wrong
//! content types, wrong tokens), each answered with a status the document declares for that
//! operation, the declared content type and body shape, and never a 5xx.

use std::{collections::BTreeMap, sync::Arc};

use axum::{body::Body, http::Request, Router};
use oas3::spec::{ObjectOrReference, ObjectSchema, ParameterIn};
use okra_callbacks::{store::SqliteStore, AllOf, Config, Receiver, Secret};
use proptest::{prelude::*, test_runner::TestRunner};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "t0ken";

/// One operation of the document, as the generator needs it.
#[derive(Debug, Clone)]
struct Operation {
    method: String,
    path: String,
    params: Vec<Param>,
    /// The schema of the JSON request body, if the operation takes one.
    body: Option<Value>,
    /// Declared status → the content types declared for it (empty: no body).
    responses: BTreeMap<String, Vec<String>>,
    /// Declared status and content type → the body's schema.
    schemas: BTreeMap<(String, String), Value>,
    admin: bool,
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    in_path: bool,
    required: bool,
    schema: ObjectSchema,
}

/// A generated request.
#[derive(Debug, Clone)]
struct Generated {
    op: usize,
    method: String,
    uri: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Vec<u8>,
}

/// Resolves `#/components/schemas/X` references in `doc`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn operations(spec: &oas3::Spec, doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (path, method, op) in spec.operations() {
        let method = method.as_str().to_lowercase();
        let raw = &doc["paths"][&path][&method];
        let params = op
            .parameters
            .iter()
            .flat_map(|p| {
                let p = p.resolve(spec).expect("a parameter");
                let schema = match p.schema {
                    Some(ObjectOrReference::Object(s)) => s,
                    Some(r) => r.resolve(spec).expect("a parameter schema"),
                    None => ObjectSchema::default(),
                };
                // An object's properties, also when its schema is an `allOf` of parts.
                let mut properties = schema.properties.clone();
                for part in &schema.all_of {
                    properties.extend(part.resolve(spec).expect("a schema").properties);
                }
                if properties.is_empty() {
                    return vec![Param {
                        in_path: p.location == ParameterIn::Path,
                        required: p.required.unwrap_or(false),
                        name: p.name,
                        schema,
                    }];
                }
                // An object in the query (form, exploded): each property is its own parameter,
                // each optional (the object's schema, not the generator, says which must be
                // given, and requests without them are generated too).
                properties
                    .into_iter()
                    .map(|(name, s)| Param {
                        in_path: false,
                        required: false,
                        name,
                        schema: s.resolve(spec).expect("a property schema"),
                    })
                    .collect()
            })
            .collect();
        let body = op.request_body.as_ref().map(|b| {
            let b = b.resolve(spec).expect("a request body");
            assert!(
                b.content.contains_key("application/json"),
                "{method} {path}: a JSON body"
            );
            resolve(
                doc,
                &raw["requestBody"]["content"]["application/json"]["schema"],
            )
            .clone()
        });
        let mut responses = BTreeMap::new();
        let mut schemas = BTreeMap::new();
        for (status, response) in op.responses.as_ref().expect("responses") {
            let response = response.resolve(spec).expect("a response");
            let types: Vec<String> = response.content.keys().cloned().collect();
            for t in &types {
                let schema = &raw["responses"][status]["content"][t]["schema"];
                schemas.insert((status.clone(), t.clone()), resolve(doc, schema).clone());
            }
            responses.insert(status.clone(), types);
        }
        let admin = op.security.iter().any(|s| s.0.contains_key("admin_token"));
        ops.push(Operation {
            method,
            path,
            params,
            body,
            responses,
            schemas,
            admin,
        });
    }
    ops
}

/// Percent-encodes every byte outside the unreserved set.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Values for a string schema: from its enum or pattern, in other cases, and hostile ones.
fn value(schema: &ObjectSchema, known: Vec<String>) -> BoxedStrategy<String> {
    let mut options: Vec<BoxedStrategy<String>> = vec![
        Just(String::new()).boxed(),
        Just("  \t".to_owned()).boxed(),
        "[a-zA-Z0-9_-]{1,40}".boxed(),
        any::<String>().boxed(),
        (129usize..400).prop_map(|n| "x".repeat(n)).boxed(),
        Just("rec\u{1b}[31m\n2026-12-01T00:00:00Z  INFO forged".to_owned()).boxed(),
    ];
    if !schema.enum_values.is_empty() {
        let values: Vec<String> = schema
            .enum_values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let lower: Vec<String> = values.iter().map(|v| v.to_lowercase()).collect();
        options.push(proptest::sample::select(values.clone()).boxed());
        options.push(proptest::sample::select(values).boxed());
        options.push(proptest::sample::select(lower).boxed());
    }
    if let Some(pattern) = &schema.pattern {
        let max = schema.max_length.unwrap_or(64) as usize;
        options.push(
            // The document's patterns are anchored at both ends; the generator anchors anyway.
            proptest::string::string_regex(pattern.trim_start_matches('^').trim_end_matches('$'))
                .expect("the pattern is a regex")
                .prop_filter("within maxLength", move |s| s.chars().count() <= max)
                .boxed(),
        );
    }
    if !known.is_empty() {
        options.push(proptest::sample::select(known.clone()).boxed());
        options.push(proptest::sample::select(known).boxed());
    }
    proptest::strategy::Union::new(options).boxed()
}

/// How a value is written into the URI: encoded, or one of the odd encodings.
fn written(value: String) -> BoxedStrategy<String> {
    let encoded = encode(value.as_bytes());
    prop_oneof![
        6 => Just(encoded.clone()),
        1 => Just(format!("{encoded}%FF")),
        1 => Just("%C0%AF%FE".to_owned()),
        1 => Just(format!("%{encoded}")),
        1 => Just(format!("{encoded}%zz")),
        1 => Just(format!("{}%00", encoded.to_lowercase())),
        1 => Just(value.replace(' ', "+").replace(['/', '?', '#', '%', '&', '='], "_")),
    ]
    .boxed()
}

/// A JSON value for one field of the callback body, from its schema and hostile variants.
fn field_value(schema: &Value) -> BoxedStrategy<Option<Value>> {
    let strings = schema["anyOf"]
        .as_array()
        .and_then(|alts| alts.iter().find(|a| a["type"] == "string"))
        .cloned()
        .unwrap_or(json!({"type": "string"}));
    let string_schema: ObjectSchema = serde_json::from_value(strings).unwrap_or_default();
    prop_oneof![
        2 => Just(None),
        5 => value(&string_schema, vec!["AUTH".into(), "r1".into(), "PRODUCT_IS_READY".into()])
            .prop_map(|s| Some(Value::String(s))),
        1 => proptest::sample::select(vec![json!(null), json!({}), json!(false), json!(0), json!([1])])
            .prop_map(Some),
    ]
    .boxed()
}

/// A request body: an object from the callback schema's fields, or hostile bytes. A body
/// declared as any object (a source's payload, whatever its provider's shape) has no fields to
/// draw from: its objects vary only by the extra field.
fn body(schema: &Value) -> BoxedStrategy<Vec<u8>> {
    let fields: BTreeMap<String, Value> = schema["allOf"][0]["properties"]
        .as_object()
        .map(|props| props.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let per_field: Vec<BoxedStrategy<(String, Option<Value>)>> = fields
        .iter()
        .map(|(name, s)| {
            let name = name.clone();
            field_value(s).prop_map(move |v| (name.clone(), v)).boxed()
        })
        .collect();
    let object = (per_field, any::<bool>()).prop_map(|(values, extra)| {
        let mut object = serde_json::Map::new();
        for (name, v) in values {
            if let Some(v) = v {
                object.insert(name, v);
            }
        }
        if extra {
            object.insert("bankName".into(), json!("Ọ̀kọ̀ Bank\u{202e}"));
        }
        serde_json::to_vec(&Value::Object(object)).unwrap()
    });
    prop_oneof![
        8 => object,
        1 => proptest::sample::select(vec![
            b"".to_vec(),
            b"not json".to_vec(),
            b"[1,2]".to_vec(),
            b"\"x\"".to_vec(),
            b"{\"record\":\"r1\",".to_vec(),
            vec![0xff, 0xfe, b'{', b'}'],
        ]),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

fn request(ops: &[Operation], known_ids: Vec<String>) -> BoxedStrategy<Generated> {
    let per_op: Vec<BoxedStrategy<Generated>> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let params: Vec<BoxedStrategy<Vec<(bool, String, String)>>> = op
                .params
                .iter()
                .map(|p| {
                    let known = match (p.in_path, p.name.as_str()) {
                        (true, _) => known_ids.clone(),
                        (false, "record") => vec!["r1".to_owned()],
                        _ => Vec::new(),
                    };
                    let (name, in_path) = (p.name.clone(), p.in_path);
                    let presence = if p.required || p.in_path { 0.9 } else { 0.5 };
                    (
                        proptest::bool::weighted(if in_path { 1.0 } else { presence }),
                        proptest::bool::weighted(0.15),
                        value(&p.schema, known).prop_flat_map(written),
                    )
                        .prop_map(move |(present, twice, v)| {
                            let times =
                                usize::from(present) * if twice && !in_path { 2 } else { 1 };
                            vec![(in_path, name.clone(), v); times]
                        })
                        .boxed()
                })
                .collect();
            let body = match &op.body {
                Some(schema) => body(schema),
                None => prop_oneof![4 => Just(Vec::new()), 1 => Just(b"{}".to_vec())].boxed(),
            };
            let content_type = prop_oneof![
                6 => Just(Some("application/json".to_owned())),
                1 => Just(None),
                1 => Just(Some("text/plain".to_owned())),
                1 => Just(Some("application/vnd.okra+json; charset=utf-8".to_owned())),
            ];
            let authorization = prop_oneof![
                8 => Just(Some(format!("Bearer {TOKEN}"))),
                1 => Just(Some("Bearer wrong".to_owned())),
                1 => Just(None),
            ];
            let (method, path) = (op.method.clone(), op.path.clone());
            (params, body, content_type, authorization)
                .prop_map(move |(params, body, content_type, authorization)| {
                    let mut uri = path.clone();
                    let mut query = Vec::new();
                    for (in_path, name, v) in params.into_iter().flatten() {
                        if in_path {
                            uri = uri.replace(&format!("{{{name}}}"), &v);
                        } else {
                            query.push(format!("{name}={v}"));
                        }
                    }
                    if !query.is_empty() {
                        uri = format!("{uri}?{}", query.join("&"));
                    }
                    Generated {
                        op: i,
                        method: method.clone(),
                        uri,
                        content_type,
                        authorization,
                        body,
                    }
                })
                .boxed()
        })
        .collect();
    proptest::strategy::Union::new(per_op).boxed()
}

/// Whether `value` has the shape `schema` declares: its type, and for objects their required
/// fields, recursively.
fn has_shape(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(alternatives) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        return alternatives
            .iter()
            .any(|s| has_shape(doc, s, value).is_ok())
            .then_some(())
            .ok_or_else(|| format!("{value} matches none of {schema}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let fits = types.iter().any(|t| match *t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    });
    if !fits {
        return Err(format!("{value} is not of type {types:?}"));
    }
    if let Some(enum_values) = schema["enum"].as_array() {
        if !enum_values.contains(value) {
            return Err(format!("{value} is not one of {enum_values:?}"));
        }
    }
    if let Value::Object(fields) = value {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            let Some(field) = fields.get(name) else {
                return Err(format!("no `{name}` in {value}"));
            };
            has_shape(doc, &schema["properties"][name], field)?;
        }
    }
    if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
        for v in items {
            has_shape(doc, item, v)?;
        }
    }
    Ok(())
}

/// Declared 503 `store_unavailable` answers seen (see [`check`]).
static SLOW_STORE_ANSWERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn check(router: &Router, doc: &Value, op: &Operation, g: &Generated) -> Result<(), String> {
    let mut request = Request::builder()
        .method(g.method.to_uppercase().as_str())
        .uri(&g.uri);
    if let Some(ct) = &g.content_type {
        request = request.header("content-type", ct);
    }
    if let Some(auth) = &g.authorization {
        request = request.header("authorization", auth);
    }
    let request = match request.body(Body::from(g.body.clone())) {
        Ok(r) => r,
        // A URI the HTTP layer would refuse before the router: nothing to check here.
        Err(_) => return Ok(()),
    };
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let fail = |why: String| Err(format!("{why}\n  answer {status}: {text:.400}"));
    // A slow disk (CI's two cores with every test fsyncing at once) can hold a readiness
    // probe's commit past the 2 s `/readyz` gives the store: that is the declared, honest
    // `store_unavailable` 503, not a fault. Counted; more than a few fail the run.
    if status == 503 && text.contains("\"store_unavailable\"") && op.responses.contains_key("503") {
        SLOW_STORE_ANSWERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(());
    }
    if status.is_server_error() {
        return fail("a 5xx".into());
    }
    let code = status.as_str().to_owned();
    let Some(types) = op.responses.get(&code) else {
        return fail(format!(
            "{code} is not declared for {} {} (declared: {:?})",
            op.method,
            op.path,
            op.responses.keys().collect::<Vec<_>>()
        ));
    };
    let Some(declared) = types
        .iter()
        .find(|t| content_type.as_deref() == Some(t.as_str()))
    else {
        return fail(format!(
            "content type {content_type:?}, declared {types:?} for {code}"
        ));
    };
    if declared == "application/json" {
        let body: Value = match serde_json::from_slice(&bytes) {
            Ok(b) => b,
            Err(e) => return fail(format!("not JSON: {e}")),
        };
        let schema = &op.schemas[&(code.clone(), declared.clone())];
        if let Err(why) = has_shape(doc, schema, &body) {
            return fail(format!("not the declared shape: {why}"));
        }
        if status.is_client_error() {
            let message = body["error"]["message"].as_str().unwrap_or_default();
            if message.is_empty() || body["error"]["code"].as_str().is_none() {
                return fail("not our error body".into());
            }
        }
    }
    Ok(())
}

#[test]
fn every_answer_to_requests_generated_from_the_document_is_declared_by_it() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (router, doc, spec, known_ids) = runtime.block_on(async {
        let store = SqliteStore::open(dir.path().join("props.db"))
            .await
            .unwrap();
        let mut config = Config::default();
        config.access.admin_token = Some(Secret::new(TOKEN));
        let receiver =
            Receiver::with_store(config, Arc::new(store), Arc::new(AllOf::new())).unwrap();
        let router = receiver.router();
        // Something to find: a record `r1` with an AUTH callback.
        let mut known_ids = vec!["no-such-id".to_owned()];
        for body in [
            r#"{"record":"r1","callback_type":"AUTH","callback_code":"AUTH_SUCCESS"}"#,
            r#"{"recordId":"r1","method":"TRANSACTIONS","code":"PERIODIC_TRANSACTIONS"}"#,
        ] {
            let response = router
                .clone()
                .oneshot(
                    Request::post("/v1/callback")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let ack: Value = serde_json::from_slice(&bytes).unwrap();
            known_ids.push(ack["id"].as_str().unwrap().to_owned());
        }
        let response = router
            .clone()
            .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let spec = oas3::from_json(&text).expect("the served document parses");
        let doc: Value = serde_json::from_str(&text).unwrap();
        (router, doc, spec, known_ids)
    });
    let ops = operations(&spec, &doc);
    assert!(ops.len() >= 9, "{ops:?}");
    assert!(ops.iter().any(|o| o.admin) && ops.iter().any(|o| o.body.is_some()));

    let mut runner = TestRunner::new(proptest::test_runner::Config {
        cases: 768,
        failure_persistence: None,
        ..Default::default()
    });
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let result = runner.run(&request(&ops, known_ids), |g| {
        let op = &ops[g.op];
        runtime
            .block_on(check(&router, &doc, op, &g))
            .map_err(|why| TestCaseError::fail(format!("{} {}: {why}", g.method, g.uri)))?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let slow = SLOW_STORE_ANSWERS.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        slow <= 768 / 20,
        "{slow} of 768 requests found the store unavailable: more than a slow disk explains"
    );
    // The run reached the answers worth checking, not only refusals of one kind.
    runtime.block_on(async {
        let mut runner = TestRunner::deterministic();
        let strategy = request(&ops, vec!["no-such-id".into()]);
        for _ in 0..300 {
            let g = strategy.new_tree(&mut runner).unwrap().current();
            let mut request = Request::builder()
                .method(g.method.to_uppercase().as_str())
                .uri(&g.uri)
                .header("authorization", format!("Bearer {TOKEN}"));
            if let Some(ct) = &g.content_type {
                request = request.header("content-type", ct);
            }
            let Ok(request) = request.body(Body::from(g.body.clone())) else {
                continue;
            };
            let status = router.clone().oneshot(request).await.unwrap().status();
            *statuses.entry(status.as_str().to_owned()).or_default() += 1;
        }
    });
    eprintln!("statuses of 300 generated requests: {statuses:?}");
    for status in ["200", "400", "404", "415", "422"] {
        assert!(
            statuses.contains_key(status),
            "no {status} among {statuses:?}"
        );
    }
}
