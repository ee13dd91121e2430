//! Channel stress with exact accounting: 8 producers × 8 consumers, half fibers and half OS
//! threads, over `bounded(0)`, `bounded(1)`, `bounded(128)` and `unbounded()`, with random
//! timeouts, `try_*` spins, `select!` and random early drops of senders and receivers.
//!
//! Every item is a `Item` whose drop is recorded per id: each created item must be dropped
//! exactly once, and `created = received + handed back on error + dropped in the channel`.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use fibra::chan::{
    self, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};
use fibra::ParkReason;

const PRODUCERS: usize = 8;
const CONSUMERS: usize = 8;
const PER_PRODUCER: usize = if cfg!(miri) { 20 } else { 5_000 };

#[derive(Default)]
struct Ledger {
    /// Drops per id (must end at exactly 1 for every created id).
    drops: Vec<AtomicU8>,
    created: AtomicUsize,
    received: AtomicUsize,
    handed_back: AtomicUsize,
    in_channel: AtomicUsize,
    double_drops: AtomicUsize,
}

const IN_CHANNEL: u8 = 0;
const RECEIVED: u8 = 1;
const HANDED_BACK: u8 = 2;

struct Item {
    id: usize,
    fate: u8,
    ledger: Arc<Ledger>,
}

impl Item {
    fn new(id: usize, ledger: &Arc<Ledger>) -> Item {
        ledger.created.fetch_add(1, SeqCst);
        Item {
            id,
            fate: IN_CHANNEL,
            ledger: ledger.clone(),
        }
    }
    fn finish(mut self, fate: u8) {
        self.fate = fate;
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        let l = &self.ledger;
        if l.drops[self.id].fetch_add(1, SeqCst) != 0 {
            l.double_drops.fetch_add(1, SeqCst);
        }
        match self.fate {
            RECEIVED => &l.received,
            HANDED_BACK => &l.handed_back,
            _ => &l.in_channel,
        }
        .fetch_add(1, SeqCst);
    }
}

fn ledger(items: usize) -> Arc<Ledger> {
    Arc::new(Ledger {
        drops: (0..items).map(|_| AtomicU8::new(0)).collect(),
        ..Ledger::default()
    })
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Yields the current fiber, or the thread outside fibers.
fn pause() {
    if fibra::try_current().is_some() {
        fibra::yield_now();
    } else {
        std::thread::yield_now();
    }
}

fn micros(rng: &mut Rng) -> Duration {
    Duration::from_micros(rng.below(300))
}

/// `stop_early`: producers may drop their sender before the end.
fn produce(p: usize, tx: Sender<Item>, ledger: Arc<Ledger>, stop_early: bool) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((p as u64 + 1) * 0x1234_5678_9ABC));
    let stop_at = if stop_early {
        rng.below(PER_PRODUCER as u64) as usize
    } else {
        PER_PRODUCER
    };
    for i in 0..stop_at {
        let mut item = Item::new(p * PER_PRODUCER + i, &ledger);
        loop {
            item = match rng.below(4) {
                0 | 1 => match tx.send(item) {
                    Ok(()) => break,
                    Err(e) => return e.into_inner().finish(HANDED_BACK),
                },
                2 => match tx.send_timeout(item, micros(&mut rng)) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(item)) => item, // handed back: try again
                    Err(SendTimeoutError::Disconnected(item)) => return item.finish(HANDED_BACK),
                },
                _ => match tx.try_send(item) {
                    Ok(()) => break,
                    Err(TrySendError::Full(item)) => {
                        pause();
                        item
                    }
                    Err(TrySendError::Disconnected(item)) => return item.finish(HANDED_BACK),
                },
            };
        }
    }
}

/// `stop_early`: consumers may drop their receiver before the channel is drained.
fn consume(c: usize, rx: Receiver<Item>, stop_early: bool) {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((c as u64 + 7) * 0x0009_8765_4321));
    let stop_after = if stop_early {
        rng.below(2 * PER_PRODUCER as u64)
    } else {
        u64::MAX
    };
    let mut got = 0;
    while got < stop_after {
        let item = match rng.below(4) {
            0 => rx.recv().ok(),
            1 => match rx.recv_timeout(micros(&mut rng)) {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => None,
            },
            2 => match rx.try_recv() {
                Ok(item) => Some(item),
                Err(TryRecvError::Empty) => {
                    pause();
                    continue;
                }
                Err(TryRecvError::Disconnected) => None,
            },
            _ => fibra::select! {
                recv(rx) -> r => r.ok(),
                default(micros(&mut rng)) => continue,
            },
        };
        match item {
            Some(item) => item.finish(RECEIVED),
            None => return,
        }
        got += 1;
    }
}

