//! Re-running a test as the unprivileged user `keel` when the test binary runs as root.
//!
//! `initdb` and `postgres` refuse to run as root, and CI runs `cargo test` as root. A test that
//! starts [`unprivileged_test!`](crate::unprivileged_test) therefore re-executes its own binary as
//! `keel` with `runuser -u keel -- <current_exe> --exact <test name> --nocapture`, waits for it and
//! asserts that it passed. The child sees the marker variable [`MARKER_ENV`] and runs the test body
//! for real; without root the macro does nothing. The child's output is collected and handed to
//! the parent test's own (captured) output in one piece: tests running in parallel would otherwise
//! interleave their lines on the terminal, and libtest shows it only for a test that failed.
//!
//! **Permissions.** `keel` must be able to execute the test binary: every directory from `/` down
//! to `target/debug/deps` must be traversable (`o+x`) and the binary readable and executable
//! (`o+rx`, cargo's default with umask 022). This crate never changes permissions to get there;
//! the CI setup makes the checkout traversable (`chmod o+rx /work /work/main`). When the re-exec
//! fails for that reason, the panic message names the first directory that blocks `keel`.
//!
//! The user can be changed with `KEEL_TEST_USER`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Set in the environment of a re-executed child; its presence stops further re-execution.
pub const MARKER_ENV: &str = "KEEL_TESTKIT_UNPRIVILEGED_CHILD";

/// The unprivileged user tests run as: `KEEL_TEST_USER`, default `keel`.
pub fn test_user() -> String {
    std::env::var("KEEL_TEST_USER").unwrap_or_else(|_| "keel".to_owned())
}

/// The effective uid of this process, read from `/proc/self/status` (no `unsafe` needed).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved fs
    line.split_whitespace().nth(2)?.parse().ok()
}

/// True when running as root.
pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// For use at the top of a test (usually through [`unprivileged_test!`](crate::unprivileged_test)):
/// when this process is root and not already a re-executed child, re-runs the current test as the
/// unprivileged user and returns its exit status; otherwise returns `None` and the test continues.
///
/// The test's name comes from the name of the current thread, which libtest sets to the test path.
///
/// # Panics
/// When the test name cannot be found, or the child cannot be spawned.
#[expect(
    clippy::print_stdout,
    reason = "the child test's output belongs in this test's captured output"
)]
pub fn reexec_as_unprivileged_if_root() -> Option<ExitStatus> {
    if !is_root() || std::env::var_os(MARKER_ENV).is_some() {
        return None;
    }
    let name = std::thread::current().name().map(str::to_owned);
    let name = match name {
        Some(n) if n != "main" => n,
        _ => panic!(
            "unprivileged_test!: cannot find the test's name from the thread name; \
             run the test binary without --test-threads=1 quirks or call \
             reexec_current_exe_if_root with explicit arguments"
        ),
    };
    let args: Vec<OsString> = vec![
        "--exact".into(),
        name.into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ];
    let output = unprivileged_command(&args)
        .output()
        .unwrap_or_else(|e| panic!("unprivileged: cannot run `runuser -u {}`: {e}", test_user()));
    check_executable(output.status);
    // print!/eprint! go through libtest's capture of this test.
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    Some(output.status)
}

/// Re-runs the current executable with `args` as the unprivileged user when this process is root
/// (and not already a child), returning the child's exit status; `None` when nothing was done.
/// The child writes to this process's stdout and stderr as it goes. Bench binaries
/// (`harness = false`) use this with their own arguments.
///
/// # Panics
/// When `runuser` cannot be spawned, or the user cannot execute the binary (with a message naming
/// the first path that blocks other users).
pub fn reexec_current_exe_if_root(args: &[OsString]) -> Option<ExitStatus> {
    if !is_root() || std::env::var_os(MARKER_ENV).is_some() {
        return None;
    }
    let status = unprivileged_command(args)
        .status()
        .unwrap_or_else(|e| panic!("unprivileged: cannot run `runuser -u {}`: {e}", test_user()));
    check_executable(status);
    Some(status)
}

/// `runuser -u <user> -- <current exe> <args>` with the marker set.
fn unprivileged_command(args: &[OsString]) -> Command {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("unprivileged: cannot find the current executable: {e}"));
    let mut command = Command::new("runuser");
    command
        .arg("-u")
        .arg(test_user())
        .arg("--")
        .arg(&exe)
        .args(args)
        .env(MARKER_ENV, "1");
    command
}

/// Panics naming the path that blocks the user when runuser could not execute the binary.
fn check_executable(status: ExitStatus) {
    // 126: found but not executable; 127: not found (e.g. a directory on the way is closed).
    // The mode-bit check only names the culprit; group access may make it too strict, so it is
    // consulted after the fact.
    if matches!(status.code(), Some(126 | 127)) {
        let exe = std::env::current_exe()
            .unwrap_or_else(|e| panic!("unprivileged: cannot find the current executable: {e}"));
        let blocker = first_unreachable(&exe).unwrap_or_else(|| exe.clone());
        panic!("{}", permission_message(&test_user(), &exe, &blocker));
    }
}

fn permission_message(user: &str, exe: &Path, blocker: &Path) -> String {
    format!(
        "unprivileged: user `{user}` cannot execute the test binary {}.\n\
         The path {} is not reachable for other users. Make every directory on the way \
         traversable, e.g. `chmod o+rx /work /work/main` (the CI setup does this); \
         keel-testkit never changes permissions itself.",
        exe.display(),
        blocker.display()
    )
}

/// The first path from `/` to `exe` that an unrelated user could not traverse (directories) or
/// execute (the file), judged from the `other` permission bits.
fn first_unreachable(exe: &Path) -> Option<PathBuf> {
    let mut prefix = PathBuf::new();
    let parts: Vec<_> = exe.components().collect();
    for (i, part) in parts.iter().enumerate() {
        prefix.push(part);
        let Ok(meta) = std::fs::metadata(&prefix) else {
            return Some(prefix);
        };
        let mode = meta.permissions().mode();
        let last = i + 1 == parts.len();
        let needed = if last { 0o005 } else { 0o001 };
        if mode & needed != needed {
            return Some(prefix);
        }
    }
    None
}

/// Put at the top of a test that starts PostgreSQL: as root, re-runs this test as the unprivileged
/// user, asserts that it passed and returns; otherwise does nothing.
///
/// `unprivileged_test!()` returns `()`; `unprivileged_test!(value)` returns `value` instead (for
/// tests returning `Result`).
#[macro_export]
macro_rules! unprivileged_test {
    () => {
        $crate::unprivileged_test!(())
    };
    ($ret:expr) => {
        if let Some(status) = $crate::unprivileged::reexec_as_unprivileged_if_root() {
            assert!(
                status.success(),
                "test failed when re-run as user `{}`: {status}",
                $crate::unprivileged::test_user()
            );
            return $ret;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_readable() {
        assert!(effective_uid().is_some());
    }

    #[test]
    fn root_path_is_reachable() {
        assert_eq!(first_unreachable(Path::new("/")), None);
    }

    #[test]
    fn missing_path_is_reported() {
        let p = Path::new("/nonexistent-keel-dir/x");
        assert_eq!(
            first_unreachable(p),
            Some(PathBuf::from("/nonexistent-keel-dir"))
        );
    }
}
