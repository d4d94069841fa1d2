//! What every command needs: the configuration, the DCS (read through the very
//! plugin and grants `keeld` would use, chosen by `keel-select`), and an HTTP
//! client for members' REST APIs with the operator's credentials.
//!
//! keelctl reads a patronictl-style file (`scope`, a DCS section, `ctl`) or a
//! member's own `keeld` configuration; `name` defaults to the scope, as in
//! patronictl, and `plugins.dir` says where the DCS plugin lives.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use keel_config::{Credentials, Env, Settings, TtlFloor};
use keel_dcs::Dcs;
use keel_model::{Cluster, Member};
use keel_runtime::{PluginCatalog, Runtime, RuntimeOptions};
use serde_json::{Map, Value};

use crate::view::View;

/// Global options, from the command line.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GlobalArgs {
    /// Configuration file: keelctl's own (scope, a DCS section, ctl, plugins)
    /// or a member's keeld configuration.
    #[arg(
        short = 'c',
        long = "config-file",
        env = "KEELCTL_CONFIG_FILE",
        value_name = "FILE"
    )]
    pub(crate) config_file: Option<PathBuf>,
    /// The DCS to use instead of the file's, as `etcd3://HOST:PORT[/NAMESPACE]`.
    #[arg(short = 'd', long = "dcs-url", alias = "dcs", env = "DCS_URL")]
    pub(crate) dcs_url: Option<String>,
    /// Do not verify the REST APIs' TLS certificates.
    #[arg(short = 'k', long)]
    pub(crate) insecure: bool,
}

/// Where keelctl looks when `-c` is not given.
pub(crate) fn default_config_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(Path::new(&home).join(".config/keel/keelctl.yaml"))
}

/// The loaded configuration, the DCS plugin and a REST client.
pub(crate) struct Ctl {
    pub(crate) settings: Settings,
    /// `scope` as the file gives it (the placeholder is not a scope).
    file_scope: Option<String>,
    source: String,
    selected: keel_select::Selected,
    retry_timeout: u32,
    http: reqwest::Client,
    auth: Option<Credentials>,
}

