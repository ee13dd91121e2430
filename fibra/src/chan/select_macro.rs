//! The `select!` and `select_biased!` macros: parse the arms, bind one arm object each, call
//! `select::run`, and run the chosen arm's body.
//!
//! Each arm is bound by a `match` on its constructor, nested arm by arm, not by a `let`:
//! temporaries in a `match` scrutinee live until the end of the `match`, so an arm written
//! `recv(r.unwrap_or(&never()))` keeps its `never()` alive for the whole select. Each nesting
//! step is a separate macro expansion, so every `__fibra_arm` is a distinct binding (hygiene).

/// Waits on several channel operations and runs the arm of the one that completes.
///
/// ```text
/// select! {
///     recv(rx) -> msg => expr,            // msg: Result<T, RecvError>
///     send(tx, value) -> res => expr,     // res: Result<(), SendError<T>>
///     default => expr,                    // optional: nothing ready now (also `default()`)
///     default(Duration) => expr,          // or: nothing ready within the timeout
///     default(Instant) => expr,           // or: nothing ready by the deadline
/// }
/// ```
/// A closed channel's arm is ready (its result is the error). Among ready arms one is
/// chosen uniformly at random, so none starves ([`select_biased!`](crate::select_biased)
/// prefers the first). Without `default` the calling fiber parks (a plain thread blocks)
/// until an arm completes. A send arm's value is evaluated when the `select!` starts and
/// dropped if another arm is chosen; arm bodies may `break`, `continue` or `return`. The
/// receive side may be a [`Receiver`](crate::chan::Receiver) or a
/// [`OneshotReceiver`](crate::chan::OneshotReceiver), by value, by reference or through any
/// `Deref` (`Box`, `Arc`); timer channels ([`after`](crate::chan::after),
/// [`tick`](crate::chan::tick)) and [`never`](crate::chan::never) work like any receiver.
/// Temporaries in an arm's expression live until the select ends. Commas between arms are
/// optional after a block body, and a trailing comma is allowed.
///
/// A `select!` that completes at once, or whose `default` runs without waiting, counts once
/// against the calling fiber's [cooperative budget](crate::coop), so a loop of them lets the
/// worker's other fibers run.
///
/// # Memory ordering
/// As for `send`/`recv`: a send happens-before the receive that returns its value.
///
/// ```
/// use fibra::chan;
/// use std::time::Duration;
/// # fibra::run(|| {
/// let (tx, rx) = chan::bounded::<i32>(1);
/// let (_quit_tx, quit_rx) = chan::unbounded::<()>();
/// tx.send(7).unwrap();
/// let got = fibra::select! {
///     recv(rx) -> msg => msg.unwrap(),
///     recv(quit_rx) -> _ => -1,
///     default(Duration::from_millis(10)) => 0,
/// };
/// assert_eq!(got, 7);
/// # });
/// ```
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__select_parse!((false) () () $($tokens)*)
    };
}

/// [`select!`](crate::select) that tries its arms in the order written: among ready arms the
/// first wins (Go's and crossbeam's `select` choose at random; use this for priorities, such
/// as a quit channel before work).
///
/// ```
/// # fibra::run(|| {
/// let (hi_tx, hi) = fibra::chan::unbounded();
/// let (lo_tx, lo) = fibra::chan::unbounded();
/// for i in 0..3 { hi_tx.send(i).unwrap(); lo_tx.send(i).unwrap(); }
/// for _ in 0..3 {
///     fibra::select_biased! {
///         recv(hi) -> v => assert!(v.is_ok()),
///         recv(lo) -> _ => unreachable!("`hi` is ready and comes first"),
///     }
/// }
/// # });
/// ```
#[macro_export]
macro_rules! select_biased {
    ($($tokens:tt)*) => {
        $crate::__select_parse!((true) () () $($tokens)*)
    };
}

