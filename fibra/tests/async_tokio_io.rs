//! `tokio::io::{AsyncRead, AsyncWrite}` on fibra sockets (feature `tokio-io`): tokio's I/O
//! helpers over fibra's reactor, with no tokio runtime anywhere.
#![cfg(feature = "tokio-io")]

mod common;

use fibra::net::{TcpListener, TcpStream};
use fibra::os::unix::net::UnixStream;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn rt(workers: usize) -> fibra::Runtime {
    fibra::Runtime::builder()
        .workers(workers)
        .stack_size(1 << 20)
        .build()
        .unwrap()
}

/// A line-echo server and clients written with tokio's `AsyncBufReadExt`/`AsyncWriteExt`.
#[test]
fn line_echo_over_tcp_with_tokio_io_helpers() {
    let _w = common::watchdog("line_echo_over_tcp_with_tokio_io_helpers");
    rt(2).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        fibra::spawn(move || loop {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            fibra::spawn(move || {
                fibra::await_future(async move {
                    let (r, mut w) = (&stream, &stream);
                    let mut lines = BufReader::new(r).lines();
                    while let Some(line) = lines.next_line().await.unwrap() {
                        w.write_all(format!("{line}!\n").as_bytes()).await.unwrap();
                    }
                    AsyncWriteExt::shutdown(&mut w).await.unwrap();
                })
            });
        });
        let clients: Vec<_> = (0..8)
            .map(|c| {
                fibra::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    fibra::await_future(async move {
                        let mut expect = String::new();
                        for i in 0..100 {
                            s.write_all(format!("c{c} line {i}\n").as_bytes())
                                .await
                                .unwrap();
                            expect.push_str(&format!("c{c} line {i}!\n"));
                        }
                        AsyncWriteExt::shutdown(&mut s).await.unwrap(); // FIN: the server's lines end
                        let mut got = String::new();
                        s.read_to_string(&mut got).await.unwrap();
                        assert_eq!(got, expect);
                    })
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    });
}

/// `tokio::io::copy_bidirectional` between two fibra Unix stream pairs: a proxy fiber
/// relays 1 MiB each way while both ends write before they read.
#[test]
fn copy_bidirectional_relays_both_ways() {
    let _w = common::watchdog("copy_bidirectional_relays_both_ways");
    rt(2).run(|| {
        let (mut a, mut pa) = UnixStream::pair().unwrap();
        let (mut pb, mut b) = UnixStream::pair().unwrap();
        let proxy = fibra::spawn(move || {
            fibra::await_future(tokio::io::copy_bidirectional(&mut pa, &mut pb)).unwrap()
        });
        const N: usize = 1 << 20;
        let end_b = fibra::spawn(move || {
            fibra::await_future(async move {
                let (mut r, mut w) = (&b, &b);
                let writer = async {
                    w.write_all(&vec![2u8; N]).await.unwrap();
                    AsyncWriteExt::shutdown(&mut w).await.unwrap();
                };
                let mut got = Vec::new();
                let reader = r.read_to_end(&mut got);
                let ((), n) = futures_util::future::join(writer, reader).await;
                assert_eq!(n.unwrap(), N);
                assert!(got.iter().all(|&x| x == 1));
                let _ = &mut b;
            })
        });
        fibra::await_future(async {
            let (mut r, mut w) = (&a, &a);
            let writer = async {
                w.write_all(&vec![1u8; N]).await.unwrap();
                AsyncWriteExt::shutdown(&mut w).await.unwrap();
            };
            let mut got = Vec::new();
            let reader = r.read_to_end(&mut got);
            let ((), n) = futures_util::future::join(writer, reader).await;
            assert_eq!(n.unwrap(), N);
            assert!(got.iter().all(|&x| x == 2));
        });
        end_b.join().unwrap();
        assert_eq!(proxy.join().unwrap(), (N as u64, N as u64));
        let _ = &mut a;
    });
}
