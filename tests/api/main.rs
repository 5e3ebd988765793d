//! The integration suite: the real receiver on port 0, over real stores.

mod helpers;
mod process;
mod proxy;

mod crash;
mod dispatch;
mod ingest;
mod metrics;
mod openapi;
mod replicas;
mod security;
mod store;
