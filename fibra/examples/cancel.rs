//! Stopping work: a `CancellationToken` for a tree of cooperative workers, `JoinHandle::cancel`
//! for a fiber that does not cooperate, and jobs handed in from a plain thread with a `Handle`.
//!
//! `cargo run -p fibra --example cancel`
use std::time::Duration;

use fibra::chan;
use fibra::{CancellationToken, Handle, JoinError};

#[fibra::main(workers = 2)]
fn main() {
    let (jobs_tx, jobs_rx) = chan::unbounded::<u32>();
    // A plain thread (a GUI's, an FFI callback's) submits jobs through the runtime's handle.
    let handle = Handle::current();
    let submitter = std::thread::spawn(move || {
        let h = handle.spawn(move || (0..100).for_each(|j| jobs_tx.send(j).unwrap()));
        h.unwrap().join().unwrap();
    });

    // Cooperative workers: each stops when its child token is cancelled.
    let token = CancellationToken::new();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (token, jobs) = (token.child_token(), jobs_rx.clone());
            fibra::spawn(move || {
                let mut done = 0;
                loop {
                    fibra::select! {
                        recv(jobs) -> job => match job {
                            Ok(_) => done += 1,
                            Err(_) => return done, // every sender gone
                        },
                        recv(token.cancelled()) -> _ => return done,
                    }
                }
            })
        })
        .collect();

    // A fiber that never looks at any token: cancelled from outside at its next park.
    let stubborn = fibra::spawn(|| loop {
        fibra::sleep(Duration::from_millis(10));
    });

    fibra::run_blocking(|| submitter.join()).unwrap(); // a thread join blocks: off the worker
    while !jobs_rx.is_empty() {
        fibra::yield_now();
    }
    token.cancel();
    let done: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    stubborn.cancel();
    assert!(matches!(stubborn.join(), Err(JoinError::Cancelled)));
    println!("{done} jobs done; workers stopped by their token, the stubborn fiber by cancel()");
}
