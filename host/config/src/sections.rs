//! The small local-only sections: `log`, `restapi`, `ctl`, `watchdog`, and the address type
//! they share.
//!
//! These are read by the daemon's edges (logging setup, the REST server, outbound REST calls,
//! the watchdog device), never by the HA logic, so they are plain data with Patroni's defaults
//! filled in. Addresses are parsed here once so that nobody downstream splits `host:port`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use crate::ConfigError;
use crate::check::{Ctx, int_in, one_of, path, required, text};
use crate::error::join;
use crate::lenient::Text;
use crate::raw::{RawCredentials, RawCtl, RawLog, RawRestApi, RawWatchdog};

/// A `host:port` address. The host may be empty for a listen address (all interfaces) and is
/// stored without IPv6 brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port` or `[v6]:port`; `key` is the path used in errors.
    pub fn parse(value: &str, key: &str, host_required: bool) -> Result<Self, ConfigError> {
        let (hosts, port) = split_host_port(value, key)?;
        let host = hosts
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host_required && host.is_empty() || host.contains(',') {
            return Err(bad_address(key, value));
        }
        Ok(Self { host, port })
    }
}

/// Splits at the last `:` and parses the port; the error is the one every address key shares.
pub(crate) fn split_host_port<'a>(
    value: &'a str,
    key: &str,
) -> Result<(&'a str, u16), ConfigError> {
    let (host, port) = value
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| bad_address(key, value))?;
    match port.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok((host.trim(), port)),
        _ => Err(bad_address(key, value)),
    }
}

pub(crate) fn bad_address(key: &str, value: &str) -> ConfigError {
    ConfigError::invalid(key, format!("expected host:port, got {value:?}"))
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A username and password for HTTP basic authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

pub(crate) fn credentials(
    raw: Option<RawCredentials>,
    key: &str,
    ctx: &mut Ctx,
) -> Result<Option<Credentials>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    ctx.unknown_keys(key, &raw.extra);
    Ok(Some(Credentials {
        username: required(raw.username, &join(key, "username"))?,
        password: required(raw.password, &join(key, "password"))?,
    }))
}

/// Python-style log levels as Patroni names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `DEBUG`.
    Debug,
    /// `INFO`.
    Info,
    /// `WARNING` (also `WARN`).
    Warning,
    /// `ERROR`.
    Error,
    /// `CRITICAL` (also `FATAL`).
    Critical,
}

const LEVELS: &[(&str, LogLevel)] = &[
    ("debug", LogLevel::Debug),
    ("info", LogLevel::Info),
    ("warning", LogLevel::Warning),
    ("warn", LogLevel::Warning),
    ("error", LogLevel::Error),
    ("critical", LogLevel::Critical),
    ("fatal", LogLevel::Critical),
];

/// `log`: how Keel writes its own log.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LogSettings {
    /// `type: json` (true) or `plain` (false, the default).
    pub json: bool,
    /// `level`, default `INFO`.
    pub level: LogLevel,
    /// `traceback_level`, default `ERROR`.
    pub traceback_level: LogLevel,
    /// `format`: a format string, or for JSON logs a list of fields; kept as given.
    pub format: Option<Value>,
    /// `dateformat`.
    pub dateformat: Option<String>,
    /// `static_fields`, added to every JSON log record.
    pub static_fields: BTreeMap<String, String>,
    /// `max_queue_size`, default 1000.
    pub max_queue_size: u32,
    /// `dir`: log to files in this directory instead of stderr.
    pub dir: Option<PathBuf>,
    /// `file_num`: number of rotated files kept, default 4.
    pub file_num: u32,
    /// `file_size` in bytes, default 25000000.
    pub file_size: u64,
    /// `mode`: file permissions (0–511).
    pub mode: Option<u32>,
    /// `loggers`: per-logger levels.
    pub loggers: BTreeMap<String, String>,
    /// `deduplicate_heartbeat_logs`, default false.
    pub deduplicate_heartbeat_logs: bool,
}

