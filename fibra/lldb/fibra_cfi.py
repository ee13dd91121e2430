"""A DWARF call-frame-information (CFI) unwinder for x86-64, over `.eh_frame_hdr`/`.eh_frame`.

Used by fibra_lldb.py: lldb 14 has no API to unwind from registers it did not read from a
thread, and a core dump's threads cannot be given new registers, so a suspended fiber's stack
is unwound here, with the same tables lldb's own unwinder reads (the binary's `.eh_frame`,
which Rust emits for every function; frame pointers are not enough: std is built without
them). It knows nothing of lldb: it takes section bytes and a memory-read function.

Scope, on purpose: the CFA rules compilers emit for ordinary functions (a register plus an
offset; registers saved at CFA offsets, in other registers, or unchanged). DWARF expressions
(`DW_CFA_*expression`, which PLT stubs and hand-written trampolines use) are reported as
`CfiError`, never guessed; the walk stops there with what it has.
"""

import struct

# DWARF register numbers, x86-64 System V psABI (figure 3.36).
RBX, RBP, RSP, RA = 3, 6, 7, 16
REG_NAMES = ("rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")
# Callee-saved: a caller's value is the callee's unless the CFI says where it was saved.
# Any other register is unknown in a caller frame.
CALLEE_SAVED = (RBX, RBP, 12, 13, 14, 15)

MAX_FRAMES = 256
MAX_STACK = 64 << 20  # a frame larger than this is a broken walk, not a frame


class CfiError(Exception):
    pass


def _uleb(b, i):
    shift = value = 0
    while True:
        if i >= len(b):
            raise CfiError("truncated LEB128")
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _sleb(b, i):
    shift = value = 0
    while True:
        if i >= len(b):
            raise CfiError("truncated LEB128")
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte & 0x40:
                value -= 1 << shift
            return value, i


_FIXED = {0x00: "<Q", 0x02: "<H", 0x03: "<I", 0x04: "<Q", 0x0A: "<h", 0x0B: "<i", 0x0C: "<q"}


class Section:
    """A section's bytes, the address they are loaded at, and `bias` (load address minus link
    address: what moves absolute pointers)."""

    def __init__(self, data, addr, bias):
        self.data, self.addr, self.bias = data, addr, bias

    def pointer(self, enc, i, datarel=None, relocate=True):
        """Decodes a DW_EH_PE-encoded pointer at offset `i`: (value, next offset).
        `relocate=False` reads a length (an FDE's address range), which no bias moves."""
        if enc == 0xFF:
            return None, i
        fmt = enc & 0x0F
        if fmt == 0x01:
            value, j = _uleb(self.data, i)
        elif fmt == 0x09:
            value, j = _sleb(self.data, i)
        elif fmt in _FIXED:
            size = struct.calcsize(_FIXED[fmt])
            if i + size > len(self.data):
                raise CfiError("truncated pointer")
            value, j = struct.unpack_from(_FIXED[fmt], self.data, i)[0], i + size
        else:
            raise CfiError("pointer encoding %#x" % enc)
        app = enc & 0x70
        if app == 0x10:  # pcrel: relative to the field's own address
            value += self.addr + i
        elif app == 0x30 and datarel is not None:  # datarel: relative to .eh_frame_hdr
            value += datarel
        elif app == 0x00 and relocate and value:  # absolute: a link-time address
            value += self.bias
        elif app != 0x00:
            raise CfiError("pointer application %#x" % app)
        if enc & 0x80:
            raise CfiError("indirect pointers are not read")
        return value & 0xFFFFFFFFFFFFFFFF, j


