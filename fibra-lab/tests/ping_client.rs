//! The conns rows' client process (`fibra-lab ping-client`) on its own: failures are counted
//! by kind and reported, and the process still speaks both phases of its protocol.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use serde_json::Value;

#[test]
fn refused_connections_are_counted_by_errno_not_hidden() {
    // A port nothing listens on: bound, then closed again.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("its address")
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_fibra-lab"))
        .args(["ping-client", &addr.to_string(), "5", "--secs", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the ping client");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = || -> Value {
        let line = lines.next().expect("a report line").expect("readable");
        serde_json::from_str(&line).expect("one JSON report per line")
    };

    let opened = next();
    assert_eq!(opened["opened"]["open"], 0, "{opened}");
    assert_eq!(
        opened["opened"]["errors"]["connect: ECONNREFUSED"], 5,
        "{opened}"
    );

    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("start the pings");
    let done = next();
    assert_eq!(done["done"]["sent"], 0, "{done}");
    assert_eq!(done["done"]["answered"], 0, "{done}");
    assert_eq!(done["done"]["errors"]["connect: ECONNREFUSED"], 5, "{done}");
    assert!(child.wait().expect("the client exits").success());
}
