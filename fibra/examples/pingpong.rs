//! Debug aid: ping-pong round trips between two fibers via park/unpark.
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let w: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let rt = fibra::Runtime::builder().workers(w).build().unwrap();
    rt.run(|| {
        let turn = Arc::new(AtomicU64::new(0));
        let slots: Arc<[OnceLock<fibra::Fiber>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
        let t = Instant::now();
        let hs: Vec<_> = (0..2u64)
            .map(|me| {
                let (turn, slots) = (turn.clone(), slots.clone());
                fibra::spawn(move || {
                    slots[me as usize].set(fibra::current()).unwrap();
                    while slots[1 - me as usize].get().is_none() {
                        if w > 1 {
                            std::hint::spin_loop(); // keep this worker busy: the partner starts elsewhere
                        } else {
                            fibra::yield_now();
                        }
                    }
                    let other = slots[1 - me as usize].get().unwrap().clone();
                    let start_thread = std::thread::current().id();
                    for _ in 0..n {
                        while turn.load(Acquire) % 2 != me {
                            fibra::park();
                        }
                        turn.fetch_add(1, Release);
                        other.unpark();
                    }
                    assert_eq!(start_thread, std::thread::current().id());
                    std::thread::current().id()
                })
            })
            .collect();
        let ids: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let el = t.elapsed();
        println!(
            "{w} worker(s): {:.1} ns per round trip (same thread: {})",
            el.as_nanos() as f64 / n as f64,
            ids[0] == ids[1]
        );
    });
}
