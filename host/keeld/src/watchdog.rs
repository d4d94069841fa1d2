//! The watchdog device (Patroni's `watchdog` section): armed before this node runs
//! as a primary, kept alive after every lock renewal, disabled (magic close) when it
//! stops leading. If keeld freezes while PostgreSQL keeps taking writes, the device
//! resets the machine before the leader key can expire and another node promote.
//!
//! The lease guard (`ha::lease`) covers the same risk in software, as long as keeld
//! runs at all; the watchdog also covers a hung process or kernel.

use std::path::Path;

use keel_config::{WatchdogMode, WatchdogSettings};

/// One watchdog device, opened while this node leads.
pub(crate) struct Watchdog {
    settings: WatchdogSettings,
    device: Option<watchdog_device::Watchdog>,
    /// An `automatic` watchdog that could not be opened is reported once.
    reported: bool,
}

/// The device's number: `/dev/watchdog` is `None`, `/dev/watchdogN` is `Some(N)`.
fn device_number(path: &Path) -> Result<Option<u8>, String> {
    let text = path.to_string_lossy();
    match text.strip_prefix("/dev/watchdog") {
        Some("") => Ok(None),
        Some(n) => n.parse().map(Some).map_err(|_| not_supported(path)),
        None => Err(not_supported(path)),
    }
}

fn not_supported(path: &Path) -> String {
    format!(
        "watchdog.device: {} is not /dev/watchdog or /dev/watchdogN, the devices Keel can open",
        path.display()
    )
}

/// The device timeout for `ttl`: `ttl - safety_margin` (half the ttl for -1),
/// which must outlast a loop_wait so a healthy loop always keeps it alive.
fn timeout_for(settings: &WatchdogSettings, ttl: u32, loop_wait: u32) -> Result<i32, String> {
    let ttl = i64::from(ttl);
    let timeout = match settings.safety_margin {
        -1 => ttl / 2,
        margin => ttl - i64::from(margin),
    };
    if timeout <= i64::from(loop_wait) {
        return Err(format!(
            "a watchdog timeout of ttl {ttl} s - watchdog.safety_margin {} s = {timeout} s would \
             not outlast loop_wait ({loop_wait} s)",
            settings.safety_margin
        ));
    }
    Ok(i32::try_from(timeout).unwrap_or(i32::MAX))
}

impl Watchdog {
    pub(crate) fn new(settings: WatchdogSettings) -> Self {
        Self {
            settings,
            device: None,
            reported: false,
        }
    }

    /// The watchdog is to be activated before this node leads (`mode` not `off`).
    pub(crate) fn enabled(&self) -> bool {
        self.settings.mode != WatchdogMode::Off
    }

    /// `mode: required` and the device cannot be written: this node must not lead
    /// (checked without opening it: opening a watchdog starts it).
    pub(crate) fn failed(&self) -> bool {
        self.settings.mode == WatchdogMode::Required
            && self.device.is_none()
            && rustix::fs::access(&self.settings.device, rustix::fs::Access::WRITE_OK).is_err()
    }

    pub(crate) fn is_active(&self) -> bool {
        self.device.is_some()
    }

    /// Open the device with a safe timeout. `false` only when `mode: required` and
    /// that failed: the node must not lead. An `automatic` failure is logged and
    /// the node leads without a watchdog, as with Patroni.
    pub(crate) fn activate(&mut self, ttl: u32, loop_wait: u32) -> bool {
        if self.device.is_some() || !self.enabled() {
            return true;
        }
        match self.open(ttl, loop_wait) {
            Ok(device) => {
                tracing::info!("watchdog {} activated", self.settings.device.display());
                self.device = Some(device);
                self.reported = false;
                true
            }
            Err(why) if self.settings.mode == WatchdogMode::Required => {
                tracing::error!("watchdog required, but it could not be activated: {why}");
                false
            }
            Err(why) => {
                if !self.reported {
                    tracing::warn!("running without a watchdog: {why}");
                    self.reported = true;
                }
                true
            }
        }
    }

