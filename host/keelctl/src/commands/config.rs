//! `edit-config` and `show-config`: the dynamic configuration in the DCS,
//! shown as YAML, changed by `-s`/`-p`, `--apply`, `--replace` or in
//! `$EDITOR`, and written back with compare-and-set on the version read.

use std::io::Read;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::config_edit::{apply_pairs, parse_document, patch, unified_diff};
use crate::context::Ctl;
use crate::output::yaml;
use crate::prompt;

/// `edit-config` options.
pub(crate) struct EditArgs {
    pub(crate) cluster: Option<String>,
    pub(crate) group: Option<u32>,
    pub(crate) force: bool,
    pub(crate) quiet: bool,
    pub(crate) set: Vec<String>,
    pub(crate) pg: Vec<String>,
    pub(crate) apply: Option<String>,
    pub(crate) replace: Option<String>,
}

fn read_source(source: &str) -> anyhow::Result<Map<String, Value>> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the configuration from standard input")?;
        text
    } else {
        std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?
    };
    parse_document(
        &text,
        if source == "-" {
            "standard input"
        } else {
            source
        },
    )
}

/// `edit-config`.
pub(crate) async fn edit(ctl: &Ctl, a: EditArgs) -> anyhow::Result<()> {
    let name = ctl.scope(a.cluster.as_deref())?;
    let (dcs, view) = ctl.view(&name, a.group.or(ctl.default_group())).await?;
    let Some(config) = view.cluster.config.as_ref() else {
        bail!(
            "The config key does not exist in the cluster {name}; is the cluster initialized? (see `keelctl list {name}`)"
        );
    };
    let before = yaml(&Value::Object(config.data.clone()));
    let mut changed = config.data.clone();
    let mut edited = false;
    if let Some(source) = &a.replace {
        changed = read_source(source)?;
        edited = true;
    }
    if let Some(source) = &a.apply {
        patch(&mut changed, &read_source(source)?);
        edited = true;
    }
    if !a.set.is_empty() || !a.pg.is_empty() {
        let mut pairs = a.set.clone();
        pairs.extend(
            a.pg.iter()
                .map(|p| format!("postgresql.parameters.{}", p.trim_start())),
        );
        changed = apply_pairs(&changed, &pairs)?;
        edited = true;
    }
    let after = if edited {
        yaml(&Value::Object(changed.clone()))
    } else {
        let text = invoke_editor(&before, &name)?;
        changed = parse_document(&text, "the edited configuration")?;
        text
    };
    if changed == config.data {
        if !a.quiet {
            println!("Not changed");
        }
        return Ok(());
    }
    if !a.quiet {
        print!("{}", unified_diff(&before, &after));
    }
    let from_stdin = a.apply.as_deref() == Some("-") || a.replace.as_deref() == Some("-");
    if from_stdin && !a.force {
        println!("Use --force option to apply changes");
        return Ok(());
    }
    if a.force || prompt::confirm("Apply these changes?")? {
        match dcs.set_config(&changed, Some(&config.version)).await {
            Ok(_) => println!("Configuration changed"),
            Err(e) if e.is_conflict() => {
                bail!(
                    "Config modification aborted due to concurrent changes; run the command again to edit the current configuration"
                )
            }
            Err(e) => bail!(
                "writing the configuration to the DCS ({}) failed: {e}",
                ctl.dcs_endpoints()
            ),
        }
    }
    Ok(())
}

/// Edit `before` in `$EDITOR` (else `editor`, else `vi`) and return the text.
fn invoke_editor(before: &str, cluster: &str) -> anyhow::Result<String> {
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| ["editor", "vi"].into_iter().find(|e| on_path(e)).map(str::to_owned))
        .context("EDITOR environment variable is not set. editor or vi are not available; set EDITOR, or use -s/-p/--apply")?;
    let file = tempfile::Builder::new()
        .prefix(&format!("{}-config-", cluster.replace('/', "_")))
        .suffix(".yaml")
        .tempfile()
        .context("creating a temporary file to edit")?;
    std::fs::write(file.path(), before).context("writing the temporary file")?;
    // EDITOR may carry arguments (`code --wait`), as a shell would split them.
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let status = Command::new(program)
        .args(words)
        .arg(file.path())
        .status()
        .with_context(|| format!("cannot start the editor `{editor}`"))?;
    if !status.success() {
        bail!(
            "Editor exited with return code {}",
            status.code().unwrap_or(-1)
        );
    }
    std::fs::read_to_string(file.path()).context("reading the edited file back")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `show-config`.
pub(crate) async fn show(
    ctl: &Ctl,
    cluster: Option<&str>,
    group: Option<u32>,
) -> anyhow::Result<()> {
    let name = ctl.scope(cluster)?;
    let (_, view) = ctl.view(&name, group.or(ctl.default_group())).await?;
    if let Some(config) = &view.cluster.config {
        println!("{}", yaml(&Value::Object(config.data.clone())));
    }
    Ok(())
}
