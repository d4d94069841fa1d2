//! The REST API against a fake node and the in-memory DCS: every endpoint's
//! codes and messages as Patroni 4.1 gives them, the access rules, and
//! malformed bodies answered with 400, never a panic.

#![allow(clippy::unwrap_used, reason = "a broken fixture should panic the test")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use keel_api::{
    AccessPolicy, ApiOptions, FailsafeReply, FailsafeRequest, HealthFacts, Node, RestartOutcome,
    RestartRequest, StatusReport, basic_header,
};
use keel_dcs::memory::{MemoryStore, TokioClock};
use keel_dcs::{Cluster, Dcs, Member, Settings};
use keel_ha::PeerStatus;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A node whose answers the test sets, recording what the API asked of it.
#[derive(Default)]
struct FakeNode {
    peers_healthy: bool,
    restart: Mutex<Option<RestartOutcome>>,
    scheduled: Mutex<Option<RestartRequest>>,
    woken: Mutex<u32>,
    reloaded: Mutex<u32>,
    asked: Mutex<Vec<String>>,
}

impl Node for FakeNode {
    fn status(&self) -> BoxFuture<'_, StatusReport> {
        Box::pin(async {
            let mut body = serde_json::Map::new();
            body.insert("state".into(), json!("running"));
            body.insert("role".into(), json!("primary"));
            body.insert(
                "patroni".into(),
                json!({"version": "4.1.4", "scope": "batman", "name": "a"}),
            );
            StatusReport {
                body,
                facts: HealthFacts {
                    running: true,
                    is_leader: true,
                    role: "primary".into(),
                    has_cluster_view: true,
                    ..HealthFacts::default()
                },
            }
        })
    }
    fn failsafe(&self, _: FailsafeRequest) -> FailsafeReply {
        FailsafeReply::Accepted { lsn: Some(42) }
    }
    fn live(&self) -> bool {
        true
    }
    fn cached_cluster(&self) -> Option<Cluster> {
        None
    }
    fn wake(&self) {
        *self.woken.lock().unwrap() += 1;
    }
    fn reload(&self) {
        *self.reloaded.lock().unwrap() += 1;
    }
    fn peer_statuses(&self, members: Vec<Member>) -> BoxFuture<'_, Vec<PeerStatus>> {
        self.asked
            .lock()
            .unwrap()
            .extend(members.iter().map(|m| m.name.clone()));
        let healthy = self.peers_healthy;
        Box::pin(async move {
            members
                .iter()
                .map(|m| {
                    let mut p = PeerStatus::unreachable(&m.name);
                    p.reachable = healthy;
                    p.running = healthy;
                    p
                })
                .collect()
        })
    }
    fn restart(&self, _: RestartRequest) -> BoxFuture<'_, RestartOutcome> {
        let outcome = self
            .restart
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(RestartOutcome::Restarted);
        Box::pin(async move { outcome })
    }
    fn schedule_restart(&self, request: RestartRequest) -> bool {
        let mut s = self.scheduled.lock().unwrap();
        if s.is_some() {
            return false;
        }
        *s = Some(request);
        true
    }
    fn cancel_scheduled_restart(&self) -> bool {
        self.scheduled.lock().unwrap().take().is_some()
    }
    fn reinitialize(&self, force: bool, _: bool) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if force {
                Ok(())
            } else {
                Err("I am the leader, can not reinitialize".to_owned())
            }
        })
    }
}

struct Fixture {
    store: MemoryStore,
    node: Arc<FakeNode>,
    app: Router,
    reloader: keel_api::ApiReloader,
}

const MEMBER: &str = r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"replica","xlog_location":100}"#;

