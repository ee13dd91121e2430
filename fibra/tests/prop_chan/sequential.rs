//! 1. Sequential programs against an exact model.

use super::*;

/// One step of a sequential program. `u8` operands pick an endpoint among the live ones
/// (modulo their number); a step whose side has no live endpoint does nothing.
#[derive(Debug, Clone)]
enum SeqOp {
    TrySend(u8),
    /// `send_timeout(v, 0)`: a try that goes through the timed path.
    SendZeroTimeout(u8),
    /// `send` when the model says it completes (or fails) at once, else `send_timeout(v, 0)`.
    Send(u8),
    /// `select! { send(tx, v), default }`; on `default` the arm drops the value.
    SelectSend(u8),
    TryRecv(u8),
    RecvZeroTimeout(u8),
    /// `recv` when the model says it returns at once, else `recv_timeout(0)`.
    Recv(u8),
    /// `select! { recv(rx), default }`.
    SelectRecv(u8),
    CloneSender(u8),
    CloneReceiver(u8),
    DropSender(u8),
    DropReceiver(u8),
}

fn seq_op() -> impl Strategy<Value = SeqOp> {
    let i = any::<u8>;
    prop_oneof![
        4 => i().prop_map(SeqOp::TrySend),
        2 => i().prop_map(SeqOp::SendZeroTimeout),
        2 => i().prop_map(SeqOp::Send),
        2 => i().prop_map(SeqOp::SelectSend),
        3 => i().prop_map(SeqOp::TryRecv),
        2 => i().prop_map(SeqOp::RecvZeroTimeout),
        2 => i().prop_map(SeqOp::Recv),
        2 => i().prop_map(SeqOp::SelectRecv),
        1 => i().prop_map(SeqOp::CloneSender),
        1 => i().prop_map(SeqOp::CloneReceiver),
        1 => i().prop_map(SeqOp::DropSender),
        1 => i().prop_map(SeqOp::DropReceiver),
    ]
}

/// What a send or receive step may find, per the model.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Sent: into the buffer. Received: this item.
    Done(Option<usize>),
    /// Would wait (full / empty).
    Wait,
    /// The other side is gone.
    Gone,
}

struct Model {
    cap: Option<usize>,
    buf: VecDeque<usize>,
    senders: Vec<Sender<Item>>,
    receivers: Vec<Receiver<Item>>,
}

impl Model {
    fn expect_send(&self) -> Expect {
        if self.receivers.is_empty() {
            Expect::Gone
        } else if self.cap.is_none_or(|c| self.buf.len() < c) {
            Expect::Done(None)
        } else {
            Expect::Wait
        }
    }

    fn expect_recv(&self) -> Expect {
        match self.buf.front() {
            Some(&seq) => Expect::Done(Some(seq)),
            None if self.senders.is_empty() => Expect::Gone,
            None => Expect::Wait,
        }
    }

    /// Applies a send's outcome to the model.
    fn sent(&mut self, seq: usize, got: Expect) -> Result<(), TestCaseError> {
        let want = self.expect_send();
        prop_assert_eq!(&got, &want, "send of item {}", seq);
        if want == Expect::Done(None) {
            self.buf.push_back(seq);
        }
        Ok(())
    }

    /// Applies a receive's outcome to the model.
    fn received(&mut self, got: Expect) -> Result<(), TestCaseError> {
        let want = self.expect_recv();
        prop_assert_eq!(&got, &want, "receive");
        if let Expect::Done(_) = want {
            self.buf.pop_front();
        }
        Ok(())
    }
}

/// The outcome of a send of item `seq`, checking that a failed send hands back that item.
fn send_outcome<E>(seq: usize, r: Result<(), E>, split: impl FnOnce(E) -> (bool, Item)) -> Expect {
    match r {
        Ok(()) => Expect::Done(None),
        Err(e) => {
            let (gone, back) = split(e);
            assert_eq!(back.seq, seq, "a failed send hands back its own value");
            if gone {
                Expect::Gone
            } else {
                Expect::Wait
            }
        }
    }
}

fn recv_outcome(r: Result<Item, Expect>) -> Expect {
    match r {
        Ok(item) => Expect::Done(Some(item.seq)),
        Err(e) => e,
    }
}