class Cie:
    def __init__(self, eh, off):
        b = eh.data
        length, i = struct.unpack_from("<I", b, off)[0], off + 4
        if length == 0xFFFFFFFF:
            length, i = struct.unpack_from("<Q", b, i)[0], i + 8
        end = i + length
        i += 4  # CIE id (0)
        version = b[i]
        i += 1
        nul = b.index(0, i)
        aug = b[i:nul].decode("ascii", "replace")
        i = nul + 1
        if "eh" in aug:
            i += 8
        self.code_align, i = _uleb(b, i)
        self.data_align, i = _sleb(b, i)
        if version == 1:
            self.ra, i = b[i], i + 1
        else:
            self.ra, i = _uleb(b, i)
        self.fde_enc = 0x00
        self.has_aug_data = aug.startswith("z")
        if self.has_aug_data:
            aug_len, i = _uleb(b, i)
            j = i
            for c in aug[1:]:
                if c == "R":
                    self.fde_enc, j = b[j], j + 1
                elif c == "L":
                    j += 1
                elif c == "P":
                    enc, j = b[j], j + 1
                    _, j = eh.pointer(enc & 0x7F, j)  # skip the personality pointer
                elif c in "SB":
                    pass
                else:
                    break  # unknown: the length lets us skip the rest
            i += aug_len
        self.insns = b[i:end]


class Row:
    """The unwind rules at one address: CFA = reg + offset; rules[reg] = (kind, arg)."""

    def __init__(self, cfa_reg, cfa_off, rules):
        self.cfa_reg, self.cfa_off, self.rules = cfa_reg, cfa_off, rules


class EhFrame:
    """One object file's unwind tables, at their load addresses."""

    def __init__(self, eh_frame, eh_frame_hdr=None):
        self.eh = eh_frame
        self.hdr = eh_frame_hdr
        self.cies = {}
        self.table = None  # sorted (pc_begin, fde offset), built when there is no usable hdr

    def _cie(self, off):
        if off not in self.cies:
            self.cies[off] = Cie(self.eh, off)
        return self.cies[off]

    def _fde_header(self, off):
        """(cie, pc_begin, pc_end, instructions) of the FDE at `off`, or None for a CIE."""
        b = self.eh.data
        length, i = struct.unpack_from("<I", b, off)[0], off + 4
        if length == 0xFFFFFFFF:
            length, i = struct.unpack_from("<Q", b, i)[0], i + 8
        end = i + length
        cie_ptr = struct.unpack_from("<I", b, i)[0]
        if cie_ptr == 0:
            return None
        cie = self._cie(i - cie_ptr)
        i += 4
        begin, i = self.eh.pointer(cie.fde_enc, i)
        size, i = self.eh.pointer(cie.fde_enc & 0x0F, i, relocate=False)
        if cie.has_aug_data:
            aug_len, i = _uleb(b, i)
            i += aug_len
        return cie, begin, begin + size, b[i:end]

    def _linear_table(self):
        out, off, b = [], 0, self.eh.data
        while off + 4 <= len(b):
            length = struct.unpack_from("<I", b, off)[0]
            if length == 0:
                break  # the terminator
            if length == 0xFFFFFFFF:  # the 64-bit form
                step = 12 + struct.unpack_from("<Q", b, off + 4)[0]
            else:
                step = 4 + length
            head = self._fde_header(off)
            if head:
                out.append((head[1], off))
            off += step
        out.sort()
        return out

    def _lookup_offset(self, pc):
        """The offset in .eh_frame of the FDE that may cover `pc` (by binary search)."""
        hdr = self.hdr
        if hdr is not None and self.table is None and len(hdr.data) >= 4 and hdr.data[0] == 1:
            _, ptr_enc, count_enc, table_enc = hdr.data[:4]
            _, i = hdr.pointer(ptr_enc, 4)
            count, i = hdr.pointer(count_enc, i, relocate=False)
            if table_enc == 0x3B and count:  # datarel sdata4: fixed 8-byte entries
                lo, hi = 0, count - 1
                best = None
                while lo <= hi:
                    mid = (lo + hi) // 2
                    start, fde = struct.unpack_from("<ii", hdr.data, i + 8 * mid)
                    if hdr.addr + start <= pc:
                        best, lo = hdr.addr + fde, mid + 1
                    else:
                        hi = mid - 1
                return None if best is None else best - self.eh.addr
        if self.table is None:
            self.table = self._linear_table()
        lo, hi, best = 0, len(self.table) - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            if self.table[mid][0] <= pc:
                best, lo = self.table[mid][1], mid + 1
            else:
                hi = mid - 1
        return best

    def row(self, pc):
        """The unwind row in force at `pc`, or None when no FDE covers it."""
        off = self._lookup_offset(pc)
        if off is None or not 0 <= off < len(self.eh.data):
            return None
        head = self._fde_header(off)
        if head is None:
            return None
        cie, begin, end, insns = head
        if not begin <= pc < end:
            return None
        state = {"cfa": (RSP, 8), "rules": {}}
        _execute(self.eh, cie, cie.insns, state, None, begin, pc)
        initial = dict(state["rules"])
        _execute(self.eh, cie, insns, state, initial, begin, pc)
        reg, off = state["cfa"]
        return Row(reg, off, state["rules"])


