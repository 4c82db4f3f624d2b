//! What can go wrong when sending a notification, and whether retrying can help
//! (CD-NS-3, CD-NS-4):
//!
//! | failure | class |
//! | --- | --- |
//! | connection refused, reset, unreachable, DNS failure | transient |
//! | no answer within the timeout (connecting, sending, or waiting for a free connection) | transient |
//! | TLS handshake or certificate failure, connection broken mid-exchange | transient |
//! | SMTP 4xx reply (451, 421, 454, …; server throttling included, CD-NS-5) | transient |
//! | OAuth2 token endpoint unreachable, 408, 429 or 5xx | transient |
//! | SMTP 5xx reply (550, 552, 554, …) | permanent |
//! | authentication rejected (535, or an XOAUTH2 `334` error challenge) | permanent |
//! | token endpoint refused the client credentials (400, 401, 403) | permanent |
//! | the server lacks something required (STARTTLS, a usable AUTH mechanism, SMTPUTF8) | permanent |
//! | a message that cannot be built (bad address) | permanent |
//!
//! Transient failures are buffered in store-and-forward and retried; permanent ones go back to
//! the script at once and are never retried. Every error has a kind, a stable code, the SMTP
//! (or HTTP) status where there was one, and a message that never holds a secret.

use std::fmt;

use serde_json::{Value, json};

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Retrying may succeed: the notification is buffered.
    Transient,
    /// Retrying cannot help: the error goes back to the script.
    Permanent,
}

impl FailureKind {
    /// The error kind the script sees (`"transient"` or `"permanent"`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
        }
    }
}

/// One failed attempt to hand a message to the SMTP server, as the transport reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpFailure {
    /// No TCP connection: refused, reset, unreachable, or the name did not resolve.
    Connect {
        /// What the operating system said.
        detail: String,
    },
    /// No answer within the timeout: connecting, a command, or waiting for a free
    /// connection of the pool.
    Timeout {
        /// Which step timed out.
        detail: String,
    },
    /// The TLS handshake failed or the server's certificate was not trusted.
    Tls {
        /// What failed.
        detail: String,
    },
    /// The connection broke during the exchange, or the server's answer was not SMTP.
    Network {
        /// What failed.
        detail: String,
    },
    /// The server answered a command with a negative reply.
    Reply {
        /// The reply code (421, 451, 535, 550, …).
        code: u16,
        /// The reply text.
        detail: String,
    },
    /// The server answered XOAUTH2 with a `334` error challenge (the Gmail style) instead of
    /// a 535: the token was rejected.
    AuthChallenge {
        /// What the client saw.
        detail: String,
    },
    /// The OAuth2 token endpoint could not be reached, timed out, or answered 408, 429 or
    /// 5xx, or its answer was not a token.
    TokenUnavailable {
        /// The HTTP status, if it answered.
        status: Option<u16>,
        /// What happened (the endpoint's `error` code, never the secret).
        detail: String,
    },
    /// The OAuth2 token endpoint refused the client credentials (wrong secret, unknown
    /// client, scope not granted).
    TokenRejected {
        /// The HTTP status.
        status: u16,
        /// The endpoint's `error` and `error_description`.
        detail: String,
    },
    /// The server lacks something the settings require (STARTTLS, a usable AUTH mechanism,
    /// SMTPUTF8 for a non-ASCII address), or the settings themselves are unusable.
    Unsupported {
        /// What is missing.
        detail: String,
    },
    /// The message cannot be built (an address that does not parse).
    InvalidMessage {
        /// What is wrong.
        detail: String,
    },
}

impl SmtpFailure {
    /// Whether retrying can help.
    pub fn kind(&self) -> FailureKind {
        match self {
            SmtpFailure::Connect { .. }
            | SmtpFailure::Timeout { .. }
            | SmtpFailure::Tls { .. }
            | SmtpFailure::Network { .. }
            | SmtpFailure::TokenUnavailable { .. } => FailureKind::Transient,
            SmtpFailure::Reply { code, .. } => classify_reply_code(*code),
            SmtpFailure::AuthChallenge { .. }
            | SmtpFailure::TokenRejected { .. }
            | SmtpFailure::Unsupported { .. }
            | SmtpFailure::InvalidMessage { .. } => FailureKind::Permanent,
        }
    }

    /// Whether the server rejected the credentials (535, or the XOAUTH2 error challenge):
    /// with OAuth2 the token is then refreshed once and the login tried again.
    pub fn is_rejected_credentials(&self) -> bool {
        matches!(
            self,
            SmtpFailure::Reply { code: 535, .. } | SmtpFailure::AuthChallenge { .. }
        )
    }

