"""lldb commands for fibra fibers, on a live process or a core dump.

Load with `command script import fibra/lldb/fibra_lldb.py`, then:

    fibers             every registered fiber: id, name, state, wait reason, home worker
    fiber N            what `fibers` says of fiber N
    fiber N bt         the backtrace of suspended fiber N, down to its entry (fiber_root)

(`fiber list` is `fibers`; `fiber bt N` and `fiber N backtrace` are `fiber N bt`.)

It reads only memory: the runtime's debugger anchor, the `#[no_mangle]` static
FIBRA_DEBUGGER_ANCHOR (fibra/src/sched/anchor.rs documents its layout and version), leads to
each worker's registry of fibers. lldb cannot unwind from registers it did not read from a
thread (and a core dump's registers cannot be written), so a suspended fiber's stack is
unwound by fibra_cfi.py, beside this file, with the binary's `.eh_frame` CFI (the tables
lldb's own unwinder reads), and lldb symbolicates each address.
Limits: x86-64 only; fibers that never parked are not registered; a running fiber's stack is
its worker thread's: use `thread backtrace all`.
"""

import os
import re
import struct
import sys

import lldb

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import fibra_cfi  # noqa: E402  (beside this file; lldb imports this one by path)

ANCHOR_SYMBOL = "FIBRA_DEBUGGER_ANCHOR"
ANCHOR_VERSION = 1
MAGIC = b"FIBRADBG"
MAX_FIBERS_PER_WORKER = 1 << 22  # bounds a length read mid-update
MAX_VIEWS = 4096
STATES = ("scheduled", "parked", "cancelling", "complete")
ENTRY_FUNCTION = "fibra::fiber::join::fiber_root"
# Rust's legacy mangling leaves a hash as the last path segment (`…::fiber_root::h0123…`) and
# escapes punctuation (`Yielder$LT$Input$C$Yield$GT$`); lldb 14 undoes neither everywhere.
_HASH = re.compile(r"::h[0-9a-f]{16}$")
_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")",
            "C": ","}
_ESCAPE = re.compile(r"\$(SP|BP|RF|LT|GT|LP|RP|C|u[0-9a-f]{2,6})\$")


def _clean(name):
    """A Rust symbol's readable form: no hash, no legacy escapes."""
    name = _HASH.sub("", name or "??")
    if "$" not in name:
        return name
    # A path segment that starts with an escape carries a leading `_` (`_$LT$…`).
    name = re.sub(r"(^|::)_\$", r"\1$", name)
    name = _ESCAPE.sub(
        lambda m: _ESCAPES.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), name)
    return name.replace("..", "::")


class FibraError(Exception):
    pass


class Memory:
    """Reads of the process (live or a core dump), with errors that say what failed."""

    def __init__(self, process):
        self.process = process

    def read(self, addr, n):
        err = lldb.SBError()
        data = self.process.ReadMemory(addr, n, err) if n else b""
        if not err.Success() or data is None or len(data) != n:
            raise FibraError("fibra: cannot read %d bytes at %#x: %s" % (n, addr, err.GetCString()))
        return bytes(data)

    def u(self, addr, fmt):
        return struct.unpack("<" + fmt, self.read(addr, struct.calcsize("<" + fmt)))[0]

    def u64_for_cfi(self, addr):
        try:
            return self.u(addr, "Q")
        except FibraError as e:
            raise fibra_cfi.CfiError(str(e))


def _context(exe_ctx):
    target = exe_ctx.GetTarget()
    process = exe_ctx.GetProcess()
    if not target.IsValid() or not process.IsValid():
        raise FibraError("fibra: no process or core file")
    if process.GetState() == lldb.eStateRunning:
        raise FibraError("fibra: the process is running; interrupt it first")
    triple = target.GetTriple() or ""
    if not triple.startswith("x86_64"):
        raise FibraError("fibra: only x86-64 is supported (this is %r)" % triple)
    return target, process


def _anchor_address(target):
    for sc in target.FindSymbols(ANCHOR_SYMBOL, lldb.eSymbolTypeAny):
        addr = sc.GetSymbol().GetStartAddress().GetLoadAddress(target)
        if addr != lldb.LLDB_INVALID_ADDRESS:
            return addr
    raise FibraError("fibra: no %s in this program (not a fibra program, or its module is "
                     "not loaded)" % ANCHOR_SYMBOL)


