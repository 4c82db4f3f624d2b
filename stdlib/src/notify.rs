//! # Notify — `Notify.To(list).Send(subject, body)`
//!
//! The module logic of email notifications (seed sections 6.1–6.4, WP-10..12, KDD-ext-4,
//! CD-NS-1..7), with the outside world behind the traits of [`ports`]: the runtime sends with
//! lettre, buffers in the LMDB store-and-forward engine, and writes the site event log.
//!
//! What a `Send` does ([`Notifier::send`]):
//! 1. resolves the list to its recipients (unknown list: `not_found` error; empty list:
//!    `permanent` error);
//! 2. composes one [`Email`]: the from address in `From` and `To`, every recipient in BCC
//!    only, plain text, no deduplication, no rate limiting (CD-NS-1, -2, -5);
//! 3. makes the first attempt at once, on the calling script thread;
//! 4. delivered: `{id, status: "delivered"}`. Transient failure ([`classify`]): the email is
//!    buffered durably with that attempt counted, and the script gets `{id, status:
//!    "buffered"}` without waiting for any retry (CD-NS-3). Permanent failure: the error goes
//!    back to the script at once, nothing is buffered or retried, and the site event log hears
//!    of it (CD-NS-4).
//!
//! The id is the same one store-and-forward reports status under, and the email's
//! `Message-ID` is derived from it, so every retry sends the identical message.

pub mod classify;
pub mod email;
pub mod ports;
pub mod settings;
pub mod token;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

pub use classify::{ErrorCode, FailureKind, NotifyError, SmtpFailure};
pub use email::Email;
pub use ports::{
    BufferedStatus, EventLog, FirstAttempt, MailTransport, NoEventLog, NotifyEvent, Outbox,
};
pub use settings::{
    NotificationLists, OAuth2Settings, RetryDelays, RetrySettings, Secret, SmtpAuth, SmtpSettings,
    TlsMode,
};

/// What a `Send` answers: the script's `Delivery` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The delivery id; stable across retries, queryable with `Deliveries.Status(id)`.
    pub id: String,
    /// Where the email is.
    pub status: DeliveryStatus,
}

/// Where an email is after `Send` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The SMTP server accepted it.
    Delivered,
    /// It is in the store-and-forward buffer (waiting for a retry, or parked when the settings
    /// allow no retry).
    Buffered,
}

impl DeliveryStatus {
    /// The status as the script sees it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Buffered => "buffered",
        }
    }
}

impl Delivery {
    /// The script's value: `{id, status}`.
    pub fn to_json(&self) -> Value {
        json!({ "id": self.id, "status": self.status.as_str() })
    }
}

/// The Notify module of one site: its lists and settings, and the world it talks to.
pub struct Notifier {
    from: String,
    lists: NotificationLists,
    retry: RetrySettings,
    transport: Arc<dyn MailTransport>,
    outbox: Arc<dyn Outbox>,
    events: Arc<dyn EventLog>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Notifier")
            .field("from", &self.from)
            .field("lists", &self.lists)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// The module for these settings and lists, sending through `transport`, buffering in
    /// `outbox` and reporting to `events`.
    pub fn new(
        settings: &SmtpSettings,
        lists: NotificationLists,
        transport: Arc<dyn MailTransport>,
        outbox: Arc<dyn Outbox>,
        events: Arc<dyn EventLog>,
    ) -> Notifier {
        Notifier {
            from: settings.from.clone(),
            lists,
            retry: settings.retry.clone(),
            transport,
            outbox,
            events,
        }
    }

    /// The lists this module knows.
    pub fn lists(&self) -> &NotificationLists {
        &self.lists
    }

