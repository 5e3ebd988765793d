//! A store the test can switch off, to see how the receiver behaves when its store fails.

use std::{sync::Arc, time::Duration};

use okra_callbacks::async_trait;

/// A store that can be switched off, to see how the receiver behaves when its store fails.
pub struct Switchable {
    inner: Arc<dyn okra_callbacks::store::Store>,
    down: std::sync::atomic::AtomicBool,
}

impl Switchable {
    /// A switch in front of `inner`, on.
    pub fn new(inner: Arc<dyn okra_callbacks::store::Store>) -> Self {
        Self {
            inner,
            down: Default::default(),
        }
    }

    /// Off (`true`: every call fails as unavailable) or on again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), okra_callbacks::store::StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(okra_callbacks::store::StoreError::Unavailable(
                "switched off by the test".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl okra_callbacks::store::Store for Switchable {
    async fn insert(
        &self,
        cb: okra_callbacks::store::NewCallback,
        w: Duration,
    ) -> Result<okra_callbacks::store::Inserted, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.insert(cb, w).await
    }
    async fn claim(
        &self,
        o: &str,
        m: usize,
        p: usize,
        l: Duration,
    ) -> Result<Vec<okra_callbacks::store::Claim>, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.claim(o, m, p, l).await
    }
    async fn finish_attempt(
        &self,
        o: &str,
        cb: &okra_callbacks::store::StoredCallback,
        out: okra_callbacks::store::Outcome,
        a: &okra_callbacks::store::Attempt,
        l: Duration,
    ) -> Result<(), okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.finish_attempt(o, cb, out, a, l).await
    }
    async fn release(&self, o: &str, r: &str) -> Result<(), okra_callbacks::store::StoreError> {
        self.inner.release(o, r).await
    }
    async fn release_all(&self, o: &str) -> Result<(), okra_callbacks::store::StoreError> {
        self.inner.release_all(o).await
    }
    async fn get(
        &self,
        id: &str,
    ) -> Result<Option<okra_callbacks::store::StoredCallback>, okra_callbacks::store::StoreError>
    {
        self.check()?;
        self.inner.get(id).await
    }
    async fn list(
        &self,
        r: &str,
        t: &[&str],
    ) -> Result<okra_callbacks::store::Listing, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.list(r, t).await
    }
    async fn replay(&self, id: &str) -> Result<bool, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.replay(id).await
    }
    async fn replay_dead(&self) -> Result<u64, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.replay_dead().await
    }
    async fn ping(&self) -> Result<(), okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.ping().await
    }
    async fn backlog(
        &self,
    ) -> Result<okra_callbacks::store::Backlog, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.backlog().await
    }
    async fn prune(
        &self,
        b: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.prune(b).await
    }
    async fn search(
        &self,
        f: &okra_callbacks::store::Filter,
        n: usize,
        c: Option<&okra_callbacks::store::Cursor>,
    ) -> Result<okra_callbacks::store::Page, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.search(f, n, c).await
    }
    async fn record_page(
        &self,
        r: &str,
        t: &str,
        n: usize,
        c: Option<&okra_callbacks::store::Cursor>,
    ) -> Result<Option<okra_callbacks::store::Page>, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.record_page(r, t, n, c).await
    }
    async fn history(
        &self,
        id: &str,
    ) -> Result<Vec<okra_callbacks::store::Attempt>, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.history(id).await
    }
    async fn replay_matching(
        &self,
        f: &okra_callbacks::store::Filter,
    ) -> Result<u64, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.replay_matching(f).await
    }
    async fn stats(
        &self,
    ) -> Result<okra_callbacks::store::Stats, okra_callbacks::store::StoreError> {
        self.check()?;
        self.inner.stats().await
    }
}
