"""gdb commands for fibra fibers, on a live process or a core dump.

Load with `source fibra/gdb/fibra_gdb.py`, then:

    info fibers        every registered fiber: id, name, state, wait reason, home worker
    fiber N bt         the backtrace of suspended fiber N, down to its entry (fiber_root)

It reads only memory: the runtime's debugger anchor, the `#[no_mangle]` static
FIBRA_DEBUGGER_ANCHOR (fibra/src/sched/anchor.rs documents its layout and version), leads to
each worker's registry of fibers. A suspended fiber's saved registers are handed to gdb's
unwinder through a Python unwinder, so no register is written (core dumps work).
Limits: x86-64 only; fibers that never parked are not registered (unless named, once they
park); a running fiber's stack is its worker thread's: use `thread apply all bt`.
"""

import struct

import gdb
import gdb.unwinder

ANCHOR_SYMBOL = "FIBRA_DEBUGGER_ANCHOR"
ANCHOR_VERSION = 1
MAGIC = b"FIBRADBG"
MAX_FIBERS_PER_WORKER = 1 << 22  # bounds a length read mid-update
MAX_VIEWS = 4096
MAX_FRAMES = 200
STATES = ("scheduled", "parked", "cancelling", "complete")
ENTRY_FUNCTION = "fibra::fiber::join::fiber_root"


class FibraError(gdb.GdbError):
    pass


def _mem(addr, n):
    try:
        return bytes(gdb.selected_inferior().read_memory(addr, n))
    except gdb.MemoryError as e:
        raise FibraError("fibra: cannot read %d bytes at %#x: %s" % (n, addr, e))


def _u(addr, fmt):
    return struct.unpack("<" + fmt, _mem(addr, struct.calcsize("<" + fmt)))[0]


def _anchor_address():
    # The linkage name is the plain symbol name (#[no_mangle]); ask the minimal symbols.
    out = gdb.execute("info address " + ANCHOR_SYMBOL, to_string=True)
    for word in out.replace(".", " ").split():
        if word.startswith("0x"):
            return int(word, 16)
    raise FibraError("fibra: no %s in this program (not a fibra program, or "
                     "no runtime started yet): %s" % (ANCHOR_SYMBOL, out.strip()))


class Anchor:
    """The anchor's fields (layout: sched/anchor.rs, `Anchor`)."""

    def __init__(self):
        if gdb.selected_inferior().pid == 0 and not gdb.selected_inferior().threads():
            raise FibraError("fibra: no process or core file")
        arch = gdb.selected_frame().architecture().name() if gdb.selected_thread() else ""
        if "x86-64" not in arch:
            raise FibraError("fibra: only x86-64 is supported (this is %r)" % arch)
        a = _anchor_address()
        raw = _mem(a, 64)
        if raw[:8] != MAGIC:
            raise FibraError("fibra: %s at %#x has no magic (got %r)" % (ANCHOR_SYMBOL, a, raw[:8]))
        (self.version, _size, self.off_id, self.off_name, self.name_ptr_word, self.off_state,
         self.off_reason, self.off_home, self.off_saved_sp, names_len, names_ptr,
         self.views) = struct.unpack("<IIIIIIIIIIQQ", raw[8:64])
        if self.version != ANCHOR_VERSION:
            raise FibraError("fibra: anchor version %d; this script reads version %d"
                             % (self.version, ANCHOR_VERSION))
        self.reasons = _mem(names_ptr, names_len).decode().rstrip("\0").split("\0")

    def workers(self):
        """(session, worker, [header addresses]) per worker registry."""
        v, seen = self.views, 0
        while v and seen < MAX_VIEWS:
            nxt, session, worker, entries, length = struct.unpack("<QQQQQ", _mem(v, 40))
            fibers = []
            if entries and 0 < length <= MAX_FIBERS_PER_WORKER:
                raw = _mem(entries, 8 * length)
                fibers = [p for p in struct.unpack("<%dQ" % length, raw) if p]
            yield session, worker, fibers
            v, seen = nxt, seen + 1

    def fiber(self, h):
        """A dict of what the anchor says of the header at `h`."""
        words = struct.unpack("<QQ", _mem(h + self.off_name, 16))
        ptr, length = words[self.name_ptr_word], words[1 - self.name_ptr_word]
        name = None
        if ptr:
            name = _mem(ptr, min(length, 256)).decode("utf-8", "replace")
        state_word = _u(h + self.off_state, "I")
        reason = _u(h + self.off_reason, "B")
        home = _u(h + self.off_home, "I")
        saved_sp = _u(h + self.off_saved_sp, "Q") if self.off_saved_sp else 0
        state = STATES[state_word & 3]
        return {
            "header": h,
            "id": _u(h + self.off_id, "Q"),
            "name": name,
            "state": state,
            "reason": (self.reasons[reason] if reason < len(self.reasons) else str(reason))
            if state == "parked" else "-",
            "home": None if home == 0xFFFFFFFF else home,
            "saved_sp": saved_sp,
        }

    def all_fibers(self):
        out = []
        for session, worker, headers in self.workers():
            for h in headers:
                f = self.fiber(h)
                f["session"] = session
                out.append(f)
        return sorted(out, key=lambda f: (f["session"], f["id"]))


