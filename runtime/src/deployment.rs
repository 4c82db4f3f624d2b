//! The deployment file: one TOML file that describes a whole installation
//! (see `docs/deployment.md`).
//!
//! Loading has two steps: serde reads the TOML into typed definitions (an
//! unknown key or a value of the wrong type is an error with its line and
//! column), then [`Deployment::validate`] checks the references between
//! sections (an instance's template and site, an API method's keys, …), again
//! naming the file position. Paths in the file are relative to the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use scl_lang::modules::{DeploymentNames, ScriptKind, TemplateNames};

/// A deployment file, read and validated.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The file it was read from; script paths are relative to its folder.
    pub path: PathBuf,
    pub source: String,
    pub file: DeploymentFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentFile {
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    #[serde(default)]
    pub central: Option<CentralDef>,
    #[serde(default)]
    pub site: Vec<SiteDef>,
    #[serde(default)]
    pub smtp: Option<SmtpDef>,
    #[serde(default)]
    pub notification_lists: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub external_systems: BTreeMap<String, ExternalSystemDef>,
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseDef>,
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateDef>,
    #[serde(default)]
    pub instance: Vec<InstanceDef>,
    #[serde(default)]
    pub shared_scripts: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub api_keys: BTreeMap<String, ApiKeyDef>,
    #[serde(default)]
    pub api_methods: BTreeMap<String, ApiMethodDef>,
    /// Keys for central's admin routes (`GET /admin/failures`), hashed like API keys.
    #[serde(default)]
    pub admin_keys: BTreeMap<String, ApiKeyDef>,
    /// Every node's execution log ([`crate::runs`]).
    #[serde(default)]
    pub execution_log: ExecutionLogDef,
    /// Connected apps: OAuth2 client-credentials callers of the inbound API.
    #[serde(default)]
    pub apps: BTreeMap<String, AppDef>,
    /// Webhooks: outbound subscriptions to runtime events ([`crate::webhooks`]).
    #[serde(default)]
    pub webhook: Vec<WebhookDef>,
}

/// `[[webhook]]`: an outbound subscription to runtime events, delivered
/// through store-and-forward (see `docs/api.md`, "Webhooks").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDef {
    /// The subscription's name: letters, digits, `-` and `_`.
    pub name: Spanned<String>,
    /// Where events are POSTed (`http` or `https`).
    pub url: Spanned<String>,
    /// The event types delivered (`attribute_changed`, `alarm_raised`, ...).
    pub events: Vec<Spanned<String>>,
    /// Extra request headers (values are not secret: they are in the file).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// An SCL boolean expression over `event: json`; events for which it is
    /// not `true` are not delivered.
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
    /// The environment variable holding the Standard Webhooks secret
    /// (`whsec_` + base64).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Retry policy; default `backoff_s = [10, 60, 300]`.
    #[serde(default)]
    pub retry: Option<Spanned<WebhookRetryDef>>,
    /// Only events of these instances (attribute, alarm and script events).
    #[serde(default)]
    pub instances: Vec<Spanned<String>>,
    /// Only `attribute_changed` events of these attributes.
    #[serde(default)]
    pub attributes: Vec<Spanned<String>>,
    /// Time limit of one delivery attempt; default 10 s.
    #[serde(default = "default_webhook_timeout_s")]
    pub timeout_s: u64,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_webhook_timeout_s() -> u64 {
    10
}

/// A webhook's `retry`: `{ backoff_s = [...] }` (retries = the schedule's
/// length unless `max_retries` says otherwise; the last delay repeats) or
/// `{ max_retries = N, interval_s = S }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRetryDef {
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub interval_s: Option<u64>,
    #[serde(default)]
    pub backoff_s: Option<Vec<u64>>,
}

impl WebhookRetryDef {
    /// The store-and-forward policy, or what is wrong with the table.
    pub fn policy(&self) -> Result<crate::saf::RetryPolicy, String> {
        use std::time::Duration;
        match (&self.backoff_s, self.interval_s, self.max_retries) {
            (Some(_), Some(_), _) => {
                Err("give either `backoff_s` or `interval_s`, not both".to_owned())
            }
            (Some(schedule), None, max_retries) => {
                if schedule.is_empty() {
                    return Err("`backoff_s` needs at least one delay".to_owned());
                }
                let delays: Vec<Duration> =
                    schedule.iter().map(|s| Duration::from_secs(*s)).collect();
                let retries = max_retries.unwrap_or(schedule.len() as u32);
                Ok(crate::saf::RetryPolicy::schedule(retries, &delays))
            }
            (None, Some(interval), Some(max_retries)) => Ok(crate::saf::RetryPolicy::fixed(
                max_retries,
                Duration::from_secs(interval),
            )),
            (None, Some(_), None) => Err("`interval_s` needs `max_retries`".to_owned()),
            (None, None, _) => {
                Err("give `backoff_s = [...]` or `max_retries` with `interval_s`".to_owned())
            }
        }
    }
}

/// The default webhook retry policy (seed 004): retries after 10 s, 60 s and 300 s.
pub fn default_webhook_policy() -> crate::saf::RetryPolicy {
    use std::time::Duration;
    crate::saf::RetryPolicy::schedule(
        3,
        &[
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(300),
        ],
    )
}