def _execute(eh, cie, insns, state, initial, loc, pc):
    """Runs a CFA program until the row that covers `pc` (DWARF 5, section 6.4.2)."""
    b, i, stack = insns, 0, []
    da = cie.data_align

    def reg_uleb(i):
        return _uleb(b, i)

    while i < len(b):
        op = b[i]
        i += 1
        hi2, low = op & 0xC0, op & 0x3F
        if hi2 == 0x40:  # advance_loc
            loc += low * cie.code_align
            if loc > pc:
                return
            continue
        if hi2 == 0x80:  # offset
            n, i = _uleb(b, i)
            state["rules"][low] = ("offset", n * da)
            continue
        if hi2 == 0xC0:  # restore
            _restore(state, initial, low)
            continue
        if op == 0x00:  # nop
            continue
        if op in (0x01, 0x02, 0x03, 0x04):
            if op == 0x01:
                new, i = eh.pointer(cie.fde_enc, i)  # set_loc (pointer read from insns)
            else:
                size = {0x02: 1, 0x03: 2, 0x04: 4}[op]
                delta = int.from_bytes(b[i:i + size], "little")
                i += size
                new = loc + delta * cie.code_align
            loc = new
            if loc > pc:
                return
        elif op in (0x05, 0x11, 0x2F):  # offset_extended(_sf), GNU_negative_offset_extended
            reg, i = reg_uleb(i)
            if op == 0x11:
                n, i = _sleb(b, i)
                n *= da
            else:
                n, i = _uleb(b, i)
                n = -n * da if op == 0x2F else n * da
            state["rules"][reg] = ("offset", n)
        elif op == 0x06:  # restore_extended
            reg, i = reg_uleb(i)
            _restore(state, initial, reg)
        elif op == 0x07:  # undefined
            reg, i = reg_uleb(i)
            state["rules"][reg] = ("undefined", None)
        elif op == 0x08:  # same_value
            reg, i = reg_uleb(i)
            state["rules"][reg] = ("same", None)
        elif op == 0x09:  # register
            reg, i = reg_uleb(i)
            other, i = reg_uleb(i)
            state["rules"][reg] = ("register", other)
        elif op == 0x0A:  # remember_state
            stack.append((state["cfa"], dict(state["rules"])))
        elif op == 0x0B:  # restore_state
            if not stack:
                raise CfiError("restore_state without remember_state")
            state["cfa"], state["rules"] = stack.pop()
        elif op in (0x0C, 0x12):  # def_cfa, def_cfa_sf
            reg, i = reg_uleb(i)
            if op == 0x0C:
                n, i = _uleb(b, i)
            else:
                n, i = _sleb(b, i)
                n *= da
            state["cfa"] = (reg, n)
        elif op == 0x0D:  # def_cfa_register
            reg, i = reg_uleb(i)
            state["cfa"] = (reg, state["cfa"][1])
        elif op in (0x0E, 0x13):  # def_cfa_offset, def_cfa_offset_sf
            if op == 0x0E:
                n, i = _uleb(b, i)
            else:
                n, i = _sleb(b, i)
                n *= da
            state["cfa"] = (state["cfa"][0], n)
        elif op == 0x0F:  # def_cfa_expression
            n, i = _uleb(b, i)
            i += n
            state["cfa"] = ("expression", 0)
        elif op in (0x10, 0x16):  # expression, val_expression
            reg, i = reg_uleb(i)
            n, i = _uleb(b, i)
            i += n
            state["rules"][reg] = ("expression", None)
        elif op in (0x14, 0x15):  # val_offset, val_offset_sf
            reg, i = reg_uleb(i)
            if op == 0x14:
                n, i = _uleb(b, i)
            else:
                n, i = _sleb(b, i)
            state["rules"][reg] = ("val_offset", n * da)
        elif op == 0x2E:  # GNU_args_size: matters to landing pads, not to unwinding
            _, i = _uleb(b, i)
        else:
            raise CfiError("CFA instruction %#x" % op)


