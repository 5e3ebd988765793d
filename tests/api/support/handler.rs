//! The fake handler: reports every delivery down a channel, then acts as the test's script
//! says, counting how its calls overlap.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use okra_callbacks::{async_trait, Context, Handler, HandlerError, HandlerResult};
use tokio::sync::mpsc;

/// What the fake handler does with one delivery.
#[derive(Debug, Clone)]
pub enum Action {
    /// Returns `Ok`.
    Succeed,
    /// Returns this error.
    Fail(&'static str),
    /// Panics.
    Panic,
    /// Takes this long, then succeeds.
    Sleep(Duration),
}

/// One delivery the fake handler saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The callback id the receiver gave.
    pub id: String,
    /// The source that sent it (`okra` for Okra's).
    pub source: String,
    /// The record it belongs to.
    pub record: String,
    /// `callback_type` as parsed.
    pub callback_type: String,
    /// `callback_code` as parsed.
    pub callback_code: Option<String>,
    /// Which attempt this was (1 for the first).
    pub attempt: u32,
    /// The bytes the handler got.
    pub body: Vec<u8>,
    /// What the script made of it: `ok`, `fail` or `panic`.
    pub outcome: &'static str,
}

pub(super) type Script = Arc<dyn Fn(&Context) -> Action + Send + Sync>;

/// Reports every call down a channel, then acts as its script says.
pub struct Recorder {
    pub(super) tx: mpsc::UnboundedSender<Seen>,
    pub(super) script: Script,
    pub(super) load: Arc<Load>,
}

/// How many handler calls overlapped: in all, and within one record.
#[derive(Default)]
pub struct Load {
    now: Mutex<HashMap<String, usize>>,
    total_now: std::sync::atomic::AtomicUsize,
    /// The most calls in flight at once.
    pub max_total: std::sync::atomic::AtomicUsize,
    /// The most calls of one record in flight at once.
    pub max_per_record: std::sync::atomic::AtomicUsize,
}

impl Load {
    fn enter(&self, record: &str) {
        use std::sync::atomic::Ordering::SeqCst;
        let mut now = self.now.lock().unwrap();
        let n = now.entry(record.to_owned()).or_default();
        *n += 1;
        self.max_per_record.fetch_max(*n, SeqCst);
        let total = self.total_now.fetch_add(1, SeqCst) + 1;
        self.max_total.fetch_max(total, SeqCst);
    }

    fn leave(&self, record: &str) {
        *self.now.lock().unwrap().get_mut(record).unwrap() -= 1;
        self.total_now
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Leaves the load count even when the call is cancelled (timeout) or panics.
struct Entered<'a>(&'a Load, String);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.leave(&self.1);
    }
}

#[async_trait]
impl Handler for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn handle(&self, cx: &Context) -> HandlerResult {
        self.load.enter(cx.record().as_str());
        let _entered = Entered(&self.load, cx.record().to_string());
        let action = (self.script)(cx);
        if let Action::Sleep(d) = action {
            tokio::time::sleep(d).await;
        }
        let outcome = match action {
            Action::Fail(_) => "fail",
            Action::Panic => "panic",
            _ => "ok",
        };
        let _ = self.tx.send(Seen {
            id: cx.id.clone(),
            source: cx.source().to_owned(),
            record: cx.record().to_string(),
            callback_type: cx.envelope.callback_type().to_owned(),
            callback_code: cx.envelope.callback_code().map(str::to_owned),
            attempt: cx.attempt,
            body: cx.envelope.raw().to_vec(),
            outcome,
        });
        match action {
            Action::Fail(msg) => Err(HandlerError::msg(msg)),
            Action::Panic => panic!("the test handler panics on purpose"),
            _ => Ok(()),
        }
    }
}
