//! Issue 19's bugs: `select!` chooses uniformly among ready arms, and channel operations that
//! complete at once (`select!`, `try_send`, `try_recv`) count against the cooperative budget,
//! so a fiber looping over them lets the others on its worker run.
//! Uses only the API that predates the issue, so it runs against the old code too.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;

use fibra::chan;

mod common;

/// Rounds of each fairness count; each arm's share is binomial, sd = sqrt(N p (1 - p)).
const ROUNDS: u64 = 12_000;

/// |wins - expected| must stay under 8 standard deviations (a false failure about once in
/// 10^15 runs); the old "random start, first ready after it" gave arm A 2/3 instead of 1/2 in
/// the 3-arm case: 44 standard deviations off.
fn assert_near(wins: u64, p: f64, what: &str) {
    let n = ROUNDS as f64;
    let expected = n * p;
    let sd = (n * p * (1.0 - p)).sqrt();
    assert!(
        (wins as f64 - expected).abs() < 8.0 * sd,
        "{what}: {wins} of {ROUNDS} wins, expected {expected:.0} ± {:.0}",
        8.0 * sd
    );
}

/// Arms [never ready, A, B] with A and B always ready: A wins about half the time.
fn count_wins_behind_an_idle_arm() -> u64 {
    let (_idle_tx, idle) = chan::unbounded::<u8>(); // a sender alive: never ready
    let (a_tx, a) = chan::unbounded();
    let (b_tx, b) = chan::unbounded();
    for _ in 0..ROUNDS {
        a_tx.send(()).unwrap();
        b_tx.send(()).unwrap();
    }
    let mut a_wins = 0;
    for _ in 0..ROUNDS {
        fibra::select! {
            recv(idle) -> _ => unreachable!(),
            recv(a) -> m => { m.unwrap(); a_wins += 1 }
            recv(b) -> m => m.unwrap(),
        }
    }
    a_wins
}

#[test]
fn select_is_uniform_among_ready_arms_on_a_thread() {
    let _w = common::watchdog("select_is_uniform_among_ready_arms_on_a_thread");
    assert_near(count_wins_behind_an_idle_arm(), 0.5, "A after an idle arm");
}

#[test]
fn select_is_uniform_among_ready_arms_on_a_fiber() {
    let _w = common::watchdog("select_is_uniform_among_ready_arms_on_a_fiber");
    let wins = fibra::run(count_wins_behind_an_idle_arm);
    assert_near(wins, 0.5, "A after an idle arm (fiber)");
}

/// Ready arms scattered among idle ones, send arms included: each ready arm gets 1/3.
#[test]
fn select_is_uniform_with_send_arms_and_gaps() {
    let _w = common::watchdog("select_is_uniform_with_send_arms_and_gaps");
    let (_i1_tx, idle1) = chan::unbounded::<u8>();
    let (full_tx, _full_rx) = chan::bounded::<u8>(0); // no receiver waiting: never ready
    let (a_tx, a) = chan::unbounded();
    let (b_tx, b_rx) = chan::unbounded::<u8>();
    let (c_tx, c) = chan::unbounded();
    for _ in 0..ROUNDS {
        a_tx.send(()).unwrap();
        c_tx.send(()).unwrap();
    }
    let mut wins = [0u64; 3];
    for _ in 0..ROUNDS {
        fibra::select! {
            recv(idle1) -> _ => unreachable!(),
            send(full_tx, 1) -> _ => unreachable!(),
            recv(a) -> _ => wins[0] += 1,
            send(b_tx, 2) -> r => { r.unwrap(); wins[1] += 1 }
            recv(c) -> _ => wins[2] += 1,
        }
    }
    assert_eq!(b_rx.len() as u64, wins[1]);
    for (arm, w) in wins.into_iter().enumerate() {
        assert_near(w, 1.0 / 3.0, &format!("ready arm {arm}"));
    }
}