impl Ctl {
    /// Load the configuration and the plugin directory.
    pub(crate) async fn load(args: &GlobalArgs) -> anyhow::Result<Self> {
        let (tree, source) = read_tree(args.config_file.as_deref())?;
        let mut tree = tree;
        if let Some(url) = &args.dcs_url {
            apply_dcs_url(&mut tree, url)?;
        }
        let file_scope = tree.get("scope").and_then(Value::as_str).map(str::to_owned);
        let scope = file_scope.clone().unwrap_or_else(|| "keelctl".into());
        tree.entry("scope").or_insert_with(|| scope.clone().into());
        tree.entry("name").or_insert_with(|| scope.into());
        fill_daemon_keys(&mut tree);
        let settings = Settings::from_tree(tree, &Env::from_process())
            .with_context(|| format!("configuration {source}"))?;
        let dir = settings.plugins.dir.clone().ok_or_else(|| {
            anyhow!(
                "{source}: plugins.dir is not set; keelctl reads the DCS through the daemon's plugin: \
                 set plugins.dir (or KEEL_PLUGINS_DIR) to keeld's plugin directory, or pass a member's \
                 configuration with -c"
            )
        })?;
        let (timeouts, _) = settings
            .bootstrap
            .dcs_config
            .validated_timeouts(TtlFloor::keel());
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: settings.plugins.cache_dir(),
        })?;
        let catalog = PluginCatalog::load_dir(&runtime, &dir)
            .await
            .with_context(|| format!("loading plugins from {}", dir.display()))?;
        let selected = keel_select::select(&settings, &catalog, timeouts.retry_timeout)
            .with_context(|| format!("configuration {source}"))?;
        let ctl = &settings.ctl;
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .danger_accept_invalid_certs(ctl.insecure || args.insecure);
        if let Some(ca) = &ctl.cacert {
            let pem = std::fs::read(ca)
                .with_context(|| format!("ctl.cacert: cannot read {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("ctl.cacert: {} holds no PEM certificate", ca.display()))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        if let Some(cert) = &ctl.certfile {
            let mut pem = std::fs::read(cert)
                .with_context(|| format!("ctl.certfile: cannot read {}", cert.display()))?;
            if let Some(key) = &ctl.keyfile {
                pem.extend(
                    std::fs::read(key)
                        .with_context(|| format!("ctl.keyfile: cannot read {}", key.display()))?,
                );
            }
            http =
                http.identity(reqwest::Identity::from_pem(&pem).context(
                    "ctl.certfile/ctl.keyfile: not a PEM certificate with its private key",
                )?);
        }
        let auth = ctl
            .authentication
            .clone()
            .or_else(|| settings.restapi.authentication.clone());
        Ok(Self {
            file_scope,
            source,
            selected,
            retry_timeout: timeouts.retry_timeout,
            http: http.build().context("HTTP client")?,
            auth,
            settings,
        })
    }

    /// The cluster a command acts on: its argument, else the file's `scope`.
    pub(crate) fn scope(&self, given: Option<&str>) -> anyhow::Result<String> {
        given
            .map(str::to_owned)
            .or_else(|| self.file_scope.clone())
            .ok_or_else(|| {
                anyhow!(
                    "no cluster name: give it as an argument, or set `scope` in {}",
                    self.source
                )
            })
    }

    /// `true` when the configuration selects an MPP plugin (Citus): list
    /// shows a Group column and reads every group.
    pub(crate) fn is_mpp(&self) -> bool {
        self.selected.mpp.is_some()
    }

    /// The MPP section's `group` (patronictl's default `--group` for commands
    /// that act on one group's configuration).
    pub(crate) fn default_group(&self) -> Option<u32> {
        let mpp = self.selected.mpp.as_ref()?;
        let section = self.settings.plugin_sections.get(&mpp.section)?;
        keel_config::lenient::parse_int(section.get("group")?)
            .ok()
            .and_then(|g| u32::try_from(g).ok())
    }

    /// Where the DCS is, for error messages: the endpoints granted to the plugin.
    pub(crate) fn dcs_endpoints(&self) -> String {
        let lines: Vec<String> = self
            .selected
            .dcs
            .grants
            .describe()
            .into_iter()
            .filter(|l| l != "log")
            .collect();
        format!(
            "section `{}`: {}",
            self.selected.dcs.section,
            lines.join("; ")
        )
    }

    /// A DCS handle for `scope` (and `group` of a formation).
    pub(crate) async fn dcs(&self, scope: &str, group: Option<u32>) -> anyhow::Result<Dcs> {
        let choice = &self.selected.dcs;
        let backend = choice.plugin.dcs(choice.grants.clone(), choice.limits)?;
        let settings = keel_dcs::Settings {
            namespace: self.settings.namespace.clone(),
            scope: scope.to_owned(),
            group: group.or(self.is_mpp().then_some(0)),
            member: self.settings.name.clone(),
            retry_timeout: self.retry_timeout,
            config: choice.config_json(&self.settings),
            ..keel_dcs::Settings::new(scope, &self.settings.name)
        };
        let dcs = Dcs::new(Arc::new(backend));
        dcs.configure(settings).await.with_context(|| {
            format!(
                "configuring the DCS plugin `{}`",
                choice.plugin.description().name
            )
        })?;
        Ok(dcs)
    }

    /// Read `scope` (one group with `group`, the whole formation for an MPP
    /// cluster without one).
    pub(crate) async fn view(
        &self,
        scope: &str,
        group: Option<u32>,
    ) -> anyhow::Result<(Dcs, View)> {
        let dcs = self.dcs(scope, group).await?;
        let unreachable = || {
            format!(
                "cannot read cluster `{scope}` from the DCS ({}); check that the DCS is running and \
                 reachable and that {} names it",
                self.dcs_endpoints(),
                self.source
            )
        };
        let view = if self.is_mpp() && group.is_none() {
            let formation = dcs.load_formation().await.with_context(unreachable)?;
            View::formation(&formation)
        } else {
            let cluster: Cluster = dcs.load().await.with_context(unreachable)?;
            View::single(cluster, group)
        };
        Ok((dcs, view))
    }

    /// A REST call to `member` (`endpoint` replaces the path of its `api_url`):
    /// the status code and the body.
    pub(crate) async fn request(
        &self,
        member: &Member,
        method: reqwest::Method,
        endpoint: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, String)> {
        let api_url = member.data.api_url.as_deref().ok_or_else(|| {
            anyhow!(
                "member {} publishes no api_url (restapi.connect_address)",
                member.name
            )
        })?;
        let mut url = reqwest::Url::parse(api_url)
            .with_context(|| format!("member {}: api_url `{api_url}` is not a URL", member.name))?;
        url.set_path(&format!("/{endpoint}"));
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(auth) = &self.auth {
            request = request.basic_auth(&auth.username, Some(&auth.password));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url} (member {}) failed", member.name))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((status, text))
    }
}

