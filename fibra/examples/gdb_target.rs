//! Fibers parked in known states, for the gdb extension's test (scripts/gdb.sh): a named
//! sleeper, a named channel reader, an unnamed fiber in `fibra::park`, and the root fiber
//! sleeping. Prints `ready sleeper=ID reader=ID anon=ID` once all three are parked, then
//! waits to be inspected (and killed); it exits by itself after `ARG` seconds (default 120).
use std::io::Write;
use std::time::Duration;

#[inline(never)]
fn sleeper_waits() {
    fibra::sleep(Duration::from_secs(3600));
}

#[inline(never)]
fn reader_waits(rx: fibra::chan::Receiver<u32>) -> Option<u32> {
    rx.recv().ok()
}

#[inline(never)]
fn anon_parks() {
    fibra::park();
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(120);
    fibra::Runtime::builder()
        .workers(2)
        .build()
        .expect("runtime")
        .run(move || {
            let (tx, rx) = fibra::chan::bounded::<u32>(1);
            let sleeper = fibra::Builder::new()
                .name("sleeper")
                .spawn(sleeper_waits)
                .expect("spawn");
            let reader = fibra::Builder::new()
                .name("reader")
                .spawn(move || reader_waits(rx))
                .expect("spawn");
            let anon = fibra::spawn(anon_parks);
            use fibra::ParkReason::*;
            let want = [
                (&sleeper.fiber(), Sleep),
                (&reader.fiber(), ChanRecv),
                (&anon.fiber(), User),
            ];
            while want.iter().any(|(f, r)| f.park_reason() != *r) {
                fibra::sleep(Duration::from_millis(1));
            }
            let id = |f: &fibra::Fiber| f.id().as_u64();
            println!(
                "ready sleeper={} reader={} anon={}",
                id(sleeper.fiber()),
                id(reader.fiber()),
                id(anon.fiber())
            );
            std::io::stdout().flush().expect("stdout");
            fibra::sleep(Duration::from_secs(secs));
            // Not killed: end cleanly.
            tx.send(1).expect("reader alive");
            anon.fiber().unpark();
            drop((sleeper, reader.join(), anon.join()));
        });
}
