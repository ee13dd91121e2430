//! 3. `select!` over several receivers: each item reaches exactly one consumer.

use super::*;

#[derive(Debug, Clone, Copy)]
enum SelectHow {
    /// `select!` without default.
    Block,
    /// `select!` with `default`, retried after a backoff.
    Default,
    /// `select!` with `default(1 ms)`, retried.
    Timeout,
}

#[derive(Debug, Clone)]
struct Feeder {
    place: Place,
    /// The channel it sends into (modulo the channel count).
    chan: usize,
    items: usize,
}

#[derive(Debug, Clone)]
struct Consumer {
    place: Place,
    /// Cycled per `select!`.
    how: Vec<SelectHow>,
}

#[derive(Debug, Clone)]
struct SelectProgram {
    workers: usize,
    /// One to three channels.
    chans: Vec<Flavor>,
    feeders: Vec<Feeder>,
    consumers: Vec<Consumer>,
}

fn select_program() -> impl Strategy<Value = SelectProgram> {
    let how = prop_oneof![
        Just(SelectHow::Block),
        Just(SelectHow::Default),
        Just(SelectHow::Timeout)
    ];
    let feeder = (place(), 0usize..3, 0usize..16).prop_map(|(place, chan, items)| Feeder {
        place,
        chan,
        items,
    });
    let consumer = (place(), prop::collection::vec(how, 1..4))
        .prop_map(|(place, how)| Consumer { place, how });
    (
        1usize..=3,
        prop::collection::vec(flavor(), 1..=3),
        prop::collection::vec(feeder, 1..=4),
        prop::collection::vec(consumer, 1..=3),
    )
        .prop_map(|(workers, chans, mut feeders, consumers)| {
            for f in &mut feeders {
                f.chan %= chans.len();
            }
            SelectProgram {
                workers,
                chans,
                feeders,
                consumers,
            }
        })
}

/// One `select!` over three receivers (`recv` arms; arm `i` is `rxs[i]`). `Some(Err(i))`: arm
/// `i` is disconnected; `None`: the default ran.
fn select3(rxs: [&Receiver<Item>; 3], how: SelectHow) -> Option<Result<(usize, Item), usize>> {
    let arm =
        |i: usize| move |r: Result<Item, chan::RecvError>| Some(r.map(|v| (i, v)).map_err(|_| i));
    match how {
        SelectHow::Block => fibra::select! {
            recv(rxs[0]) -> r => arm(0)(r),
            recv(rxs[1]) -> r => arm(1)(r),
            recv(rxs[2]) -> r => arm(2)(r),
        },
        SelectHow::Default => fibra::select! {
            recv(rxs[0]) -> r => arm(0)(r),
            recv(rxs[1]) -> r => arm(1)(r),
            recv(rxs[2]) -> r => arm(2)(r),
            default => None,
        },
        SelectHow::Timeout => fibra::select! {
            recv(rxs[0]) -> r => arm(0)(r),
            recv(rxs[1]) -> r => arm(1)(r),
            recv(rxs[2]) -> r => arm(2)(r),
            default(Duration::from_millis(1)) => None,
        },
    }
}

/// Selects until every channel is disconnected; returns what arrived, in order. An arm whose
/// channel is disconnected (or absent) selects on `never` instead, which stays open and empty.
fn consume(c: &Consumer, rxs: Vec<Receiver<Item>>, never: Receiver<Item>) -> Vec<(usize, usize)> {
    let mut open: Vec<Option<Receiver<Item>>> = rxs.into_iter().map(Some).collect();
    open.resize_with(3, || None);
    let mut got = Vec::new();
    let mut spins = 0;
    for i in 0.. {
        if open.iter().all(Option::is_none) {
            break;
        }
        let arms = [0, 1, 2].map(|a| open[a].as_ref().unwrap_or(&never));
        let how = c.how[i % c.how.len()];
        match select3(arms, how) {
            Some(Ok((_, item))) => got.push(item.id()),
            Some(Err(arm)) => open[arm] = None,
            None => {
                if let SelectHow::Default = how {
                    // Two `default` loops on a rendezvous never meet: wait a little at times.
                    if backoff(c.place, &mut spins) {
                        let arms = [0, 1, 2].map(|a| open[a].as_ref().unwrap_or(&never));
                        match select3(arms, SelectHow::Timeout) {
                            Some(Ok((_, item))) => got.push(item.id()),
                            Some(Err(arm)) => open[arm] = None,
                            None => {}
                        }
                    }
                }
            }
        }
    }
    got
}

