//! Sending one notice to one receiver: signed webhook or Alertmanager push, with a
//! timeout per attempt and retries with capped exponential backoff. A receiver that says
//! the request itself is wrong (4xx other than 408 and 429) is not retried.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use tokio_util::sync::CancellationToken;

use crate::alarm::{Notice, Status};
use crate::config::{NotifySection, ReceiverConfig};
use crate::notify::{payload, sign};

#[derive(Debug, Clone)]
pub enum ReceiverKind {
    Webhook { url: Url, secret: String },
    Alertmanager { alerts_url: Url },
}

/// A validated receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    pub timeout: Duration,
    /// How often a firing alarm is sent again.
    pub repeat: Duration,
    external_url: String,
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot reach the receiver: {0}")]
    Transport(String),
    #[error("the receiver answered {status}: {body}")]
    Status { status: StatusCode, body: String },
}

impl SendError {
    /// Worth trying again: transport trouble, timeouts, throttling, server errors.
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Transport(_) => true,
            SendError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::REQUEST_TIMEOUT || *status == StatusCode::TOO_MANY_REQUESTS
            }
        }
    }
}

fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("url {text:?} is not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("url {text:?} has scheme {other:?}; use http or https")),
    }
}

impl Receiver {
    pub fn new(name: &str, config: &ReceiverConfig, notify: &NotifySection) -> Result<Receiver, String> {
        let (kind, timeout, repeat) = match config {
            ReceiverConfig::Webhook(c) => {
                if c.secret.is_empty() {
                    return Err("secret must not be empty: it keys the signature of every notification".into());
                }
                (ReceiverKind::Webhook { url: http_url(&c.url)?, secret: c.secret.clone() }, c.timeout, c.repeat_interval)
            }
            ReceiverConfig::Alertmanager(c) => {
                let base = http_url(&c.url)?;
                let alerts_url = base
                    .join(&format!("{}/api/v2/alerts", base.path().trim_end_matches('/')))
                    .map_err(|e| format!("url {:?} cannot be extended with /api/v2/alerts ({e})", c.url))?;
                (ReceiverKind::Alertmanager { alerts_url }, c.timeout, c.resend_interval)
            }
        };
        if repeat.is_zero() || timeout.is_zero() {
            return Err("timeout and repeat/resend interval must be longer than zero".into());
        }
        Ok(Receiver { name: name.to_owned(), kind, timeout, repeat, external_url: notify.external_url.clone() })
    }

    /// The request body for `notice`, as sent (and signed).
    pub fn body(&self, notice: &Notice, now: i64) -> Vec<u8> {
        let value = match &self.kind {
            ReceiverKind::Webhook { .. } => payload::webhook(notice, &self.name, &self.external_url),
            ReceiverKind::Alertmanager { .. } => {
                let valid_until = now + 4 * self.repeat.as_millis() as i64;
                payload::alertmanager(notice, valid_until, &self.external_url)
            }
        };
        value.to_string().into_bytes()
    }

    /// One attempt.
    pub async fn send(&self, client: &reqwest::Client, notice: &Notice, now: i64) -> Result<(), SendError> {
        let body = self.body(notice, now);
        let request = match &self.kind {
            ReceiverKind::Webhook { url, secret } => client
                .post(url.clone())
                .header(sign::SIGNATURE_HEADER, sign::signature(secret.as_bytes(), &body))
                .header("X-Specaudit-Fingerprint", &notice.fingerprint),
            ReceiverKind::Alertmanager { alerts_url } => client.post(alerts_url.clone()),
        };
        let response = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Transport(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(SendError::Status { status, body: body.chars().take(300).collect() })
    }

    /// Sends until delivered, refused for good, given up, or `stop`. True when delivered.
    pub async fn deliver(
        &self,
        client: &reqwest::Client,
        notice: &Notice,
        retry: &NotifySection,
        stop: &CancellationToken,
    ) -> bool {
        let started = Instant::now();
        let mut backoff = retry.retry_initial;
        let status = match notice.status {
            Status::Firing if notice.repeat => "repeat",
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        };
        let mut attempt = 1u32;
        loop {
            let now = specaudit_core::record::now_ms();
            let error = match self.send(client, notice, now).await {
                Ok(()) => {
                    metrics::counter!("specaudit_alarmer_notifications_total", "receiver" => self.name.clone(), "result" => "sent").increment(1);
                    tracing::info!(receiver = %self.name, fingerprint = %notice.fingerprint, status, attempt, "notification sent");
                    return true;
                }
                Err(error) => error,
            };
            let gave_up = started.elapsed() + backoff > retry.give_up_after;
            if !error.retryable() || gave_up {
                metrics::counter!("specaudit_alarmer_notifications_total", "receiver" => self.name.clone(), "result" => "failed").increment(1);
                tracing::error!(receiver = %self.name, fingerprint = %notice.fingerprint, status, attempt, %error,
                    retryable = error.retryable(), "notification failed for good");
                return false;
            }
            metrics::counter!("specaudit_alarmer_notifications_total", "receiver" => self.name.clone(), "result" => "retried").increment(1);
            tracing::warn!(receiver = %self.name, fingerprint = %notice.fingerprint, status, attempt, %error,
                retry_in_ms = backoff.as_millis() as u64, "notification failed, retrying");
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(retry.retry_max);
            attempt += 1;
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
