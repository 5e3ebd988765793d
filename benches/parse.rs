//! How long `Envelope::parse` takes per callback, for each sample in `samples/`.
//!
//! `cargo bench --bench parse` (see BENCHMARKS.md). The time per iteration is the time to
//! parse one callback: bytes to a typed `Callback` with every field kept.

use std::{fs, path::Path};

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use okra_callbacks::Envelope;

fn fixtures() -> Vec<(String, Bytes)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let mut out: Vec<(String, Bytes)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap().into())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (name, body) in fixtures() {
        // Every fixture parses; a bench of an error path would measure the wrong thing.
        Envelope::parse(body.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        group.bench_function(&name, |b| {
            // Cloning `Bytes` is a reference-count bump, as on the request path.
            b.iter(|| Envelope::parse(black_box(body.clone())).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
