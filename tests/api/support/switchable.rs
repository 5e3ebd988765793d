//! A store the test can switch off, to see how the receiver behaves when its store fails.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use okra_callbacks::{
    async_trait,
    store::{
        Attempt, Claim, Cursor, Delivery, Filter, Ingest, Inserted, NewCallback, OperatorView,
        Outcome, Page, Retention, Stats, Store, StoreError, StoredCallback,
    },
};

/// A store that can be switched off, to see how the receiver behaves when its store fails.
pub struct Switchable {
    inner: Arc<dyn Store>,
    down: AtomicBool,
}

impl Switchable {
    /// A switch in front of `inner`, on.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            down: Default::default(),
        }
    }

    /// Off (`true`: every call fails as unavailable) or on again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Ingest for Switchable {
    async fn insert(&self, cb: NewCallback, w: Duration) -> Result<Inserted, StoreError> {
        self.check()?;
        self.inner.insert(cb, w).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.ping().await
    }
}

#[async_trait]
impl Delivery for Switchable {
    async fn claim(
        &self,
        o: &str,
        m: usize,
        p: usize,
        l: Duration,
    ) -> Result<Vec<Claim>, StoreError> {
        self.check()?;
        self.inner.claim(o, m, p, l).await
    }
    async fn finish_attempt(
        &self,
        o: &str,
        cb: &StoredCallback,
        out: Outcome,
        a: &Attempt,
        l: Duration,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.finish_attempt(o, cb, out, a, l).await
    }
    async fn release(&self, o: &str, r: &str) -> Result<(), StoreError> {
        self.inner.release(o, r).await
    }
    async fn release_all(&self, o: &str) -> Result<(), StoreError> {
        self.inner.release_all(o).await
    }
}

#[async_trait]
impl OperatorView for Switchable {
    async fn get(&self, id: &str) -> Result<Option<StoredCallback>, StoreError> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn search(&self, f: &Filter, n: usize, c: Option<&Cursor>) -> Result<Page, StoreError> {
        self.check()?;
        self.inner.search(f, n, c).await
    }
    async fn record_page(
        &self,
        r: &str,
        t: &str,
        n: usize,
        c: Option<&Cursor>,
    ) -> Result<Option<Page>, StoreError> {
        self.check()?;
        self.inner.record_page(r, t, n, c).await
    }
    async fn history(&self, id: &str) -> Result<Vec<Attempt>, StoreError> {
        self.check()?;
        self.inner.history(id).await
    }
    async fn replay(&self, id: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.replay(id).await
    }
    async fn replay_matching(&self, f: &Filter) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.replay_matching(f).await
    }
    async fn stats(&self) -> Result<Stats, StoreError> {
        self.check()?;
        self.inner.stats().await
    }
}

#[async_trait]
impl Retention for Switchable {
    async fn prune(&self, b: DateTime<Utc>) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.prune(b).await
    }
}
