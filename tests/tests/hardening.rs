//! A VM that cannot stay down: with `failure_policy: FAIL_RELOAD` (as the
//! shipped envoy.yaml sets it), a filter VM that traps is replaced, and
//! logins work again.

// Assertions on fixtures unwrap: a failure should stop where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use rulegate_tests::*;

const PLAN: &str = "https://rulegate.dev/claims/plan";

#[test]
fn logins_keep_working_after_the_filter_vm_traps() {
    // One worker, so the trapped VM is the one every request meets.
    let stack = Stack::start_with(Options {
        trap_build: true,
        workers: Some(1),
        ..Options::default()
    });
    let login = |label: &str| -> Reply {
        let authorization =
            Browser::new(&stack).authorize(Client::Spa, &new_email(label), DEMO_PASSWORD);
        exchange_code(&stack, &authorization)
    };
    let before = login("before.trap");
    assert_eq!(before.status, 200, "{}", before.summary());

    // The test build traps on this header, as a bug in the filter would.
    let trapped = stack.post_form(
        &format!("{}/token", stack.base),
        &[("grant_type", "authorization_code"), ("code", "x")],
        None,
        &[("x-rulegate-test-trap", "1")],
    );
    assert_ne!(trapped.status, 200, "the trapped request cannot succeed");

    // Envoy replaces the VM (with a short backoff); logins come back with
    // their rules.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let reply = login("after.trap");
        let rewritten = reply.status == 200
            && decode_jwt(reply.json()["id_token"].as_str().unwrap()).1[PLAN] == "free";
        if rewritten || Instant::now() > deadline {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(after.status, 200, "{}", after.summary());
    let (_, claims) = decode_jwt(after.json()["id_token"].as_str().unwrap());
    assert_eq!(claims[PLAN], "free", "the reloaded VM runs the rules");
    assert!(
        stack.stat("wasm.rulegate.vm_reload_success") >= 1,
        "Envoy reloaded the VM"
    );
}
