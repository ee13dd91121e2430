//! `fibra::debug::metrics`: counters match exact counts in a controlled run.

mod common;

#[test]
fn counters_match_a_controlled_run() {
    let _w = common::watchdog("counters_match_a_controlled_run");
    const N: u64 = 500;
    // One worker (no steals), no cooperative budget (no extra yields), no monitor.
    let rt = fibra::Runtime::builder()
        .workers(1)
        .max_spare_workers(0)
        .coop_budget(0)
        .monitor(false)
        .build()
        .unwrap();
    let (m, k) = rt.run(|| {
        let before = fibra::debug::metrics().unwrap();
        assert_eq!(before.workers[0].fibers_run, 1); // the root, running now
        let hs: Vec<_> = (0..N).map(|i| fibra::spawn(move || i)).collect();
        let queued = fibra::debug::metrics().unwrap();
        // The 256-slot ring overflows half of itself into the global queue.
        assert_eq!(
            queued.workers[0].queue_depth + queued.global_queue_depth,
            N as usize
        );
        // The root sleeps (k times) until every fiber has finished, so no join parks and no
        // completion wakes it: the worker runs each fiber once, and the root 1 + k times.
        let mut k = 0;
        while !hs.iter().all(|h| h.is_finished()) {
            fibra::sleep(std::time::Duration::from_millis(5));
            k += 1;
        }
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, N * (N - 1) / 2);
        (fibra::debug::metrics().unwrap(), k)
    });
    println!("{m}");
    let w = &m.workers[0];
    assert!(k >= 1);
    assert_eq!(
        w.fibers_run,
        N + 1 + k,
        "N fibers, and the root 1 + {k} times"
    );
    assert_eq!(
        w.run_next_hits, 0,
        "timers wake into the FIFO, not the run-next slot"
    );
    assert_eq!(w.steals, 0);
    assert_eq!(w.queue_depth, 0);
    assert_eq!(m.live_fibers, 1, "only the root is alive");
    assert_eq!(m.workers.len(), 1);
    assert_eq!((m.stall_reports, m.spares_started), (0, 0));
    assert_eq!(m.blocking_threads, 0);
}

#[test]
fn blocking_threads_and_sleeps_are_counted() {
    let _w = common::watchdog("blocking_threads_and_sleeps_are_counted");
    let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    let (m, slept_before) = rt.run(|| {
        let slept_before = fibra::debug::metrics().unwrap().workers[0].times_slept;
        // The only fiber sleeps: its worker has nothing to do and sleeps too.
        fibra::sleep(std::time::Duration::from_millis(20));
        fibra::spawn_blocking(|| ()).join().unwrap();
        (fibra::debug::metrics().unwrap(), slept_before)
    });
    assert!(m.workers[0].times_slept > slept_before, "{m}");
    assert_eq!(m.blocking_threads, 1, "{m}");
    assert!(rt.metrics().is_empty(), "the session is over");
}

#[test]
fn wake_to_run_samples_one_fiber_in_64() {
    let _w = common::watchdog("wake_to_run_samples_one_fiber_in_64");
    const N: usize = 640;
    let rt = fibra::Runtime::builder()
        .workers(1)
        .coop_budget(0)
        .build()
        .unwrap();
    let (m, expected) = rt.run(|| {
        let go = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let go = go.clone();
                fibra::spawn(move || {
                    while !go.load(std::sync::atomic::Ordering::Acquire) {
                        fibra::park();
                    }
                })
            })
            .collect();
        while !hs
            .iter()
            .all(|h| h.fiber().park_reason() == fibra::ParkReason::User)
        {
            fibra::sleep(std::time::Duration::from_millis(1));
        }
        let before = fibra::debug::metrics().unwrap().wake_to_run.samples();
        go.store(true, std::sync::atomic::Ordering::Release);
        // One real wake each (they are parked, so no token is left behind).
        hs.iter().for_each(|h| h.fiber().unpark());
        // Timer wakes of the root are not sampled; the fibers finish without waking anyone.
        while !hs.iter().all(|h| h.is_finished()) {
            fibra::sleep(std::time::Duration::from_millis(1));
        }
        let sampled = hs
            .iter()
            .filter(|h| h.fiber().id().as_u64() % 64 == 0)
            .count() as u64;
        let m = fibra::debug::metrics().unwrap();
        hs.into_iter().for_each(|h| h.join().unwrap());
        (m.wake_to_run.samples() - before, sampled)
    });
    assert_eq!(m, expected);
    assert!(
        expected >= 9,
        "640 consecutive ids hold at least 9 multiples of 64"
    );
}

/// Each read that had to wait is released by one reactor event: on one worker, `ROUNDS`
/// ping-pong rounds over a socket pair cost at least `ROUNDS` I/O wake-ups per side that
/// waits, and none before the first.
#[test]
fn reactor_polls_and_io_wakeups_are_counted() {
    use std::io::{Read, Write};
    let _w = common::watchdog("reactor_polls_and_io_wakeups_are_counted");
    const ROUNDS: u64 = 20;
    let rt = fibra::Runtime::builder()
        .workers(1)
        .max_spare_workers(0)
        .build()
        .unwrap();
    let (before, after) = rt.run(|| {
        let before = fibra::debug::metrics().unwrap();
        let listener = fibra::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = fibra::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut b = [0u8; 1];
            for _ in 0..ROUNDS {
                s.read_exact(&mut b).unwrap(); // waits: the client writes only after our echo
                s.write_all(&b).unwrap();
            }
        });
        let mut c = fibra::net::TcpStream::connect(addr).unwrap();
        let mut b = [7u8; 1];
        for _ in 0..ROUNDS {
            c.write_all(&b).unwrap();
            c.read_exact(&mut b).unwrap(); // waits for the echo
        }
        echo.join().unwrap();
        (before, fibra::debug::metrics().unwrap())
    });
    println!("{after}");
    let (b, a) = (&before.workers[0], &after.workers[0]);
    assert_eq!((b.reactor_polls, b.io_wakeups), (0, 0), "no socket yet");
    // The client's reads all wait (the echo fiber runs only when the client parks); so do
    // the echo's, but the first of them may find its byte already there.
    assert!(
        a.io_wakeups >= 2 * ROUNDS - 1,
        "{} I/O wake-ups for {ROUNDS} rounds",
        a.io_wakeups
    );
    assert!(a.reactor_polls >= 1);
}
