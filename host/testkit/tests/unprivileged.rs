//! The re-exec macro runs the body as a non-root user when started as root.

#[test]
fn body_runs_unprivileged() {
    keel_testkit::unprivileged_test!();
    assert!(
        !keel_testkit::unprivileged::is_root(),
        "body must not run as root"
    );
}
