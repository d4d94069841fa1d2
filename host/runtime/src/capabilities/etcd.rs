//! `keel:host/etcd`: a typed etcd v3 client over `etcd-client`.
//!
//! The grant (endpoints, credentials, TLS, request timeout) comes from the
//! plugin's config section; the plugin names keys only. The connection is made
//! lazily on first use and re-made after a transport failure, so a DCS outage
//! at start-up is an `unavailable` answer, not a load failure. A connection
//! that TLS refuses (wrong CA, missing client certificate) is `unavailable` too,
//! with the TLS reason: to the HA loop it is a store it cannot reach.

use std::time::Duration;

use etcd_client as ec;
use tokio::sync::Mutex;

use crate::bindings::host::keel::host::etcd::{
    Compare, CompareOp, CompareTarget, EtcdError, Host, KeyRange, KeyValue, RangeOptions,
    RangeResult, TxnOp, TxnOpResult, TxnRequest, TxnResult, WatchEvent, WatchResult,
};
use crate::state::HostState;

mod tls;

/// The longest a single `watch-wait` may block, whatever the plugin asks.
pub const MAX_WATCH_WAIT: Duration = Duration::from_secs(60);

/// etcd access granted to one plugin.
pub struct EtcdGrant {
    endpoints: Vec<String>,
    credentials: Option<(String, String)>,
    tls: Option<ec::TlsOptions>,
    request_timeout: Duration,
    client: Mutex<Option<ec::Client>>,
}

impl std::fmt::Debug for EtcdGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdGrant")
            .field("endpoints", &self.endpoints)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl EtcdGrant {
    /// Grant access to `endpoints` (`host:port` or URLs), optionally as a user.
    pub fn new(
        endpoints: Vec<String>,
        credentials: Option<(String, String)>,
        request_timeout: Duration,
    ) -> Self {
        Self {
            endpoints,
            credentials,
            tls: None,
            request_timeout,
            client: Mutex::new(None),
        }
    }

    /// Build the grant from a Patroni-style `etcd3:` (or `etcd:`) config section:
    /// the endpoints of [`super::section_endpoints`], `username`/`user` and
    /// `password`, and TLS: `protocol: https` or an https `url`, `cacert` (the CA
    /// bundle that signed etcd's certificate; the system store when absent),
    /// `cert` and `key` (a client certificate and its unencrypted key). The PEM
    /// files are read here. `Ok(None)` when the section names no endpoint at all
    /// (a backend of another kind). Errors name the key.
    pub fn from_section(
        section_name: &str,
        section: &serde_json::Value,
        request_timeout: Duration,
    ) -> Result<Option<Self>, String> {
        let key = |k: &str| format!("{section_name}.{k}");
        let text = |k: &str| super::section_text(section_name, section, k);
        let mut tls = tls::from_section(section_name, section, request_timeout)?;
        let endpoints = match (&tls, section.as_object()) {
            // TLS keys without a protocol: hosts are https.
            (Some(_), Some(map)) if text("protocol")?.is_none() => {
                let mut map = map.clone();
                map.insert("protocol".into(), "https".into());
                super::section_endpoints(section_name, &map.into(), 2379)?
            }
            _ => super::section_endpoints(section_name, section, 2379)?,
        };
        if endpoints.is_empty() {
            return Ok(None);
        }
        let is_https = |e: &String| e.starts_with("https://");
        if tls.is_none() && endpoints.iter().any(is_https) {
            tls = Some(tls::system_roots(section_name, request_timeout)?);
        }
        let plain = endpoints.iter().find(|e| !is_https(e));
        if let (Some(plain), Some(_)) = (plain, &tls) {
            return Err(format!(
                "{}: {plain} is plain http, but TLS is configured; every etcd endpoint must be \
                 https (check {} and {})",
                key("url"),
                key("protocol"),
                key("url")
            ));
        }
        let user = match text("username")? {
            Some(user) => Some(user),
            None => text("user")?,
        };
        let credentials = match (user, text("password")?) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(format!("{}: a username needs a password", key("password")));
            }
            (None, Some(_)) => {
                return Err(format!("{}: a password needs a username", key("username")));
            }
        };
        Ok(Some(Self {
            tls,
            ..Self::new(endpoints, credentials, request_timeout)
        }))
    }

    /// True when the grant talks TLS to etcd.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The endpoints granted.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    async fn client(&self) -> Result<ec::Client, EtcdError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let mut options = ec::ConnectOptions::new()
            .with_connect_timeout(self.request_timeout)
            .with_timeout(self.request_timeout)
            .with_keep_alive(Duration::from_secs(5), self.request_timeout);
        if let Some((user, password)) = &self.credentials {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.clone());
        }
        let connect = ec::Client::connect(&self.endpoints, Some(options));
        let client = tokio::time::timeout(self.request_timeout, connect)
            .await
            .map_err(|_| {
                EtcdError::Unavailable(format!("connecting to {:?} timed out", self.endpoints))
            })?
            .map_err(map_error)?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Forget the connection after a transport failure so the next call reconnects.
    async fn reset(&self) {
        *self.client.lock().await = None;
    }

    /// Run one request with the grant's timeout, mapping errors.
    async fn request<T, F, Fut>(&self, what: &str, f: F) -> Result<T, EtcdError>
    where
        F: FnOnce(ec::Client) -> Fut,
        Fut: Future<Output = Result<T, ec::Error>>,
    {
        let client = self.client().await?;
        let outcome = tokio::time::timeout(self.request_timeout, f(client)).await;
        let result = match outcome {
            Ok(result) => result.map_err(map_error),
            Err(_) => Err(EtcdError::Unavailable(format!(
                "{what} timed out after {:?}",
                self.request_timeout
            ))),
        };
        if matches!(result, Err(EtcdError::Unavailable(_))) {
            self.reset().await;
        }
        result
    }
}

