//! loom models of the channel core: the non-blocking steps (`try_*_locked`, disconnection)
//! racing registrations, claims, timeouts, and owners that read their packet without the
//! lock once they see a token. Parking is not modelled (loom cannot switch fibers): a
//! registered party is its node and signal, plus a waker that records the wake.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p fibra --lib chan::loom`

use std::sync::Arc;
use std::task::{Wake, Waker};

use loom::sync::atomic::AtomicBool;
use loom::thread;

use super::channel::{Chan, UNBOUNDED};
use super::error::{TryRecvError, TrySendError};
use super::wait::TOKEN;
use super::waiters::{Node, Signal, CLAIMING, TIMED_OUT, WAITING};
use crate::loom::Ordering::SeqCst;

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

fn signal() -> (Signal, Arc<Flag>) {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    (Signal::new(Waker::from(flag.clone())), flag)
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

/// A notifier's token: the claim is complete and the owner may read its packet unlocked.
fn is_token(s: usize) -> bool {
    s != WAITING && s != CLAIMING && s != TIMED_OUT
}

/// A receiver registers (after finding the channel empty) while a sender sends: the value
/// ends up with the receiver (fast path, or its packet, read without the lock as soon as the
/// token is visible, and it was woken), or the sender found no room. Never buffered while the
/// receiver waits unclaimed.
#[test]
fn loom_no_lost_wakeup_recv_vs_send() {
    for cap in [0, 1] {
        loom::model(move || {
            let chan = Arc::new(Chan::<u32>::new(cap));
            let (sig, flag) = signal();
            let node = Node::new(TOKEN, None);
            let c = chan.clone();
            let sender = thread::spawn(move || try_send(&c, 7));
            // The receiver: try, else register.
            let mut st = chan.lock();
            let fast = chan.try_recv_locked(&mut st, None).ok().map(|(v, _)| v);
            if fast.is_none() {
                // SAFETY: `node` and `sig` outlive the model body; it is unlinked below.
                unsafe { st.receivers.push(&node, &sig) };
            }
            drop(st);
            // The owner's wake-up path: a token seen means the packet is ours, no lock.
            let early = is_token(sig.state()).then(|| node.take_packet());
            let sent = sender.join().unwrap();
            let packet = match early {
                Some(p) => p,
                None if fast.is_none() => {
                    let mut st = chan.lock();
                    // SAFETY: only ever pushed into this list.
                    unsafe { st.receivers.remove(&node) };
                    node.take_packet()
                }
                None => None,
            };
            let buffered = chan.lock().buf.pop_front();
            match (fast, packet, buffered) {
                (Some(7), None, None) => assert!(sent.is_ok()),
                (None, Some(7), None) => {
                    assert_eq!(sig.state(), TOKEN);
                    assert!(flag.0.load(SeqCst), "claimed but never woken");
                }
                (None, None, Some(7)) => panic!("buffered while a receiver waited"),
                (None, None, None) => assert_eq!(sent, Err(TrySendError::Full(7))), // rendezvous, sender first
                other => panic!("value lost or duplicated: {other:?}"),
            }
        });
    }
}

/// A sender waits on a rendezvous with its value in its node; a receiver takes it while the
/// sender's timeout fires. Exactly one wins: the receiver has the value and the sender (which
/// waits for the token, then reads its packet unlocked) finds it empty, or the receiver found
/// nothing and the sender takes its value back under the lock.
#[test]
fn loom_rendezvous_handoff_vs_timeout() {
    loom::model(|| {
        let chan = Arc::new(Chan::<u32>::new(0));
        let (sig, flag) = signal();
        let node = Node::new(TOKEN, Some(5));
        // SAFETY: `node` and `sig` outlive the model body; unlinked below either way.
        unsafe { chan.lock().senders.push(&node, &sig) };
        let c = chan.clone();
        let receiver = thread::spawn(move || try_recv(&c));
        let timed_out = sig.claim_self(TIMED_OUT);
        let packet = if timed_out {
            let mut st = chan.lock();
            // SAFETY: only ever pushed into this list.
            unsafe { st.senders.remove(&node) };
            node.take_packet()
        } else {
            while !is_token(sig.state()) {
                thread::yield_now(); // the claim is being published
            }
            node.take_packet()
        };
        let got = receiver.join().unwrap();
        if timed_out {
            assert_eq!((got, packet), (Err(TryRecvError::Empty), Some(5)));
        } else {
            assert_eq!((got, packet), (Ok(5), None));
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
        let (sig, _flag) = signal();
        let node = Node::new(TOKEN, Some(2));
        // SAFETY: as above.
        unsafe { chan.lock().senders.push(&node, &sig) };
        let c = chan.clone();
        let receiver = thread::spawn(move || try_recv(&c));
        let timed_out = sig.claim_self(TIMED_OUT);
        let packet = if timed_out {
            let mut st = chan.lock();
            // SAFETY: only ever pushed into this list.
            unsafe { st.senders.remove(&node) };
            node.take_packet()
        } else {
            while !is_token(sig.state()) {
                thread::yield_now();
            }
            node.take_packet()
        };
        assert_eq!(receiver.join().unwrap(), Ok(1));
        let rest = try_recv(&chan).ok();
        match (timed_out, packet, rest) {
            (true, Some(2), None) | (false, None, Some(2)) => {}
            other => panic!("value 2 lost or duplicated: {other:?}"),
        }
    });
}

/// One `select!` signal with a receiver node on each of two channels; both get a send at
/// once. Exactly one claim wins; the other value is buffered; nothing is lost.
#[test]
fn loom_select_one_claim_wins() {
    loom::model(|| {
        let a = Arc::new(Chan::<u32>::new(1));
        let b = Arc::new(Chan::<u32>::new(1));
        let (sig, flag) = signal();
        let (na, nb) = (Node::new(1, None), Node::new(2, None));
        // SAFETY: nodes and signal outlive the model body; both are unlinked below.
        unsafe {
            a.lock().receivers.push(&na, &sig);
            b.lock().receivers.push(&nb, &sig);
        }
        let (a2, b2) = (a.clone(), b.clone());
        let sa = thread::spawn(move || try_send(&a2, 10));
        let sb = thread::spawn(move || try_send(&b2, 20));
        sa.join().unwrap().unwrap();
        sb.join().unwrap().unwrap();
        let token = sig.state();
        assert!(token == 1 || token == 2);
        assert!(flag.0.load(SeqCst));
        let take = |chan: &Chan<u32>, node: &Node<u32>| {
            let mut st = chan.lock();
            // SAFETY: each node was only pushed into its own channel's receivers.
            unsafe { st.receivers.remove(node) };
            node.take_packet()
        };
        let (pa, pb) = (take(&a, &na), take(&b, &nb));
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
        let (sig, flag) = signal();
        let node = Node::new(TOKEN, None);
        // SAFETY: as above.
        unsafe { chan.lock().receivers.push(&node, &sig) };
        let c = chan.clone();
        let s1 = thread::spawn(move || {
            try_send(&c, 3).unwrap();
            super::channel::drop_sender(&c);
        });
        super::channel::drop_sender(&chan);
        let early = is_token(sig.state()).then(|| node.take_packet());
        s1.join().unwrap();
        assert!(is_token(sig.state()));
        assert!(flag.0.load(SeqCst));
        let packet = early.unwrap_or_else(|| node.take_packet());
        let got = packet.or_else(|| try_recv(&chan).ok());
        assert_eq!(got, Some(3));
        assert_eq!(try_recv(&chan), Err(TryRecvError::Disconnected));
    });
}

/// A readiness watcher queued in front of a waiting receiver on an empty `bounded(1)`, while
/// the watcher's owner gives up concurrently: the send goes to the receiver (claimed, woken,
/// value in its packet), never to the watcher, which is neither handed the value nor woken
/// (the channel stayed empty). Nothing is buffered.
#[test]
fn loom_a_watcher_is_passed_over_for_a_receiver() {
    loom::model(|| {
        let chan = Arc::new(Chan::<u32>::new(1));
        let (wsig, wflag) = signal();
        let (rsig, rflag) = signal();
        let (wnode, rnode) = (Node::new(1, None), Node::new(TOKEN, None));
        // SAFETY: nodes and signals outlive the model body; both are unlinked below.
        unsafe {
            let mut st = chan.lock();
            st.receivers.push_watcher(&wnode, &wsig);
            st.receivers.push(&rnode, &rsig);
        }
        let c = chan.clone();
        let sender = thread::spawn(move || try_send(&c, 7));
        let gave_up = wsig.claim_self(TIMED_OUT);
        sender.join().unwrap().unwrap();
        {
            let mut st = chan.lock();
            // SAFETY: each node was only pushed into this list.
            unsafe { st.receivers.remove(&wnode) };
            assert_eq!(wnode.take_packet(), None, "a watcher was handed a value");
            assert!(st.buf.is_empty(), "buffered while a receiver waited");
        }
        assert_eq!(rsig.state(), TOKEN);
        assert!(rflag.0.load(SeqCst), "the receiver was never woken");
        assert_eq!(rnode.take_packet(), Some(7));
        assert!(
            gave_up,
            "the watcher was claimed: the item went to a receiver"
        );
        assert!(!wflag.0.load(SeqCst));
    });
}

/// A receive watcher registers (look under the lock, queue if not ready) while a sender
/// sends; for `bounded(0)` the sender then queues itself as `block` does. Either the watcher
/// saw the channel ready, or it was claimed with its token and woken; and the item is never
/// consumed by it (still buffered, or still offered by the queued sender).
#[test]
fn loom_no_lost_readiness_recv_watcher_vs_send() {
    for cap in [0, 1] {
        loom::model(move || {
            let chan = Arc::new(Chan::<u32>::new(cap));
            let (wsig, wflag) = signal();
            let wnode = Node::new(3, None);
            let (ssig, _sflag) = signal();
            let snode = Node::new(TOKEN, Some(7)); // what a blocked sender of 7 queues
            let c = chan.clone();
            let queue = Parts(&snode, &ssig);
            let sender = thread::spawn(move || {
                let queue = queue;
                let mut st = c.lock();
                match c.try_send_locked(&mut st, 7, None) {
                    Ok(w) => {
                        drop(st);
                        super::channel::wake(w);
                        false
                    }
                    Err(TrySendError::Full(_)) => {
                        // As `block`: queue the offer, then wake the other side's watchers.
                        // SAFETY: `Parts`: node and signal outlive this thread (joined
                        // below) and the node is unlinked before they go.
                        unsafe { st.senders.push(&*queue.0, &*queue.1) };
                        let w = c.queued_locked(&mut st, super::wait::Side::Send);
                        drop(st);
                        super::channel::wake(w);
                        true
                    }
                    Err(e) => panic!("{e:?}"),
                }
            });
            let saw_ready = {
                let mut st = chan.lock();
                let ready = chan.recv_ready(&st, None);
                if !ready {
                    // SAFETY: `wnode` and `wsig` outlive the model body; unlinked below.
                    unsafe { st.receivers.push_watcher(&wnode, &wsig) };
                }
                ready
            };
            let queued = sender.join().unwrap();
            if !saw_ready {
                assert_eq!(wsig.state(), 3, "a watcher missed the item");
                assert!(wflag.0.load(SeqCst), "claimed but never woken");
            }
            let mut st = chan.lock();
            // SAFETY: only ever pushed into these lists.
            unsafe { st.receivers.remove(&wnode) };
            assert_eq!(wnode.take_packet(), None);
            if queued {
                // SAFETY: as above.
                unsafe { st.senders.remove(&snode) };
                assert_eq!(
                    snode.take_packet(),
                    Some(7),
                    "the offer is still the sender's"
                );
            } else {
                assert_eq!(st.buf.pop_front(), Some(7), "the item is still buffered");
            }
        });
    }
}

/// A node and signal on the model body's stack, lent to a thread it joins before they go.
struct Parts(*const Node<u32>, *const Signal);
// SAFETY: the thread only touches them under the channel's lock, as a blocked party's
// notifier would, and is joined before the body's frame (which owns them) ends.
unsafe impl Send for Parts {}

/// A send watcher on a full `bounded(1)` registers while a receiver takes the item: the
/// watcher saw room, or was claimed and woken; the item was received exactly once.
#[test]
fn loom_no_lost_readiness_send_watcher_vs_recv() {
    loom::model(|| {
        let chan = Arc::new(Chan::<u32>::new(1));
        try_send(&chan, 1).unwrap();
        let (wsig, wflag) = signal();
        let wnode = Node::new(2, None);
        let c = chan.clone();
        let receiver = thread::spawn(move || try_recv(&c));
        let saw_ready = {
            let mut st = chan.lock();
            let ready = chan.send_ready(&st, None);
            if !ready {
                // SAFETY: `wnode` and `wsig` outlive the model body; unlinked below.
                unsafe { st.senders.push_watcher(&wnode, &wsig) };
            }
            ready
        };
        assert_eq!(receiver.join().unwrap(), Ok(1));
        if !saw_ready {
            assert_eq!(wsig.state(), 2, "a watcher missed the free slot");
            assert!(wflag.0.load(SeqCst));
        }
        let mut st = chan.lock();
        // SAFETY: only ever pushed into this list.
        unsafe { st.senders.remove(&wnode) };
        assert!(st.buf.is_empty());
    });
}
