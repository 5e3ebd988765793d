//! The integration suite: the real receiver on port 0, over real stores.

mod support;

mod access;
mod cli;
mod conformance;
mod console;
mod console_pages;
mod crash;
mod dispatch;
mod hostile;
mod ingest;
mod logs;
mod messages;
mod metrics;
mod openapi;
mod operator;
mod outputs;
mod readme;
mod replicas;
mod send_sources;
mod signatures;
mod source_routes;
mod sources;
mod store;
