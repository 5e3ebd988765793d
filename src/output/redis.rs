//! Redis Streams output: `XADD`s each callback to a stream and waits for the entry id.

use std::{fmt, time::Duration};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;
use url::Url;

use super::{redact_url, server_of, OutputConfigError, Params, Template, CONNECT_TIMEOUT};
use crate::handler::{Context, Handler, HandlerError, HandlerResult};

/// The stream key when the URL names none.
pub(crate) const DEFAULT_STREAM: &str = "okra:callbacks";

/// Where a [`RedisOutput`] appends: `redis://[:PASS@]HOST[:PORT][/DB][?stream=TEMPLATE]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The server and database to connect to (credentials included; never shown).
    pub server: Url,
    /// The stream key each entry is appended to.
    pub stream: Template,
}

impl RedisConfig {
    pub(crate) fn from_url(url: Url, shown: &str) -> Result<Self, OutputConfigError> {
        if !url.has_host() || url.host_str() == Some("") {
            return Err(OutputConfigError(format!(
                "--output `{shown}` names no server: write e.g. redis://127.0.0.1:6379"
            )));
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(OutputConfigError(format!(
                "--output `{shown}`: the path must be a database number (redis://HOST:PORT/0), not `{db}`"
            )));
        }
        let mut params = Params::of(&url);
        let stream = params
            .take("stream")
            .unwrap_or_else(|| DEFAULT_STREAM.into());
        params.finish(shown, &["stream"])?;
        let stream = Template::parse(&stream)
            .map_err(|e| OutputConfigError(format!("--output `{shown}`: stream {e}")))?;
        let server = server_of(&url);
        redis::Client::open(server.as_str())
            .map_err(|e| OutputConfigError(format!("--output `{shown}`: {e}")))?;
        Ok(Self { server, stream })
    }
}

impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}?stream={}",
            redact_url(&self.server).trim_end_matches('/'),
            self.stream
        )
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Appends each callback to a Redis stream: `XADD KEY * id <callback id> record … callback_type
/// … callback_code … source … body <original bytes>`. Succeeds once Redis answered the entry id; a
/// consumer de-duplicates on the `id` field.
pub struct RedisOutput {
    client: redis::Client,
    /// Made on first use, then reconnects by itself after an error.
    connection: OnceCell<ConnectionManager>,
    stream: Template,
    /// The server, password hidden, for error messages.
    shown: String,
}

impl RedisOutput {
    /// Prepares the client without connecting: the first callback connects, so a server that is
    /// down now only makes callbacks wait.
    pub async fn connect(config: RedisConfig) -> Result<Self, OutputConfigError> {
        let shown = redact_url(&config.server);
        let client = redis::Client::open(config.server.as_str())
            .map_err(|e| OutputConfigError(format!("Redis output {shown}: {e}")))?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
            stream: config.stream,
            shown,
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, HandlerError> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(3));
                let manager = ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| {
                        HandlerError::msg(format_args!(
                            "cannot connect to Redis at {}: {e}",
                            self.shown
                        ))
                    })?;
                tracing::info!(output = "redis", server = %self.shown, "connected");
                Ok(manager)
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl Handler for RedisOutput {
    fn name(&self) -> &str {
        "redis"
    }

    async fn handle(&self, cx: &Context) -> HandlerResult {
        let mut connection = self.connection().await?;
        let env = &cx.envelope;
        let key = self.stream.render(env);
        let mut command = redis::cmd("XADD");
        command.arg(&key).arg("*");
        for (name, value) in super::fields(cx) {
            command.arg(name).arg(value);
        }
        command.arg("source").arg(env.source());
        command.arg("body").arg(env.raw().as_ref());
        let _entry: String = command.query_async(&mut connection).await.map_err(|e| {
            HandlerError::msg(format_args!(
                "XADD to `{key}` on Redis at {} failed: {e}",
                self.shown
            ))
        })?;
        Ok(())
    }
}