fn level(value: Option<Text>, key: &str, default: LogLevel) -> Result<LogLevel, ConfigError> {
    text(value).map_or(Ok(default), |v| one_of(&v, key, LEVELS))
}

fn strings(map: Option<BTreeMap<String, Text>>) -> BTreeMap<String, String> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

pub(crate) fn log(raw: RawLog, ctx: &mut Ctx) -> Result<LogSettings, ConfigError> {
    ctx.unknown_keys("log", &raw.extra);
    let json = match text(raw.kind) {
        None => false,
        Some(v) => one_of(&v, "log.type", &[("plain", false), ("json", true)])?,
    };
    Ok(LogSettings {
        json,
        level: level(raw.level, "log.level", LogLevel::Info)?,
        traceback_level: level(raw.traceback_level, "log.traceback_level", LogLevel::Error)?,
        format: raw.format.filter(|v| !v.is_null()),
        dateformat: text(raw.dateformat),
        static_fields: strings(raw.static_fields),
        max_queue_size: int_in(raw.max_queue_size, "log.max_queue_size", 1, u32::MAX.into())?
            .unwrap_or(1000),
        dir: path(raw.dir),
        file_num: int_in(raw.file_num, "log.file_num", 1, u32::MAX.into())?.unwrap_or(4),
        file_size: raw.file_size.map_or(25_000_000, |b| b.0),
        mode: int_in(raw.mode, "log.mode", 0, 511)?,
        loggers: strings(raw.loggers),
        deduplicate_heartbeat_logs: raw.deduplicate_heartbeat_logs.is_some_and(|f| f.0),
    })
}

/// `restapi.verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    /// Client certificates are not requested.
    None,
    /// Requested and verified if given.
    Optional,
    /// Required for every request.
    Required,
}

/// `restapi`: the REST server and how peers reach it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RestApiSettings {
    /// `listen` (required); an empty host means all interfaces.
    pub listen: HostPort,
    /// `connect_address` (required): published in the member key as `api_url`.
    pub connect_address: HostPort,
    /// `authentication`: basic auth required for unsafe requests.
    pub authentication: Option<Credentials>,
    /// `certfile`: enables HTTPS.
    pub certfile: Option<PathBuf>,
    /// `keyfile`.
    pub keyfile: Option<PathBuf>,
    /// `keyfile_password`.
    pub keyfile_password: Option<String>,
    /// `cafile`: CA for client certificates.
    pub cafile: Option<PathBuf>,
    /// `ciphers`.
    pub ciphers: Option<String>,
    /// `verify_client`.
    pub verify_client: Option<VerifyClient>,
    /// `allowlist`: hosts or networks allowed to make unsafe requests.
    pub allowlist: Vec<String>,
    /// `allowlist_include_members`: also allow the cluster's members.
    pub allowlist_include_members: bool,
    /// `http_extra_headers`, sent on every response.
    pub http_extra_headers: BTreeMap<String, String>,
    /// `https_extra_headers`, sent on HTTPS responses.
    pub https_extra_headers: BTreeMap<String, String>,
    /// `request_queue_size` (0–4096), default 5.
    pub request_queue_size: u32,
    /// `server_tokens` (Patroni 4.x): `original`, `productonly` or `minimal`.
    pub server_tokens: Option<String>,
    /// `thread_pool_size` (Patroni 4, min 5), default 5.
    pub thread_pool_size: u32,
}

