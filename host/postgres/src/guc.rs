//! Applying parameter changes: reload or restart decided per parameter from
//! `pg_settings.context`, and `pending_restart` read back afterwards (Patroni's
//! `ConfigHandler.reload_config`). Values are compared unit-aware (`128MB` equals `16384` × `8kB`).

use std::collections::BTreeMap;

use crate::Postgres;
use crate::config::{Apply, Parameters, apply_kind, normalize_value, split_cmdline};
use crate::error::Result;

/// What applying a parameter set needs, per parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterPlan {
    /// Changed parameters a reload applies.
    pub reload: Vec<String>,
    /// Changed parameters that need a restart.
    pub restart: Vec<String>,
    /// Parameters the server does not know (Patroni drops them with a warning).
    pub unknown: Vec<String>,
    /// Changed parameters that cannot be changed (`internal`).
    pub read_only: Vec<String>,
}

/// One `pg_settings` row.
#[derive(Debug, Clone, Default)]
struct Setting {
    setting: String,
    unit: Option<String>,
    context: String,
    /// `current_setting(name)`: the value as `SHOW` prints it, units included.
    shown: String,
    /// `pg_settings.pending_restart`.
    pending_restart: bool,
}

/// A parameter whose new value waits for a restart (Patroni's `pending_restart_reason` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    /// The parameter, as `pg_settings` names it.
    pub name: String,
    /// The running value as `SHOW` prints it.
    pub old_value: String,
    /// The value Keel wants; `?` when the change came from elsewhere (`ALTER SYSTEM`).
    pub new_value: String,
}

/// Converts `value` (with an optional unit suffix) times `unit` to a base quantity: bytes for
/// memory, milliseconds for time. `None` when not numeric.
pub(crate) fn to_base(value: &str, unit: Option<&str>) -> Option<f64> {
    let v = value.trim().trim_matches('\'');
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let suffix = suffix.trim();
    let scale = |u: &str| -> Option<f64> {
        let (n, u) = match u.find(|c: char| !c.is_ascii_digit()) {
            Some(0) | None => (1.0, u),
            Some(i) => (u[..i].parse().ok()?, &u[i..]),
        };
        let base = match u {
            "" | "B" => 1.0,
            "kB" => 1024.0,
            "MB" => 1024.0 * 1024.0,
            "GB" => 1024.0 * 1024.0 * 1024.0,
            "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            "us" => 0.001,
            "ms" => 1.0,
            "s" => 1000.0,
            "min" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return None,
        };
        Some(n * base)
    };
    if suffix.is_empty() {
        Some(num * scale(unit.unwrap_or(""))?)
    } else {
        Some(num * scale(suffix)?)
    }
}

/// True when the desired value equals the running one.
fn same_value(desired: &str, running: &Setting) -> bool {
    if normalize_value(desired) == normalize_value(&running.setting) {
        return true;
    }
    let unit = running.unit.as_deref();
    match (to_base(desired, unit), to_base(&running.setting, unit)) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        _ => false,
    }
}

/// Builds the plan for `desired` against the running `settings`.
fn plan(desired: &Parameters, settings: &BTreeMap<String, Setting>) -> ParameterPlan {
    let mut plan = ParameterPlan::default();
    for (name, value) in desired.iter() {
        let Some(running) = settings.get(name) else {
            plan.unknown.push(name.to_owned());
            continue;
        };
        if same_value(value, running) {
            continue;
        }
        match apply_kind(name, &running.context) {
            Apply::Reload => plan.reload.push(name.to_owned()),
            Apply::Restart => plan.restart.push(name.to_owned()),
            Apply::Never => plan.read_only.push(name.to_owned()),
        }
    }
    plan
}