fn run_sequential(flavor: Flavor, ops: &[SeqOp]) -> Result<(), TestCaseError> {
    let ledger = Ledger::new(1);
    let (tx, rx) = flavor.make::<Item>();
    let mut m = Model {
        cap: flavor.cap(),
        buf: VecDeque::new(),
        senders: vec![tx],
        receivers: vec![rx],
    };
    let mut next = 0;
    for (step, op) in ops.iter().enumerate() {
        let pick = |n: u8, len: usize| (len > 0).then(|| usize::from(n) % len);
        match *op {
            SeqOp::TrySend(i)
            | SeqOp::SendZeroTimeout(i)
            | SeqOp::Send(i)
            | SeqOp::SelectSend(i) => {
                let Some(i) = pick(i, m.senders.len()) else {
                    continue;
                };
                let seq = next;
                next += 1;
                let v = Item::new(&ledger, 0, seq);
                let tx = &m.senders[i];
                let got = match op {
                    SeqOp::TrySend(_) => send_outcome(seq, tx.try_send(v), |e| match e {
                        TrySendError::Full(v) => (false, v),
                        TrySendError::Disconnected(v) => (true, v),
                    }),
                    SeqOp::Send(_) if m.expect_send() != Expect::Wait => {
                        send_outcome(seq, tx.send(v), |e| (true, e.into_inner()))
                    }
                    SeqOp::Send(_) | SeqOp::SendZeroTimeout(_) => {
                        send_outcome(seq, tx.send_timeout(v, Duration::ZERO), |e| match e {
                            SendTimeoutError::Timeout(v) => (false, v),
                            SendTimeoutError::Disconnected(v) => (true, v),
                        })
                    }
                    _ => fibra::select! {
                        send(tx, v) -> r => send_outcome(seq, r, |e| (true, e.into_inner())),
                        default => Expect::Wait, // the arm drops the value
                    },
                };
                m.sent(seq, got)?;
            }
            SeqOp::TryRecv(i)
            | SeqOp::RecvZeroTimeout(i)
            | SeqOp::Recv(i)
            | SeqOp::SelectRecv(i) => {
                let Some(i) = pick(i, m.receivers.len()) else {
                    continue;
                };
                let rx = &m.receivers[i];
                let got = match op {
                    SeqOp::TryRecv(_) => recv_outcome(rx.try_recv().map_err(|e| match e {
                        TryRecvError::Empty => Expect::Wait,
                        TryRecvError::Disconnected => Expect::Gone,
                    })),
                    SeqOp::Recv(_) if m.expect_recv() != Expect::Wait => {
                        recv_outcome(rx.recv().map_err(|_| Expect::Gone))
                    }
                    SeqOp::Recv(_) | SeqOp::RecvZeroTimeout(_) => {
                        recv_outcome(rx.recv_timeout(Duration::ZERO).map_err(|e| match e {
                            RecvTimeoutError::Timeout => Expect::Wait,
                            RecvTimeoutError::Disconnected => Expect::Gone,
                        }))
                    }
                    _ => fibra::select! {
                        recv(rx) -> r => recv_outcome(r.map_err(|_| Expect::Gone)),
                        default => Expect::Wait,
                    },
                };
                m.received(got)?;
            }
            SeqOp::CloneSender(i) => {
                if let Some(i) = pick(i, m.senders.len()) {
                    let tx = m.senders[i].clone();
                    m.senders.push(tx);
                }
            }
            SeqOp::CloneReceiver(i) => {
                if let Some(i) = pick(i, m.receivers.len()) {
                    let rx = m.receivers[i].clone();
                    m.receivers.push(rx);
                }
            }
            SeqOp::DropSender(i) => {
                if let Some(i) = pick(i, m.senders.len()) {
                    drop(m.senders.swap_remove(i));
                }
            }
            SeqOp::DropReceiver(i) => {
                if let Some(i) = pick(i, m.receivers.len()) {
                    drop(m.receivers.swap_remove(i));
                    if m.receivers.is_empty() {
                        m.buf.clear(); // dropped with the last receiver
                    }
                }
            }
        }
        // Every endpoint sees the model's length and bound.
        let len = m.buf.len();
        for tx in &m.senders {
            prop_assert_eq!(tx.len(), len, "sender len after step {}", step);
            prop_assert_eq!(tx.capacity(), m.cap);
            prop_assert_eq!(tx.is_full(), m.cap.is_some_and(|c| len >= c));
        }
        for rx in &m.receivers {
            prop_assert_eq!(rx.len(), len, "receiver len after step {}", step);
            prop_assert_eq!(rx.is_empty(), len == 0);
        }
        // Exactly the buffered items are alive; every other item was dropped once.
        for seq in 0..next {
            let want = usize::from(!m.buf.contains(&seq));
            prop_assert_eq!(
                ledger.drops(0, seq),
                want,
                "drops of item {} after step {}",
                seq,
                step
            );
        }
    }
    drop(m);
    for seq in 0..next {
        prop_assert_eq!(ledger.drops(0, seq), 1, "drops of item {} at the end", seq);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn sequential_programs_match_the_model(
        flavor in flavor(),
        on_fiber in any::<bool>(),
        ops in prop::collection::vec(seq_op(), 0..48),
    ) {
        let _w = common::watchdog_for("sequential_programs_match_the_model", CASE_LIMIT);
        if on_fiber {
            run_on(1, move || run_sequential(flavor, &ops))?;
        } else {
            run_sequential(flavor, &ops)?;
        }
    }
}
