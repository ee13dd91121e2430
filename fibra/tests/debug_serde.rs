//! With the `serde` feature, dumps and metrics serialise for tools.
#![cfg(feature = "serde")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;

#[test]
fn dump_and_metrics_serialise_to_json() {
    let _w = common::watchdog("dump_and_metrics_serialise_to_json");
    let rt = fibra::Runtime::builder().workers(1).build().unwrap();
    rt.run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let h = fibra::Builder::new()
            .name("parker")
            .spawn(move || {
                while !s2.load(Acquire) {
                    fibra::park();
                }
            })
            .unwrap();
        while h.fiber().park_reason() != fibra::ParkReason::User {
            fibra::yield_now();
        }
        let json = serde_json::to_value(fibra::debug::dump()).unwrap();
        let fibers = json["fibers"].as_array().unwrap();
        let parker = fibers.iter().find(|f| f["name"] == "parker").unwrap();
        assert_eq!(parker["state"], "Parked");
        assert_eq!(parker["reason"], "User");
        assert!(parker["backtrace"]["Frames"].is_array(), "{parker}");
        let m = serde_json::to_value(fibra::debug::metrics().unwrap()).unwrap();
        assert!(m["workers"][0]["fibers_run"].as_u64().unwrap() >= 2, "{m}");
        stop.store(true, Release);
        h.fiber().unpark();
        h.join().unwrap();
    });
}
