//! `futures_io::{AsyncRead, AsyncWrite}` on fibra sockets (feature `futures-io`): a
//! futures-io crate (async-tungstenite) over them, futures polled on another executor's
//! thread, and cancellation through unwinding.
#![cfg(feature = "futures-io")]

mod common;

use std::future::Future;
use std::io::Write;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use async_tungstenite::tungstenite::Message;
use fibra::net::{TcpListener, TcpStream};
use fibra::os::unix::net::UnixStream;
use futures_util::{AsyncReadExt, AsyncWriteExt, StreamExt};

fn rt(workers: usize) -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(workers)
        .stack_size(1 << 20) // async-tungstenite's futures are large in debug builds
        .build()
        .unwrap()
}

/// A websocket echo server and clients, each side a fiber awaiting async-tungstenite's
/// futures on fibra `TcpStream`s.
#[test]
fn websocket_echo_over_fibra_tcp() {
    let _w = common::watchdog("websocket_echo_over_fibra_tcp");
    rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        fibra::spawn(move || loop {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            fibra::spawn(move || {
                fibra::await_future(async move {
                    let mut ws = async_tungstenite::accept_async(stream).await.unwrap();
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_close() {
                            break;
                        }
                        ws.send(msg).await.unwrap();
                    }
                })
            });
        });
        let clients: Vec<_> = (0..4)
            .map(|c| {
                fibra::spawn(move || {
                    let stream = TcpStream::connect(addr).unwrap();
                    fibra::await_future(async move {
                        let url = format!("ws://{addr}/");
                        let (mut ws, _) =
                            async_tungstenite::client_async(url, stream).await.unwrap();
                        for i in 0..50 {
                            let text = format!("client {c} message {i}");
                            ws.send(Message::text(text.clone())).await.unwrap();
                            let back = ws.next().await.unwrap().unwrap();
                            assert_eq!(back.into_text().unwrap().as_str(), text);
                        }
                        // A large message takes many reads and writes, parking in between.
                        let big = vec![
                            0xabu8;
                            std::env::var("BIG").map_or(1 << 20, |v| v.parse().unwrap())
                        ];
                        ws.send(Message::binary(big.clone())).await.unwrap();
                        let back = ws.next().await.unwrap().unwrap();
                        assert_eq!(back.into_data().as_ref(), &big[..]);
                        ws.close(None).await.unwrap();
                    })
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    });
}

/// `AsyncReadExt`/`AsyncWriteExt` on a Unix stream pair, one fiber per side, reading through
/// `&UnixStream` while the other side writes in pieces; `close` is end of stream.
#[test]
fn unix_stream_read_to_end_and_close() {
    let _w = common::watchdog("unix_stream_read_to_end_and_close");
    rt(2).run(|| {
        let (a, b) = UnixStream::pair().unwrap();
        let writer = fibra::spawn(move || {
            let mut a = a;
            fibra::await_future(async move {
                for i in 0..100u32 {
                    AsyncWriteExt::write_all(&mut a, &[i as u8; 1000])
                        .await
                        .unwrap();
                }
                a.close().await.unwrap();
            })
        });
        let mut all = Vec::new();
        fibra::await_future((&b).read_to_end(&mut all)).unwrap();
        writer.join().unwrap();
        assert_eq!(all.len(), 100_000);
        assert!(all
            .chunks(1000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&x| x == i as u8)));
    });
}

/// One edge brings the last bytes and the end of stream; after the short read that empties
/// the socket (which spares the next read its syscall), the end of stream must still be seen.
#[test]
fn end_of_stream_after_a_short_async_read() {
    let _w = common::watchdog("end_of_stream_after_a_short_async_read");
    rt(1).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        let reader = fibra::spawn(move || {
            fibra::await_future(async move {
                let mut b = b;
                let mut buf = [0u8; 100];
                let mut total = 0;
                loop {
                    match AsyncReadExt::read(&mut b, &mut buf).await.unwrap() {
                        0 => return total,
                        n => total += n,
                    }
                }
            })
        });
        // One worker: the reader parks on its empty socket before the bytes and the close.
        fibra::sleep(std::time::Duration::from_millis(10));
        Write::write_all(&mut a, &[1u8; 10]).unwrap();
        drop(a);
        assert_eq!(reader.join().unwrap(), 10);
    });
}

/// A minimal executor for a plain thread: polls `fut`, parking the thread between polls.
fn block_on_thread<F: Future>(fut: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// A socket that already waited on a fibra worker can be awaited by another executor's
/// thread: the worker's poller wakes that thread's waker. One never registered fails with
/// an error instead of hanging.
#[test]
fn a_foreign_executor_thread_waits_on_a_registered_socket() {
    let _w = common::watchdog("a_foreign_executor_thread_waits_on_a_registered_socket");
    rt(1).run(|| {
        let (a, mut b) = UnixStream::pair().unwrap();
        // Register `a` with this worker's poller: one wait inside a fiber.
        let mut first = [0u8; 1];
        let writer = fibra::spawn({
            let mut b2 = b.try_clone().unwrap();
            move || Write::write_all(&mut b2, b"x").unwrap()
        });
        fibra::await_future((&a).read_exact(&mut first)).unwrap();
        writer.join().unwrap();
        // Now a plain thread awaits; this fiber writes once the thread has had time to park.
        let (ready_tx, ready_rx) = fibra::chan::bounded::<()>(1);
        let reader = std::thread::spawn(move || {
            let mut a = a;
            let mut buf = [0u8; 5];
            let mut fut = pin!(a.read_exact(&mut buf));
            // One poll that must be pending (nothing written yet), then tell the writer.
            let waker = Waker::noop();
            assert!(fut
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending());
            ready_tx.send(()).unwrap();
            block_on_thread(fut).unwrap();
            buf
        });
        ready_rx.recv().unwrap();
        Write::write_all(&mut b, b"hello").unwrap();
        let got = fibra::run_blocking(move || reader.join().unwrap());
        assert_eq!(&got, b"hello");

        // Never registered: a foreign thread's wait is an error, not a hang.
        let (c, _d) = UnixStream::pair().unwrap();
        let err = fibra::run_blocking(move || {
            let mut c = c;
            block_on_thread(c.read(&mut [0u8; 1])).unwrap_err()
        });
        assert!(err.to_string().contains("fibra worker"), "{err}");
    });
}

/// A fiber parked in `await_future` on a socket read is cancelled: it unwinds, dropping the
/// future and the socket (the peer reads end of stream), and the runtime goes on.
#[test]
fn cancelling_a_fiber_parked_on_an_async_read() {
    let _w = common::watchdog("cancelling_a_fiber_parked_on_an_async_read");
    rt(2).run(|| {
        let (a, mut b) = UnixStream::pair().unwrap();
        let reader = fibra::spawn(move || {
            let mut a = a;
            let mut buf = [0u8; 8];
            fibra::await_future(a.read(&mut buf)).unwrap()
        });
        while reader.fiber().park_reason() != fibra::ParkReason::BlockOn {
            fibra::yield_now();
        }
        reader.cancel();
        assert!(matches!(reader.join(), Err(fibra::JoinError::Cancelled)));
        assert_eq!(std::io::Read::read(&mut b, &mut [0u8; 8]).unwrap(), 0);
    });
}