def _restore(state, initial, reg):
    if initial is not None and reg in initial:
        state["rules"][reg] = initial[reg]
    else:
        state["rules"].pop(reg, None)


def step(row, regs, read_u64):
    """The caller's registers, from this frame's `regs` (DWARF number → value) and `row`.
    The caller's `RA` entry is its pc (a return address); None there means the outermost
    frame (the return address rule is `undefined`)."""
    if row.cfa_reg == "expression":
        raise CfiError("the CFA is a DWARF expression (a trampoline or PLT stub)")
    if row.cfa_reg not in regs:
        name = REG_NAMES[row.cfa_reg] if row.cfa_reg < len(REG_NAMES) else str(row.cfa_reg)
        raise CfiError("the CFA is based on %s, which is not known in this frame" % name)
    cfa = (regs[row.cfa_reg] + row.cfa_off) & 0xFFFFFFFFFFFFFFFF
    caller = {r: regs[r] for r in CALLEE_SAVED if r in regs}
    for reg, (kind, arg) in row.rules.items():
        if kind == "offset":
            caller[reg] = read_u64(cfa + arg)
        elif kind == "val_offset":
            caller[reg] = cfa + arg
        elif kind == "register":
            if arg in regs:
                caller[reg] = regs[arg]
            else:
                caller.pop(reg, None)
        elif kind == "same":
            if reg in regs:
                caller[reg] = regs[reg]
        elif kind == "undefined":
            caller.pop(reg, None)
            if reg == RA:
                caller[RA] = None
        else:
            raise CfiError("register %s is saved by a DWARF expression" % reg)
    caller[RSP] = cfa  # x86-64: the CFA is the stack pointer before the call
    if RA not in caller:
        if RA in row.rules:
            raise CfiError("no return address")
        raise CfiError("no rule for the return address")
    return caller


def unwind(regs, tables_for, read_u64, stop=None, max_frames=MAX_FRAMES):
    """Walks the stack from `regs` (DWARF number → value; must hold RA as the pc, RSP).

    `tables_for(pc)` gives the EhFrame of the object file holding pc, or None.
    `stop(pc, index)` returns True after the last frame wanted (the fiber's entry).
    Returns (pcs, why): pcs innermost first (the first one exact, the others return
    addresses); why is None when the walk ended at `stop` or at the outermost frame, else a
    sentence saying where and why it stopped.
    """
    pcs = []
    while len(pcs) < max_frames:
        pc = regs[RA]
        pcs.append(pc)
        if stop is not None and stop(pc, len(pcs) - 1):
            return pcs, None
        # A return address points after the call: look up the call itself.
        lookup = pc if len(pcs) == 1 else pc - 1
        tables = tables_for(lookup)
        if tables is None:
            return pcs, "no unwind tables for %#x" % pc
        try:
            row = tables.row(lookup)
            if row is None:
                return pcs, "no CFI covers %#x" % pc
            caller = step(row, regs, read_u64)
        except (CfiError, struct.error, IndexError, ValueError) as e:
            return pcs, "CFI at %#x: %s" % (pc, e)
        if caller[RA] is None or caller[RA] == 0:
            return pcs, None  # the outermost frame
        if not regs[RSP] < caller[RSP] <= regs[RSP] + MAX_STACK:
            return pcs, "the stack pointer did not grow toward the stack's base at %#x" % pc
        regs = caller
    return pcs, "stopped after %d frames" % max_frames
