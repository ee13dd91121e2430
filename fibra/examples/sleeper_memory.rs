//! Where the memory of N sleeping fibers goes: resident bytes per fiber, split into the stack
//! pages each fiber touched (counted with `mincore` around a local of each parked fiber), the
//! heap bytes in use (glibc `mallinfo2`), and the rest (allocator slack, page tables, queues).
//!
//! `cargo run --release --example sleeper_memory -- [N] [WORKERS]`. Unlike the lab's `spawn`
//! figure, the sample waits until every fiber is asleep, so a loaded machine (fibers not yet
//! started at the sample) cannot make it look smaller.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Live heap allocations by requested size: exact for sizes under `SMALL`, by power of two
/// above (bytes summed), so the sample can say which sizes the fibers hold.
struct Counting;

const SMALL: usize = 4096;
static LIVE_SMALL: [AtomicUsize; SMALL] = [const { AtomicUsize::new(0) }; SMALL];
static LIVE_BIG_BYTES: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

fn count(size: usize, add: bool) {
    let (slot, by) = if size < SMALL {
        (&LIVE_SMALL[size], 1)
    } else {
        (&LIVE_BIG_BYTES[size.ilog2() as usize], size)
    };
    if add {
        slot.fetch_add(by, Relaxed);
    } else {
        slot.fetch_sub(by, Relaxed);
    }
}

// SAFETY: every call is passed on to `System` unchanged; the counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), true);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), false);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), false);
        count(new_size, true);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A copy of the live-allocation counters.
fn live() -> (Vec<usize>, Vec<usize>) {
    (
        LIVE_SMALL.iter().map(|c| c.load(Relaxed)).collect(),
        LIVE_BIG_BYTES.iter().map(|c| c.load(Relaxed)).collect(),
    )
}

/// Prints what was allocated between two `live()` copies, per fiber.
fn print_growth(before: &(Vec<usize>, Vec<usize>), after: &(Vec<usize>, Vec<usize>), n: usize) {
    for size in 0..SMALL {
        let grew = after.0[size].saturating_sub(before.0[size]);
        if grew * 100 >= n {
            println!(
                "  {grew:>8} live allocations of {size} B: {:.1} B a fiber",
                (grew * size) as f64 / n as f64
            );
        }
    }
    for log in 0..64 {
        let grew = after.1[log].saturating_sub(before.1[log]);
        if grew * 100 >= n {
            println!(
                "  {grew:>8} B in allocations of 2^{log}..2^{} B: {:.1} B a fiber",
                log + 1,
                grew as f64 / n as f64
            );
        }
    }
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    m.uordblks + m.hblkhd
}

const PAGE: usize = 4096;

/// Resident pages of `len` bytes from `start`, or 0 if the range is not mapped.
fn resident_pages(start: usize, len: usize) -> usize {
    let mut vec = [0u8; 16];
    assert!(len / PAGE <= vec.len());
    // SAFETY: mincore only reads the page tables of the range and writes one byte per page
    // into `vec`, which has room for them (asserted).
    let rc = unsafe { libc::mincore(start as *mut libc::c_void, len, vec.as_mut_ptr()) };
    if rc != 0 {
        return 0; // ENOMEM: the range reaches past a stack region's end
    }
    vec.iter().filter(|&&b| b & 1 == 1).count()
}

/// Resident pages of the stack around `addr`, a local of a shallow fiber frame: its page and
/// the 15 below (at most a default stack's usable pages), and the page above, which is the
/// slot's top page, or the next slot's guard, or past the region's end.
fn resident_stack_pages(addr: usize) -> usize {
    let page = addr & !(PAGE - 1);
    resident_pages(page - 15 * PAGE, 16 * PAGE) + resident_pages(page + PAGE, PAGE)
}

/// Fibers asleep so far.
static ASLEEP: AtomicUsize = AtomicUsize::new(0);
/// Each fiber's frame address, by spawn index.
static FRAMES: OnceLock<Vec<AtomicUsize>> = OnceLock::new();
/// When the fibers wake: late enough for every fiber to be asleep at the sample.
static WAKE_AT: OnceLock<Instant> = OnceLock::new();

/// A sleeper like the lab's `spawn` unit: its closure captures only its index, so its packet
/// lives in the header (a bigger closure would add a boxed packet).
fn sleeper(i: usize) {
    let here = 0u8;
    FRAMES.get().expect("set before spawning")[i].store(std::ptr::addr_of!(here) as usize, Relaxed);
    ASLEEP.fetch_add(1, Release);
    fibra::sleep_until(*WAKE_AT.get().expect("set before spawning"));
    std::hint::black_box(&here);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    // No monitor: on a loaded machine it reports "stuck" workers, and symbolising their stacks
    // allocates megabytes that would be counted as the fibers'.
    let rt = fibra::Runtime::builder()
        .workers(workers)
        .monitor(false)
        .build()
        .unwrap();
    rt.run(move || {
        FRAMES.get_or_init(|| (0..n).map(|_| AtomicUsize::new(0)).collect());
        WAKE_AT.get_or_init(|| Instant::now() + Duration::from_secs(5));
        let (rss0, heap0, live0) = (rss_bytes(), heap_in_use(), live());
        let handles: Vec<_> = (0..n).map(|i| fibra::spawn(move || sleeper(i))).collect();
        while ASLEEP.load(Acquire) < n {
            fibra::sleep(Duration::from_millis(5));
        }
        let (rss1, heap1, live1) = (rss_bytes(), heap_in_use(), live());
        let frames = FRAMES.get().expect("set above");
        let pages: usize = frames.iter().map(|f| resident_stack_pages(f.load(Relaxed))).sum();
        // How far below its page's end a parked fiber's frame lies: the slot header (64 B)
        // plus the frames from the fiber's root down to this one (the park itself is deeper).
        let depth: usize = frames.iter().map(|f| PAGE - f.load(Relaxed) % PAGE).sum();
        let per = |b: usize| b as f64 / n as f64;
        let rss = rss1.saturating_sub(rss0);
        let heap = heap1.saturating_sub(heap0);
        let stack = pages * PAGE;
        println!(
            "{n} sleepers on {workers} workers: {:.0} B resident each = {:.2} stack pages ({:.0} B) \
             + {:.0} B heap in use + {:.0} B other (slack, page tables, runtime); \
             JoinHandle {} B",
            per(rss),
            pages as f64 / n as f64,
            per(stack),
            per(heap),
            per(rss).max(per(stack + heap)) - per(stack + heap),
            std::mem::size_of::<fibra::JoinHandle<()>>(),
        );
        println!(
            "  the sleeper's own frame sits {:.0} B below its stack's top page end",
            per(depth)
        );
        print_growth(&live0, &live1, n);
        if Instant::now() >= *WAKE_AT.get().expect("set above") {
            println!("(warning: the first fibers woke before the sample)");
        }
        for h in handles {
            h.join().unwrap();
        }
    });
}