class _FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class FiberUnwinder(gdb.unwinder.Unwinder):
    """Makes the caller of the innermost frame a suspended fiber's top frame, while `regs` is
    set: gdb then unwinds the fiber's stack with the binary's CFI, from frame 1 on."""

    def __init__(self):
        super().__init__("fibra-fiber")
        self.regs = None

    def __call__(self, pending):
        if self.regs is None or pending.level() != 0:
            return None
        sp = pending.read_register("rsp")
        pc = pending.read_register("rip")
        info = pending.create_unwind_info(_FrameId(sp, pc))
        for reg, val in self.regs.items():
            info.add_saved_register(reg, gdb.Value(val).cast(pending.read_register(reg).type))
        return info


_UNWINDER = FiberUnwinder()
gdb.unwinder.register_unwinder(None, _UNWINDER, replace=True)


def saved_registers(fiber):
    """x86-64: corosensei pushed the resume address, rbx and rbp at the saved stack pointer
    (sched/anchor.rs); the fiber's rsp at that address is 24 bytes above."""
    sp = fiber["saved_sp"]
    rip, rbx, rbp = struct.unpack("<QQQ", _mem(sp, 24))
    return {"rip": rip, "rsp": sp + 24, "rbx": rbx, "rbp": rbp}


def _describe(frame):
    name = frame.name() or "??"
    sal = frame.find_sal()
    where = ""
    if sal.symtab:
        where = " at %s:%d" % (sal.symtab.filename, sal.line)
    return name, "0x%016x in %s%s" % (frame.pc(), name, where)


def fiber_backtrace(fiber):
    """The fiber's frames, innermost first, ending at its entry; list of text lines."""
    if not fiber["saved_sp"]:
        raise FibraError("fibra: fiber %d is %s and not suspended (a running fiber's stack "
                         "is its worker thread's: thread apply all bt)"
                         % (fiber["id"], fiber["state"]))
    regs = saved_registers(fiber)
    lines = []
    _UNWINDER.regs = regs
    gdb.invalidate_cached_frames()
    try:
        frame = gdb.newest_frame().older()
        while frame is not None and len(lines) < MAX_FRAMES:
            name, text = _describe(frame)
            lines.append("#%-3d %s" % (len(lines), text))
            if name == ENTRY_FUNCTION or name.startswith(ENTRY_FUNCTION + "<"):
                break  # the fiber's entry: below it lies a stale link to a worker's stack
            frame = frame.older()
    finally:
        _UNWINDER.regs = None
        gdb.invalidate_cached_frames()
    return lines


def _find(anchor, fid):
    for f in anchor.all_fibers():
        if f["id"] == fid:
            return f
    raise FibraError("fibra: no registered fiber %d (`info fibers` lists them)" % fid)


class InfoFibers(gdb.Command):
    """List fibra fibers: id, name, state, wait reason, home worker.
Only registered fibers are listed: those that have parked at least once."""

    def __init__(self):
        super().__init__("info fibers", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        anchor = Anchor()
        fibers = anchor.all_fibers()
        sessions = {f["session"] for f in fibers}
        print("%-8s %-20s %-11s %-13s %s" % ("Id", "Name", "State", "Reason", "Home"))
        for f in fibers:
            home = "-" if f["home"] is None else "worker %d" % f["home"]
            if len(sessions) > 1:
                home += " (session %d)" % f["session"]
            print("%-8d %-20s %-11s %-13s %s" % (f["id"], f["name"] or "-", f["state"],
                                                 f["reason"], home))
        print("%d fiber(s)" % len(fibers))


class FiberCommand(gdb.Command):
    """fiber N bt: backtrace of fibra fiber N (suspended: parked or queued), down to its entry.
fiber N: what `info fibers` says of fiber N."""

    def __init__(self):
        super().__init__("fiber", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = arg.split()
        if not args or not args[0].isdigit() or args[1:] not in ([], ["bt"], ["backtrace"]):
            raise FibraError("usage: fiber N [bt]")
        f = _find(Anchor(), int(args[0]))
        print("fiber %d %s: %s%s, home %s" % (
            f["id"], '"%s"' % f["name"] if f["name"] else "(unnamed)", f["state"],
            " (%s)" % f["reason"] if f["state"] == "parked" else "",
            "-" if f["home"] is None else "worker %d" % f["home"]))
        if args[1:]:
            for line in fiber_backtrace(f):
                print(line)


InfoFibers()
FiberCommand()
