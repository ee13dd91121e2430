//! loom models of the channel core: the non-blocking steps (`try_*_locked`, disconnection)
//! racing registrations, claims and timeouts. Waiting itself parks a thread (which loom cannot
//! model), so a registered party is modelled by its entry plus a waker that records the wake.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p fibra --lib loom`

use std::sync::Arc;
use std::task::{Wake, Waker};

use loom::sync::atomic::AtomicBool;
use loom::thread;

use super::channel::{Chan, UNBOUNDED};
use super::error::{TryRecvError, TrySendError};
use super::wait::TOKEN;
use crate::loom::Ordering::SeqCst;
use crate::sync::waiter::{Waiter, TIMED_OUT, WAITING};

/// A waker that records that it was woken.
struct Flag(AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, SeqCst);
    }
}

fn waiter() -> (Arc<Waiter>, Arc<Flag>) {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    (Waiter::from_waker(Waker::from(flag.clone())), flag)
}

fn try_send(chan: &Chan<u32>, v: u32) -> Result<(), TrySendError<u32>> {
    let mut st = chan.lock();
    let woken = chan.try_send_locked(&mut st, v, None)?;
    drop(st);
    super::channel::wake(woken);
    Ok(())
}

fn try_recv(chan: &Chan<u32>) -> Result<u32, TryRecvError> {
    let mut st = chan.lock();
    let (v, woken) = chan.try_recv_locked(&mut st, None)?;
    drop(st);
    super::channel::wake(woken);
    Ok(v)
}

/// A receiver registers (after finding the channel empty) while a sender sends: the value
/// ends up with the receiver (fast path or packet, and then it was woken), or in the buffer
/// with the receiver not registered. Never buffered while the receiver waits unclaimed.
#[test]
fn loom_no_lost_wakeup_recv_vs_send() {
    for cap in [0, 1] {
        loom::model(move || {
            let chan = Arc::new(Chan::<u32>::new(cap));
            let (w, flag) = waiter();
            let c = chan.clone();
            let sender = thread::spawn(move || try_send(&c, 7));
            // The receiver: try, else register.
            let mut st = chan.lock();
            let fast = chan.try_recv_locked(&mut st, None).ok().map(|(v, _)| v);
            if fast.is_none() {
                st.receivers.push(w.clone(), TOKEN, None);
            }
            drop(st);
            let sent = sender.join().unwrap();
            let mut st = chan.lock();
            let packet = fast
                .is_none()
                .then(|| st.receivers.remove(&w, TOKEN).unwrap().packet);
            let buffered = st.buf.pop_front();
            match (fast, packet.flatten(), buffered) {
                (Some(7), None, None) => assert!(sent.is_ok()),
                (None, Some(7), None) => {
                    assert_eq!(w.selected(), TOKEN);
                    assert!(flag.0.load(SeqCst), "claimed but never woken");
                }
                (None, None, Some(7)) => panic!("buffered while a receiver waited"),
                (None, None, None) => assert_eq!(sent, Err(TrySendError::Full(7))), // rendezvous, sender first
                other => panic!("value lost or duplicated: {other:?}"),
            }
        });
    }
}

/// A sender waits on a rendezvous with its value in its entry; a receiver takes it while the
/// sender's timeout fires. Exactly one wins: the receiver has the value and the sender's
/// packet is empty, or the receiver found nothing and the sender gets its value back.
#[test]
fn loom_rendezvous_handoff_vs_timeout() {
    loom::model(|| {
        let chan = Arc::new(Chan::<u32>::new(0));
        let (w, flag) = waiter();
        chan.lock().senders.push(w.clone(), TOKEN, Some(5));
        let c = chan.clone();
        let receiver = thread::spawn(move || try_recv(&c));
        let timed_out = w.try_select(TIMED_OUT);
        let entry = chan.lock().senders.remove(&w, TOKEN).unwrap();
        let got = receiver.join().unwrap();
        if timed_out {
            assert_eq!((got, entry.packet), (Err(TryRecvError::Empty), Some(5)));
        } else {
            assert_eq!((got, entry.packet), (Ok(5), None));
            assert!(flag.0.load(SeqCst));
        }
    });
}

