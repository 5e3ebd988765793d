//! NATS JetStream output: publishes each callback to a subject and waits for the stream's PubAck.

use std::{fmt, time::Duration};

use async_nats::{
    connection::State,
    jetstream::{self, message::PublishMessage},
    ConnectOptions,
};
use async_trait::async_trait;
use url::Url;

use super::{redact_url, server_of, OutputConfigError, Params, Template, CONNECT_TIMEOUT};
use crate::handler::{Context, Handler, HandlerError, HandlerResult};

/// The subject when the URL names none.
pub(crate) const DEFAULT_SUBJECT: &str = "okra.callbacks.{callback_type}";

/// Where a [`NatsOutput`] publishes: `nats://[USER:PASS@]HOST[:PORT][?subject=TEMPLATE]`.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// The server to connect to (credentials included; never shown).
    pub server: Url,
    /// The subject of each message; a JetStream stream must capture it.
    pub subject: Template,
}

impl NatsConfig {
    pub(crate) fn from_url(url: Url, shown: &str) -> Result<Self, OutputConfigError> {
        if !url.has_host() || url.host_str() == Some("") {
            return Err(OutputConfigError(format!(
                "--output `{shown}` names no server: write e.g. nats://127.0.0.1:4222"
            )));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(OutputConfigError(format!(
                "--output `{shown}`: a NATS URL has no path; give the subject as ?subject=okra.callbacks.{{callback_type}}"
            )));
        }
        let mut params = Params::of(&url);
        let subject = params
            .take("subject")
            .unwrap_or_else(|| DEFAULT_SUBJECT.into());
        params.finish(shown, &["subject"])?;
        let subject = Template::parse(&subject)
            .map_err(|e| OutputConfigError(format!("--output `{shown}`: subject {e}")))?;
        check_subject(&subject.probe()).map_err(|e| {
            OutputConfigError(format!("--output `{shown}`: subject `{subject}` {e}"))
        })?;
        Ok(Self {
            server: server_of(&url),
            subject,
        })
    }
}

/// A subject to publish to: dot-separated non-empty tokens, no spaces, no wildcards.
fn check_subject(subject: &str) -> Result<(), String> {
    if subject.chars().any(char::is_whitespace) {
        return Err("contains a space: NATS subjects cannot".into());
    }
    if subject.contains(['*', '>']) {
        return Err("contains a wildcard (* or >): publish to a concrete subject".into());
    }
    if subject.split('.').any(str::is_empty) {
        return Err("has an empty token: write tokens separated by single dots, e.g. okra.callbacks.{callback_type}".into());
    }
    Ok(())
}

impl fmt::Display for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}?subject={}",
            redact_url(&self.server).trim_end_matches('/'),
            self.subject
        )
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Publishes each callback to NATS JetStream, with header `Nats-Msg-Id` = the callback id (so the
/// stream drops a redelivery within its duplicate window) and `Okra-Source`, `Okra-Record`,
/// `Okra-Callback-Type`, `Okra-Callback-Code`. Succeeds once the stream's PubAck arrives; no stream
/// for the subject, or no connection, is a failure.
pub struct NatsOutput {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    subject: Template,
    /// The server, password hidden, for error messages.
    shown: String,
}

impl NatsOutput {
    /// Starts connecting in the background and returns at once: a server that is down now is
    /// retried by the client itself, and until then each publish fails (and is retried later).
    pub async fn connect(config: NatsConfig) -> Result<Self, OutputConfigError> {
        let shown = redact_url(&config.server);
        let logged = shown.clone();
        let client = ConnectOptions::new()
            .name("okra-callbacks")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(CONNECT_TIMEOUT)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 << attempts.min(5)).min(Duration::from_secs(3))
            })
            .event_callback(move |event| {
                let server = logged.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(output = "nats", %server, "connected")
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(output = "nats", %server, "disconnected; reconnecting")
                        }
                        other => tracing::debug!(output = "nats", %server, event = %other),
                    }
                }
            })
            .connect(config.server.as_str())
            .await
            .map_err(|e| OutputConfigError(format!("NATS output {shown}: {e}")))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(CONNECT_TIMEOUT);
        Ok(Self {
            client,
            jetstream,
            subject: config.subject,
            shown,
        })
    }
}

/// A header value cannot hold line breaks or other control characters (they would end the
/// header): they become spaces.
fn header_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[async_trait]
impl Handler for NatsOutput {
    fn name(&self) -> &str {
        "nats"
    }

    async fn handle(&self, cx: &Context) -> HandlerResult {
        // A publish while disconnected would wait in the client's buffer for the PubAck
        // timeout; fail at once instead, and let the dispatcher retry.
        if self.client.connection_state() != State::Connected {
            return Err(HandlerError::msg(format_args!(
                "not connected to NATS at {}; reconnecting",
                self.shown
            )));
        }
        let env = &cx.envelope;
        let subject = self.subject.render(env);
        let message = PublishMessage::build()
            .payload(env.raw().clone())
            .message_id(&cx.id)
            .header("Okra-Source", env.source())
            .header("Okra-Record", header_value(env.record().as_str()))
            .header("Okra-Callback-Type", header_value(env.callback_type()))
            .header(
                "Okra-Callback-Code",
                header_value(env.callback_code().unwrap_or("")),
            )
            .header("Content-Type", "application/json");
        let ack = self
            .jetstream
            .send_publish(subject.clone(), message)
            .await
            .map_err(|e| {
                HandlerError::msg(format_args!("NATS publish to `{subject}` failed: {e}"))
            })?;
        ack.await.map_err(|e| {
            HandlerError::msg(format_args!(
                "JetStream did not acknowledge `{subject}` ({e}): check that a stream captures this subject"
            ))
        })?;
        Ok(())
    }
}