/// `[apps.NAME]`: an OAuth2 client (client credentials) allowed to call
/// some API methods with a bearer token from `POST /oauth/token`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDef {
    pub client_id: String,
    /// Hex SHA-256 of the client secret (`scl app new` prints both).
    pub secret_sha256: String,
    /// The secret before the last rotation, accepted until `previous_valid_until`.
    #[serde(default)]
    pub previous_secret_sha256: Option<String>,
    /// RFC 3339 end of the rotation's overlap window.
    #[serde(default)]
    pub previous_valid_until: Option<String>,
    /// The API methods the app may call (`"*"`: all).
    pub scopes: Vec<Spanned<String>>,
    /// CIDR ranges the app may call from (none: anywhere).
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// Calls per hour and central node; none (the default): no limit.
    #[serde(default)]
    pub rate_limit_per_hour: Option<u64>,
    /// Lifetime of an issued token; default 900 s.
    #[serde(default = "default_token_ttl_s")]
    pub token_ttl_s: u64,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_token_ttl_s() -> u64 {
    900
}

/// `[execution_log]`: how long every node keeps its rows of script runs, and
/// how much of a run's log output a row keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionLogDef {
    /// Days a row is kept; default 7.
    #[serde(default = "default_run_retention_days")]
    pub retention_days: u64,
    /// Log lines kept per run; default 50.
    #[serde(default = "default_max_log_lines")]
    pub max_log_lines: usize,
}

impl Default for ExecutionLogDef {
    fn default() -> ExecutionLogDef {
        ExecutionLogDef {
            retention_days: default_run_retention_days(),
            max_log_lines: default_max_log_lines(),
        }
    }
}

fn default_run_retention_days() -> u64 {
    7
}

fn default_max_log_lines() -> usize {
    50
}

impl ExecutionLogDef {
    /// The retention as a duration.
    pub fn retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.retention_days.saturating_mul(86_400))
    }
}

fn default_data_dir() -> String {
    "./scl-data".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralDef {
    pub listen: String,
    /// Largest request body the inbound API accepts (bytes); default 1 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// How long the failures log keeps a failed call (days); default 30.
    #[serde(default = "default_failure_retention_days")]
    pub failure_retention_days: u64,
    /// How long a client may take to send a request's headers (seconds);
    /// default 10. Slower connections are closed (slowloris).
    #[serde(default = "default_header_read_timeout_s")]
    pub header_read_timeout_s: u64,
    /// How long a client may take to send a request's body (seconds);
    /// default 30. A slower body is answered 408 `request_timeout`.
    #[serde(default = "default_body_read_timeout_s")]
    pub body_read_timeout_s: u64,
    /// The environment variable with the key that signs OAuth2 tokens; every
    /// central node needs the same one.
    #[serde(default)]
    pub token_key_env: Option<String>,
    /// Records of a bulk job run between two progress commits; default 200.
    #[serde(default = "default_bulk_batch_size")]
    pub bulk_batch_size: usize,
    /// Central's URL as the sites reach it; needed by a pair with `witness = "central"`.
    #[serde(default)]
    pub url: Option<String>,
    /// Days a finished bulk job (and its results) is kept; default 7.
    /// Fractions are allowed (`0.5` is twelve hours).
    #[serde(default = "default_bulk_retention_days")]
    pub bulk_retention_days: f64,
}

fn default_bulk_retention_days() -> f64 {
    7.0
}

impl CentralDef {
    /// How long finished bulk jobs are kept.
    pub fn bulk_retention(&self) -> std::time::Duration {
        let days = self.bulk_retention_days;
        if days.is_finite() && days >= 0.0 {
            std::time::Duration::try_from_secs_f64(days * 86_400.0)
                .unwrap_or(std::time::Duration::MAX)
        } else {
            std::time::Duration::from_secs(7 * 86_400)
        }
    }
}

fn default_bulk_batch_size() -> usize {
    200
}

fn default_header_read_timeout_s() -> u64 {
    10
}

fn default_body_read_timeout_s() -> u64 {
    30
}

fn default_max_body_bytes() -> u64 {
    1024 * 1024
}

fn default_failure_retention_days() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteDef {
    pub name: Spanned<String>,
    pub listen: String,
    pub url: String,
    pub token_env: Option<String>,
    /// The replication link address of this (primary) node; required with `standby`.
    pub link: Option<Spanned<String>>,
    /// The standby node of an active/standby pair (`docs/reliability.md`, site failover).
    pub standby: Option<Spanned<StandbyDef>>,
    /// `sync` (default) or `async`; only with `standby`.
    pub replication: Option<Spanned<ReplicationMode>>,
    /// Silence of the active after which the standby takes over (default 3,000 ms).
    pub takeover_after_ms: Option<Spanned<u64>>,
    /// Who confirms a takeover: `none` (default) or `central`.
    pub witness: Option<Spanned<WitnessMode>>,
    /// With `witness = "central"`: whether a silent active is taken over when central
    /// cannot be asked either (default true: the site keeps running on its own).
    pub takeover_without_witness: Option<Spanned<bool>>,
}

/// Who confirms that a silent active is really gone before the standby takes over.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WitnessMode {
    /// The standby takes over on the silence of the link alone.
    None,
    /// The standby first asks central whether central still reaches the active.
    Central,
}