fn map_error(error: ec::Error) -> EtcdError {
    use tonic_code::*;
    match error {
        ec::Error::GRpcStatus(status) => {
            let mut message = status.message().to_owned();
            // A status made from a failed connection (a TLS alert, a reset)
            // carries the transport error: the store is unreachable, and the
            // innermost cause says why.
            if let Some(transport) = std::error::Error::source(&status)
                .filter(|source| source.is::<tonic::transport::Error>())
            {
                let cause = innermost(transport).to_string();
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
                return EtcdError::Unavailable(message);
            }
            match status.code() {
                UNAVAILABLE | DEADLINE_EXCEEDED | CANCELLED | ABORTED => {
                    EtcdError::Unavailable(message)
                }
                // A member that lost leadership answers lease requests this way.
                _ if message.contains("not a primary lessor") => EtcdError::Unavailable(message),
                _ if message.contains("lease not found") => EtcdError::LeaseNotFound,
                _ if message.contains("compacted") => EtcdError::Compacted,
                PERMISSION_DENIED | UNAUTHENTICATED => EtcdError::PermissionDenied(message),
                _ if ["auth", "user name is empty", "permission denied"]
                    .iter()
                    .any(|m| message.contains(m)) =>
                {
                    EtcdError::PermissionDenied(message)
                }
                _ => EtcdError::Rejected(message),
            }
        }
        ec::Error::LeaseKeepAliveError(message) if message.contains("lease not found") => {
            EtcdError::LeaseNotFound
        }
        ec::Error::TransportError(e) => EtcdError::Unavailable(format!("transport: {e}")),
        ec::Error::IoError(e) => EtcdError::Unavailable(format!("io: {e}")),
        other => EtcdError::Rejected(other.to_string()),
    }
}

/// The last of an error's sources (the error itself when it has none).
fn innermost<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> &'e (dyn std::error::Error + 'static) {
    let mut error = error;
    while let Some(source) = error.source() {
        error = source;
    }
    error
}

/// The gRPC codes the mapping distinguishes.
mod tonic_code {
    use tonic::Code;
    pub(super) const CANCELLED: Code = Code::Cancelled;
    pub(super) const DEADLINE_EXCEEDED: Code = Code::DeadlineExceeded;
    pub(super) const PERMISSION_DENIED: Code = Code::PermissionDenied;
    pub(super) const ABORTED: Code = Code::Aborted;
    pub(super) const UNAVAILABLE: Code = Code::Unavailable;
    pub(super) const UNAUTHENTICATED: Code = Code::Unauthenticated;
}