/// Runs 8 × 8 parties (even ones fibers, odd ones OS threads) over `make()`'s channel.
fn mix(make: fn() -> (Sender<Item>, Receiver<Item>), stop_early: bool) {
    let ledger = ledger(PRODUCERS * PER_PRODUCER);
    let l = ledger.clone();
    fibra::run(move || {
        let (tx, rx) = make();
        let (done_tx, done_rx) = chan::unbounded::<()>();
        let mut fibers = Vec::new();
        let mut threads = Vec::new();
        for p in 0..PRODUCERS {
            let (tx, l, done) = (tx.clone(), l.clone(), done_tx.clone());
            let job = move || {
                produce(p, tx, l, stop_early);
                drop(done);
            };
            if p % 2 == 0 {
                fibers.push(fibra::spawn(job))
            } else {
                threads.push(std::thread::spawn(job))
            }
        }
        for c in 0..CONSUMERS {
            let (rx, done) = (rx.clone(), done_tx.clone());
            let job = move || {
                consume(c, rx, stop_early);
                drop(done);
            };
            if c % 2 == 0 {
                fibers.push(fibra::spawn(job))
            } else {
                threads.push(std::thread::spawn(job))
            }
        }
        drop((tx, rx, done_tx));
        // Every party holds a `done` sender: this returns once all of them have finished,
        // parking the root fiber rather than blocking its worker in `JoinHandle::join`.
        assert!(done_rx.recv().is_err());
        fibers.into_iter().for_each(|f| f.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
    let created = ledger.created.load(SeqCst);
    let (received, back, inside) = (
        ledger.received.load(SeqCst),
        ledger.handed_back.load(SeqCst),
        ledger.in_channel.load(SeqCst),
    );
    assert_eq!(
        ledger.double_drops.load(SeqCst),
        0,
        "an item was dropped twice"
    );
    assert_eq!(
        received + back + inside,
        created,
        "received {received} + handed back {back} + in channel {inside}"
    );
    for id in 0..PRODUCERS * PER_PRODUCER {
        let d = ledger.drops[id].load(SeqCst);
        assert!(d <= 1, "item {id} dropped {d} times");
    }
    if !stop_early {
        assert_eq!((received, back, inside), (PRODUCERS * PER_PRODUCER, 0, 0));
        assert!(
            ledger.drops.iter().all(|d| d.load(SeqCst) == 1),
            "an item was never dropped"
        );
    } else {
        assert_eq!(
            ledger.drops.iter().filter(|d| d.load(SeqCst) == 1).count(),
            created
        );
    }
}

#[test]
fn rendezvous_every_item_exactly_once() {
    mix(|| chan::bounded(0), false);
}

#[test]
fn bounded_1_every_item_exactly_once() {
    mix(|| chan::bounded(1), false);
}

#[test]
fn bounded_128_every_item_exactly_once() {
    mix(|| chan::bounded(128), false);
}

#[test]
fn unbounded_every_item_exactly_once() {
    mix(chan::unbounded, false);
}

#[test]
fn random_drops_account_for_every_item() {
    for make in [
        || chan::bounded(0),
        || chan::bounded(1),
        || chan::bounded(128),
        chan::unbounded,
    ] {
        mix(make, true);
    }
}

/// Producers `select!` between a rendezvous and a one-slot channel; consumers `select!`
/// over both with a timeout. Each item arrives exactly once; the unchosen send arm's item
/// is dropped unsent, once.
#[test]
fn select_mix_every_item_exactly_once() {
    const N: usize = if cfg!(miri) { 20 } else { 2_000 };
    let ledger = ledger(2 * 4 * N);
    let l = ledger.clone();
    fibra::run(move || {
        let (a_tx, a_rx) = chan::bounded::<Item>(0);
        let (b_tx, b_rx) = chan::bounded::<Item>(1);
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let (a, b, l) = (a_tx.clone(), b_tx.clone(), l.clone());
                fibra::spawn(move || {
                    for i in 0..N {
                        let (x, y) = (
                            Item::new(2 * (p * N + i), &l),
                            Item::new(2 * (p * N + i) + 1, &l),
                        );
                        fibra::select! {
                            send(a, x) -> r => r.unwrap(),
                            send(b, y) -> r => r.unwrap(),
                        }
                    }
                })
            })
            .collect();
        drop((a_tx, b_tx));
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let (a, b) = (a_rx.clone(), b_rx.clone());
                fibra::spawn(move || {
                    let (mut a_open, mut b_open) = (true, true);
                    while a_open || b_open {
                        fibra::select! {
                            recv(a) -> r => match r { Ok(item) => item.finish(RECEIVED), Err(_) => a_open = false },
                            recv(b) -> r => match r { Ok(item) => item.finish(RECEIVED), Err(_) => b_open = false },
                            default(Duration::from_micros(100)) => {}
                        }
                    }
                })
            })
            .collect();
        drop((a_rx, b_rx));
        producers.into_iter().for_each(|h| h.join().unwrap());
        consumers.into_iter().for_each(|h| h.join().unwrap());
    });
    assert_eq!(ledger.double_drops.load(SeqCst), 0);
    assert_eq!(ledger.received.load(SeqCst), 4 * N);
    assert_eq!(
        ledger.in_channel.load(SeqCst),
        4 * N,
        "unchosen arms' items"
    );
    assert!(ledger.drops.iter().all(|d| d.load(SeqCst) == 1));
}