pub(crate) fn restapi(raw: RawRestApi, ctx: &mut Ctx) -> Result<RestApiSettings, ConfigError> {
    ctx.unknown_keys("restapi", &raw.extra);
    let listen = required(raw.listen, "restapi.listen")?;
    let connect = required(raw.connect_address, "restapi.connect_address")?;
    let verify = [
        ("none", VerifyClient::None),
        ("optional", VerifyClient::Optional),
        ("required", VerifyClient::Required),
    ];
    Ok(RestApiSettings {
        listen: HostPort::parse(&listen, "restapi.listen", false)?,
        connect_address: HostPort::parse(&connect, "restapi.connect_address", true)?,
        authentication: credentials(raw.authentication, "restapi.authentication", ctx)?,
        certfile: path(raw.certfile),
        keyfile: path(raw.keyfile),
        keyfile_password: text(raw.keyfile_password),
        cafile: path(raw.cafile),
        ciphers: text(raw.ciphers),
        verify_client: text(raw.verify_client)
            .map(|v| one_of(&v, "restapi.verify_client", &verify))
            .transpose()?,
        allowlist: raw.allowlist.map(|l| l.0).unwrap_or_default(),
        allowlist_include_members: raw.allowlist_include_members.is_some_and(|f| f.0),
        http_extra_headers: strings(raw.http_extra_headers),
        https_extra_headers: strings(raw.https_extra_headers),
        request_queue_size: int_in(
            raw.request_queue_size,
            "restapi.request_queue_size",
            0,
            4096,
        )?
        .unwrap_or(5),
        server_tokens: text(raw.server_tokens),
        thread_pool_size: int_in(
            raw.thread_pool_size,
            "restapi.thread_pool_size",
            5,
            u32::MAX.into(),
        )?
        .unwrap_or(5),
    })
}

/// `ctl`: TLS and credentials for outbound REST calls (and for `keelctl`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CtlSettings {
    /// `insecure`: do not verify server certificates.
    pub insecure: bool,
    /// `cacert`.
    pub cacert: Option<PathBuf>,
    /// `certfile`: client certificate.
    pub certfile: Option<PathBuf>,
    /// `keyfile`.
    pub keyfile: Option<PathBuf>,
    /// `keyfile_password`.
    pub keyfile_password: Option<String>,
    /// `authentication`.
    pub authentication: Option<Credentials>,
}

pub(crate) fn ctl(raw: RawCtl, ctx: &mut Ctx) -> Result<CtlSettings, ConfigError> {
    ctx.unknown_keys("ctl", &raw.extra);
    Ok(CtlSettings {
        insecure: raw.insecure.is_some_and(|f| f.0),
        cacert: path(raw.cacert),
        certfile: path(raw.certfile),
        keyfile: path(raw.keyfile),
        keyfile_password: text(raw.keyfile_password),
        authentication: credentials(raw.authentication, "ctl.authentication", ctx)?,
    })
}

/// `watchdog.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogMode {
    /// Never use a watchdog.
    Off,
    /// Use one if it can be opened (the default).
    Automatic,
    /// Refuse to become leader without one.
    Required,
}

/// `watchdog`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchdogSettings {
    /// `mode`, default `automatic`.
    pub mode: WatchdogMode,
    /// `device`, default `/dev/watchdog`.
    pub device: PathBuf,
    /// `safety_margin` in seconds, default 5; `-1` means half the ttl.
    pub safety_margin: i32,
}

pub(crate) fn watchdog(raw: RawWatchdog, ctx: &mut Ctx) -> Result<WatchdogSettings, ConfigError> {
    ctx.unknown_keys("watchdog", &raw.extra);
    let modes = [
        ("off", WatchdogMode::Off),
        ("false", WatchdogMode::Off),
        ("automatic", WatchdogMode::Automatic),
        ("required", WatchdogMode::Required),
    ];
    let mode = match raw.mode {
        None | Some(Value::Null) => WatchdogMode::Automatic,
        Some(Value::Bool(false)) => WatchdogMode::Off,
        Some(Value::String(s)) => one_of(&s, "watchdog.mode", &modes)?,
        Some(other) => one_of(&other.to_string(), "watchdog.mode", &modes)?,
    };
    Ok(WatchdogSettings {
        mode,
        device: path(raw.device).unwrap_or_else(|| PathBuf::from("/dev/watchdog")),
        safety_margin: int_in(
            raw.safety_margin,
            "watchdog.safety_margin",
            -1,
            i32::MAX.into(),
        )?
        .unwrap_or(5),
    })
}

impl Default for WatchdogSettings {
    fn default() -> Self {
        Self {
            mode: WatchdogMode::Automatic,
            device: PathBuf::from("/dev/watchdog"),
            safety_margin: 5,
        }
    }
}