/// The configuration file as a JSON tree, and a name for it in messages.
fn read_tree(given: Option<&Path>) -> anyhow::Result<(Map<String, Value>, String)> {
    let default = default_config_file();
    let path = match (given, default) {
        (Some(p), _) => p.to_owned(),
        (None, Some(p)) if p.exists() => p,
        (None, default) => {
            let name = default.map_or_else(
                || "(no configuration file)".into(),
                |p| p.display().to_string(),
            );
            return Ok((Map::new(), name));
        }
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "configuration file {} cannot be read; check the -c/--config-file option (or KEELCTL_CONFIG_FILE)",
            path.display()
        )
    })?;
    let value: Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("configuration file {}: not valid YAML", path.display()))?;
    let tree = match value {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => bail!(
            "configuration file {}: expected a mapping at the top",
            path.display()
        ),
    };
    Ok((tree, path.display().to_string()))
}

/// Placeholders for what a daemon's configuration must have and keelctl never
/// uses (its own REST and PostgreSQL addresses), so a patronictl-style file
/// with only `scope` and a DCS section loads.
fn fill_daemon_keys(tree: &mut Map<String, Value>) {
    let placeholders: [(&[&str], &str); 7] = [
        (&["restapi", "listen"], "127.0.0.1:8008"),
        (&["restapi", "connect_address"], "127.0.0.1:8008"),
        (&["postgresql", "listen"], "127.0.0.1:5432"),
        (&["postgresql", "connect_address"], "127.0.0.1:5432"),
        (&["postgresql", "data_dir"], "/nonexistent"),
        (
            &["postgresql", "authentication", "superuser", "username"],
            "postgres",
        ),
        (
            &["postgresql", "authentication", "replication", "username"],
            "replicator",
        ),
    ];
    for (path, value) in placeholders {
        put_default(tree, path, value);
    }
}

fn put_default(node: &mut Map<String, Value>, path: &[&str], value: &str) {
    match path {
        [] => {}
        [last] => {
            node.entry(*last).or_insert_with(|| value.into());
        }
        [first, rest @ ..] => {
            let entry = node
                .entry(*first)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(child) = entry {
                put_default(child, rest, value);
            }
        }
    }
}

/// The DCS section names patronictl's `--dcs-url` replaces.
const DCS_SECTIONS: [&str; 7] = [
    "etcd",
    "etcd3",
    "consul",
    "zookeeper",
    "exhibitor",
    "kubernetes",
    "raft",
];

/// patronictl's `--dcs-url`: `[SCHEME://]HOST[:PORT][/NAMESPACE]` replaces
/// the file's DCS section (and namespace).
pub(crate) fn apply_dcs_url(tree: &mut Map<String, Value>, url: &str) -> anyhow::Result<()> {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or(("", url.trim_start_matches("//")));
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            Some(
                p.parse::<u16>()
                    .with_context(|| format!("--dcs-url {url}: port `{p}` is not a number"))?,
            ),
        ),
        None => (authority, None),
    };
    let (scheme, default_port) = match scheme {
        "" => ("etcd3", 2379),
        "etcd" | "etcd3" => (scheme, 2379),
        "consul" => (scheme, 8500),
        "zookeeper" => (scheme, 2181),
        "exhibitor" => (scheme, 8181),
        other => bail!("--dcs-url {url}: unknown DCS scheme `{other}`; use etcd3://HOST:PORT"),
    };
    let host = if host.is_empty() { "localhost" } else { host };
    for section in DCS_SECTIONS {
        tree.remove(section);
    }
    let endpoint = format!("{host}:{}", port.unwrap_or(default_port));
    tree.insert(scheme.to_owned(), serde_json::json!({ "host": endpoint }));
    if !path.trim().is_empty() {
        tree.insert(
            "namespace".into(),
            Value::String(format!("/{}", path.trim())),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patronictl_style_file_loads() {
        let mut tree: Map<String, Value> =
            serde_yaml_ng::from_str("scope: demo\nname: demo\netcd3: {hosts: 127.0.0.1:2379}\nctl: {authentication: {username: u, password: p}}\n")
                .unwrap();
        fill_daemon_keys(&mut tree);
        let settings = Settings::from_tree(tree, &Env::empty()).unwrap();
        assert_eq!(settings.scope, "demo");
        assert!(settings.plugin_sections.contains_key("etcd3"));
        assert_eq!(settings.ctl.authentication.unwrap().username, "u");
    }

    #[test]
    fn dcs_urls_replace_the_dcs_section() {
        let mut tree = Map::new();
        tree.insert("etcd".into(), json!({"host": "old:1"}));
        apply_dcs_url(&mut tree, "etcd3://random.com:2399/customnamespace").unwrap();
        assert_eq!(
            Value::Object(tree),
            json!({"etcd3": {"host": "random.com:2399"}, "namespace": "/customnamespace"})
        );
        let mut tree = Map::new();
        apply_dcs_url(&mut tree, "test").unwrap();
        assert_eq!(Value::Object(tree), json!({"etcd3": {"host": "test:2379"}}));
        assert!(apply_dcs_url(&mut Map::new(), "redis://x").is_err());
    }
}
