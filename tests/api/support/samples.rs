//! Callback bodies: Okra's sample payloads (`samples/`) and a distinct body per record and
//! marker.

use std::path::PathBuf;

/// A callback body for `record` with a marker field, so each is distinct.
pub fn callback(record: &str, kind: &str, code: &str, n: usize) -> String {
    serde_json::json!({
        "callback_type": kind,
        "callback_code": code,
        "record": record,
        "error": null,
        "seq": n,
    })
    .to_string()
}

/// The directory of Okra's sample payloads.
pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples")
}

/// A sample payload from `samples/`, by file stem (`fixture("auth_success")`).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = samples_dir().join(format!("{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("sample {}: {e}", path.display()))
}

/// Every sample in `samples/`, as (file stem, bytes), sorted by name.
pub fn samples() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(samples_dir())
        .expect("the samples/ directory")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "json").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let body = fixture(&name);
            (name, body)
        })
        .collect()
}