    /// The SMTP reply code or the token endpoint's HTTP status, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SmtpFailure::Reply { code, .. } => Some(*code),
            SmtpFailure::TokenUnavailable { status, .. } => *status,
            SmtpFailure::TokenRejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The stable code the script sees (`e.code`).
    pub fn code(&self) -> ErrorCode {
        match self {
            SmtpFailure::Connect { .. } | SmtpFailure::Network { .. } => ErrorCode::Connection,
            SmtpFailure::Timeout { .. } => ErrorCode::Timeout,
            SmtpFailure::Tls { .. } => ErrorCode::Tls,
            SmtpFailure::Reply { .. } if self.is_rejected_credentials() => ErrorCode::AuthRejected,
            SmtpFailure::AuthChallenge { .. } => ErrorCode::AuthRejected,
            SmtpFailure::Reply { .. } => ErrorCode::SmtpReply,
            SmtpFailure::TokenUnavailable { .. } => ErrorCode::TokenUnavailable,
            SmtpFailure::TokenRejected { .. } => ErrorCode::TokenRejected,
            SmtpFailure::Unsupported { .. } => ErrorCode::Unsupported,
            SmtpFailure::InvalidMessage { .. } => ErrorCode::InvalidMessage,
        }
    }
}

impl fmt::Display for SmtpFailure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmtpFailure::Connect { detail } => {
                write!(formatter, "cannot connect to the SMTP server: {detail}")
            }
            SmtpFailure::Timeout { detail } => write!(formatter, "SMTP timeout: {detail}"),
            SmtpFailure::Tls { detail } => write!(formatter, "SMTP TLS failure: {detail}"),
            SmtpFailure::Network { detail } => {
                write!(formatter, "SMTP connection failure: {detail}")
            }
            SmtpFailure::Reply { code, detail } => {
                write!(formatter, "the SMTP server answered {code}: {detail}")
            }
            SmtpFailure::AuthChallenge { detail } => {
                write!(
                    formatter,
                    "the SMTP server rejected the OAuth2 token (XOAUTH2 error challenge): {detail}"
                )
            }
            SmtpFailure::TokenUnavailable {
                status: Some(status),
                detail,
            } => {
                write!(
                    formatter,
                    "the OAuth2 token endpoint answered {status}: {detail}"
                )
            }
            SmtpFailure::TokenUnavailable {
                status: None,
                detail,
            } => {
                write!(formatter, "cannot get an OAuth2 token: {detail}")
            }
            SmtpFailure::TokenRejected { status, detail } => {
                write!(
                    formatter,
                    "the OAuth2 token endpoint refused the client credentials ({status}): {detail}"
                )
            }
            SmtpFailure::Unsupported { detail } => {
                write!(formatter, "cannot use the SMTP server: {detail}")
            }
            SmtpFailure::InvalidMessage { detail } => {
                write!(formatter, "cannot build the email: {detail}")
            }
        }
    }
}

/// The class of an SMTP reply code: 4xx transient, 5xx permanent. Anything else as a failure
/// (a server that answers out of protocol) is treated as transient.
pub fn classify_reply_code(code: u16) -> FailureKind {
    if (500..600).contains(&code) {
        FailureKind::Permanent
    } else {
        FailureKind::Transient
    }
}

/// What went wrong, as a stable code the script can test (`e.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No connection, or it broke.
    Connection,
    /// No answer in time.
    Timeout,
    /// TLS failed.
    Tls,
    /// A negative SMTP reply (`e.status` holds the code).
    SmtpReply,
    /// The server rejected the login (535).
    AuthRejected,
    /// No OAuth2 token could be had for now.
    TokenUnavailable,
    /// The token endpoint refused the client credentials.
    TokenRejected,
    /// The server lacks what the settings require.
    Unsupported,
    /// The email cannot be built.
    InvalidMessage,
    /// The deployment has no notification list of that name.
    UnknownList,
    /// The notification list has no recipients.
    EmptyList,
    /// The deployment has no `[smtp]` section.
    NotConfigured,
    /// A transient failure whose notification could not be buffered either.
    NotBuffered,
}

impl ErrorCode {
    /// The code as the script sees it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Connection => "smtp_connection",
            ErrorCode::Timeout => "smtp_timeout",
            ErrorCode::Tls => "smtp_tls",
            ErrorCode::SmtpReply => "smtp_reply",
            ErrorCode::AuthRejected => "smtp_auth_rejected",
            ErrorCode::TokenUnavailable => "oauth2_token_unavailable",
            ErrorCode::TokenRejected => "oauth2_token_rejected",
            ErrorCode::Unsupported => "smtp_unsupported",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::UnknownList => "unknown_notification_list",
            ErrorCode::EmptyList => "empty_notification_list",
            ErrorCode::NotConfigured => "smtp_not_configured",
            ErrorCode::NotBuffered => "not_buffered",
        }
    }
}

/// An error `Notify.To(list).Send(...)` returns to the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyError {
    /// The deployment has no `[smtp]` section.
    NotConfigured,
    /// The deployment has no list of that name.
    UnknownList {
        /// The name the script used.
        list: String,
        /// The nearest defined name, if one is close.
        suggestion: Option<String>,
    },
    /// The list has no recipients.
    EmptyList {
        /// The list.
        list: String,
    },
    /// A permanent failure: not buffered, not retried.
    Rejected {
        /// The list.
        list: String,
        /// What failed.
        failure: SmtpFailure,
    },
    /// A transient failure, and buffering the notification failed too: it was NOT sent and
    /// is NOT buffered.
    NotBuffered {
        /// The list.
        list: String,
        /// The failure of the attempt.
        failure: SmtpFailure,
        /// Why buffering failed.
        reason: String,
    },
}

