//! The settings of the Notify module, resolved from the deployment: the SMTP server, how to
//! authenticate, how long to wait, how many connections, how to retry, and the notification
//! lists.
//!
//! These are plain values with every default applied and every secret already read from its
//! environment variable. Secrets live in [`Secret`], whose `Debug` and `Display` print `***`,
//! so settings can be logged whole without leaking one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::classify::NotifyError;

/// The connection timeout when the deployment gives none (CD-NS-7).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent SMTP connections when the deployment gives no number (CD-NS-7).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 5;
/// Retries after the first attempt when the deployment gives no `retry` table.
pub const DEFAULT_MAX_RETRIES: u32 = 10;
/// Time between retries when the deployment gives no `retry` table.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// The OAuth2 scope for SMTP on Microsoft 365, used when the deployment gives none.
pub const DEFAULT_OAUTH2_SCOPE: &str = "https://outlook.office365.com/.default";

/// The Microsoft identity platform's token endpoint for a tenant: the default `token_url`.
pub fn microsoft_token_url(tenant_id: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token")
}

/// A secret value (a password, a client secret, an access token). Its `Debug` and `Display`
/// print `***`; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// No TLS at all (port 25 inside a plant network, test servers).
    None,
    /// A plain connection upgraded with `STARTTLS` before anything else is sent; a server
    /// that does not offer it is an error, never a silent fallback to clear text.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

impl TlsMode {
    /// The name used in the deployment file.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::Starttls => "starttls",
            TlsMode::Implicit => "ssl",
        }
    }
}

/// OAuth2 client credentials (Microsoft 365), sent to the SMTP server as XOAUTH2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Settings {
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The token endpoint; defaults to [`microsoft_token_url`] for the tenant.
    pub token_url: String,
    /// The scope asked for; defaults to [`DEFAULT_OAUTH2_SCOPE`].
    pub scope: String,
    /// The XOAUTH2 user: the mailbox that sends, which is the from address.
    pub username: String,
}

/// How to log in to the SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpAuth {
    /// No `AUTH` command (a relay that trusts the network).
    None,
    /// User name and password, sent with PLAIN (or LOGIN when the server offers only that).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 access token from the client-credentials grant, sent with XOAUTH2.
    OAuth2(OAuth2Settings),
}

/// How long to wait before each retry of a buffered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDelays {
    /// The same interval before every retry (the seed's "fixed time between retries").
    Fixed(Duration),
    /// Retry `n` waits entry `n - 1`; the last entry repeats. Never empty.
    Schedule(Vec<Duration>),
}

/// The retry settings of buffered notifications (`[smtp] retry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Retries after the first attempt; after the last one the notification is parked.
    pub max_retries: u32,
    /// The wait before each retry.
    pub delays: RetryDelays,
}

impl Default for RetrySettings {
    fn default() -> RetrySettings {
        RetrySettings {
            max_retries: DEFAULT_MAX_RETRIES,
            delays: RetryDelays::Fixed(DEFAULT_RETRY_INTERVAL),
        }
    }
}

/// Everything the module needs to reach the SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// Host name or IP address of the server; also the name its certificate must carry.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Connection protection.
    pub tls: TlsMode,
    /// The sender address: in `From`, in `To`, and in `MAIL FROM`.
    pub from: String,
    /// The longest wait for each step: a free connection, connecting (TCP, TLS, greeting,
    /// login), and sending one message.
    pub timeout: Duration,
    /// The most SMTP connections open at once (at least 1).
    pub max_connections: u32,
    /// How to log in.
    pub auth: SmtpAuth,
    /// Retry settings of buffered notifications.
    pub retry: RetrySettings,
    /// Extra trusted root certificates (PEM files), besides the built-in public roots.
    pub trusted_roots: Vec<PathBuf>,
}

/// The notification lists of the deployment: list name to recipient addresses, in the order
/// the deployment gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationLists {
    lists: BTreeMap<String, Vec<String>>,
}

impl NotificationLists {
    /// Lists from name-to-recipients pairs.
    pub fn new(lists: BTreeMap<String, Vec<String>>) -> NotificationLists {
        NotificationLists { lists }
    }

    /// The recipients of a list. An unknown list is a `not_found` error that suggests the
    /// nearest defined name; an empty list is a `permanent` error (a notification nobody
    /// receives is a deployment mistake the script author should hear about).
    pub fn recipients(&self, name: &str) -> Result<&[String], NotifyError> {
        match self.lists.get(name) {
            Some(recipients) if recipients.is_empty() => Err(NotifyError::EmptyList {
                list: name.to_owned(),
            }),
            Some(recipients) => Ok(recipients),
            None => Err(NotifyError::UnknownList {
                list: name.to_owned(),
                suggestion: scl_lang::suggest::nearest(name, self.lists.keys().map(String::as_str))
                    .map(str::to_owned),
            }),
        }
    }

    /// The list names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.lists.keys().map(String::as_str)
    }

    /// Every list with its recipients.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.lists
            .iter()
            .map(|(name, recipients)| (name.as_str(), recipients.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let auth = SmtpAuth::Basic {
            username: "alice".to_owned(),
            password: Secret::new("hunter2"),
        };
        let printed = format!("{auth:?} {}", Secret::new("hunter2"));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("***"));
    }

    #[test]
    fn unknown_list_suggests_the_nearest_name() {
        let lists = NotificationLists::new(BTreeMap::from([
            ("Operators".to_owned(), vec!["op@plant.example".to_owned()]),
            ("Managers".to_owned(), vec!["boss@plant.example".to_owned()]),
        ]));
        match lists.recipients("Operator") {
            Err(NotifyError::UnknownList { list, suggestion }) => {
                assert_eq!(list, "Operator");
                assert_eq!(suggestion.as_deref(), Some("Operators"));
            }
            other => panic!("expected an unknown-list error, got {other:?}"),
        }
        assert_eq!(
            lists.recipients("Managers").unwrap(),
            ["boss@plant.example"]
        );
    }

    #[test]
    fn an_empty_list_is_an_error() {
        let lists = NotificationLists::new(BTreeMap::from([("Nobody".to_owned(), vec![])]));
        assert!(matches!(
            lists.recipients("Nobody"),
            Err(NotifyError::EmptyList { .. })
        ));
    }

    #[test]
    fn microsoft_token_url_names_the_tenant() {
        assert_eq!(
            microsoft_token_url("contoso"),
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
        );
    }
}
