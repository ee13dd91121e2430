//! A fiber stack overflow is reported by name and aborts; faults that are not ours are not.
//!
//! Each test re-runs this binary as a child (`--exact <test>`, selected by an environment
//! variable) because the interesting outcome is the child's death. The fiber layer is being
//! written separately, so the child drives a `corosensei::Coroutine` on a pool stack directly.

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::panic::Location;
use std::process::{Command, Output};

use corosensei::Coroutine;
use fibra::__stack_test_support::{ensure_alt_stack, install_overflow_handler, Identity, Pool};

const CHILD: &str = "FIBRA_STACK_OVERFLOW_CHILD";
const STACK: usize = 64 * 1024;

/// Runs `test` in a child process with `env` set; returns its output.
fn run_child(test: &str, env: &[(&str, &str)]) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn is_child(test: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(test)
}

/// Where the child's fiber was "spawned"; the parent calls it too to build the expected text.
fn spawn_site() -> &'static Location<'static> {
    Location::caller()
}

fn expected(id: u64, name: Option<&str>) -> String {
    let at = spawn_site();
    let name = name.map(|n| format!(" \"{n}\"")).unwrap_or_default();
    format!(
        "fibra: fiber {id}{name} (spawned at {}:{}:{}) overflowed its 64 KiB stack; \
         give it more with fibra::Builder::stack_size, or every fiber with \
         fibra::RuntimeBuilder::stack_size\n",
        at.file(),
        at.line(),
        at.column()
    )
}

/// Recurses with a 4 KiB frame until the stack runs out.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    black_box(&mut frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(black_box(frame[depth as usize % 4096]))
}

/// Child body: overflow a fiber stack taken from `pool`, named by `id`.
fn overflow_on(pool: &Pool, id: u64, name: Option<&str>) -> ! {
    install_overflow_handler();
    ensure_alt_stack();
    let stack = pool.take(STACK).unwrap();
    stack.set_identity(Identity::leak(id, name, spawn_site(), STACK));
    let mut co = Coroutine::with_stack(stack, |_: &corosensei::Yielder<(), ()>, ()| recurse(0));
    co.resume(());
    unreachable!("the coroutine overflowed its stack");
}

fn assert_reported(out: &Output, id: u64, name: Option<&str>) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "child status {}; stderr:\n{stderr}",
        out.status
    );
    assert!(stderr.contains(&expected(id, name)), "stderr:\n{stderr}");
}

#[test]
fn overflow_is_reported_and_aborts() {
    const NAME: &str = "overflow_is_reported_and_aborts";
    if is_child(NAME) {
        overflow_on(&Pool::new(), 42, Some("conn-17"));
    }
    let out = run_child(NAME, &[]);
    assert_reported(&out, 42, Some("conn-17"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fiber 42 \"conn-17\"") && stderr.contains("overflowed its 64 KiB stack")
    );
}

#[test]
fn overflow_is_reported_with_mprotect_guards() {
    const NAME: &str = "overflow_is_reported_with_mprotect_guards";
    if is_child(NAME) {
        let pool = Pool::new();
        let probe = pool.take(STACK).unwrap();
        assert_eq!(
            pool.mprotect_guards(),
            1,
            "FIBRA_FORCE_MPROTECT_GUARDS=1 took effect"
        );
        pool.give(probe);
        overflow_on(&pool, 7, None);
    }
    let out = run_child(NAME, &[("FIBRA_FORCE_MPROTECT_GUARDS", "1")]);
    assert_reported(&out, 7, None);
}

#[test]
fn guard_of_a_discarded_pooled_slot_still_faults() {
    const NAME: &str = "guard_of_a_discarded_pooled_slot_still_faults";
    if is_child(NAME) {
        let pool = Pool::discarding_every_release();
        let stack = pool.take(STACK).unwrap();
        let guard = stack.guard_start();
        let mut co = Coroutine::with_stack(stack, |_: &corosensei::Yielder<(), ()>, ()| {
            recurse(u64::MAX - 3) // touch a few pages, then return
        });
        co.resume(());
        pool.give(co.into_stack());
        // The release above ran MADV_DONTNEED over the whole slot, guard page included.
        let again = pool.take(STACK).unwrap();
        assert_eq!(again.guard_start(), guard, "LIFO hands back the same slot");
        pool.give(again);
        overflow_on(&pool, 43, Some("pooled"));
    }
    assert_reported(&run_child(NAME, &[]), 43, Some("pooled"));
}

#[test]
fn faults_that_are_not_ours_keep_their_default_action() {
    const NAME: &str = "faults_that_are_not_ours_keep_their_default_action";
    if is_child(NAME) {
        install_overflow_handler();
        let pool = Pool::new(); // a registered region, so the handler has something to check
        let _stack = pool.take(STACK).unwrap();
        // SAFETY: none; this deliberately faults on an unmapped address.
        unsafe { std::ptr::read_volatile(black_box(16usize) as *const u8) };
        unreachable!();
    }
    let out = run_child(NAME, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "status {}; stderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("fibra:"), "stderr:\n{stderr}");
}
