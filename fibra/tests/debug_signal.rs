//! `RuntimeBuilder::dump_on_signal`: a signal dumps the session to a file while fibers keep
//! running with exact counts, and the previous handler comes back at the session's end.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

#[inline(never)]
fn parked_until_stopped(stop: &AtomicBool) {
    while !stop.load(Acquire) {
        fibra::park();
    }
}

fn current_handler(sig: libc::c_int) -> usize {
    // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: querying only (null new action); `old` has room for the answer.
    let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0);
    old.sa_sigaction
}

#[test]
fn signal_dump_does_not_disturb_running_fibers() {
    let _w = common::watchdog("signal_dump_does_not_disturb_running_fibers");
    const MESSAGES: u64 = 20_000;
    let path = std::env::temp_dir().join(format!("fibra-signal-dump-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&path);
    assert_eq!(current_handler(libc::SIGUSR1), libc::SIG_DFL);
    let rt = fibra::Runtime::builder()
        .workers(2)
        .dump_on_signal_to_file(libc::SIGUSR1, &path)
        .build()
        .unwrap();
    let p2 = path.clone();
    let (sent, sum, received) = rt.run(move || {
        assert_ne!(current_handler(libc::SIGUSR1), libc::SIG_DFL);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let napper = fibra::Builder::new()
            .name("napper")
            .spawn(move || parked_until_stopped(&s2))
            .unwrap();
        // A ping-pong through a one-slot channel: both sides park and wake constantly, so
        // capture wake-ups land on them mid-protocol.
        // The producer keeps going until the dump is in, so the dumps land mid-protocol.
        let (tx, rx) = fibra::chan::bounded::<u64>(1);
        let dumped = Arc::new(AtomicBool::new(false));
        let d2 = dumped.clone();
        let producer = fibra::Builder::new()
            .name("producer")
            .spawn(move || {
                let mut sent = 0u64;
                while sent < MESSAGES || !d2.load(Acquire) {
                    tx.send(sent).unwrap();
                    sent += 1;
                }
                sent
            })
            .unwrap();
        let consumer = fibra::Builder::new()
            .name("consumer")
            .spawn(move || rx.iter().fold((0u64, 0u64), |(s, n), v| (s + v, n + 1)))
            .unwrap();
        // Signal from a plain thread until a dump listing the napper lands in the file.
        let signaller = std::thread::spawn(move || loop {
            // SAFETY: sending a signal to our own process; the runtime's handler is installed.
            unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
            std::thread::sleep(Duration::from_millis(5));
            let text = std::fs::read_to_string(&p2).unwrap_or_default();
            if text.contains("\"napper\" [User") && text.contains("parked_until_stopped") {
                return text;
            }
        });
        while !signaller.is_finished() {
            fibra::sleep(Duration::from_millis(1));
        }
        let text = signaller.join().unwrap();
        dumped.store(true, Release);
        assert!(text.starts_with("fibra dump: "), "{text}");
        let sent = producer.join().unwrap();
        let (sum, received) = consumer.join().unwrap();
        assert!(sent >= MESSAGES);
        stop.store(true, Release);
        napper.fiber().unpark();
        napper.join().unwrap();
        (sent, sum, received)
    });
    assert_eq!(received, sent, "every message arrived once");
    assert_eq!(sum, sent * (sent - 1) / 2, "each exactly once");
    assert_eq!(
        current_handler(libc::SIGUSR1),
        libc::SIG_DFL,
        "previous handler restored"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn bad_signals_are_refused_at_build() {
    for sig in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, 0, 100_000] {
        let err = fibra::Runtime::builder()
            .dump_on_signal(sig)
            .build()
            .unwrap_err();
        assert!(matches!(err, fibra::BuildError::BadDumpSignal(s) if s == sig));
        assert!(err.to_string().contains("cannot trigger a dump"));
    }
}