fn check_select(p: &SelectProgram) -> Result<(), TestCaseError> {
    let ledger = Ledger::new(p.feeders.len());
    let p2 = p.clone();
    let l2 = ledger.clone();
    let (got, threads, failures) = run_on(p.workers, move || {
        let chans: Vec<_> = p2.chans.iter().map(|f| f.make::<Item>()).collect();
        let (never_tx, never_rx) = chan::unbounded::<Item>();
        let mut fibers = Vec::new();
        let mut threads = Vec::new();
        let mut failures = Vec::new();
        // Consumers report what they got; feeders report nothing (every send must succeed:
        // consumers hold their receivers until disconnection).
        let (got_tx, got_rx) = chan::unbounded::<Vec<(usize, usize)>>();
        // Thread consumers and feeders are counted down here, so the root parks, not blocks.
        let threads_done = Arc::new(fibra::sync::WaitGroup::new());
        let mut start = |place: Place, f: Box<dyn FnOnce() -> Result<(), String> + Send>| {
            match place {
                Place::Fiber => fibers.push(fibra::spawn(f)),
                Place::Thread => {
                    threads_done.add(1);
                    let wg = threads_done.clone();
                    threads.push(std::thread::spawn(move || {
                        /// Counts down even if `f` panics.
                        struct Done(Arc<fibra::sync::WaitGroup>);
                        impl Drop for Done {
                            fn drop(&mut self) {
                                self.0.done();
                            }
                        }
                        let _done = Done(wg);
                        f()
                    }));
                }
            }
        };
        for c in &p2.consumers {
            let (c, never, out) = (c.clone(), never_rx.clone(), got_tx.clone());
            let rxs: Vec<_> = chans.iter().map(|(_, rx)| rx.clone()).collect();
            start(
                c.place,
                Box::new(move || {
                    out.send(consume(&c, rxs, never))
                        .map_err(|_| "report lost".to_string())
                }),
            );
        }
        for (id, f) in p2.feeders.iter().enumerate() {
            let (f, tx, ledger) = (f.clone(), chans[f.chan].0.clone(), l2.clone());
            start(
                f.place,
                Box::new(move || {
                    for seq in 0..f.items {
                        if let Err(e) = tx.send(Item::new(&ledger, id, seq)) {
                            return Err(format!("feeder {id} handed back {:?}", e.into_inner()));
                        }
                    }
                    Ok(())
                }),
            );
        }
        drop((chans, got_tx));
        for f in fibers {
            match f.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(format!("a fiber failed: {e:?}")),
            }
        }
        threads_done.wait();
        let got: Vec<_> = got_rx.iter().collect();
        drop(never_tx);
        (got, threads, failures)
    });
    let mut failures = failures;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a thread panicked".into()),
        }
    }
    prop_assert!(failures.is_empty(), "{:?}", failures);
    prop_assert_eq!(got.len(), p.consumers.len(), "every consumer reports");
    let mut seen = HashSet::new();
    for (c, items) in got.iter().enumerate() {
        let mut last: Vec<Option<usize>> = vec![None; p.feeders.len()];
        for &(s, q) in items {
            prop_assert!(seen.insert((s, q)), "item {}.{} selected twice", s, q);
            prop_assert!(
                last[s] < Some(q),
                "consumer {} got {}.{} after {:?}",
                c,
                s,
                q,
                last[s]
            );
            last[s] = Some(q);
        }
    }
    for (s, f) in p.feeders.iter().enumerate() {
        for q in 0..f.items {
            prop_assert!(seen.contains(&(s, q)), "item {}.{} never selected", s, q);
            prop_assert_eq!(ledger.drops(s, q), 1, "drops of item {}.{}", s, q);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn select_delivers_each_item_once(p in select_program()) {
        let _w = common::watchdog_for("select_delivers_each_item_once", CASE_LIMIT);
        trace(&p);
        check_select(&p)?;
    }
}