async fn fixture(node: FakeNode, access: AccessPolicy) -> Fixture {
    let store = MemoryStore::new(Arc::new(TokioClock::new()));
    let backend = Arc::new(store.connect());
    let dcs = Dcs::new(backend);
    dcs.configure(Settings::new("batman", "a")).await.unwrap();
    store.put_raw(
        "/service/batman/config",
        r#"{"ttl":30,"loop_wait":10,"postgresql":{"parameters":{"max_connections":100}}}"#,
    );
    store.put_raw("/service/batman/leader", "a");
    store.put_raw(
        "/service/batman/members/a",
        &MEMBER.replace("replica", "primary"),
    );
    store.put_raw("/service/batman/members/b", MEMBER);
    store.put_raw("/service/batman/members/c", MEMBER);
    store.put_raw(
        "/service/batman/history",
        r#"[[1,25165984,"no recovery target specified","2026-01-01T00:00:00+00:00","a"]]"#,
    );
    let node = Arc::new(node);
    let mut options = ApiOptions::open("batman", "a");
    options.access = access;
    options.extra_headers.insert("X-Keel".into(), "yes".into());
    options.server = Some("Keel/test".into());
    let (app, reloader) = keel_api::router_with_reloader(node.clone(), dcs, options);
    Fixture {
        store,
        node,
        app,
        reloader,
    }
}

/// `POST /reload` as `admin` with `password` (no header without one).
async fn reload_as(app: &Router, password: Option<&str>) -> (StatusCode, String) {
    let auth = password.map(|p| basic_header("admin", p));
    call_with(app, "POST", "/reload", None, auth.as_deref()).await
}

async fn call(app: &Router, method: &str, path: &str, body: Option<&str>) -> (StatusCode, String) {
    call_with(app, method, path, body, None).await
}