fn key_value(kv: &ec::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn revision(header: Option<&ec::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

fn compare(c: Compare) -> ec::Compare {
    let op = match c.op {
        CompareOp::Equal => ec::CompareOp::Equal,
        CompareOp::NotEqual => ec::CompareOp::NotEqual,
        CompareOp::Greater => ec::CompareOp::Greater,
        CompareOp::Less => ec::CompareOp::Less,
    };
    match c.target {
        CompareTarget::Value(v) => ec::Compare::value(c.key, op, v),
        CompareTarget::Version(n) => ec::Compare::version(c.key, op, n),
        CompareTarget::CreateRevision(n) => ec::Compare::create_revision(c.key, op, n),
        CompareTarget::ModRevision(n) => ec::Compare::mod_revision(c.key, op, n),
        CompareTarget::Lease(n) => ec::Compare::lease(c.key, op, n),
    }
}

fn txn_op(op: TxnOp) -> ec::TxnOp {
    match op {
        TxnOp::Put((key, value, lease)) => ec::TxnOp::put(
            key,
            value,
            lease.map(|l| ec::PutOptions::new().with_lease(l)),
        ),
        TxnOp::Delete(range) => ec::TxnOp::delete(
            range.key,
            range.prefix.then(|| ec::DeleteOptions::new().with_prefix()),
        ),
        TxnOp::Get(range) => ec::TxnOp::get(
            range.key,
            range.prefix.then(|| ec::GetOptions::new().with_prefix()),
        ),
    }
}

fn txn_op_result(r: &ec::TxnOpResponse) -> TxnOpResult {
    match r {
        ec::TxnOpResponse::Put(p) => TxnOpResult::Put(revision(p.header())),
        ec::TxnOpResponse::Delete(d) => TxnOpResult::Delete(d.deleted() as u64),
        ec::TxnOpResponse::Get(g) => TxnOpResult::Get(g.kvs().iter().map(key_value).collect()),
        // Nested transactions cannot be expressed in keel:host/etcd.
        ec::TxnOpResponse::Txn(_) => TxnOpResult::Delete(0),
    }
}

fn denied(plugin: &str) -> EtcdError {
    EtcdError::NotGranted(format!(
        "plugin `{plugin}` has no etcd endpoints: its config section names none"
    ))
}

impl HostState {
    fn etcd_grant(&self) -> Result<std::sync::Arc<EtcdGrant>, EtcdError> {
        self.grants.etcd.clone().ok_or_else(|| denied(&self.plugin))
    }
}

impl Host for HostState {
    async fn range(
        &mut self,
        keys: KeyRange,
        options: RangeOptions,
    ) -> wasmtime::Result<Result<RangeResult, EtcdError>> {
        let grant = match self.etcd_grant() {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        let mut get = ec::GetOptions::new();
        if keys.prefix {
            get = get.with_prefix();
        }
        if options.serializable {
            get = get.with_serializable();
        }
        if options.limit > 0 {
            get = get.with_limit(options.limit as i64);
        }
        Ok(grant
            .request(
                "range",
                |mut c| async move { c.get(keys.key, Some(get)).await },
            )
            .await
            .map(|r| RangeResult {
                kvs: r.kvs().iter().map(key_value).collect(),
                revision: revision(r.header()),
                more: r.more(),
            }))
    }

    async fn put(
        &mut self,
        key: String,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> wasmtime::Result<Result<i64, EtcdError>> {
        let grant = match self.etcd_grant() {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        let options = lease.map(|l| ec::PutOptions::new().with_lease(l));
        Ok(grant
            .request(
                "put",
                |mut c| async move { c.put(key, value, options).await },
            )
            .await
            .map(|r| revision(r.header())))
    }

    async fn delete(&mut self, keys: KeyRange) -> wasmtime::Result<Result<u64, EtcdError>> {
        let grant = match self.etcd_grant() {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        let options = keys.prefix.then(|| ec::DeleteOptions::new().with_prefix());
        Ok(grant
            .request("delete", |mut c| async move {
                c.delete(keys.key, options).await
            })
            .await
            .map(|r| r.deleted() as u64))
    }

    async fn txn(&mut self, request: TxnRequest) -> wasmtime::Result<Result<TxnResult, EtcdError>> {
        let grant = match self.etcd_grant() {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        let txn = ec::Txn::new()
            .when(
                request
                    .compares
                    .into_iter()
                    .map(compare)
                    .collect::<Vec<_>>(),
            )
            .and_then(request.success.into_iter().map(txn_op).collect::<Vec<_>>())
            .or_else(request.failure.into_iter().map(txn_op).collect::<Vec<_>>());
        Ok(grant
            .request("txn", |mut c| async move { c.txn(txn).await })
            .await
            .map(|r| TxnResult {
                succeeded: r.succeeded(),
                revision: revision(r.header()),
                results: r.op_responses().iter().map(txn_op_result).collect(),
            }))
    }

    async fn lease_grant(&mut self, ttl_seconds: i64) -> wasmtime::Result<Result<i64, EtcdError>> {
        let grant = match self.etcd_grant() {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        Ok(grant
            .request("lease-grant", |mut c| async move {
                c.lease_grant(ttl_seconds, None).await
            })
            .await
            .map(|r| r.id()))
    }

    async fn lease_keep_alive(&mut self, lease: i64) -> wasmtime::Result<Result<i64, EtcdError>> {
        let grant = match self.etcd_grant() {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        let remaining = grant
            .request("lease-keep-alive", |mut c| async move {
                let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
                keeper.keep_alive().await?;
                Ok(stream.message().await?.map_or(0, |r| r.ttl()))
            })
            .await;
        // The contract: a lease etcd no longer knows has 0 seconds left.
        Ok(match remaining {
            Err(EtcdError::LeaseNotFound) => Ok(0),
            other => other,
        })
    }

    async fn lease_revoke(&mut self, lease: i64) -> wasmtime::Result<Result<(), EtcdError>> {
        let grant = match self.etcd_grant() {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        Ok(grant
            .request("lease-revoke", |mut c| async move {
                c.lease_revoke(lease).await
            })
            .await
            .map(|_| ()))
    }

    async fn watch_wait(
        &mut self,
        keys: KeyRange,
        start_revision: i64,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<WatchResult, EtcdError>> {
        let grant = match self.etcd_grant() {
            Ok(g) => g,
            Err(e) => return Ok(Err(e)),
        };
        let wait = Duration::from_millis(u64::from(timeout_ms)).min(MAX_WATCH_WAIT);
        let client = match grant.client().await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        Ok(watch(client, keys, start_revision, wait, grant.request_timeout).await)
    }
}

/// Open a watch, collect the first batch of events or time out, cancel it.
async fn watch(
    mut client: ec::Client,
    keys: KeyRange,
    start_revision: i64,
    wait: Duration,
    request_timeout: Duration,
) -> Result<WatchResult, EtcdError> {
    let mut options = ec::WatchOptions::new();
    if start_revision > 0 {
        options = options.with_start_revision(start_revision);
    }
    if keys.prefix {
        options = options.with_prefix();
    }
    let mut stream = tokio::time::timeout(request_timeout, client.watch(keys.key, Some(options)))
        .await
        .map_err(|_| EtcdError::Unavailable("opening a watch timed out".into()))?
        .map_err(map_error)?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut next_revision = start_revision;
    let mut events = Vec::new();
    while events.is_empty() {
        let message = match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => break,
            Ok(message) => message.map_err(map_error)?,
        };
        let Some(response) = message else { break };
        if response.canceled() && response.compact_revision() > 0 {
            return Err(EtcdError::Compacted);
        }
        next_revision = next_revision.max(revision(response.header()) + 1);
        for event in response.events() {
            if let Some(kv) = event.kv() {
                next_revision = next_revision.max(kv.mod_revision() + 1);
                events.push(WatchEvent {
                    deleted: event.event_type() == ec::EventType::Delete,
                    kv: key_value(kv),
                });
            }
        }
    }
    // Dropping the stream ends the gRPC stream, and etcd cancels the watch with it.
    drop(stream);
    Ok(WatchResult {
        events,
        next_revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoints(section: &serde_json::Value) -> Result<Option<Vec<String>>, String> {
        EtcdGrant::from_section("etcd3", section, Duration::from_secs(1))
            .map(|g| g.map(|g| g.endpoints))
    }

    #[test]
    fn reads_patroni_endpoint_keys() {
        assert_eq!(
            endpoints(&json!({"hosts": "a:1, b"})).unwrap().unwrap(),
            vec!["http://a:1", "http://b:2379"]
        );
        assert_eq!(
            endpoints(&json!({"hosts": ["a:1"]})).unwrap().unwrap(),
            vec!["http://a:1"]
        );
        assert_eq!(
            endpoints(&json!({"host": "127.0.0.1:2379"}))
                .unwrap()
                .unwrap(),
            vec!["http://127.0.0.1:2379"]
        );
        assert_eq!(
            endpoints(&json!({"url": "http://x:5"})).unwrap().unwrap(),
            vec!["http://x:5"]
        );
        assert_eq!(endpoints(&json!({})).unwrap(), None);
    }

    #[test]
    fn errors_name_the_key() {
        for (section, needle) in [
            (json!({"hosts": 5}), "etcd3.hosts"),
            (json!({"hosts": ["http://a:1"]}), "etcd3.hosts"),
            (json!({"host": "a", "protocol": "ftp"}), "etcd3.protocol"),
            (json!({"host": "a", "username": "u"}), "etcd3.password"),
            (json!({"url": "ftp://a"}), "etcd3.url"),
        ] {
            let err = endpoints(&section).unwrap_err();
            assert!(err.contains(needle), "{section}: {err}");
        }
    }
}