/// A full `bounded(1)` with a waiting sender: a receiver takes the buffered item and moves
/// the sender's value into the freed slot, racing the sender's timeout. Both values are
/// accounted for exactly once, in order.
#[test]
fn loom_full_buffer_refill_vs_timeout() {
    loom::model(|| {
        let chan = Arc::new(Chan::<u32>::new(1));
        try_send(&chan, 1).unwrap();
        let (w, _flag) = waiter();
        chan.lock().senders.push(w.clone(), TOKEN, Some(2));
        let c = chan.clone();
        let receiver = thread::spawn(move || try_recv(&c));
        let timed_out = w.try_select(TIMED_OUT);
        let entry = chan.lock().senders.remove(&w, TOKEN).unwrap();
        assert_eq!(receiver.join().unwrap(), Ok(1));
        let rest = try_recv(&chan).ok();
        match (timed_out, entry.packet, rest) {
            (true, Some(2), None) | (false, None, Some(2)) => {}
            other => panic!("value 2 lost or duplicated: {other:?}"),
        }
    });
}

/// One `select!` waiter registered as a receiver on two channels; both get a send at once.
/// Exactly one claim wins; the other value is buffered; nothing is lost.
#[test]
fn loom_select_one_claim_wins() {
    loom::model(|| {
        let a = Arc::new(Chan::<u32>::new(1));
        let b = Arc::new(Chan::<u32>::new(1));
        let (w, flag) = waiter();
        a.lock().receivers.push(w.clone(), 1, None);
        b.lock().receivers.push(w.clone(), 2, None);
        let (a2, b2) = (a.clone(), b.clone());
        let sa = thread::spawn(move || try_send(&a2, 10));
        let sb = thread::spawn(move || try_send(&b2, 20));
        sa.join().unwrap().unwrap();
        sb.join().unwrap().unwrap();
        let token = w.selected();
        assert!(token == 1 || token == 2);
        assert!(flag.0.load(SeqCst));
        let pa = a.lock().receivers.remove(&w, 1).unwrap().packet;
        let pb = b.lock().receivers.remove(&w, 2).unwrap().packet;
        let (ra, rb) = (try_recv(&a).ok(), try_recv(&b).ok());
        if token == 1 {
            assert_eq!((pa, pb, ra, rb), (Some(10), None, None, Some(20)));
        } else {
            assert_eq!((pa, pb, ra, rb), (None, Some(20), Some(10), None));
        }
    });
}

/// The last sender drops while another sends and a receiver is registered: the receiver is
/// claimed (woken) either with the value or empty-handed, and then finds the value buffered
/// or the channel disconnected; the value is never lost.
#[test]
fn loom_disconnect_vs_send_wakes_the_receiver() {
    loom::model(|| {
        let chan = Arc::new(Chan::<u32>::new(UNBOUNDED));
        super::channel::add_sender(&chan); // two senders
        let (w, flag) = waiter();
        chan.lock().receivers.push(w.clone(), TOKEN, None);
        let c = chan.clone();
        let s1 = thread::spawn(move || {
            try_send(&c, 3).unwrap();
            super::channel::drop_sender(&c);
        });
        super::channel::drop_sender(&chan);
        s1.join().unwrap();
        assert_ne!(w.selected(), WAITING);
        assert!(flag.0.load(SeqCst));
        let packet = chan.lock().receivers.remove(&w, TOKEN).unwrap().packet;
        let got = packet.or_else(|| try_recv(&chan).ok());
        assert_eq!(got, Some(3));
        assert_eq!(try_recv(&chan), Err(TryRecvError::Disconnected));
    });
}
