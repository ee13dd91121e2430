//! The memory-error gate's self-check (`scripts/valgrind.sh`): a read of a stack after its
//! fiber finished, which memcheck must report. If it does not, fiber stacks are not marked
//! (the build lacks `--cfg fibra_valgrind`, or the client requests stopped working) and a clean
//! run of the other tests proves less than it seems, so the gate fails.
//!
//! Ignored in ordinary runs: the read is of a dead fiber's local, wrong on purpose.

use std::hint::black_box;

#[test]
#[ignore = "reads a finished fiber's stack on purpose; scripts/valgrind.sh runs it"]
fn reads_the_stack_of_a_finished_fiber() {
    fibra::run(|| {
        let addr = fibra::spawn(|| {
            let local = black_box([7u8; 64]);
            black_box(&local).as_ptr() as usize
        })
        .join()
        .unwrap();
        // The fiber finished and its stack went back to the pool before `join` returned
        // (`sched::worker::complete`), and the session still holds the pool, so the address
        // stays mapped: the read cannot fault, and memcheck must report it.
        // SAFETY: not sound in Rust's terms, on purpose: the local is dead, which is the error
        // memcheck must see. The machine-level effect is harmless: the slot stays mapped
        // read-write until the session ends, so the read returns some byte and nothing else.
        let byte = unsafe { std::ptr::read_volatile(addr as *const u8) };
        black_box(byte);
    });
}