    /// `Notify.To(list).Send(subject, body)`: see the module documentation. Blocks the calling
    /// script thread for the first attempt (at most the configured timeout per step).
    pub fn send(&self, list: &str, subject: &str, body: &str) -> Result<Delivery, NotifyError> {
        let recipients = self.lists.recipients(list)?;
        let delivery_id = self.outbox.new_id();
        let email = Email::compose(
            &delivery_id,
            list,
            &self.from,
            recipients,
            subject,
            body,
            unix_ms(SystemTime::now()),
        );
        let started_unix_ms = unix_ms(SystemTime::now());
        let started = Instant::now();
        let failure = match self.transport.send(&email) {
            Ok(()) => {
                return Ok(Delivery {
                    id: delivery_id,
                    status: DeliveryStatus::Delivered,
                });
            }
            Err(failure) => failure,
        };
        match failure.kind() {
            FailureKind::Permanent => {
                let error = NotifyError::Rejected {
                    list: list.to_owned(),
                    failure,
                };
                self.events.record(&NotifyEvent::Rejected {
                    list: list.to_owned(),
                    delivery_id,
                    retry: false,
                    error: error.clone(),
                });
                Err(error)
            }
            FailureKind::Transient => {
                let first_attempt = FirstAttempt {
                    started_unix_ms,
                    duration: started.elapsed(),
                    failure,
                };
                match self.outbox.buffer(&email, &self.retry, &first_attempt) {
                    Ok(_) => {
                        self.events.record(&NotifyEvent::Buffered {
                            list: list.to_owned(),
                            delivery_id: delivery_id.clone(),
                            failure: first_attempt.failure,
                        });
                        Ok(Delivery {
                            id: delivery_id,
                            status: DeliveryStatus::Buffered,
                        })
                    }
                    Err(reason) => Err(NotifyError::NotBuffered {
                        list: list.to_owned(),
                        failure: first_attempt.failure,
                        reason,
                    }),
                }
            }
        }
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    /// A transport that answers from a script of results and remembers what it was given.
    #[derive(Default)]
    struct ScriptedTransport {
        results: Mutex<Vec<Result<(), SmtpFailure>>>,
        sent: Mutex<Vec<Email>>,
    }

    impl MailTransport for ScriptedTransport {
        fn send(&self, email: &Email) -> Result<(), SmtpFailure> {
            self.sent.lock().unwrap().push(email.clone());
            self.results.lock().unwrap().pop().unwrap_or(Ok(()))
        }
    }

    #[derive(Default)]
    struct MemoryOutbox {
        next: AtomicU64,
        buffered: Mutex<Vec<(Email, RetrySettings, FirstAttempt)>>,
        refuse: Option<String>,
    }

    impl Outbox for MemoryOutbox {
        fn new_id(&self) -> String {
            format!("id-{}", self.next.fetch_add(1, Ordering::Relaxed))
        }

        fn buffer(
            &self,
            email: &Email,
            retry: &RetrySettings,
            first: &FirstAttempt,
        ) -> Result<BufferedStatus, String> {
            if let Some(reason) = &self.refuse {
                return Err(reason.clone());
            }
            self.buffered
                .lock()
                .unwrap()
                .push((email.clone(), retry.clone(), first.clone()));
            Ok(BufferedStatus::Buffered)
        }
    }

    #[derive(Default)]
    struct MemoryEvents(Mutex<Vec<NotifyEvent>>);

    impl EventLog for MemoryEvents {
        fn record(&self, event: &NotifyEvent) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    fn settings() -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port: 25,
            tls: TlsMode::None,
            from: "scada@plant.example".into(),
            timeout: Duration::from_secs(30),
            max_connections: 5,
            auth: SmtpAuth::None,
            retry: RetrySettings {
                max_retries: 3,
                delays: RetryDelays::Fixed(Duration::from_secs(5)),
            },
            trusted_roots: Vec::<PathBuf>::new(),
        }
    }

    struct Fixture {
        notifier: Notifier,
        transport: Arc<ScriptedTransport>,
        outbox: Arc<MemoryOutbox>,
        events: Arc<MemoryEvents>,
    }

    fn fixture(results: Vec<Result<(), SmtpFailure>>, outbox: MemoryOutbox) -> Fixture {
        let transport = Arc::new(ScriptedTransport {
            results: Mutex::new(results),
            ..Default::default()
        });
        let outbox = Arc::new(outbox);
        let events = Arc::new(MemoryEvents::default());
        let lists = NotificationLists::new(BTreeMap::from([(
            "Operators".to_owned(),
            vec![
                "op1@plant.example".to_owned(),
                "op2@plant.example".to_owned(),
                "op1@plant.example".to_owned(),
            ],
        )]));
        let notifier = Notifier::new(
            &settings(),
            lists,
            transport.clone(),
            outbox.clone(),
            events.clone(),
        );
        Fixture {
            notifier,
            transport,
            outbox,
            events,
        }
    }