impl SiteDef {
    /// The takeover time of a pair.
    pub fn takeover_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.takeover_after_ms
                .as_ref()
                .map_or(DEFAULT_TAKEOVER_AFTER_MS, |ms| *ms.get_ref()),
        )
    }

    /// Whether central is asked before a takeover.
    pub fn witness_is_central(&self) -> bool {
        self.witness
            .as_ref()
            .is_some_and(|mode| *mode.get_ref() == WitnessMode::Central)
    }

    /// Whether a takeover goes ahead when the witness cannot be asked (default true).
    pub fn takeover_without_witness(&self) -> bool {
        self.takeover_without_witness
            .as_ref()
            .is_none_or(|yes| *yes.get_ref())
    }

    /// Whether the pair replicates synchronously (the default).
    pub fn replication_is_sync(&self) -> bool {
        self.replication
            .as_ref()
            .is_none_or(|mode| *mode.get_ref() == ReplicationMode::Sync)
    }
}

/// The default of `takeover_after_ms`.
pub const DEFAULT_TAKEOVER_AFTER_MS: u64 = 3000;
/// The smallest `takeover_after_ms` accepted: shorter would take over on a scheduling hiccup.
pub const MIN_TAKEOVER_AFTER_MS: u64 = 300;

/// The standby node of a site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyDef {
    pub listen: String,
    pub url: String,
    /// Its replication link address (where the active connects).
    pub link: String,
    /// The address it listens on for the link when that differs from `link` (a NAT or a
    /// proxy in front of it); default `link`.
    #[serde(default)]
    pub link_listen: Option<String>,
}

/// When the active acknowledges a buffered message.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    /// After the standby committed it too (while the standby is connected).
    Sync,
    /// After the local commit; the standby follows shortly after.
    Async,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    None,
    Starttls,
    Ssl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpDef {
    pub host: String,
    pub port: u16,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    pub from: String,
    #[serde(default = "default_smtp_timeout")]
    pub timeout_s: u64,
    #[serde(default = "default_smtp_connections")]
    pub max_connections: u32,
    #[serde(default)]
    pub auth: Option<SmtpAuthDef>,
    #[serde(default)]
    pub retry: Option<RetryDef>,
    /// Extra trusted root certificates (PEM files), relative to the deployment file.
    #[serde(default)]
    pub trusted_roots: Vec<String>,
}

