//! The integration suite: the real receiver on port 0, over real stores.

mod helpers;
mod process;

mod crash;
mod dispatch;
mod ingest;
mod metrics;
mod openapi;
mod outputs;
mod replicas;
mod security;
mod store;
