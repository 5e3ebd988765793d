//! The integration suite: the real receiver on port 0, over real stores.

mod helpers;

mod ingest;
mod metrics;
mod openapi;
