//! Prints a `fibra::debug::dump()` of a small service with a deadlock, then its metrics.
//! `cargo run -p fibra --example debug_dump`; add `-- signal` to get the dump through
//! `SIGQUIT` on stderr instead.

use std::sync::Arc;
use std::time::Duration;

use fibra::sync::Mutex;

#[inline(never)]
fn handle_connection(rx: fibra::chan::Receiver<Vec<u8>>) {
    for _request in rx.iter() {}
}

#[inline(never)]
fn transfer(from: &Mutex<u64>, to: &Mutex<u64>) {
    let mut a = from.lock();
    fibra::sleep(Duration::from_millis(10)); // let the other transfer take its first lock
    let mut b = to.lock();
    *a -= 1;
    *b += 1;
}

#[inline(never)]
fn housekeeping() {
    loop {
        fibra::sleep(Duration::from_secs(60));
    }
}

fn main() {
    let via_signal = std::env::args().any(|a| a == "signal");
    let mut builder = fibra::Runtime::builder().workers(2);
    if via_signal {
        builder = builder.dump_on_signal(libc::SIGQUIT);
    }
    let rt = builder.build().expect("valid configuration");
    rt.run(|| {
        let mut senders = Vec::new();
        for i in 0..1000 {
            let (tx, rx) = fibra::chan::unbounded();
            senders.push(tx);
            fibra::Builder::new()
                .name(format!("conn-{i}"))
                .spawn(move || handle_connection(rx))
                .unwrap();
        }
        fibra::Builder::new()
            .name("housekeeping")
            .spawn(housekeeping)
            .unwrap();
        let (x, y) = (Arc::new(Mutex::new(10)), Arc::new(Mutex::new(10)));
        let (x2, y2) = (x.clone(), y.clone());
        fibra::spawn(move || transfer(&x2, &y2));
        fibra::spawn(move || transfer(&y, &x));
        fibra::sleep(Duration::from_millis(100));
        if via_signal {
            // SAFETY: signalling our own process; the runtime installed the handler.
            unsafe { libc::kill(libc::getpid(), libc::SIGQUIT) };
            fibra::sleep(Duration::from_millis(500)); // the dump thread writes meanwhile
        } else {
            println!("{}", fibra::debug::dump());
            println!("{}", fibra::debug::metrics().expect("inside a runtime"));
        }
        drop(senders);
        // The deadlocked pair stays parked; the session's end unwinds it.
    });
}
