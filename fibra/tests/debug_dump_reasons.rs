//! `fibra::debug::dump` names the right wait reason, with a backtrace through the waiting
//! function, for the waits that `debug_dump.rs` does not cover: the other sync primitives,
//! channel sends and `select!`, futures, scopes, the blocking pool and sockets. With it,
//! every `ParkReason` is covered.
//!
//! Every waiting function does something after its wait (`black_box`), so the optimiser cannot
//! make the wait a tail call (a tail-called frame is gone from every backtrace). Fibers still
//! parked when the test returns are unwound by the runtime's shutdown.

mod common;

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use fibra::debug::{Dump, FiberDump, FiberState, Trace};
use fibra::net::{TcpListener, TcpStream};
use fibra::sync::{Barrier, Condvar, Mutex, Notify, OnceCell, RwLock, Semaphore, WaitGroup};
use fibra::ParkReason;

#[inline(never)]
fn waits_in_read_lock(l: &RwLock<u32>) {
    black_box(*l.read());
}

#[inline(never)]
fn waits_in_write_lock(l: &RwLock<u32>) {
    *l.write() += 1;
    black_box(());
}

#[inline(never)]
fn waits_in_condvar(m: &Mutex<bool>, cv: &Condvar) {
    let mut g = m.lock();
    while !*g {
        g = cv.wait(g);
    }
    black_box(());
}

#[inline(never)]
fn waits_in_semaphore(s: &Semaphore) {
    let _permit = black_box(s.acquire());
}

#[inline(never)]
fn waits_in_barrier(b: &Barrier) {
    black_box(b.wait());
}

#[inline(never)]
fn waits_in_wait_group(wg: &WaitGroup) {
    wg.wait();
    black_box(());
}

#[inline(never)]
fn waits_in_notify(n: &Notify) {
    n.notified();
    black_box(());
}

#[inline(never)]
fn waits_in_once(c: &OnceCell<u32>) {
    black_box(c.wait());
}

#[inline(never)]
fn waits_in_send(tx: &fibra::chan::Sender<u32>) {
    black_box(tx.send(1)).ok();
}

#[inline(never)]
fn waits_in_select(rx: &fibra::chan::Receiver<u32>) {
    fibra::select! {
        recv(rx) -> m => { black_box(m).ok(); }
    }
    black_box(());
}

#[inline(never)]
fn waits_in_block_on() {
    fibra::await_future(std::future::pending::<()>());
    black_box(());
}

#[inline(never)]
fn waits_in_scope(stop: &AtomicBool) {
    fibra::scope(|s| {
        s.spawn(|| {
            while !stop.load(Acquire) {
                fibra::park();
            }
        });
    });
    black_box(());
}

#[inline(never)]
fn waits_in_blocking(rx: mpsc::Receiver<()>) {
    fibra::run_blocking(move || rx.recv()).ok();
    black_box(());
}

#[inline(never)]
fn waits_in_blocking_join(rx: mpsc::Receiver<()>) {
    fibra::spawn_blocking(move || rx.recv()).join().ok();
    black_box(());
}

#[inline(never)]
fn waits_in_socket_read(s: &mut TcpStream) {
    black_box(s.read(&mut [0u8; 16])).ok();
}

#[inline(never)]
fn waits_in_socket_write(s: &mut TcpStream) {
    let chunk = vec![0u8; 64 * 1024];
    while s.write_all(&chunk).is_ok() {} // the peer never reads: the buffers fill up
    black_box(());
}

#[inline(never)]
fn waits_in_accept(l: &TcpListener) {
    black_box(l.accept()).ok();
}

#[inline(never)]
fn waits_in_connect(addr: std::net::SocketAddr) {
    black_box(TcpStream::connect(addr)).ok();
}

/// A listener whose accept queue is full (backlog 0, filled), so a new connect's handshake
/// stalls; the connections that filled it are returned to be held.
fn stalled_listener() -> (std::net::TcpListener, Vec<TcpStream>) {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: a valid listening fd; listening again only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
        held.push(s);
        assert!(held.len() < 64, "the accept queue never filled");
    }
    (listener, held)
}

fn named<'a>(d: &'a Dump, name: &str) -> Option<&'a FiberDump> {
    d.fibers.iter().find(|f| f.name.as_deref() == Some(name))
}

/// Dumps until every named fiber is parked with its expected reason.
fn dump_when_waiting(expect: &[(&str, ParkReason, &str)]) -> Dump {
    loop {
        let d = fibra::debug::dump();
        let all = expect.iter().all(|(n, r, _)| {
            named(&d, n).is_some_and(|f| f.state == FiberState::Parked && f.reason == Some(*r))
        });
        if all {
            return d;
        }
        fibra::sleep(Duration::from_millis(2));
    }
}

