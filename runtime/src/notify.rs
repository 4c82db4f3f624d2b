//! # Notify on a site: email notifications over SMTP, with store-and-forward
//!
//! The runtime half of `Notify.To(list).Send(subject, body)`. The module logic (composition,
//! classification, what goes back to the script) is [`scl_stdlib::notify`]; this module gives
//! it the outside world:
//! - [`NotifyConfig::from_deployment`] reads `[smtp]` and `[notification_lists]` with every
//!   default applied, secrets read from the environment variables the file names, addresses
//!   and certificates checked, and every problem reported at once;
//! - [`smtp::SmtpClient`] sends with lettre over tokio and rustls through a pool of at most
//!   `max_connections` connections, logging in with PLAIN/LOGIN or XOAUTH2 (an OAuth2
//!   client-credentials token from [`token::TokenCache`]);
//! - [`NotifyService`] is what a site builds once: [`NotifyService::send`] for script threads
//!   (it blocks the calling thread, never the async reactor), and
//!   [`NotifyService::deliverer`] for the store-and-forward forwarder
//!   ([`Category::Notification`]).
//!
//! What it promises: one email per `Send`, recipients only in the envelope (BCC), the from
//! address in `To`; transient failures buffered durably before the script hears "buffered",
//! retried per `[smtp] retry` and parked after the last retry; permanent failures returned at
//! once and never retried; no secret in any log, error or `Debug` output.

pub mod host;
pub mod render;
pub mod smtp;
pub mod token;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use scl_stdlib::notify::settings::{DEFAULT_OAUTH2_SCOPE, microsoft_token_url};
use scl_stdlib::notify::{
    BufferedStatus, Delivery, Email, EventLog, FailureKind, FirstAttempt, MailTransport,
    NotificationLists, Notifier, NotifyError, NotifyEvent, OAuth2Settings, Outbox, RetryDelays,
    RetrySettings, Secret, SmtpAuth, SmtpFailure, SmtpSettings, TlsMode,
};
use tokio::runtime::Handle;

use crate::deployment::{Deployment, RetryDef, SmtpAuthDef, SmtpDef};
use crate::saf::{
    Attempt, AttemptOutcome, Category, Deliverer, DeliveryFuture, Message, NewMessage, Outcome,
    RetryPolicy, Saf, Status,
};
use smtp::SmtpClient;

/// The Notify settings of a deployment, resolved and checked.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The SMTP settings; `None` when the deployment has no `[smtp]` section.
    pub smtp: Option<SmtpSettings>,
    /// The notification lists.
    pub lists: NotificationLists,
    /// The PEM text of every extra trusted root, read from `smtp.trusted_roots`.
    pub extra_roots_pem: Vec<Vec<u8>>,
}

impl NotifyConfig {
    /// Resolve the deployment's `[smtp]` and `[notification_lists]`, reading secrets with
    /// `environment` (normally `|name| std::env::var(name).ok()`). Every problem is reported,
    /// each naming the key (and the variable, never its value).
    pub fn from_deployment(
        deployment: &Deployment,
        environment: impl Fn(&str) -> Option<String>,
    ) -> Result<NotifyConfig, Vec<String>> {
        let mut problems = Vec::new();
        let lists = resolve_lists(&deployment.file.notification_lists, &mut problems);
        let mut extra_roots_pem = Vec::new();
        let smtp = deployment.file.smtp.as_ref().map(|smtp| {
            for path in &smtp.trusted_roots {
                let full = deployment.base_dir().join(path);
                match std::fs::read(&full) {
                    Ok(pem) if reqwest::Certificate::from_pem(&pem).is_ok() => {
                        extra_roots_pem.push(pem)
                    }
                    Ok(_) => problems.push(format!(
                        "smtp.trusted_roots: `{}` is not a PEM certificate",
                        full.display()
                    )),
                    Err(error) => problems.push(format!(
                        "smtp.trusted_roots: cannot read `{}`: {error}",
                        full.display()
                    )),
                }
            }
            resolve_smtp(smtp, &environment, &mut problems)
        });
        if problems.is_empty() {
            Ok(NotifyConfig {
                smtp,
                lists,
                extra_roots_pem,
            })
        } else {
            Err(problems)
        }
    }
}

fn resolve_lists(
    lists: &BTreeMap<String, Vec<String>>,
    problems: &mut Vec<String>,
) -> NotificationLists {
    for (name, recipients) in lists {
        for recipient in recipients {
            if let Err(error) = recipient.parse::<lettre::Address>() {
                problems.push(format!(
                    "notification_lists.{name}: `{recipient}` is not an email address: {error}"
                ));
            }
        }
    }
    NotificationLists::new(lists.clone())
}