class Anchor:
    """The anchor's fields (layout: sched/anchor.rs, `Anchor`)."""

    def __init__(self, target, process):
        self.mem = Memory(process)
        a = _anchor_address(target)
        raw = self.mem.read(a, 64)
        if raw[:8] != MAGIC:
            raise FibraError("fibra: %s at %#x has no magic (got %r)" % (ANCHOR_SYMBOL, a, raw[:8]))
        (self.version, _size, self.off_id, self.off_name, self.name_ptr_word, self.off_state,
         self.off_reason, self.off_home, self.off_saved_sp, names_len, names_ptr,
         self.views) = struct.unpack("<IIIIIIIIIIQQ", raw[8:64])
        if self.version != ANCHOR_VERSION:
            raise FibraError("fibra: anchor version %d; this script reads version %d"
                             % (self.version, ANCHOR_VERSION))
        self.reasons = self.mem.read(names_ptr, names_len).decode().rstrip("\0").split("\0")

    def workers(self):
        """(session, worker, [header addresses]) per worker registry."""
        v, seen = self.views, 0
        while v and seen < MAX_VIEWS:
            nxt, session, worker, entries, length = struct.unpack("<QQQQQ", self.mem.read(v, 40))
            fibers = []
            if entries and 0 < length <= MAX_FIBERS_PER_WORKER:
                raw = self.mem.read(entries, 8 * length)
                fibers = [p for p in struct.unpack("<%dQ" % length, raw) if p]
            yield session, worker, fibers
            v, seen = nxt, seen + 1

    def fiber(self, h):
        """A dict of what the anchor says of the header at `h`."""
        m = self.mem
        words = struct.unpack("<QQ", m.read(h + self.off_name, 16))
        ptr, length = words[self.name_ptr_word], words[1 - self.name_ptr_word]
        name = m.read(ptr, min(length, 256)).decode("utf-8", "replace") if ptr else None
        state = STATES[m.u(h + self.off_state, "I") & 3]
        reason = m.u(h + self.off_reason, "B")
        home = m.u(h + self.off_home, "I")
        return {
            "id": m.u(h + self.off_id, "Q"),
            "name": name,
            "state": state,
            "reason": (self.reasons[reason] if reason < len(self.reasons) else str(reason))
            if state == "parked" else "-",
            "home": None if home == 0xFFFFFFFF else home,
            "saved_sp": m.u(h + self.off_saved_sp, "Q") if self.off_saved_sp else 0,
        }

    def all_fibers(self):
        out = []
        for session, _worker, headers in self.workers():
            for h in headers:
                f = self.fiber(h)
                f["session"] = session
                out.append(f)
        return sorted(out, key=lambda f: (f["session"], f["id"]))

    def find(self, fid):
        for f in self.all_fibers():
            if f["id"] == fid:
                return f
        raise FibraError("fibra: no registered fiber %d (`fibers` lists them)" % fid)


class Tables:
    """The `.eh_frame` tables of each module, read from its file through lldb, at the
    addresses it is loaded at (so the same code serves a live process and a core dump)."""

    def __init__(self, target):
        self.target = target
        self.by_module = {}

    def _section(self, module, name):
        sec = module.FindSection(name)
        if not sec.IsValid():
            return None
        load = sec.GetLoadAddress(self.target)
        if load == lldb.LLDB_INVALID_ADDRESS:
            return None
        err = lldb.SBError()
        data = sec.GetSectionData()
        raw = data.ReadRawData(err, 0, data.GetByteSize()) if data.GetByteSize() else b""
        if not err.Success() or raw is None:
            return None
        return fibra_cfi.Section(bytes(raw), load, load - sec.GetFileAddress())

    def __call__(self, pc):
        module = self.target.ResolveLoadAddress(pc).GetModule()
        if not module.IsValid():
            return None
        key = str(module.GetFileSpec())
        if key not in self.by_module:
            eh = self._section(module, ".eh_frame")
            hdr = self._section(module, ".eh_frame_hdr")
            self.by_module[key] = fibra_cfi.EhFrame(eh, hdr) if eh else None
        return self.by_module[key]


def _function_name(target, pc):
    """The function (or, without debug info, the symbol) holding pc, without Rust's hash."""
    sc = target.ResolveSymbolContextForAddress(
        target.ResolveLoadAddress(pc), lldb.eSymbolContextFunction | lldb.eSymbolContextSymbol)
    name = sc.GetFunction().GetName() or sc.GetSymbol().GetName() or "??"
    return _clean(name)


def _frames(target, pc, exact):
    """The source-level frames at one machine frame, innermost first: the inlined calls, then
    the function. Each is (name, "file:line" or "")."""
    lookup = pc if exact else pc - 1
    addr = target.ResolveLoadAddress(lookup)
    sc = target.ResolveSymbolContextForAddress(addr, lldb.eSymbolContextEverything)
    out = []
    line = sc.GetLineEntry()
    where = ""
    if line.IsValid() and line.GetFileSpec().IsValid():
        where = "%s:%d" % (line.GetFileSpec(), line.GetLine())
    block = sc.GetBlock().GetContainingInlinedBlock() if sc.GetBlock().IsValid() else None
    # Each inlined block names the function inlined there and the line that called it.
    while block is not None and block.IsValid():
        out.append((_clean(block.GetInlinedName()), where))
        call = block.GetInlinedCallSiteFile()
        where = "%s:%d" % (call, block.GetInlinedCallSiteLine()) if call.IsValid() else ""
        parent = block.GetParent()
        block = parent.GetContainingInlinedBlock() if parent.IsValid() else None
    name = sc.GetFunction().GetName() or sc.GetSymbol().GetName() or "??"
    out.append((_clean(name), where))
    return out


