//! A real fiber that overflows its stack is reported by id, name, spawn location and size,
//! then the process aborts. Runs the overflow in a child process (this binary, re-executed).

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CHILD: &str = "FIBRA_FIBER_OVERFLOW_CHILD";

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 2048];
    black_box(&mut frame);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(black_box(frame[depth as usize % 2048]))
}

fn child_overflows(stack: usize) {
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        // A few healthy fibers first, so the offender is not fiber 1.
        for _ in 0..3 {
            fibra::spawn(fibra::yield_now).join().unwrap();
        }
        let b = fibra::Builder::new().name("conn-17").stack_size(stack);
        // Printed before the spawn: the overflow may abort the process before anything after it.
        eprintln!("spawn line {}", line!() + 1);
        let h = b.spawn(|| recurse(0)).unwrap();
        let _ = h.join();
    });
    unreachable!("the overflow aborts the process");
}

fn run(stack: usize, size_text: &str) {
    if let Ok(s) = std::env::var(CHILD) {
        return child_overflows(s.parse().unwrap());
    }
    let test = if stack == 64 * 1024 {
        "default_stack_overflow_is_reported"
    } else {
        "custom_stack_overflow_is_reported"
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, stack.to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc_sigabrt()),
        "child must abort, got {:?}; stderr:\n{stderr}",
        out.status
    );
    let line: u32 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("spawn line "))
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no spawn line in child stderr:\n{stderr}"));
    let report = stderr
        .lines()
        .find(|l| l.starts_with("fibra: fiber "))
        .unwrap_or_else(|| panic!("no overflow report in child stderr:\n{stderr}"));
    assert!(report.contains(" \"conn-17\" "), "{report}");
    assert!(
        report.contains(&format!(
            "(spawned at fibra/tests/fiber_overflow.rs:{line}:"
        )),
        "{report}"
    );
    assert!(
        report.ends_with(&format!(
            "overflowed its {size_text} stack; give it more with fibra::Builder::stack_size, \
             or every fiber with fibra::RuntimeBuilder::stack_size"
        )),
        "{report}"
    );
    let id: u64 = report["fibra: fiber ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        id > 4,
        "the offender is not one of the first fibers: {report}"
    );
}

fn libc_sigabrt() -> i32 {
    6
}

#[test]
fn default_stack_overflow_is_reported() {
    run(64 * 1024, "64 KiB");
}

#[test]
fn custom_stack_overflow_is_reported() {
    run(128 * 1024, "128 KiB");
}