fn resolve_smtp(
    smtp: &SmtpDef,
    environment: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> SmtpSettings {
    if smtp.host.trim().is_empty() {
        problems.push("smtp.host is empty".to_owned());
    }
    if let Err(error) = smtp.from.parse::<lettre::Address>() {
        problems.push(format!(
            "smtp.from: `{}` is not an email address: {error}",
            smtp.from
        ));
    }
    if smtp.timeout_s == 0 {
        problems.push("smtp.timeout_s must be at least 1".to_owned());
    }
    if smtp.max_connections == 0 {
        problems.push("smtp.max_connections must be at least 1".to_owned());
    }
    let mut secret = |key: &str, variable: &str| match environment(variable) {
        Some(value) if !value.is_empty() => Secret::new(value),
        _ => {
            problems.push(format!(
                "smtp.auth.{key}: environment variable `{variable}` is not set"
            ));
            Secret::new(String::new())
        }
    };
    let auth = match &smtp.auth {
        None | Some(SmtpAuthDef::None) => SmtpAuth::None,
        Some(SmtpAuthDef::Basic {
            username,
            password_env,
        }) => SmtpAuth::Basic {
            username: username.clone(),
            password: secret("password_env", password_env),
        },
        Some(SmtpAuthDef::Oauth2 {
            tenant_id,
            client_id,
            client_secret_env,
            token_url,
            scope,
        }) => SmtpAuth::OAuth2(OAuth2Settings {
            tenant_id: tenant_id.clone(),
            client_id: client_id.clone(),
            client_secret: secret("client_secret_env", client_secret_env),
            token_url: token_url
                .clone()
                .unwrap_or_else(|| microsoft_token_url(tenant_id)),
            scope: scope
                .clone()
                .unwrap_or_else(|| DEFAULT_OAUTH2_SCOPE.to_owned()),
            username: smtp.from.clone(),
        }),
    };
    let retry = match &smtp.retry {
        None => RetrySettings::default(),
        Some(retry) => resolve_retry(retry, problems),
    };
    SmtpSettings {
        host: smtp.host.clone(),
        port: smtp.port,
        tls: match smtp.tls {
            crate::deployment::TlsMode::None => TlsMode::None,
            crate::deployment::TlsMode::Starttls => TlsMode::Starttls,
            crate::deployment::TlsMode::Ssl => TlsMode::Implicit,
        },
        from: smtp.from.clone(),
        timeout: Duration::from_secs(smtp.timeout_s.max(1)),
        max_connections: smtp.max_connections.max(1),
        auth,
        retry,
        trusted_roots: smtp.trusted_roots.iter().map(Into::into).collect(),
    }
}

fn resolve_retry(retry: &RetryDef, problems: &mut Vec<String>) -> RetrySettings {
    let delays = match (&retry.backoff_s, retry.interval_s) {
        (Some(schedule), _) if schedule.is_empty() => {
            problems.push("smtp.retry.backoff_s must list at least one delay".to_owned());
            RetryDelays::Fixed(scl_stdlib::notify::settings::DEFAULT_RETRY_INTERVAL)
        }
        (Some(schedule), _) => RetryDelays::Schedule(
            schedule
                .iter()
                .map(|seconds| Duration::from_secs(*seconds))
                .collect(),
        ),
        (None, Some(interval)) => RetryDelays::Fixed(Duration::from_secs(interval)),
        (None, None) => RetryDelays::Fixed(scl_stdlib::notify::settings::DEFAULT_RETRY_INTERVAL),
    };
    RetrySettings {
        max_retries: retry.max_retries,
        delays,
    }
}

/// The store-and-forward retry policy for these settings.
pub fn retry_policy(retry: &RetrySettings) -> RetryPolicy {
    match &retry.delays {
        RetryDelays::Fixed(interval) => RetryPolicy::fixed(retry.max_retries, *interval),
        RetryDelays::Schedule(delays) => RetryPolicy::schedule(retry.max_retries, delays),
    }
}

/// Notify on one site: built once from the deployment, shared by every script thread and by
/// the store-and-forward forwarder.
pub struct NotifyService {
    notifier: Option<Notifier>,
    lists: NotificationLists,
    client: Option<Arc<SmtpClient>>,
    events: Arc<dyn EventLog>,
}

impl std::fmt::Debug for NotifyService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NotifyService")
            .field("notifier", &self.notifier)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl NotifyService {
    /// The service for a resolved configuration. Sends run on `runtime` (script threads
    /// block on them); buffered notifications go to `saf`; permanent failures and buffering
    /// are reported to `events`.
    pub fn new(
        config: NotifyConfig,
        saf: Saf,
        runtime: Handle,
        events: Arc<dyn EventLog>,
    ) -> Result<NotifyService, String> {
        let Some(settings) = config.smtp else {
            return Ok(NotifyService {
                notifier: None,
                lists: config.lists,
                client: None,
                events,
            });
        };
        let http = match &settings.auth {
            SmtpAuth::OAuth2(_) => {
                let mut roots = Vec::new();
                for pem in &config.extra_roots_pem {
                    roots.push(
                        reqwest::Certificate::from_pem(pem)
                            .map_err(|error| format!("extra trusted root: {error}"))?,
                    );
                }
                Some(token::http_client(settings.timeout, &roots)?)
            }
            _ => None,
        };
        let client = Arc::new(SmtpClient::new(&settings, &config.extra_roots_pem, http)?);
        let transport = Arc::new(BlockingTransport {
            client: Arc::clone(&client),
            runtime,
        });
        let outbox = Arc::new(SafOutbox { saf });
        let notifier = Notifier::new(
            &settings,
            config.lists.clone(),
            transport,
            outbox,
            Arc::clone(&events),
        );
        Ok(NotifyService {
            notifier: Some(notifier),
            lists: config.lists,
            client: Some(client),
            events,
        })
    }

    /// `Notify.To(list).Send(subject, body)`, for a script thread: blocks it for the first
    /// attempt. Never call it on the async reactor's threads.
    pub fn send(&self, list: &str, subject: &str, body: &str) -> Result<Delivery, NotifyError> {
        match &self.notifier {
            Some(notifier) => notifier.send(list, subject, body),
            None => {
                // An unknown list is the more useful error, even without SMTP settings.
                self.lists.recipients(list)?;
                Err(NotifyError::NotConfigured)
            }
        }
    }

    /// Whether the deployment defines `list` with at least one recipient: what
    /// `Notify.To(list)` checks before `Send` (the same errors `send` would give).
    pub fn check_list(&self, list: &str) -> Result<(), NotifyError> {
        self.lists.recipients(list).map(|_| ())
    }

    /// The store-and-forward deliverer of [`Category::Notification`], or `None` without
    /// `[smtp]` settings.
    pub fn deliverer(&self) -> Option<NotificationDeliverer> {
        self.client.as_ref().map(|client| NotificationDeliverer {
            client: Arc::clone(client),
            events: Arc::clone(&self.events),
        })
    }

    /// The SMTP client (for counters), or `None` without `[smtp]` settings.
    pub fn client(&self) -> Option<&Arc<SmtpClient>> {
        self.client.as_ref()
    }
}

/// The stdlib's blocking [`MailTransport`] on the async client: the send runs as a task on
/// the runtime, and the script thread parks until it ends.
struct BlockingTransport {
    client: Arc<SmtpClient>,
    runtime: Handle,
}

impl MailTransport for BlockingTransport {
    fn send(&self, email: &Email) -> Result<(), SmtpFailure> {
        let client = Arc::clone(&self.client);
        let email = email.clone();
        let task = self.runtime.spawn(async move { client.send(&email).await });
        match crate::saf::block_on(task) {
            Ok(result) => result,
            Err(error) => Err(SmtpFailure::Network {
                detail: format!("the send task ended abnormally: {error}"),
            }),
        }
    }
}

/// The stdlib's [`Outbox`] on the LMDB store-and-forward engine.
struct SafOutbox {
    saf: Saf,
}

impl Outbox for SafOutbox {
    fn new_id(&self) -> String {
        crate::saf::store::new_id(crate::saf::now_ms())
    }

    fn buffer(
        &self,
        email: &Email,
        retry: &RetrySettings,
        first_attempt: &FirstAttempt,
    ) -> Result<BufferedStatus, String> {
        let attempt = Attempt::new(
            first_attempt.started_unix_ms,
            AttemptOutcome::Transient,
            first_attempt.failure.status(),
            Some(first_attempt.failure.to_string()),
            first_attempt.duration,
        );
        let message = NewMessage::new(
            Category::Notification,
            email.list.clone(),
            email,
            retry_policy(retry),
        )
        .map_err(|error| error.to_string())?
        .with_id(email.delivery_id.clone())
        .with_prior_attempt(attempt, None);
        let enqueued = self
            .saf
            .enqueue_blocking(message)
            .map_err(|error| error.to_string())?;
        Ok(if enqueued.status == Status::Parked {
            BufferedStatus::Parked
        } else {
            BufferedStatus::Buffered
        })
    }
}

/// Sends buffered notifications for the store-and-forward forwarder: one attempt each,
/// classified; permanent failures are also written to the event log.
#[derive(Clone)]
pub struct NotificationDeliverer {
    client: Arc<SmtpClient>,
    events: Arc<dyn EventLog>,
}

impl Deliverer for NotificationDeliverer {
    fn deliver<'a>(&'a self, message: &'a Message) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let email: Email = match message.payload_as() {
                Ok(email) => email,
                Err(error) => {
                    return Outcome::Permanent {
                        error: format!("not a notification payload: {error}"),
                        status: None,
                    };
                }
            };
            match self.client.send(&email).await {
                Ok(()) => Outcome::Delivered { status: Some(250) },
                Err(failure) => {
                    let (error, status) = (failure.to_string(), failure.status());
                    match failure.kind() {
                        FailureKind::Transient => Outcome::Transient {
                            error,
                            status,
                            retry_after: None,
                        },
                        FailureKind::Permanent => {
                            self.events.record(&NotifyEvent::Rejected {
                                list: email.list.clone(),
                                delivery_id: email.delivery_id.clone(),
                                retry: true,
                                error: NotifyError::Rejected {
                                    list: email.list.clone(),
                                    failure,
                                },
                            });
                            Outcome::Permanent { error, status }
                        }
                    }
                }
            }
        })
    }
}