    #[test]
    fn delivered_at_once() {
        let fixture = fixture(vec![], MemoryOutbox::default());
        let delivery = fixture
            .notifier
            .send("Operators", "Hot", "Pump 1 is at 90 C")
            .unwrap();
        assert_eq!(
            delivery.to_json(),
            json!({"id": "id-0", "status": "delivered"})
        );
        let sent = fixture.transport.sent.lock().unwrap();
        assert_eq!(sent.len(), 1, "one email per Send");
        assert_eq!(
            sent[0].recipients,
            [
                "op1@plant.example",
                "op2@plant.example",
                "op1@plant.example"
            ]
        );
        assert_eq!(sent[0].header_to(), "scada@plant.example");
        assert_eq!(sent[0].delivery_id, "id-0");
        assert!(fixture.outbox.buffered.lock().unwrap().is_empty());
    }

    #[test]
    fn transient_failure_is_buffered_with_its_attempt() {
        let failure = SmtpFailure::Reply {
            code: 451,
            detail: "try later".into(),
        };
        let fixture = fixture(vec![Err(failure.clone())], MemoryOutbox::default());
        let delivery = fixture.notifier.send("Operators", "Hot", "body").unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Buffered);
        let buffered = fixture.outbox.buffered.lock().unwrap();
        assert_eq!(buffered.len(), 1);
        assert_eq!(buffered[0].0.delivery_id, delivery.id);
        assert_eq!(buffered[0].1.max_retries, 3);
        assert_eq!(buffered[0].2.failure, failure);
        assert!(matches!(
            fixture.events.0.lock().unwrap()[0],
            NotifyEvent::Buffered { .. }
        ));
    }

    #[test]
    fn permanent_failure_returns_to_the_script_and_is_logged() {
        let failure = SmtpFailure::Reply {
            code: 550,
            detail: "no such mailbox".into(),
        };
        let fixture = fixture(vec![Err(failure)], MemoryOutbox::default());
        let error = fixture
            .notifier
            .send("Operators", "Hot", "body")
            .unwrap_err();
        assert_eq!(error.kind(), "permanent");
        assert_eq!(error.status(), Some(550));
        assert!(
            fixture.outbox.buffered.lock().unwrap().is_empty(),
            "nothing buffered"
        );
        assert_eq!(
            fixture.transport.sent.lock().unwrap().len(),
            1,
            "not retried"
        );
        let events = fixture.events.0.lock().unwrap();
        assert!(matches!(
            &events[0],
            NotifyEvent::Rejected { retry: false, .. }
        ));
    }

    #[test]
    fn unknown_list_sends_nothing() {
        let fixture = fixture(vec![], MemoryOutbox::default());
        let error = fixture.notifier.send("Operator", "s", "b").unwrap_err();
        assert_eq!(error.code(), ErrorCode::UnknownList);
        assert!(error.to_string().contains("did you mean `Operators`"));
        assert!(fixture.transport.sent.lock().unwrap().is_empty());
    }

    #[test]
    fn a_buffer_failure_is_reported_not_swallowed() {
        let outbox = MemoryOutbox {
            refuse: Some("disk full".into()),
            ..Default::default()
        };
        let fixture = fixture(
            vec![Err(SmtpFailure::Connect {
                detail: "refused".into(),
            })],
            outbox,
        );
        let error = fixture.notifier.send("Operators", "s", "b").unwrap_err();
        assert_eq!(error.code(), ErrorCode::NotBuffered);
        assert_eq!(error.kind(), "transient");
        assert!(error.to_string().contains("disk full"));
    }

    #[test]
    fn no_deduplication_and_no_rate_limit() {
        let fixture = fixture(vec![], MemoryOutbox::default());
        for _ in 0..50 {
            fixture.notifier.send("Operators", "same", "same").unwrap();
        }
        let sent = fixture.transport.sent.lock().unwrap();
        assert_eq!(sent.len(), 50);
        let ids: std::collections::HashSet<_> =
            sent.iter().map(|email| email.delivery_id.clone()).collect();
        assert_eq!(ids.len(), 50, "every Send has its own id");
    }
}