    fn open(&self, ttl: u32, loop_wait: u32) -> Result<watchdog_device::Watchdog, String> {
        let path = &self.settings.device;
        let timeout = timeout_for(&self.settings, ttl, loop_wait)?;
        let number = device_number(path)?;
        let opened = match number {
            None => watchdog_device::Watchdog::new(),
            Some(n) => watchdog_device::Watchdog::new_by_id(n),
        };
        let mut device = opened.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match device.set_timeout(timeout) {
            Ok(actual) if actual <= timeout => Ok(device),
            outcome => {
                // Closed again: a timeout longer than the ttl would fire after another
                // node had promoted, and one that cannot be set is not known to be safe.
                if let Err(e) = device.magic_close() {
                    tracing::error!("watchdog: the device may stay armed: {e}");
                }
                Err(match outcome {
                    Ok(actual) => {
                        format!("the device set a timeout of {actual} s, not {timeout} s")
                    }
                    Err(e) => format!("cannot set the timeout to {timeout} s: {e}"),
                })
            }
        }
    }

    /// Reset the device's timer (after a lock renewal).
    pub(crate) fn keepalive(&mut self) {
        if let Some(device) = &mut self.device
            && let Err(e) = device.keep_alive()
        {
            tracing::error!("watchdog keepalive failed: {e}");
        }
    }

    /// Stop the device (this node no longer leads, or the cluster is paused).
    pub(crate) fn disable(&mut self) {
        if let Some(mut device) = self.device.take() {
            match device.magic_close() {
                Ok(()) => tracing::info!("watchdog disabled"),
                Err(e) => tracing::error!("watchdog: disabling failed, it may fire: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: WatchdogMode, device: &str, safety_margin: i32) -> WatchdogSettings {
        let mut s = WatchdogSettings::default();
        s.mode = mode;
        s.device = device.into();
        s.safety_margin = safety_margin;
        s
    }

    #[test]
    fn the_timeout_leaves_the_safety_margin_and_outlasts_loop_wait() {
        let s = settings(WatchdogMode::Required, "/dev/watchdog", 5);
        assert_eq!(timeout_for(&s, 30, 10), Ok(25));
        assert_eq!(
            timeout_for(
                &settings(WatchdogMode::Required, "/dev/watchdog", -1),
                30,
                10
            ),
            Ok(15)
        );
        let short = timeout_for(&s, 8, 3).unwrap_err();
        assert!(short.contains("loop_wait"), "{short}");
    }

    #[test]
    fn only_watchdog_devices_are_opened() {
        assert_eq!(device_number(Path::new("/dev/watchdog")), Ok(None));
        assert_eq!(device_number(Path::new("/dev/watchdog1")), Ok(Some(1)));
        let other = device_number(Path::new("/tmp/wd")).unwrap_err();
        assert!(other.contains("watchdog.device"), "{other}");
    }

    #[test]
    fn a_required_watchdog_that_cannot_be_opened_keeps_the_node_from_leading() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("watchdog");
        let mut required = Watchdog::new(settings(
            WatchdogMode::Required,
            &missing.to_string_lossy(),
            5,
        ));
        assert!(required.failed(), "a missing device is known to fail");
        assert!(!required.activate(30, 10));
        assert!(!required.is_active());

        let mut automatic = Watchdog::new(settings(
            WatchdogMode::Automatic,
            &missing.to_string_lossy(),
            5,
        ));
        assert!(!automatic.failed());
        assert!(automatic.activate(30, 10), "automatic leads without one");
        assert!(!automatic.is_active());
        automatic.keepalive();
        automatic.disable();

        let off = Watchdog::new(settings(WatchdogMode::Off, "/dev/watchdog", 5));
        assert!(!off.enabled() && !off.failed());
    }
}