/// `select!` step 1: collect the arms as `[recv (rx) pat body]` / `[send (tx) (v) pat body]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    ($b:tt ($($arms:tt)*) $default:tt) => {
        $crate::__select_emit!($b $default () $($arms)*)
    };
    ($b:tt ($($arms:tt)*) $default:tt $(,)? recv($rx:expr $(,)?) -> $p:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($b ($($arms)* [recv ($rx) $p $body]) $default $($rest)*)
    };
    ($b:tt ($($arms:tt)*) $default:tt $(,)? recv($rx:expr $(,)?) -> $p:pat => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__select_parse!($b ($($arms)* [recv ($rx) $p $body]) $default $($($rest)*)?)
    };
    ($b:tt ($($arms:tt)*) $default:tt $(,)? send($tx:expr, $v:expr $(,)?) -> $p:pat => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($b ($($arms)* [send ($tx) ($v) $p $body]) $default $($rest)*)
    };
    ($b:tt ($($arms:tt)*) $default:tt $(,)? send($tx:expr, $v:expr $(,)?) -> $p:pat => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__select_parse!($b ($($arms)* [send ($tx) ($v) $p $body]) $default $($($rest)*)?)
    };
    ($b:tt ($($arms:tt)*) () $(,)? default $(())? => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($b ($($arms)*) (($crate::chan::__private::Mode::NonBlocking) $body) $($rest)*)
    };
    ($b:tt ($($arms:tt)*) () $(,)? default $(())? => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__select_parse!($b ($($arms)*) (($crate::chan::__private::Mode::NonBlocking) $body) $($($rest)*)?)
    };
    ($b:tt ($($arms:tt)*) () $(,)? default($d:expr $(,)?) => $body:block $($rest:tt)*) => {
        $crate::__select_parse!($b ($($arms)*) (($crate::chan::__private::deadline($d)) $body) $($rest)*)
    };
    ($b:tt ($($arms:tt)*) () $(,)? default($d:expr $(,)?) => $body:expr $(, $($rest:tt)*)?) => {
        $crate::__select_parse!($b ($($arms)*) (($crate::chan::__private::deadline($d)) $body) $($($rest)*)?)
    };
    ($b:tt ($($arms:tt)*) $default:tt , ) => {
        $crate::__select_emit!($b $default () $($arms)*)
    };
    ($b:tt $arms:tt $default:tt $($rest:tt)+) => {
        ::core::compile_error!(concat!(
            "fibra::select!: expected `recv(rx) -> msg => expr`, `send(tx, value) -> res => expr`, ",
            "`default => expr` or `default(timeout or deadline) => expr` (one default at most), ",
            "found: ",
            stringify!($($rest)+)
        ))
    };
}

/// `select!` step 2: bind one arm object per arm (a nested `match`, see the module docs),
/// then run and dispatch.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_emit {
    ($b:tt $default:tt ($($done:tt)*) [recv $rx:tt $p:tt $body:tt] $($rest:tt)*) => {
        match $crate::chan::__private::RecvArm::new(&$rx) {
            mut __fibra_arm => $crate::__select_emit!($b $default ($($done)* [__fibra_arm $p $body]) $($rest)*),
        }
    };
    ($b:tt $default:tt ($($done:tt)*) [send $tx:tt $v:tt $p:tt $body:tt] $($rest:tt)*) => {
        match $crate::chan::__private::SendArm::new(&$tx, $v) {
            mut __fibra_arm => $crate::__select_emit!($b $default ($($done)* [__fibra_arm $p $body]) $($rest)*),
        }
    };
    (($b:expr) () ($([$arm:ident $p:tt $body:tt])+)) => {{
        $crate::chan::__private::run(
            &mut [$(&mut $arm as &mut dyn $crate::chan::__private::Arm),+],
            $crate::chan::__private::Mode::Block,
            $b,
        );
        $( if let ::core::option::Option::Some(__fibra_res) = $arm.take() {
            let $p = __fibra_res;
            $body
        } else )+ {
            ::core::unreachable!("fibra::select!: no arm completed")
        }
    }};
    (($b:expr) ($mode:tt $default:tt) ($([$arm:ident $p:tt $body:tt])*)) => {{
        let __fibra_done = $crate::chan::__private::run(
            &mut [$(&mut $arm as &mut dyn $crate::chan::__private::Arm),*],
            $mode,
            $b,
        );
        $( if let ::core::option::Option::Some(__fibra_res) = $arm.take() {
            let $p = __fibra_res;
            $body
        } else )* {
            let _ = __fibra_done;
            $default
        }
    }};
}