/// On one worker: runs `busy` (10,000 rounds of an operation that never parks) in a fiber
/// beside another that counts its turns; returns the turns it got while `busy` ran.
fn turns_beside(budget: u32, busy: impl FnOnce() + Send + 'static) -> u64 {
    let rt = fibra::Runtime::builder()
        .workers(1)
        .coop_budget(budget)
        .monitor(false)
        .build()
        .unwrap();
    rt.run(move || {
        let done = Arc::new(AtomicBool::new(false));
        let turns = Arc::new(AtomicU64::new(0));
        let (d, t) = (done.clone(), turns.clone());
        let other = fibra::spawn(move || {
            while !d.load(Acquire) {
                t.fetch_add(1, Relaxed);
                fibra::yield_now();
            }
        });
        fibra::yield_now(); // `other` starts
        let t = turns.clone();
        let busy = fibra::spawn(move || {
            let before = t.load(Relaxed);
            busy();
            t.load(Relaxed) - before
        });
        let seen = busy.join().unwrap();
        done.store(true, Release);
        other.join().unwrap();
        seen
    })
}

const BUSY_ROUNDS: usize = 10_000;

#[test]
fn a_select_that_completes_at_once_counts_against_the_budget() {
    let _w = common::watchdog("a_select_that_completes_at_once_counts_against_the_budget");
    let turns = turns_beside(128, || {
        let (tx, rx) = chan::unbounded::<()>();
        drop(tx); // disconnected: the arm is always ready
        for _ in 0..BUSY_ROUNDS {
            fibra::select! { recv(rx) -> m => assert!(m.is_err()) }
        }
    });
    // 10,000 selects / 128 per run: the other fiber ran about 78 times.
    assert!(
        turns > 0,
        "the other fiber never ran during 10,000 ready selects"
    );
}

#[test]
fn a_select_default_loop_counts_against_the_budget() {
    let _w = common::watchdog("a_select_default_loop_counts_against_the_budget");
    let turns = turns_beside(128, || {
        let (_tx, rx) = chan::unbounded::<()>();
        for _ in 0..BUSY_ROUNDS {
            fibra::select! { recv(rx) -> _ => unreachable!(), default => {} }
        }
    });
    assert!(
        turns > 0,
        "the other fiber never ran during 10,000 polling selects"
    );
}

#[test]
fn try_send_and_try_recv_count_against_the_budget() {
    let _w = common::watchdog("try_send_and_try_recv_count_against_the_budget");
    let sends = turns_beside(128, || {
        let (tx, _rx) = chan::unbounded();
        for i in 0..BUSY_ROUNDS {
            tx.try_send(i).unwrap();
        }
    });
    let recvs = turns_beside(128, || {
        let (tx, rx) = chan::unbounded();
        for i in 0..BUSY_ROUNDS {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.try_iter().count(), BUSY_ROUNDS);
    });
    let fails = turns_beside(128, || {
        let (_tx, rx) = chan::bounded::<u8>(0);
        for _ in 0..BUSY_ROUNDS {
            assert!(rx.try_recv().is_err());
        }
    });
    assert!(
        sends > 0 && recvs > 0 && fails > 0,
        "{sends} {recvs} {fails}"
    );
    // The budget switched off: the same loop never lets the other fiber in (so the counts
    // above come from the budget, not from somewhere else).
    let off = turns_beside(0, || {
        let (tx, _rx) = chan::unbounded();
        for i in 0..BUSY_ROUNDS {
            tx.try_send(i).unwrap();
        }
    });
    assert_eq!(off, 0);
}

/// A fiber that only polls (`try_iter`, `try_send`) beside its partner, which blocks in
/// `recv`/`send` on two rendezvous channels: a request/response exchange. The poller's
/// successes wake the partner only once the poller switches out, so without the budget on
/// failed polls it spins for ever on one worker.
#[test]
fn a_poller_and_its_partner_finish_on_any_worker_count() {
    let _w = common::watchdog_for(
        "a_poller_and_its_partner_finish_on_any_worker_count",
        std::time::Duration::from_secs(30),
    );
    const EXCHANGES: u64 = 500;
    for workers in [1, 2, 4] {
        let rt = fibra::Runtime::builder().workers(workers).build().unwrap();
        let got = rt.run(|| {
            let (ask_tx, ask_rx) = chan::bounded::<()>(0);
            let (answer_tx, answer_rx) = chan::bounded::<u64>(0);
            let poller = fibra::spawn(move || {
                let mut got = 0;
                while got < EXCHANGES {
                    got += answer_rx.try_iter().sum::<u64>();
                    let _ = ask_tx.try_send(());
                }
                got
            });
            for () in ask_rx.iter() {
                if answer_tx.send(1).is_err() {
                    break;
                }
            }
            poller.join().unwrap()
        });
        assert_eq!(got, EXCHANGES, "{workers} workers");
    }
}
