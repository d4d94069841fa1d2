//! Hostile plugins: each misbehaviour fails its own call with an error that
//! blames the plugin, the next call gets a fresh (re-configured) instance, and
//! the host process carries on.

use std::time::{Duration, Instant};

use keel_runtime::{
    Grants, GroupView, LoadedPlugin, MppError, MppPlugin, Parameter, PluginError, PluginLimits,
};
use keel_tests::{PluginDir, components as c};

use crate::runtime_for;

const LIMITS: PluginLimits = PluginLimits {
    memory_bytes: 32 << 20,
    call_timeout: Duration::from_millis(300),
};

async fn hostile(component: &str) -> (PluginDir, MppPlugin) {
    let dir = PluginDir::with(&[component]).unwrap();
    let file = dir
        .path()
        .join(std::path::Path::new(component).file_name().unwrap());
    let loaded = LoadedPlugin::load(&runtime_for(&dir), &file).await.unwrap();
    let plugin = loaded.mpp(Grants::default(), LIMITS).unwrap();
    plugin.validate_config("{}").await.unwrap();
    (dir, plugin)
}

fn formation() -> Vec<GroupView> {
    vec![
        GroupView {
            group: 0,
            leader: Some("c1".into()),
            members: vec![],
        },
        GroupView {
            group: 1,
            leader: None,
            members: vec![],
        },
    ]
}

/// After a fault the plugin answers again, from a fresh instance.
async fn recovers(plugin: &MppPlugin) {
    assert_eq!(plugin.group().await.unwrap(), 0);
    assert_eq!(plugin.metrics().snapshot().instantiations, 2);
}

#[tokio::test]
async fn an_endless_loop_hits_the_deadline() {
    let (_dir, plugin) = hostile(c::HOSTILE_SPIN).await;
    let started = Instant::now();
    let err = plugin.sync_meta_data(&formation()).await.unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        MppError::Fault(PluginError::Deadline {
            plugin,
            call,
            budget,
        }) => {
            assert_eq!(
                (plugin.as_str(), *call, *budget),
                ("hostile-spin", "sync-meta-data", LIMITS.call_timeout)
            );
        }
        other => panic!("expected a deadline fault, got {other:?}"),
    }
    // Interrupted promptly: within the budget plus scheduling slack, not seconds later.
    assert!(elapsed < LIMITS.call_timeout * 10, "took {elapsed:?}");
    assert!(err.to_string().contains("hostile-spin"), "{err}");
    recovers(&plugin).await;
    assert_eq!(plugin.metrics().snapshot().deadline_hits, 1);
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    let (_dir, plugin) = hostile(c::HOSTILE_ALLOC).await;
    let err = plugin.sync_meta_data(&formation()).await.unwrap_err();
    match &err {
        MppError::Fault(PluginError::MemoryLimit {
            plugin,
            limit_bytes,
            ..
        }) => {
            assert_eq!(
                (plugin.as_str(), *limit_bytes),
                ("hostile-alloc", LIMITS.memory_bytes)
            );
        }
        other => panic!("expected a memory-limit fault, got {other:?}"),
    }
    recovers(&plugin).await;
    let metrics = plugin.metrics().snapshot();
    assert_eq!(metrics.memory_limit_hits, 1);
    assert!(
        metrics.memory_high_water <= LIMITS.memory_bytes as u64,
        "{metrics:?}"
    );
    assert!(
        metrics.memory_high_water > (LIMITS.memory_bytes / 2) as u64,
        "{metrics:?}"
    );
}

#[tokio::test]
async fn a_panic_is_a_trap_that_carries_the_message() {
    let (_dir, plugin) = hostile(c::HOSTILE_PANIC).await;
    let err = plugin.sync_meta_data(&formation()).await.unwrap_err();
    match &err {
        MppError::Fault(PluginError::Trap {
            plugin,
            call,
            reason,
        }) => {
            assert_eq!(
                (plugin.as_str(), *call),
                ("hostile-panic", "sync-meta-data")
            );
            assert!(
                reason.contains("hostile-panic was shown 2 groups and gave up"),
                "{reason}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    recovers(&plugin).await;
    assert_eq!(plugin.metrics().snapshot().traps, 1);
}

#[tokio::test]
async fn garbage_parameters_never_reach_the_caller() {
    let (_dir, plugin) = hostile(c::HOSTILE_GARBAGE).await;
    let current = [Parameter {
        name: "max_connections".into(),
        value: "100".into(),
    }];
    let err = plugin.adjust_gucs(&current).await.unwrap_err();
    match &err {
        MppError::Fault(PluginError::BadReturn {
            plugin,
            call,
            problem,
        }) => {
            assert_eq!((plugin.as_str(), *call), ("hostile-garbage", "adjust-gucs"));
            assert!(
                problem.contains("is not a PostgreSQL parameter name"),
                "{problem}"
            );
        }
        other => panic!("expected a bad-return fault, got {other:?}"),
    }
    assert_eq!(plugin.metrics().snapshot().bad_returns, 1);
    // Other calls are unaffected.
    plugin.sync_meta_data(&formation()).await.unwrap();
}

#[tokio::test]
async fn a_cancelled_call_does_not_poison_the_next_one() {
    let (_dir, plugin) = hostile(c::HOSTILE_SPIN).await;
    // The caller gives up before the plugin's own deadline.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(50),
        plugin.sync_meta_data(&formation()),
    )
    .await;
    assert!(cancelled.is_err());
    recovers(&plugin).await;
}

#[tokio::test]
async fn one_plugin_faulting_leaves_another_untouched() {
    let (_dir, spin) = hostile(c::HOSTILE_SPIN).await;
    let (_dir2, panic) = hostile(c::HOSTILE_PANIC).await;
    let groups = formation();
    let (a, b) = tokio::join!(spin.sync_meta_data(&groups), panic.group());
    assert!(matches!(
        a,
        Err(MppError::Fault(PluginError::Deadline { .. }))
    ));
    assert_eq!(b.unwrap(), 0);
    assert_eq!(panic.metrics().snapshot().instantiations, 1);
}