def _is_entry(name):
    return name == ENTRY_FUNCTION or name.startswith(ENTRY_FUNCTION + "<")


def fiber_backtrace(target, process, fiber):
    """The fiber's frames as text lines, innermost first, ending at its entry."""
    if not fiber["saved_sp"]:
        raise FibraError("fibra: fiber %d is %s and not suspended (a running fiber's stack is "
                         "its worker thread's: thread backtrace all)"
                         % (fiber["id"], fiber["state"]))
    mem = Memory(process)
    sp = fiber["saved_sp"]
    # x86-64: corosensei pushed the resume address, rbx and rbp at the saved stack pointer
    # (sched/anchor.rs); the fiber's rsp at that address is 24 bytes above.
    rip, rbx, rbp = struct.unpack("<QQQ", mem.read(sp, 24))
    regs = {fibra_cfi.RA: rip, fibra_cfi.RSP: sp + 24, fibra_cfi.RBX: rbx, fibra_cfi.RBP: rbp}
    # Below the entry lies a stale link to the worker stack that last resumed the fiber.
    pcs, why = fibra_cfi.unwind(
        regs, Tables(target), mem.u64_for_cfi,
        stop=lambda pc, i: _is_entry(_function_name(target, pc if i == 0 else pc - 1)))
    lines = []
    for i, pc in enumerate(pcs):
        for name, where in _frames(target, pc, i == 0):
            lines.append("#%-3d 0x%016x in %s%s" % (len(lines), pc, name,
                                                   " at " + where if where else ""))
    if why is not None:
        lines.append("(backtrace incomplete: %s)" % why)
    return lines


def _header(f):
    return "fiber %d %s: %s%s, home %s" % (
        f["id"], '"%s"' % f["name"] if f["name"] else "(unnamed)", f["state"],
        " (%s)" % f["reason"] if f["state"] == "parked" else "",
        "-" if f["home"] is None else "worker %d" % f["home"])


def _list(target, process, result):
    fibers = Anchor(target, process).all_fibers()
    sessions = {f["session"] for f in fibers}
    result.AppendMessage("%-8s %-20s %-11s %-13s %s" % ("Id", "Name", "State", "Reason", "Home"))
    for f in fibers:
        home = "-" if f["home"] is None else "worker %d" % f["home"]
        if len(sessions) > 1:
            home += " (session %d)" % f["session"]
        result.AppendMessage("%-8d %-20s %-11s %-13s %s" % (
            f["id"], f["name"] or "-", f["state"], f["reason"], home))
    result.AppendMessage("%d fiber(s)" % len(fibers))


USAGE = "usage: fibers | fiber list | fiber N [bt] | fiber bt N"


def _run(exe_ctx, result, body):
    try:
        target, process = _context(exe_ctx)
        body(target, process)
        result.SetStatus(lldb.eReturnStatusSuccessFinishResult)
    except FibraError as e:
        result.SetError(str(e))
    except Exception as e:  # a bug or a layout this script does not expect: say which
        result.SetError("fibra: %s: %s (please report it)" % (type(e).__name__, e))


def fibers_command(debugger, command, exe_ctx, result, internal_dict):
    """List fibra fibers: id, name, state, wait reason, home worker (registered fibers: those
    that have parked at least once)."""
    if command.strip():
        result.SetError(USAGE)
        return
    _run(exe_ctx, result, lambda t, p: _list(t, p, result))


def fiber_command(debugger, command, exe_ctx, result, internal_dict):
    """fiber N bt: backtrace of fibra fiber N (suspended: parked or queued), down to its
    entry. fiber N: what `fibers` says of fiber N. fiber list: `fibers`."""
    args = command.split()
    if args == ["list"]:
        _run(exe_ctx, result, lambda t, p: _list(t, p, result))
        return
    bt = ("bt", "backtrace")
    if len(args) == 2 and args[0] in bt:
        args.reverse()  # `fiber bt N`
    want_bt = len(args) == 2 and args[1] in bt
    if not (len(args) == 1 or want_bt) or not args[0].isdigit():
        result.SetError(USAGE)
        return

    def body(target, process):
        f = Anchor(target, process).find(int(args[0]))
        result.AppendMessage(_header(f))
        if want_bt:
            for line in fiber_backtrace(target, process, f):
                result.AppendMessage(line)

    _run(exe_ctx, result, body)


def __lldb_init_module(debugger, internal_dict):
    for name, func in (("fibers", "fibers_command"), ("fiber", "fiber_command")):
        debugger.HandleCommand("command script add -o -f %s.%s %s" % (__name__, func, name))