#[test]
fn dump_names_every_other_wait_reason_with_its_backtrace() {
    let _w = common::watchdog("dump_names_every_other_wait_reason_with_its_backtrace");
    let rt = fibra::Runtime::builder().workers(2).build().unwrap();
    rt.run(|| {
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            fibra::Builder::new().name(name).spawn(f).unwrap();
        };
        // Held by this fiber for the whole test: the fibers below wait for them.
        let read_held = Arc::new(RwLock::new(0));
        let write_held = Arc::new(RwLock::new(0));
        let _w = write_held.write();
        let _r = read_held.read();
        let stop = Arc::new(AtomicBool::new(false));
        let (pool_tx, pool_rx) = mpsc::channel();
        let (pool_tx2, pool_rx2) = mpsc::channel();
        let (tx0, _rx0) = fibra::chan::bounded::<u32>(0);
        let (_tx1, rx1) = fibra::chan::bounded::<u32>(1);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut quiet = TcpStream::connect(addr).unwrap(); // nothing is ever sent on it
        let mut flood = TcpStream::connect(addr).unwrap(); // its peer never reads
        let (_quiet_peer, _) = listener.accept().unwrap();
        let (_flood_peer, _) = listener.accept().unwrap();

        let l = write_held.clone();
        spawn("reader", Box::new(move || waits_in_read_lock(&l)));
        let l = read_held.clone();
        spawn("writer", Box::new(move || waits_in_write_lock(&l)));
        let cv = Arc::new((Mutex::new(false), Condvar::new()));
        spawn("condvar", Box::new(move || waits_in_condvar(&cv.0, &cv.1)));
        let sem = Arc::new(Semaphore::new(0));
        spawn("semaphore", Box::new(move || waits_in_semaphore(&sem)));
        let barrier = Arc::new(Barrier::new(2));
        spawn("barrier", Box::new(move || waits_in_barrier(&barrier)));
        let wg = Arc::new(WaitGroup::new());
        wg.add(1);
        spawn("wait-group", Box::new(move || waits_in_wait_group(&wg)));
        let notify = Arc::new(Notify::new());
        spawn("notify", Box::new(move || waits_in_notify(&notify)));
        let once = Arc::new(OnceCell::new());
        spawn("once", Box::new(move || waits_in_once(&once)));
        spawn("sender", Box::new(move || waits_in_send(&tx0)));
        spawn("select", Box::new(move || waits_in_select(&rx1)));
        spawn("block-on", Box::new(waits_in_block_on));
        let s = stop.clone();
        spawn("scope", Box::new(move || waits_in_scope(&s)));
        spawn("blocking", Box::new(move || waits_in_blocking(pool_rx)));
        spawn(
            "blocking-join",
            Box::new(move || waits_in_blocking_join(pool_rx2)),
        );
        spawn(
            "socket-read",
            Box::new(move || waits_in_socket_read(&mut quiet)),
        );
        spawn(
            "socket-write",
            Box::new(move || waits_in_socket_write(&mut flood)),
        );
        spawn("accept", Box::new(move || waits_in_accept(&listener)));
        let (stalled, _held) = stalled_listener();
        let stalled_addr = stalled.local_addr().unwrap();
        spawn("connect", Box::new(move || waits_in_connect(stalled_addr)));

        let expect = [
            ("reader", ParkReason::RwLockRead, "waits_in_read_lock"),
            ("writer", ParkReason::RwLockWrite, "waits_in_write_lock"),
            ("condvar", ParkReason::Condvar, "waits_in_condvar"),
            ("semaphore", ParkReason::Semaphore, "waits_in_semaphore"),
            ("barrier", ParkReason::Barrier, "waits_in_barrier"),
            ("wait-group", ParkReason::WaitGroup, "waits_in_wait_group"),
            ("notify", ParkReason::Notify, "waits_in_notify"),
            ("once", ParkReason::OnceInit, "waits_in_once"),
            ("sender", ParkReason::ChanSend, "waits_in_send"),
            ("select", ParkReason::Select, "waits_in_select"),
            ("block-on", ParkReason::BlockOn, "waits_in_block_on"),
            ("scope", ParkReason::Scope, "waits_in_scope"),
            ("blocking", ParkReason::Blocking, "waits_in_blocking"),
            (
                "blocking-join",
                ParkReason::BlockingJoin,
                "waits_in_blocking_join",
            ),
            ("socket-read", ParkReason::IoRead, "waits_in_socket_read"),
            ("socket-write", ParkReason::IoWrite, "waits_in_socket_write"),
            ("accept", ParkReason::Accept, "waits_in_accept"),
            ("connect", ParkReason::Connect, "waits_in_connect"),
        ];
        let d = dump_when_waiting(&expect);
        for (name, reason, func) in expect {
            let f = named(&d, name).unwrap();
            assert_eq!(f.reason, Some(reason), "{name}");
            let frames = match &f.backtrace {
                Trace::Frames(fr) => fr,
                Trace::Unavailable(why) => panic!("{name}: no backtrace: {why}"),
            };
            assert!(
                frames.iter().any(|fr| fr.function.contains(func)),
                "{name}: no {func} in {frames:?}"
            );
        }
        // The sender records the channel it waits on.
        assert!(named(&d, "sender").unwrap().channel.is_some());
        // Let the pool threads go, so the session can end; the rest is unwound.
        stop.store(true, Release);
        pool_tx.send(()).unwrap();
        pool_tx2.send(()).unwrap();
    });
}