impl Postgres {
    async fn pg_settings(&self) -> Result<BTreeMap<String, Setting>> {
        let rows = self
            .query(
                "SELECT name, setting, unit, context, current_setting(name), pending_restart \
                 FROM pg_settings",
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<_, String>(0)?,
                    Setting {
                        setting: r.try_get(1)?,
                        unit: r.try_get(2)?,
                        context: r.try_get(3)?,
                        shown: r.try_get(4)?,
                        pending_restart: r.try_get(5)?,
                    },
                ))
            })
            .collect()
    }

    /// What applying `parameters` (plus the adjust hook) to the running server would need.
    pub async fn plan_parameters(&self, parameters: &Parameters) -> Result<ParameterPlan> {
        let current = self.parameters_snapshot();
        self.set_parameters(parameters.clone());
        let desired = self.effective_parameters();
        self.set_parameters(current);
        let settings = self.pg_settings().await?;
        let (cmdline, rest) = split_cmdline(&desired);
        let mut all = rest;
        all.merge(&cmdline);
        Ok(plan(&all, &settings))
    }

    /// Installs `parameters`, rewrites the configuration and reloads a running server. Returns the
    /// plan; parameters in `plan.restart` stay pending until [`Postgres::restart`].
    pub async fn apply_parameters(&self, parameters: Parameters) -> Result<ParameterPlan> {
        let plan = if self.is_running() {
            self.plan_parameters(&parameters).await?
        } else {
            ParameterPlan::default()
        };
        for name in &plan.unknown {
            tracing::warn!(
                name,
                "unknown parameter written anyway; PostgreSQL will ignore it"
            );
        }
        self.set_parameters(parameters);
        if self.is_running() {
            self.reload().await?;
        } else {
            self.write_config()?;
        }
        Ok(plan)
    }

    /// The parameters waiting for a restart, by name: `pg_settings.pending_restart`, plus
    /// command-line GUCs whose wanted value differs from the running one (PostgreSQL cannot
    /// see those). One query; the HA loop reads it once per cycle.
    pub async fn pending_restart(&self) -> Result<Vec<PendingChange>> {
        let settings = self.pg_settings().await?;
        let wanted = self.effective_parameters();
        let (cmdline, _) = split_cmdline(&wanted);
        let mut names: Vec<String> = settings
            .iter()
            .filter(|(_, s)| s.pending_restart)
            .map(|(name, _)| name.clone())
            .collect();
        for name in plan(&cmdline, &settings).restart {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names
            .into_iter()
            .map(|name| {
                let old_value = settings
                    .get(&name)
                    .map(|s| s.shown.clone())
                    .unwrap_or_default();
                let new_value = wanted
                    .get(&name)
                    .map_or_else(|| "?".to_owned(), str::to_owned);
                PendingChange {
                    name,
                    old_value,
                    new_value,
                }
            })
            .collect())
    }

    fn parameters_snapshot(&self) -> Parameters {
        crate::lock(&self.parameters).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(setting: &str, unit: Option<&str>, context: &str) -> Setting {
        Setting {
            setting: setting.to_owned(),
            unit: unit.map(str::to_owned),
            context: context.to_owned(),
            ..Setting::default()
        }
    }

    #[test]
    fn unit_aware_comparison() {
        let sb = setting("16384", Some("8kB"), "postmaster");
        assert!(same_value("128MB", &sb));
        assert!(!same_value("256MB", &sb));
        let timeout = setting("60000", Some("ms"), "sighup");
        assert!(same_value("1min", &timeout));
        assert!(same_value("60s", &timeout));
        assert!(same_value("on", &setting("on", None, "user")));
        assert!(same_value("true", &setting("on", None, "user")));
    }

    #[test]
    fn plan_splits_by_context() {
        let settings: BTreeMap<String, Setting> = [
            (
                "shared_buffers",
                setting("16384", Some("8kB"), "postmaster"),
            ),
            ("work_mem", setting("4096", Some("kB"), "user")),
            ("max_connections", setting("100", None, "postmaster")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let desired: Parameters = [
            ("shared_buffers", "256MB"),
            ("work_mem", "8MB"),
            ("max_connections", "100"),
            ("no_such_guc", "1"),
        ]
        .into_iter()
        .collect();
        let p = plan(&desired, &settings);
        assert_eq!(p.restart, vec!["shared_buffers"]);
        assert_eq!(p.reload, vec!["work_mem"]);
        assert_eq!(p.unknown, vec!["no_such_guc"]);
    }
}