/// An [`EventLog`] that writes to `tracing` (until the site event log exists): permanent
/// failures as errors, buffered notifications as warnings.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingEventLog;

impl EventLog for TracingEventLog {
    fn record(&self, event: &NotifyEvent) {
        match event {
            NotifyEvent::Rejected {
                list,
                delivery_id,
                retry,
                error,
            } => {
                tracing::error!(%list, %delivery_id, retry, code = error.code().as_str(), "{error}");
            }
            NotifyEvent::Buffered {
                list,
                delivery_id,
                failure,
            } => {
                tracing::warn!(%list, %delivery_id, "notification buffered for retry: {failure}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn deployment(text: &str) -> Deployment {
        Deployment::from_source(Path::new("/nonexistent/deploy.toml"), text.to_owned())
            .expect("valid deployment")
    }

    #[test]
    fn defaults_apply_and_secrets_come_from_the_environment() {
        let deployment = deployment(
            r#"
            [smtp]
            host = "smtp.office365.com"
            port = 587
            tls = "starttls"
            from = "scada@plant.example"
            auth = { kind = "oauth2", tenant_id = "contoso", client_id = "app", client_secret_env = "SMTP_SECRET" }
            [notification_lists]
            Operators = ["op1@plant.example", "op2@plant.example"]
            "#,
        );
        let config = NotifyConfig::from_deployment(&deployment, |name| {
            (name == "SMTP_SECRET").then(|| "s3cret".to_owned())
        })
        .unwrap();
        let smtp = config.smtp.unwrap();
        assert_eq!(smtp.timeout, Duration::from_secs(30));
        assert_eq!(smtp.max_connections, 5);
        assert_eq!(smtp.tls, TlsMode::Starttls);
        assert_eq!(smtp.retry, RetrySettings::default());
        let SmtpAuth::OAuth2(oauth) = &smtp.auth else {
            panic!("expected OAuth2")
        };
        assert_eq!(
            oauth.token_url,
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
        );
        assert_eq!(oauth.scope, "https://outlook.office365.com/.default");
        assert_eq!(oauth.username, "scada@plant.example");
        assert_eq!(oauth.client_secret.expose(), "s3cret");
        assert!(!format!("{smtp:?}").contains("s3cret"));
        assert_eq!(config.lists.recipients("Operators").unwrap().len(), 2);
    }

    #[test]
    fn every_problem_is_reported_without_secret_values() {
        let deployment = deployment(
            r#"
            [smtp]
            host = "127.0.0.1"
            port = 25
            from = "not an address"
            timeout_s = 0
            max_connections = 0
            auth = { kind = "basic", username = "alice", password_env = "NOT_SET_ANYWHERE" }
            retry = { max_retries = 2, backoff_s = [] }
            trusted_roots = ["missing-ca.pem"]
            [notification_lists]
            Ops = ["ok@plant.example", "broken@@plant"]
            "#,
        );
        let problems = NotifyConfig::from_deployment(&deployment, |_| None).unwrap_err();
        let text = problems.join("\n");
        for expected in [
            "smtp.from",
            "timeout_s",
            "max_connections",
            "`NOT_SET_ANYWHERE` is not set",
            "backoff_s",
            "missing-ca.pem",
            "notification_lists.Ops: `broken@@plant`",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
        }
    }

    #[test]
    fn retry_settings_become_the_store_and_forward_policy() {
        let fixed = RetrySettings {
            max_retries: 4,
            delays: RetryDelays::Fixed(Duration::from_secs(30)),
        };
        assert_eq!(
            retry_policy(&fixed),
            RetryPolicy::fixed(4, Duration::from_secs(30))
        );
        let schedule = RetrySettings {
            max_retries: 4,
            delays: RetryDelays::Schedule(vec![Duration::from_secs(1), Duration::from_secs(10)]),
        };
        assert_eq!(
            retry_policy(&schedule).delay_before_retry(3),
            Duration::from_secs(10)
        );
    }
}