impl NotifyError {
    /// The error kind the script sees.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifyError::UnknownList { .. } => "not_found",
            NotifyError::NotConfigured
            | NotifyError::EmptyList { .. }
            | NotifyError::Rejected { .. } => FailureKind::Permanent.as_str(),
            NotifyError::NotBuffered { .. } => FailureKind::Transient.as_str(),
        }
    }

    /// The stable code the script sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            NotifyError::NotConfigured => ErrorCode::NotConfigured,
            NotifyError::UnknownList { .. } => ErrorCode::UnknownList,
            NotifyError::EmptyList { .. } => ErrorCode::EmptyList,
            NotifyError::Rejected { failure, .. } => failure.code(),
            NotifyError::NotBuffered { .. } => ErrorCode::NotBuffered,
        }
    }

    /// The SMTP reply code (or token endpoint status), if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            NotifyError::Rejected { failure, .. } | NotifyError::NotBuffered { failure, .. } => {
                failure.status()
            }
            _ => None,
        }
    }

    /// The script's `Error` value: `{kind, code, message, status}`.
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind(),
            "code": self.code().as_str(),
            "message": self.to_string(),
            "status": self.status(),
        })
    }
}

impl fmt::Display for NotifyError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::NotConfigured => formatter.write_str(
                "Notify: the deployment has no [smtp] section, so notifications cannot be sent",
            ),
            NotifyError::UnknownList { list, suggestion } => {
                write!(
                    formatter,
                    "Notify: the deployment has no notification list `{list}`"
                )?;
                match suggestion {
                    Some(name) => write!(formatter, "; did you mean `{name}`?"),
                    None => Ok(()),
                }
            }
            NotifyError::EmptyList { list } => {
                write!(
                    formatter,
                    "Notify: notification list `{list}` has no recipients"
                )
            }
            NotifyError::Rejected { list, failure } => {
                write!(
                    formatter,
                    "Notify.To(\"{list}\").Send failed permanently: {failure}"
                )
            }
            NotifyError::NotBuffered {
                list,
                failure,
                reason,
            } => write!(
                formatter,
                "Notify.To(\"{list}\").Send failed ({failure}) and could not be buffered: {reason}"
            ),
        }
    }
}

impl std::error::Error for NotifyError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> SmtpFailure {
        SmtpFailure::Reply {
            code,
            detail: "x".to_owned(),
        }
    }

    #[test]
    fn reply_codes_split_at_500() {
        for code in [421, 450, 451, 452, 454] {
            assert_eq!(reply(code).kind(), FailureKind::Transient, "{code}");
        }
        for code in [500, 530, 535, 550, 552, 553, 554] {
            assert_eq!(reply(code).kind(), FailureKind::Permanent, "{code}");
        }
    }

    #[test]
    fn network_failures_are_transient() {
        let failures = [
            SmtpFailure::Connect {
                detail: "refused".into(),
            },
            SmtpFailure::Timeout {
                detail: "connect".into(),
            },
            SmtpFailure::Tls {
                detail: "handshake".into(),
            },
            SmtpFailure::Network {
                detail: "reset".into(),
            },
            SmtpFailure::TokenUnavailable {
                status: Some(503),
                detail: "down".into(),
            },
            SmtpFailure::TokenUnavailable {
                status: None,
                detail: "refused".into(),
            },
        ];
        for failure in failures {
            assert_eq!(failure.kind(), FailureKind::Transient, "{failure}");
        }
    }

    #[test]
    fn rejected_credentials_are_permanent_and_trigger_one_refresh() {
        let challenge = SmtpFailure::AuthChallenge {
            detail: "334".into(),
        };
        assert_eq!(challenge.kind(), FailureKind::Permanent);
        assert!(challenge.is_rejected_credentials());
        assert!(reply(535).is_rejected_credentials());
        assert_eq!(reply(535).code(), ErrorCode::AuthRejected);
        assert!(!reply(550).is_rejected_credentials());
        assert!(!reply(454).is_rejected_credentials());
        let refused = SmtpFailure::TokenRejected {
            status: 401,
            detail: "invalid_client".into(),
        };
        assert_eq!(refused.kind(), FailureKind::Permanent);
        assert_eq!(refused.status(), Some(401));
    }

    #[test]
    fn script_error_shape() {
        let error = NotifyError::Rejected {
            list: "Ops".into(),
            failure: reply(550),
        };
        let value = error.to_json();
        assert_eq!(value["kind"], "permanent");
        assert_eq!(value["code"], "smtp_reply");
        assert_eq!(value["status"], 550);
        assert!(value["message"].as_str().unwrap().contains("550"));
        let unknown = NotifyError::UnknownList {
            list: "Op".into(),
            suggestion: Some("Ops".into()),
        };
        assert_eq!(unknown.to_json()["kind"], "not_found");
        assert!(unknown.to_string().contains("did you mean `Ops`"));
        assert_eq!(unknown.to_json()["status"], Value::Null);
    }
}