async fn call_with(
    app: &Router,
    method: &str,
    path: &str,
    body: Option<&str>,
    auth: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(b) = body {
        req = req.header(header::CONTENT_LENGTH, b.len());
    }
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = req
        .body(Body::from(body.unwrap_or_default().to_owned()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let code = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn switchover_validation_follows_patronis_order_and_messages() {
    let f = fixture(
        FakeNode {
            peers_healthy: true,
            ..FakeNode::default()
        },
        AccessPolicy::open(),
    )
    .await;
    let cases: &[(&str, &str, StatusCode, &str)] = &[
        (
            "/failover",
            r#"{"leader":"a"}"#,
            StatusCode::BAD_REQUEST,
            "Failover could be performed only to a specific candidate",
        ),
        (
            "/switchover",
            r#"{"candidate":"b"}"#,
            StatusCode::BAD_REQUEST,
            "Switchover could be performed only from a specific leader",
        ),
        (
            "/failover",
            r#"{"candidate":"b","scheduled_at":"2999-01-01T00:00:00+00:00"}"#,
            StatusCode::BAD_REQUEST,
            "Failover can't be scheduled",
        ),
        (
            "/switchover",
            r#"{"leader":"a","scheduled_at":"2999-01-01T00:00:00"}"#,
            StatusCode::BAD_REQUEST,
            "Timezone information is mandatory for the scheduled switchover",
        ),
        (
            "/switchover",
            r#"{"leader":"a","scheduled_at":"2000-01-01T00:00:00+00:00"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Cannot schedule switchover in the past",
        ),
        (
            "/switchover",
            r#"{"leader":"a","candidate":"a"}"#,
            StatusCode::BAD_REQUEST,
            "Switchover target and source are the same",
        ),
        (
            "/switchover",
            r#"{"leader":"b","candidate":"c"}"#,
            StatusCode::PRECONDITION_FAILED,
            "leader name does not match",
        ),
        (
            "/switchover",
            r#"{"leader":"a","candidate":"z"}"#,
            StatusCode::PRECONDITION_FAILED,
            "candidate does not exists",
        ),
        (
            "/switchover",
            r#"{"leader":3}"#,
            StatusCode::BAD_REQUEST,
            "`leader` must be a string, not a number",
        ),
    ];
    for (path, body, code, text) in cases {
        let (got, msg) = call(&f.app, "POST", path, Some(body)).await;
        assert_eq!((got, msg.as_str()), (*code, *text), "{path} {body}");
    }
    assert!(
        f.store.get_raw("/service/batman/failover").is_none(),
        "nothing written"
    );
}

#[tokio::test]
async fn a_switchover_without_a_healthy_candidate_is_412_and_names_who_was_asked() {
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    let (code, msg) = call(&f.app, "POST", "/switchover", Some(r#"{"leader":"a"}"#)).await;
    assert_eq!(code, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        msg,
        "switchover is not possible: no good candidates have been found"
    );
    assert_eq!(*f.node.asked.lock().unwrap(), ["b", "c"]);
}

#[tokio::test]
async fn a_scheduled_switchover_is_written_and_can_be_cancelled() {
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    let body = r#"{"leader":"a","candidate":"b","scheduled_at":"2999-01-01T10:00:00+02:00"}"#;
    let (code, msg) = call(&f.app, "POST", "/switchover", Some(body)).await;
    assert_eq!(
        (code, msg.as_str()),
        (StatusCode::ACCEPTED, "Switchover scheduled")
    );
    let stored = f.store.get_raw("/service/batman/failover").unwrap().value;
    assert_eq!(
        stored,
        r#"{"leader":"a","member":"b","scheduled_at":"2999-01-01T10:00:00+02:00"}"#
    );
    assert_eq!(*f.node.woken.lock().unwrap(), 1);
    let (_, cluster) = call(&f.app, "GET", "/cluster", None).await;
    let cluster: Value = serde_json::from_str(&cluster).unwrap();
    assert_eq!(cluster["scheduled_switchover"]["to"], "b");
    assert_eq!(cluster["scope"], "batman");
    let (code, msg) = call(&f.app, "DELETE", "/switchover", None).await;
    assert_eq!(
        (code, msg.as_str()),
        (StatusCode::OK, "scheduled switchover deleted")
    );
    assert_eq!(
        f.store.get_raw("/service/batman/failover").unwrap().value,
        "{}"
    );
    let (code, msg) = call(&f.app, "DELETE", "/switchover", None).await;
    assert_eq!(
        (code, msg.as_str()),
        (StatusCode::NOT_FOUND, "no switchover is scheduled")
    );
}

#[tokio::test(start_paused = true)]
async fn an_immediate_switchover_reports_the_new_leader_or_failure() {
    let f = fixture(
        FakeNode {
            peers_healthy: true,
            ..FakeNode::default()
        },
        AccessPolicy::open(),
    )
    .await;
    let store = f.store.clone();
    let mover = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        store.put_raw("/service/batman/leader", "c");
    });
    let (code, msg) = call(
        &f.app,
        "POST",
        "/switchover",
        Some(r#"{"leader":"a","candidate":"b"}"#),
    )
    .await;
    mover.await.unwrap();
    assert_eq!(
        (code, msg.as_str()),
        (StatusCode::OK, "Switched over to \"c\" instead of \"b\"")
    );

    // The leader clears the request without stepping down: failed.
    let store = f.store.clone();
    let clearer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        store.put_raw("/service/batman/failover", "{}");
    });
    let (code, msg) = call(&f.app, "POST", "/failover", Some(r#"{"candidate":"b"}"#)).await;
    clearer.await.unwrap();
    assert_eq!(
        (code, msg.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "Failover failed")
    );
}

#[tokio::test]
async fn patch_config_merges_with_compare_and_set_and_put_replaces() {
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    let (code, body) = call(
        &f.app,
        "PATCH",
        "/config",
        Some(r#"{"pause":true,"postgresql":{"parameters":{"work_mem":"8MB"}}}"#),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got["pause"], true);
    assert_eq!(
        got["postgresql"]["parameters"],
        json!({"max_connections": 100, "work_mem": "8MB"})
    );
    let stored: Value =
        serde_json::from_str(&f.store.get_raw("/service/batman/config").unwrap().value).unwrap();
    assert_eq!(stored, got);
    let (code, body) = call(&f.app, "GET", "/config", None).await;
    assert_eq!(
        (code, serde_json::from_str::<Value>(&body).unwrap()),
        (StatusCode::OK, got)
    );

    let (code, body) = call(&f.app, "PUT", "/config", Some(r#"{"ttl":20}"#)).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, r#"{"ttl":20}"#));
    assert_eq!(
        f.store.get_raw("/service/batman/config").unwrap().value,
        r#"{"ttl":20}"#
    );

    f.store.delete_raw("/service/batman/config");
    let (code, _) = call(&f.app, "GET", "/config", None).await;
    assert_eq!(code, StatusCode::BAD_GATEWAY);
    let (code, _) = call(&f.app, "PATCH", "/config", Some(r#"{"ttl":20}"#)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn restart_reload_and_reinitialize_answer_as_patroni() {
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    assert_eq!(
        call(&f.app, "POST", "/restart", None).await,
        (StatusCode::OK, "restarted successfully".into())
    );
    *f.node.restart.lock().unwrap() = Some(RestartOutcome::Busy("pg_rewind".into()));
    assert_eq!(
        call(&f.app, "POST", "/restart", Some("{}")).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "pg_rewind already in progress".into()
        )
    );
    let sched = r#"{"schedule":"2999-01-01T00:00:00+00:00","role":"replica"}"#;
    assert_eq!(
        call(&f.app, "POST", "/restart", Some(sched)).await,
        (StatusCode::ACCEPTED, "Restart scheduled".into())
    );
    assert_eq!(
        call(&f.app, "POST", "/restart", Some(sched)).await,
        (
            StatusCode::CONFLICT,
            "Another restart is already scheduled".into()
        )
    );
    assert_eq!(
        call(&f.app, "DELETE", "/restart", None).await,
        (StatusCode::OK, "scheduled restart deleted".into())
    );
    assert_eq!(
        call(&f.app, "DELETE", "/restart", None).await,
        (StatusCode::NOT_FOUND, "no restarts are scheduled".into())
    );
    assert_eq!(
        call(&f.app, "POST", "/restart", Some(r#"{"role":"master"}"#))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    assert_eq!(
        call(&f.app, "POST", "/reload", None).await,
        (StatusCode::ACCEPTED, "reload scheduled".into())
    );
    assert_eq!(*f.node.reloaded.lock().unwrap(), 1);

    assert_eq!(
        call(&f.app, "POST", "/reinitialize", None).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "I am the leader, can not reinitialize".into()
        )
    );
    assert_eq!(
        call(&f.app, "POST", "/reinitialize", Some(r#"{"force":true}"#)).await,
        (StatusCode::OK, "reinitialize started".into())
    );
}

#[tokio::test]
async fn restart_cannot_be_scheduled_while_paused() {
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    f.store
        .put_raw("/service/batman/config", r#"{"pause":true}"#);
    let (code, msg) = call(
        &f.app,
        "POST",
        "/restart",
        Some(r#"{"schedule":"2999-01-01T00:00:00+00:00"}"#),
    )
    .await;
    assert_eq!(
        (code, msg.as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Can't schedule restart in the paused state"
        )
    );
    let (code, msg) = call(&f.app, "POST", "/switchover", Some(r#"{"leader":"a"}"#)).await;
    assert_eq!(
        (code, msg.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "Switchover is possible only to a specific candidate in a paused state"
        )
    );
}

#[tokio::test]
async fn basic_auth_guards_only_the_mutating_endpoints() {
    let f = fixture(
        FakeNode::default(),
        AccessPolicy::open().with_credentials("admin", "s3cret"),
    )
    .await;
    assert_eq!(
        call(&f.app, "GET", "/patroni", None).await.0,
        StatusCode::OK
    );
    assert_eq!(call(&f.app, "GET", "/config", None).await.0, StatusCode::OK);
    assert_eq!(
        reload_as(&f.app, None).await,
        (StatusCode::UNAUTHORIZED, "no auth header received".into())
    );
    assert_eq!(
        reload_as(&f.app, Some("guess")).await,
        (StatusCode::UNAUTHORIZED, "not authenticated".into())
    );
    assert_eq!(
        reload_as(&f.app, Some("s3cret")).await.0,
        StatusCode::ACCEPTED
    );
    // The member-to-member endpoint is not behind basic auth.
    let body = r#"{"name":"b","conn_url":"postgres://x","api_url":"http://x"}"#;
    assert_eq!(
        call(&f.app, "POST", "/failsafe", Some(body)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_reload_swaps_credentials_and_headers_for_later_requests() {
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    assert_eq!(
        call(&f.app, "POST", "/reload", None).await.0,
        StatusCode::ACCEPTED
    );
    let mut options = ApiOptions::open("batman", "a");
    options.access = AccessPolicy::open().with_credentials("admin", "s3cret");
    options
        .extra_headers
        .insert("X-Keel".into(), "reloaded".into());
    f.reloader.reload(options);
    assert_eq!(
        reload_as(&f.app, None).await,
        (StatusCode::UNAUTHORIZED, "no auth header received".into())
    );
    assert_eq!(
        reload_as(&f.app, Some("s3cret")).await.0,
        StatusCode::ACCEPTED
    );
    let resp = f
        .app
        .clone()
        .oneshot(Request::get("/patroni").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-keel"], "reloaded");
    // No `server` in the reloaded options: the old Server header is gone too.
    assert!(resp.headers().get(header::SERVER).is_none());
}

#[tokio::test]
async fn an_allowlist_refuses_unknown_clients() {
    let access = AccessPolicy::open().with_allowlist(vec!["10.0.0.0/8".parse().unwrap()], false);
    let f = fixture(FakeNode::default(), access).await;
    // No connection information (a unit-test request) is no known address.
    assert_eq!(
        call(&f.app, "POST", "/reload", None).await,
        (StatusCode::FORBIDDEN, "Access is denied".into())
    );
    assert_eq!(
        call(&f.app, "GET", "/cluster", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn views_metrics_and_unknown_methods() {
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    let (code, history) = call(&f.app, "GET", "/history", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&history).unwrap()[0][0], 1);
    let (code, metrics) = call(&f.app, "GET", "/metrics", None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        metrics.contains("patroni_primary{scope=\"batman\",name=\"a\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        call(&f.app, "POST", "/nothing", Some("{}")).await.0,
        StatusCode::NOT_IMPLEMENTED
    );
    assert_eq!(
        call(&f.app, "PATCH", "/switchover", Some("{}")).await.0,
        StatusCode::NOT_IMPLEMENTED
    );
    // GET on a POST-only path is Patroni's generic health check.
    assert_eq!(
        call(&f.app, "GET", "/switchover", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&f.app, "GET", "/primary", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &f.app,
            "POST",
            "/citus",
            Some(r#"{"type":"before_demote","group":1}"#)
        )
        .await,
        (StatusCode::OK, "OK".into())
    );
    let req = Request::builder()
        .uri("/patroni")
        .body(Body::empty())
        .unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-keel"], "yes");
    assert_eq!(resp.headers()[header::SERVER], "Keel/test");
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_reason() {
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    for path in [
        "/switchover",
        "/failover",
        "/config",
        "/restart",
        "/reinitialize",
        "/failsafe",
    ] {
        let method = if path == "/config" { "PATCH" } else { "POST" };
        for body in ["{", "[]", "42", "\"x\"", "{\"a\":\u{0}}"] {
            let (code, msg) = call(&f.app, method, path, Some(body)).await;
            assert_eq!(
                code,
                StatusCode::BAD_REQUEST,
                "{method} {path} {body}: {msg}"
            );
            assert!(!msg.is_empty());
        }
    }
    let (code, _) = call(&f.app, "POST", "/switchover", None).await;
    assert_eq!(code, StatusCode::LENGTH_REQUIRED);
}

/// Serve the fixture's API over HTTPS on a loopback port.
async fn serve_https(app: Router, verify: &str, pki: &keel_testkit::tls::TestPki) -> u16 {
    let (_, configs) = tokio::sync::watch::channel(https_config(verify, pki));
    serve_https_with(app, configs).await
}

async fn serve_https_with(
    app: Router,
    configs: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(keel_api::serve_tls(listener, app, configs));
    port
}

/// The server side of `pki` as keeld builds it from a `restapi` section.
fn https_config(verify: &str, pki: &keel_testkit::tls::TestPki) -> Arc<rustls::ServerConfig> {
    let yaml = format!(
        "scope: batman\nname: a\nrestapi: {{listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008, \
         certfile: {}, keyfile: {}, cafile: {}, verify_client: {verify}}}\netcd3: {{hosts: 127.0.0.1:2379}}\n\
         postgresql: {{data_dir: /tmp/x, listen: 127.0.0.1:5432, connect_address: 127.0.0.1:5432, \
         authentication: {{superuser: {{username: postgres}}, replication: {{username: rep}}}}}}\n",
        pki.server_cert().display(),
        pki.server_key().display(),
        pki.ca().display()
    );
    let settings =
        keel_config::Settings::from_yaml_str(&yaml, &keel_config::Env::default()).unwrap();
    keel_api::tls_server_config(&settings.restapi)
        .unwrap()
        .unwrap()
}

fn https_client(pki: &keel_testkit::tls::TestPki, with_cert: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.ca()).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(ca)
        .use_rustls_tls();
    if with_cert {
        let mut pem = std::fs::read(pki.client_cert()).unwrap();
        pem.extend(std::fs::read(pki.client_key()).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn https_with_optional_client_certificates_guards_only_unsafe_requests() {
    let Some(pki) = keel_testkit::tls::TestPki::generate() else {
        return;
    };
    let f = fixture(
        FakeNode::default(),
        AccessPolicy::open().requiring_client_certificate(),
    )
    .await;
    let port = serve_https(f.app.clone(), "optional", &pki).await;
    let base = format!("https://localhost:{port}");
    let anonymous = https_client(&pki, false);
    let resp = anonymous
        .get(format!("{base}/patroni"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = anonymous
        .post(format!("{base}/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.text().await.unwrap(), "client certificate required");
    let known = https_client(&pki, true);
    let resp = known.post(format!("{base}/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn https_with_required_client_certificates_refuses_the_handshake() {
    let Some(pki) = keel_testkit::tls::TestPki::generate() else {
        return;
    };
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    let port = serve_https(f.app.clone(), "required", &pki).await;
    let base = format!("https://localhost:{port}");
    assert!(
        https_client(&pki, false)
            .get(format!("{base}/patroni"))
            .send()
            .await
            .is_err()
    );
    let resp = https_client(&pki, true)
        .get(format!("{base}/patroni"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_new_certificate_serves_the_next_connection_without_dropping_the_listener() {
    let (Some(old), Some(new)) = (
        keel_testkit::tls::TestPki::generate(),
        keel_testkit::tls::TestPki::generate(),
    ) else {
        return;
    };
    let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
    let (configs, watched) = tokio::sync::watch::channel(https_config("none", &old));
    let port = serve_https_with(f.app.clone(), watched).await;
    let url = format!("https://localhost:{port}/patroni");
    // Fresh clients: a pooled connection would keep the old session.
    let trusting = |pki| https_client(pki, false);
    assert_eq!(trusting(&old).get(&url).send().await.unwrap().status(), 200);
    assert!(trusting(&new).get(&url).send().await.is_err());
    configs.send(https_config("none", &new)).unwrap();
    assert_eq!(trusting(&new).get(&url).send().await.unwrap().status(), 200);
    assert!(trusting(&old).get(&url).send().await.is_err());
}

mod fuzz {
    //! Arbitrary bodies on every JSON endpoint: an answer from the documented
    //! set, never a panic. Failing cases are kept in `proptest-regressions/`.

    use proptest::prelude::*;

    use super::*;

    /// JSON values of any shape, with the field names the endpoints read.
    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("leader".to_owned()),
            Just("candidate".to_owned()),
            Just("member".to_owned()),
            Just("scheduled_at".to_owned()),
            Just("schedule".to_owned()),
            Just("role".to_owned()),
            Just("timeout".to_owned()),
            Just("postgres_version".to_owned()),
            Just("restart_pending".to_owned()),
            Just("force".to_owned()),
            Just("pause".to_owned()),
            Just("name".to_owned()),
            Just("postgresql".to_owned()),
            "[a-z_]{1,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            prop_oneof![
                Just("a".to_owned()),
                Just("b".to_owned()),
                Just("2999-01-01T00:00:00+00:00".to_owned()),
                Just("2000-01-01T00:00:00".to_owned()),
                Just("15.2".to_owned()),
                Just("1h".to_owned()),
                ".{0,12}",
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..64),
        ]
    }

    const ENDPOINTS: [(&str, &str); 10] = [
        ("POST", "/switchover"),
        ("POST", "/failover"),
        ("DELETE", "/switchover"),
        ("PATCH", "/config"),
        ("PUT", "/config"),
        ("POST", "/restart"),
        ("POST", "/reinitialize"),
        ("POST", "/failsafe"),
        ("POST", "/citus"),
        ("POST", "/reload"),
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn no_body_makes_an_endpoint_panic(which in 0..ENDPOINTS.len(), body in body()) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            let (method, path) = ENDPOINTS[which];
            let code = rt.block_on(async {
                let f = fixture(FakeNode::default(), AccessPolicy::open()).await;
                let req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(header::CONTENT_LENGTH, body.len())
                    .body(Body::from(body.clone()))
                    .unwrap();
                f.app.clone().oneshot(req).await.unwrap().status()
            });
            let allowed = [200, 202, 400, 404, 409, 412, 422, 500, 502, 503];
            prop_assert!(allowed.contains(&code.as_u16()), "{method} {path}: {code}");
        }
    }
}
