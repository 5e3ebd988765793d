//! The ingest benchmark's baseline: a bare axum endpoint that only parses the JSON body and
//! answers 200 with a small JSON object — no auth, no model, no store.
//!
//! `cargo run --release --example bare_axum -- 127.0.0.1:8081` serves `POST /v1/callback`;
//! `scripts/bench-ingest.sh` runs it next to the receiver (see BENCHMARKS.md).

use axum::{body::Bytes, http::StatusCode, routing::post, Json, Router};
use serde_json::{json, Value};

async fn receive(body: Bytes) -> Result<Json<Value>, StatusCode> {
    let value: Value = serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(Json(json!({ "ok": value.is_object() })))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let app = Router::new().route("/v1/callback", post(receive));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare_axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