fn default_tls() -> TlsMode {
    TlsMode::None
}
fn default_smtp_timeout() -> u64 {
    30
}
fn default_smtp_connections() -> u32 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SmtpAuthDef {
    None,
    Basic {
        username: String,
        password_env: String,
    },
    Oauth2 {
        tenant_id: String,
        client_id: String,
        client_secret_env: String,
        token_url: Option<String>,
        scope: Option<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    /// How many retries after the first attempt before the message is parked.
    pub max_retries: u32,
    /// Fixed interval between retries, when no `backoff_s` schedule is given.
    #[serde(default)]
    pub interval_s: Option<u64>,
    /// A backoff schedule: the wait before retry 1, 2, …; the last entry repeats.
    #[serde(default)]
    pub backoff_s: Option<Vec<u64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSystemDef {
    pub base_url: String,
    #[serde(default = "default_http_timeout")]
    pub timeout_s: u64,
    #[serde(default)]
    pub auth: Option<HttpAuthDef>,
    #[serde(default)]
    pub retry: Option<RetryDef>,
    #[serde(default)]
    pub methods: BTreeMap<String, ExternalMethodDef>,
    /// Standard Webhooks signing secrets (environment variable names); the
    /// first signs, all are sent, so receivers can rotate.
    #[serde(default)]
    pub signing_secrets_env: Vec<String>,
    /// Largest request body accepted before any attempt; default 1 MiB.
    #[serde(default)]
    pub max_payload_bytes: Option<u64>,
}

fn default_http_timeout() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuthDef {
    None,
    ApiKey {
        header: String,
        value_env: String,
    },
    Basic {
        username: String,
        password_env: String,
    },
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpVerb {
    Get,
    Post,
    Put,
    Delete,
    Patch,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalMethodDef {
    pub http: HttpVerb,
    pub path: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseDriver {
    Sqlite,
    Postgres,
    Mssql,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseDef {
    pub driver: DatabaseDriver,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub retry: Option<RetryDef>,
    #[serde(default)]
    pub pool_size: Option<u32>,
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDef {
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeDef>,
    #[serde(default)]
    pub scripts: BTreeMap<String, ScriptDef>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttributeType {
    Int,
    Float,
    Bool,
    String,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeDef {
    #[serde(rename = "type")]
    pub ty: AttributeType,
    #[serde(default)]
    pub default: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptDef {
    pub file: Spanned<String>,
    pub kind: Spanned<String>,
    /// Run every N seconds.
    #[serde(default)]
    pub every_s: Option<u64>,
    /// Run when one of these attributes changes.
    #[serde(default)]
    pub on_change: Vec<String>,
    /// For `alarm` scripts: the condition over attributes that raises the alarm.
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// `main`'s parameters for the runs the site starts itself (interval,
    /// on-change and alarm triggers).
    #[serde(default)]
    pub args: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceDef {
    pub code: Spanned<String>,
    pub template: Spanned<String>,
    pub site: Spanned<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyDef {
    /// Hex SHA-256 of the key.
    pub sha256: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

/// Names under `/api/` that are routes of their own, so no method may take them.
pub const RESERVED_METHOD_NAMES: [&str; 4] = ["composite", "bulk", "deliveries", "openapi.json"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiMethodDef {
    pub script: Spanned<String>,
    #[serde(default)]
    pub approved_keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

/// A problem in a deployment file, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for DeploymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for DeploymentError {}

/// The result of loading: a deployment, or every problem found.
pub type LoadResult = Result<Deployment, Vec<DeploymentError>>;

impl Deployment {
    /// Reads, parses and validates a deployment file.
    pub fn load(path: &Path) -> LoadResult {
        let bytes = std::fs::read(path).map_err(|error| {
            vec![DeploymentError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the deployment file: {error}"),
            }]
        })?;
        let source = String::from_utf8(bytes).map_err(|error| {
            // Name the position of the first bad byte, as for any other mistake.
            let valid = error.utf8_error().valid_up_to();
            let bytes = error.as_bytes();
            let text = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
            let (line, column) = scl_lang::span::line_column(text, valid);
            vec![DeploymentError {
                file: path.to_path_buf(),
                line,
                column,
                message: format!(
                    "the deployment file is not UTF-8 text (byte 0x{:02x} at offset {valid})",
                    bytes[valid]
                ),
            }]
        })?;
        Deployment::from_source(path, source)
    }

    /// Parses and validates deployment text that was read from `path`.
    pub fn from_source(path: &Path, source: String) -> LoadResult {
        let file: DeploymentFile = match toml::from_str(&source) {
            Ok(file) => file,
            Err(error) => {
                let offset = error.span().map_or(0, |s| s.start);
                let (line, column) = scl_lang::span::line_column(&source, offset);
                return Err(vec![DeploymentError {
                    file: path.to_path_buf(),
                    line,
                    column,
                    message: error.message().trim().to_string(),
                }]);
            }
        };
        let deployment = Deployment {
            path: path.to_path_buf(),
            source,
            file,
        };
        let errors = deployment.validate();
        if errors.is_empty() {
            Ok(deployment)
        } else {
            Err(errors)
        }
    }

    fn error_at(&self, offset: usize, message: String) -> DeploymentError {
        let (line, column) = scl_lang::span::line_column(&self.source, offset);
        DeploymentError {
            file: self.path.clone(),
            line,
            column,
            message,
        }
    }

    /// The keys of an active/standby pair go together.
    fn validate_failover(&self, site: &SiteDef) -> Vec<DeploymentError> {
        let name = site.name.get_ref();
        let mut errors = Vec::new();
        match (&site.standby, &site.link) {
            (Some(standby), None) => errors.push(self.error_at(
                standby.span().start,
                format!(
                    "site `{name}` has a `standby` but no `link`: the primary node's \
                     replication address (e.g. `link = \"10.0.0.1:7201\"`)"
                ),
            )),
            (Some(standby), Some(link)) => {
                if standby.get_ref().link == *link.get_ref() {
                    errors.push(self.error_at(
                        standby.span().start,
                        format!(
                            "site `{name}`: the standby's `link` is the primary's `link` \
                             (`{}`); each node needs its own",
                            link.get_ref()
                        ),
                    ));
                }
                if standby.get_ref().listen == site.listen {
                    errors.push(self.error_at(
                        standby.span().start,
                        format!(
                            "site `{name}`: the standby's `listen` is the primary's (`{}`)",
                            site.listen
                        ),
                    ));
                }
            }
            (None, _) => {
                let lone = [
                    site.link.as_ref().map(|key| ("link", key.span().start)),
                    site.replication
                        .as_ref()
                        .map(|key| ("replication", key.span().start)),
                    site.takeover_after_ms
                        .as_ref()
                        .map(|key| ("takeover_after_ms", key.span().start)),
                    site.witness
                        .as_ref()
                        .map(|key| ("witness", key.span().start)),
                ];
                for (key, offset) in lone.into_iter().flatten() {
                    errors.push(self.error_at(
                        offset,
                        format!("site `{name}`: `{key}` needs a `standby` node"),
                    ));
                }
            }
        }
        if let Some(key) = &site.takeover_without_witness
            && !site.witness_is_central()
        {
            errors.push(self.error_at(
                key.span().start,
                format!("site `{name}`: `takeover_without_witness` needs `witness = \"central\"`"),
            ));
        }
        if let Some(witness) = &site.witness
            && site.witness_is_central()
            && self
                .file
                .central
                .as_ref()
                .is_none_or(|central| central.url.is_none())
        {
            errors.push(self.error_at(
                witness.span().start,
                format!(
                    "site `{name}`: `witness = \"central\"` needs central's URL as the sites \
                     reach it (`[central] url = \"http://10.0.0.9:8080\"`)"
                ),
            ));
        }
        if let Some(takeover) = &site.takeover_after_ms
            && *takeover.get_ref() < MIN_TAKEOVER_AFTER_MS
        {
            errors.push(self.error_at(
                takeover.span().start,
                format!(
                    "site `{name}`: `takeover_after_ms` is {}; it must be at least \
                     {MIN_TAKEOVER_AFTER_MS}",
                    takeover.get_ref()
                ),
            ));
        }
        errors
    }

    /// Checks the references between sections.
    pub fn validate(&self) -> Vec<DeploymentError> {
        let file = &self.file;
        let mut errors = Vec::new();
        let site_names: Vec<&str> = file
            .site
            .iter()
            .map(|s| s.name.get_ref().as_str())
            .collect();
        for (index, site) in file.site.iter().enumerate() {
            if site_names[..index].contains(&site.name.get_ref().as_str()) {
                errors.push(self.error_at(
                    site.name.span().start,
                    format!("site `{}` is defined twice", site.name.get_ref()),
                ));
            }
            errors.extend(self.validate_failover(site));
        }
        for (template_name, template) in &file.templates {
            for (script_name, script) in &template.scripts {
                match ScriptKind::parse(script.kind.get_ref()) {
                    Some(ScriptKind::Instance | ScriptKind::Alarm) => {}
                    Some(other) => errors.push(self.error_at(
                        script.kind.span().start,
                        format!(
                            "script `{script_name}` of template `{template_name}` has kind `{}`; \
                             template scripts are `instance` or `alarm`",
                            other.name()
                        ),
                    )),
                    None => errors.push(self.error_at(
                        script.kind.span().start,
                        format!(
                            "unknown script kind `{}`; expected `instance` or `alarm`",
                            script.kind.get_ref()
                        ),
                    )),
                }
                for attribute in &script.on_change {
                    if !template.attributes.contains_key(attribute) {
                        errors.push(self.error_at(
                            script.kind.span().start,
                            format!(
                                "script `{script_name}` triggers on change of `{attribute}`, \
                                 which template `{template_name}` does not define"
                            ),
                        ));
                    }
                }
            }
        }
        let mut codes: Vec<&str> = Vec::new();
        for instance in &file.instance {
            let code = instance.code.get_ref().as_str();
            if codes.contains(&code) {
                errors.push(self.error_at(
                    instance.code.span().start,
                    format!("instance `{code}` is defined twice"),
                ));
            }
            codes.push(code);
            match file.templates.get(instance.template.get_ref()) {
                None => errors.push(self.error_at(
                    instance.template.span().start,
                    format!(
                        "instance `{code}` uses template `{}`, which is not defined{}",
                        instance.template.get_ref(),
                        suggestion(instance.template.get_ref(), file.templates.keys())
                    ),
                )),
                Some(template) => {
                    for attribute in instance.attributes.keys() {
                        if !template.attributes.contains_key(attribute) {
                            errors.push(self.error_at(
                                instance.template.span().start,
                                format!(
                                    "instance `{code}` sets attribute `{attribute}`, which \
                                     template `{}` does not define{}",
                                    instance.template.get_ref(),
                                    suggestion(attribute, template.attributes.keys())
                                ),
                            ));
                        }
                    }
                }
            }
            if !site_names.contains(&instance.site.get_ref().as_str()) {
                errors.push(self.error_at(
                    instance.site.span().start,
                    format!(
                        "instance `{code}` is placed on site `{}`, which is not defined{}",
                        instance.site.get_ref(),
                        suggestion(instance.site.get_ref(), site_names.iter())
                    ),
                ));
            }
        }
        for (method_name, method) in &file.api_methods {
            if RESERVED_METHOD_NAMES.contains(&method_name.as_str()) {
                errors.push(self.error_at(
                    method.script.span().start,
                    format!(
                        "API method name `{method_name}` is reserved: `/api/{method_name}` is a route of its own"
                    ),
                ));
            }
            for key in &method.approved_keys {
                if !file.api_keys.contains_key(key.get_ref()) {
                    errors.push(self.error_at(
                        key.span().start,
                        format!(
                            "API method `{method_name}` approves key `{}`, which is not defined{}",
                            key.get_ref(),
                            suggestion(key.get_ref(), file.api_keys.keys())
                        ),
                    ));
                }
            }
        }
        for (app_name, app) in &file.apps {
            for scope in &app.scopes {
                let known =
                    scope.get_ref() == "*" || file.api_methods.contains_key(scope.get_ref());
                if !known {
                    errors.push(self.error_at(
                        scope.span().start,
                        format!(
                            "app `{app_name}` has scope `{}`, which is not an API method{}",
                            scope.get_ref(),
                            suggestion(scope.get_ref(), file.api_methods.keys())
                        ),
                    ));
                }
            }
            let position = app.scopes.first().map_or(0, |s| s.span().start);
            for range in &app.allow_ips {
                if range.parse::<ipnet::IpNet>().is_err()
                    && range.parse::<std::net::IpAddr>().is_err()
                {
                    errors.push(self.error_at(
                        position,
                        format!("app `{app_name}`: `{range}` in allow_ips is not an address or a CIDR range"),
                    ));
                }
            }
            let hashes =
                std::iter::once(&app.secret_sha256).chain(app.previous_secret_sha256.iter());
            for hash in hashes {
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    errors.push(self.error_at(
                        position,
                        format!("app `{app_name}`: a secret hash must be 64 hex digits (`scl app new` prints one)"),
                    ));
                }
            }
            if let Some(until) = &app.previous_valid_until
                && chrono::DateTime::parse_from_rfc3339(until).is_err()
            {
                errors.push(self.error_at(
                    position,
                    format!(
                        "app `{app_name}`: previous_valid_until `{until}` is not an RFC 3339 time"
                    ),
                ));
            }
        }
        if let Some(central) = &file.central {
            let days = central.bulk_retention_days;
            if !days.is_finite() || days < 0.0 {
                errors.push(self.error_at(
                    0,
                    format!(
                        "[central] bulk_retention_days must be a number of days >= 0, not {days}"
                    ),
                ));
            }
        }
        self.validate_webhooks(&mut errors);
        let keys = file
            .api_keys
            .iter()
            .map(|key| ("api key", key))
            .chain(file.admin_keys.iter().map(|key| ("admin key", key)));
        for (what, (name, key)) in keys {
            let valid = key.sha256.len() == 64 && key.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                errors.push(self.error_at(
                    0,
                    format!("{what} `{name}`: `sha256` must be 64 hex digits (use `scl key new`)"),
                ));
            }
        }
        errors
    }

    fn validate_webhooks(&self, errors: &mut Vec<DeploymentError>) {
        let file = &self.file;
        let mut names: Vec<&str> = Vec::new();
        for webhook in &file.webhook {
            let name = webhook.name.get_ref().as_str();
            let at = webhook.name.span().start;
            if names.contains(&name) {
                errors.push(self.error_at(at, format!("webhook `{name}` is defined twice")));
            }
            names.push(name);
            let name_ok = !name.is_empty()
                && name.len() <= 100
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                errors.push(self.error_at(
                    at,
                    format!("webhook name `{name}` must be 1 to 100 letters, digits, `-` or `_`"),
                ));
            }
            let url_ok = url::Url::parse(webhook.url.get_ref())
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
            if !url_ok {
                errors.push(self.error_at(
                    webhook.url.span().start,
                    format!(
                        "webhook `{name}`: `{}` is not an http or https URL",
                        webhook.url.get_ref()
                    ),
                ));
            }
            if webhook.events.is_empty() {
                errors.push(self.error_at(at, format!("webhook `{name}` subscribes to no events")));
            }
            for event in &webhook.events {
                if crate::webhooks::EventType::parse(event.get_ref()).is_none() {
                    errors.push(self.error_at(
                        event.span().start,
                        format!(
                            "webhook `{name}`: unknown event `{}`; expected one of {}{}",
                            event.get_ref(),
                            crate::webhooks::EventType::names().join(", "),
                            suggestion(event.get_ref(), crate::webhooks::EventType::names().iter())
                        ),
                    ));
                }
            }
            let subscribes = |wanted: &str| webhook.events.iter().any(|e| e.get_ref() == wanted);
            for instance in &webhook.instances {
                let known = file
                    .instance
                    .iter()
                    .any(|i| i.code.get_ref() == instance.get_ref());
                if !known {
                    errors.push(self.error_at(
                        instance.span().start,
                        format!(
                            "webhook `{name}` filters on instance `{}`, which is not defined{}",
                            instance.get_ref(),
                            suggestion(
                                instance.get_ref(),
                                file.instance.iter().map(|i| i.code.get_ref())
                            )
                        ),
                    ));
                }
            }
            for attribute in &webhook.attributes {
                let known = file
                    .templates
                    .values()
                    .any(|t| t.attributes.contains_key(attribute.get_ref()));
                if !known {
                    errors.push(self.error_at(
                        attribute.span().start,
                        format!(
                            "webhook `{name}` filters on attribute `{}`, which no template defines",
                            attribute.get_ref()
                        ),
                    ));
                } else if !subscribes("attribute_changed") {
                    errors.push(self.error_at(
                        attribute.span().start,
                        format!(
                            "webhook `{name}` filters on attributes but does not subscribe to `attribute_changed`"
                        ),
                    ));
                }
            }
            for (header, value) in &webhook.headers {
                let lower = header.to_ascii_lowercase();
                let reserved = matches!(
                    lower.as_str(),
                    "webhook-id"
                        | "webhook-timestamp"
                        | "webhook-signature"
                        | "content-type"
                        | "content-length"
                        | "host"
                );
                let valid = reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_ok()
                    && reqwest::header::HeaderValue::from_str(value).is_ok();
                if reserved || !valid {
                    let why = if reserved {
                        "is set by the runtime"
                    } else {
                        "is not a valid HTTP header"
                    };
                    errors.push(
                        self.error_at(at, format!("webhook `{name}`: header `{header}` {why}")),
                    );
                }
            }
            if let Some(retry) = &webhook.retry
                && let Err(problem) = retry.get_ref().policy()
            {
                errors.push(self.error_at(
                    retry.span().start,
                    format!("webhook `{name}`: retry: {problem}"),
                ));
            }
            if webhook.timeout_s == 0 {
                errors.push(self.error_at(
                    at,
                    format!("webhook `{name}`: timeout_s must be at least 1"),
                ));
            }
            if let Some(filter) = &webhook.filter {
                for (offset, message) in crate::webhooks::check_filter(filter.get_ref()) {
                    // Offsets inside the text map into the TOML string after its opening quote
                    // (exact for strings without escapes).
                    let start = filter.span().start;
                    let rest = self.source.get(start..).unwrap_or_default();
                    let opening = if rest.starts_with("'''") || rest.starts_with("\"\"\"") {
                        3
                    } else {
                        1
                    };
                    let position = (start + opening + offset).min(filter.span().end);
                    errors.push(
                        self.error_at(position, format!("webhook `{name}`: filter: {message}")),
                    );
                }
            }
        }
    }

    /// The folder script paths are relative to.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Every script of the deployment with its kind, its path and, for
    /// template scripts, its template.
    pub fn scripts(&self) -> Vec<DeployedScript> {
        let base = self.base_dir();
        let file = &self.file;
        let mut scripts = Vec::new();
        for (template_name, template) in &file.templates {
            for (name, script) in &template.scripts {
                if let Some(kind) = ScriptKind::parse(script.kind.get_ref()) {
                    scripts.push(DeployedScript {
                        name: name.clone(),
                        kind,
                        path: base.join(script.file.get_ref()),
                        template: Some(template_name.clone()),
                        declared_at: script.file.span().start,
                    });
                }
            }
        }
        for (name, path) in &file.shared_scripts {
            scripts.push(DeployedScript {
                name: name.clone(),
                kind: ScriptKind::Shared,
                path: base.join(path.get_ref()),
                template: None,
                declared_at: path.span().start,
            });
        }
        for (name, method) in &file.api_methods {
            scripts.push(DeployedScript {
                name: name.clone(),
                kind: ScriptKind::Api,
                path: base.join(method.script.get_ref()),
                template: None,
                declared_at: method.script.span().start,
            });
        }
        scripts
    }

    /// The names scripts may refer to, for the checker.
    pub fn names(&self) -> DeploymentNames {
        let file = &self.file;
        DeploymentNames {
            external_systems: file
                .external_systems
                .iter()
                .map(|(name, system)| (name.clone(), system.methods.keys().cloned().collect()))
                .collect(),
            notification_lists: file.notification_lists.keys().cloned().collect(),
            databases: file.databases.keys().cloned().collect(),
            instances: file
                .instance
                .iter()
                .map(|i| (i.code.get_ref().clone(), i.template.get_ref().clone()))
                .collect(),
            templates: file
                .templates
                .iter()
                .map(|(name, template)| TemplateNames {
                    name: name.clone(),
                    attributes: template.attributes.keys().cloned().collect(),
                    scripts: template.scripts.keys().cloned().collect(),
                })
                .collect(),
            shared_scripts: file.shared_scripts.keys().cloned().collect(),
        }
    }

    /// Line and column of a byte offset in the deployment file.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        scl_lang::span::line_column(&self.source, offset)
    }
}

/// One script named by the deployment.
#[derive(Debug, Clone)]
pub struct DeployedScript {
    pub name: String,
    pub kind: ScriptKind,
    pub path: PathBuf,
    pub template: Option<String>,
    /// Byte offset of the script's path in the deployment file.
    pub declared_at: usize,
}

/// "; did you mean `x`?" for the nearest of `candidates`, or nothing.
fn suggestion<'a, S: AsRef<str> + ?Sized + 'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a S>,
) -> String {
    match scl_lang::suggest::nearest(name, candidates.map(|c| c.as_ref())) {
        Some(candidate) => format!("; did you mean `{candidate}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_webhooks_are_errors_at_their_position() {
        let source = "[[webhook]]\nname = \"ops\"\nurl = \"ftp://x\"\nevents = [\"alarm_raisd\"]\n\
                      filter = 'event[\"type\"] == 1 +'\nretry = { interval_s = 5 }\n\
                      attributes = [\"nope\"]\nheaders = { webhook-id = \"x\" }\n";
        let errors = Deployment::from_source(Path::new("deploy.toml"), source.to_owned())
            .expect_err("refused");
        let find = |needle: &str| {
            errors
                .iter()
                .find(|e| e.message.contains(needle))
                .unwrap_or_else(|| panic!("no error with `{needle}` in {errors:?}"))
        };
        assert_eq!(find("not an http or https URL").line, 3);
        let event = find("unknown event `alarm_raisd`");
        assert_eq!(event.line, 4);
        assert!(
            event.message.contains("did you mean `alarm_raised`?"),
            "{event}"
        );
        let filter = find("filter:");
        assert_eq!(filter.line, 5);
        assert!(filter.column > 10, "{filter}");
        assert_eq!(find("`interval_s` needs `max_retries`").line, 6);
        assert_eq!(find("attribute `nope`").line, 7);
        find("header `webhook-id` is set by the runtime");
    }

    #[test]
    fn webhook_retry_policies() {
        let policy = |text: &str| {
            let source = format!(
                "[[webhook]]\nname = \"ops\"\nurl = \"http://x/\"\nevents = [\"alarm_raised\"]\nretry = {text}\n"
            );
            let deployment =
                Deployment::from_source(Path::new("deploy.toml"), source).expect("loads");
            deployment.file.webhook[0]
                .retry
                .as_ref()
                .expect("retry")
                .get_ref()
                .policy()
                .expect("a policy")
        };
        let schedule = policy("{ backoff_s = [1, 2] }");
        assert_eq!(schedule.max_retries, 2);
        assert_eq!(
            schedule.delay_before_retry(2),
            std::time::Duration::from_secs(2)
        );
        let fixed = policy("{ max_retries = 4, interval_s = 3 }");
        assert_eq!(fixed.max_retries, 4);
        assert_eq!(
            fixed.delay_before_retry(4),
            std::time::Duration::from_secs(3)
        );
        assert_eq!(default_webhook_policy().max_retries, 3);
    }

    #[test]
    fn method_names_of_routes_are_reserved() {
        let source = "[api_keys.erp]\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n\n\
                      [api_methods.composite]\nscript = \"s.scl\"\napproved_keys = [\"erp\"]\n";
        let errors = Deployment::from_source(Path::new("deploy.toml"), source.to_owned())
            .expect_err("refused");
        let reserved: Vec<_> = errors
            .iter()
            .filter(|e| e.message.contains("`composite` is reserved"))
            .collect();
        assert_eq!(reserved.len(), 1, "{errors:?}");
        assert_eq!(
            reserved[0].to_string().split(':').nth(1),
            Some("5"),
            "{errors:?}"
        );
    }

    fn failover_errors(keys: &str) -> Vec<DeploymentError> {
        let source = format!(
            "[[site]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nurl = \"http://127.0.0.1:1\"\n{keys}"
        );
        match Deployment::from_source(Path::new("deploy.toml"), source) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }

    #[test]
    fn the_keys_of_a_pair_go_together_and_errors_name_their_line() {
        let standby = "standby = { listen = \"127.0.0.1:2\", url = \"http://127.0.0.1:2\", link = \"127.0.0.1:4\" }\n";
        assert!(failover_errors(&format!("link = \"127.0.0.1:3\"\n{standby}")).is_empty());
        let errors = failover_errors(standby);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("no `link`"), "{errors:?}");
        assert_eq!(errors[0].line, 5, "{errors:?}");
        let errors = failover_errors("takeover_after_ms = 5000\n");
        assert!(
            errors[0]
                .message
                .contains("`takeover_after_ms` needs a `standby`"),
            "{errors:?}"
        );
        let errors = failover_errors(&format!(
            "link = \"127.0.0.1:3\"\ntakeover_after_ms = 10\n{standby}"
        ));
        assert!(errors[0].message.contains("at least 300"), "{errors:?}");
        assert_eq!(errors[0].line, 6, "{errors:?}");
        let errors = failover_errors(&format!("link = \"127.0.0.1:4\"\n{standby}"));
        assert!(
            errors[0].message.contains("each node needs its own"),
            "{errors:?}"
        );
        let errors = failover_errors(&format!(
            "link = \"127.0.0.1:3\"\nreplication = \"eventually\"\n{standby}"
        ));
        assert!(errors[0].message.contains("unknown variant"), "{errors:?}");
        assert_eq!(errors[0].line, 6, "{errors:?}");
        // The witness: central needs a URL; its fallback key needs the witness.
        let errors = failover_errors(&format!(
            "link = \"127.0.0.1:3\"\nwitness = \"central\"\n{standby}"
        ));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("`[central] url"), "{errors:?}");
        assert_eq!(errors[0].line, 6, "{errors:?}");
        let errors = failover_errors(&format!(
            "link = \"127.0.0.1:3\"\ntakeover_without_witness = false\n{standby}"
        ));
        assert!(
            errors[0].message.contains("needs `witness = \"central\"`"),
            "{errors:?}"
        );
        assert_eq!(errors[0].line, 6, "{errors:?}");
        let errors = failover_errors(&format!(
            "link = \"127.0.0.1:3\"\nwitness = \"quorum\"\n{standby}"
        ));
        assert!(errors[0].message.contains("unknown variant"), "{errors:?}");
        assert_eq!(errors[0].line, 6, "{errors:?}");
        let central = Deployment::from_source(
            Path::new("deploy.toml"),
            format!(
                "[central]\nlisten = \"127.0.0.1:9\"\nurl = \"http://127.0.0.1:9\"\n\
                 [[site]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nurl = \"http://127.0.0.1:1\"\n\
                 link = \"127.0.0.1:3\"\nwitness = \"central\"\ntakeover_without_witness = false\n{standby}"
            ),
        );
        let site = &central.expect("a valid pair with a witness").file.site[0];
        assert!(site.witness_is_central() && !site.takeover_without_witness());
    }
}
