//! What every route shares, built once per receiver.

use std::{ops::Deref, sync::Arc, time::Duration};

use tokio::sync::Notify;

use super::{access::Access, limits::Limits};
use crate::{settings::Settings, source::Sources, store::Store, Metrics};

/// What every route shares, behind one `Arc`: axum clones the state for every request, so a
/// clone is one reference count, not one per part. Private to the crate (the [`Receiver`]
/// builds it).
///
/// [`Receiver`]: crate::Receiver
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

/// The parts of [`AppState`], read through it (`state.store`).
#[derive(Clone)]
pub(crate) struct Shared {
    /// Where callbacks are stored.
    pub(super) store: Arc<dyn Store>,
    /// Wakes the dispatcher when a callback is stored or replayed.
    pub(super) wake: Arc<Notify>,
    /// Who may call: tokens, networks, signatures.
    pub(super) access: Arc<Access>,
    /// How much a request may take: time, body size, callbacks at once.
    pub(super) limits: Arc<Limits>,
    /// How long the same bytes count as a duplicate.
    pub(super) dedup_window: Duration,
    /// Where metrics are recorded and what `/metrics` renders; without it, metrics go to the
    /// global recorder (if any) and `/metrics` answers an empty body.
    pub(super) metrics: Option<Metrics>,
    /// The configured sources, served at `POST /v1/sources/{name}` (none by default).
    pub(super) sources: Arc<Sources>,
}

impl AppState {
    /// The state of the routes `settings` describe, under the `access` rules read from them,
    /// over `store`, waking the dispatcher through `wake`.
    pub(crate) fn new(
        settings: &Settings,
        access: Access,
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
    ) -> Self {
        Self(Arc::new(Shared {
            store,
            wake,
            access: Arc::new(access),
            limits: Arc::new(Limits::from_config(&settings.limits)),
            dedup_window: settings.dedup_window,
            metrics: None,
            sources: Arc::default(),
        }))
    }

    /// Serves `sources` at `POST /v1/sources/{name}` (in this state and in the clones made
    /// from it afterwards).
    pub(crate) fn set_sources(&mut self, sources: Arc<Sources>) {
        Arc::make_mut(&mut self.0).sources = sources;
    }

    /// Records metrics into `metrics` and serves them at `/metrics` (in this state and in the
    /// clones made from it afterwards).
    pub(crate) fn set_metrics(&mut self, metrics: Metrics) {
        Arc::make_mut(&mut self.0).metrics = Some(metrics);
    }

    /// Where metrics are recorded, if a registry was given.
    pub(crate) fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