/// Two always-ready arms: each is chosen 40–60% of 10k selects.
#[test]
fn select_is_fair_among_ready_arms() {
    fibra::run(|| {
        const N: usize = 10_000;
        let (a_tx, a_rx) = chan::unbounded::<()>();
        let (b_tx, b_rx) = chan::unbounded::<()>();
        for _ in 0..N {
            a_tx.send(()).unwrap();
            b_tx.send(()).unwrap();
        }
        let mut a = 0;
        for _ in 0..N {
            fibra::select! {
                recv(a_rx) -> _ => a += 1,
                recv(b_rx) -> _ => {}
            }
        }
        assert!(
            (N * 4 / 10..=N * 6 / 10).contains(&a),
            "arm a chosen {a} of {N} times"
        );
    });
}

/// Shutdown while fibers are parked in `send` (buffered and rendezvous), `recv` and
/// `select!` (with send arms holding values): every item is dropped exactly once.
#[test]
fn shutdown_while_parked_drops_every_item_once() {
    for round in 0..10 {
        let ledger = ledger(64);
        let l = ledger.clone();
        let rt = fibra::Runtime::builder().workers(2).build().unwrap();
        // On a thread of its own, so a shutdown that hangs fails the test instead.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            rt.run(move || {
                let next = AtomicUsize::new(0);
                let item = || Item::new(next.fetch_add(1, SeqCst), &l);
                let (full_tx, full_rx) = chan::bounded::<Item>(1);
                full_tx.send(item()).unwrap();
                let (zero_tx, zero_rx) = chan::bounded::<Item>(0);
                let (empty_tx, empty_rx) = chan::bounded::<Item>(4);
                let mut parked = Vec::new();
                for _ in 0..3 {
                    let (tx, v) = (full_tx.clone(), item());
                    parked.push((fibra::spawn(move || drop(tx.send(v))), ParkReason::ChanSend));
                    let (tx, v) = (zero_tx.clone(), item());
                    parked.push((fibra::spawn(move || drop(tx.send(v))), ParkReason::ChanSend));
                    let rx = empty_rx.clone();
                    parked.push((fibra::spawn(move || drop(rx.recv())), ParkReason::ChanRecv));
                    let (tx, rx, v, w) = (zero_tx.clone(), empty_rx.clone(), item(), item());
                    let tx2 = full_tx.clone();
                    parked.push((
                        fibra::spawn(move || {
                            fibra::select! {
                                send(tx, v) -> r => drop(r),
                                send(tx2, w) -> r => drop(r),
                                recv(rx) -> r => drop(r),
                            }
                        }),
                        ParkReason::Select,
                    ));
                }
                // Keep every channel end alive in a fiber that is itself parked.
                let keep = (
                    full_tx,
                    full_rx,
                    zero_tx,
                    zero_rx,
                    empty_tx,
                    empty_rx.clone(),
                );
                let rx = empty_rx;
                parked.push((
                    fibra::spawn(move || {
                        let _keep = keep;
                        drop(rx.recv())
                    }),
                    ParkReason::ChanRecv,
                ));
                for (h, reason) in &parked {
                    while h.fiber().park_reason() != *reason {
                        fibra::yield_now();
                    }
                }
                // Returning shuts the session down: every parked fiber is unwound.
            });
            done_tx.send(())
        });
        done_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("round {round}: shutdown did not finish within 20 s"));
        let created = ledger.created.load(SeqCst);
        assert_eq!(ledger.double_drops.load(SeqCst), 0, "round {round}");
        assert_eq!(
            ledger.received.load(SeqCst) + ledger.in_channel.load(SeqCst),
            created,
            "round {round}"
        );
        assert!(
            ledger.drops[..created].iter().all(|d| d.load(SeqCst) == 1),
            "round {round}"
        );
    }
}
