"""Unit tests of fibra_cfi.py over hand-assembled `.eh_frame` tables (no lldb needed).
Run: python3 -m unittest discover -s fibra/lldb  (scripts/lldb.sh runs them first)."""

import struct
import unittest

import fibra_cfi as cfi
from fibra_cfi import RA, RBP, RBX, RSP

EH_ADDR = 0x1000  # where the synthetic .eh_frame is "loaded"
HDR_ADDR = 0x800


def uleb(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def entry(body):
    """A length-prefixed CIE/FDE, padded to 8 bytes with DW_CFA_nop."""
    body += b"\0" * (-(len(body) + 4) % 8)
    return struct.pack("<I", len(body)) + body


def cie():
    # version 1, "zR", code align 1, data align -8, RA = 16, FDE pointers pcrel|sdata4;
    # initially CFA = rsp + 8 and the return address at CFA - 8.
    return entry(struct.pack("<I", 0) + b"\x01zR\0" + uleb(1) + b"\x78" + bytes([RA]) + uleb(1)
                 + b"\x1b" + b"\x0c\x07\x08" + bytes([0x80 | RA]) + uleb(1))


def fde(at, cie_at, begin, size, insns):
    """An FDE placed at offset `at` of the section."""
    field = at + 4  # the CIE pointer's own offset
    begin_field = field + 4
    rel = begin - (EH_ADDR + begin_field)
    return entry(struct.pack("<Iii", field - cie_at, rel, size) + uleb(0) + insns)


# A function at 0x2000 (0x20 bytes) with a frame pointer, and an epilogue in the middle:
#   0x2000 push rbp       CFA rsp+8
#   0x2001 mov rbp, rsp   CFA rsp+16, rbp at CFA-16
#   0x2004 ...            CFA rbp+16
#   0x200e (remembered)   CFA rsp+8      0x200f: state restored, CFA rbp+16 again
BODY = (b"\x41" + b"\x0e\x10" + bytes([0x80 | RBP]) + uleb(2) + b"\x43" + b"\x0d\x06"
        + b"\x4a" + b"\x0a" + b"\x0c\x07\x08" + b"\x41" + b"\x0b")
# An outermost function at 0x3000: the return address is undefined.
OUTERMOST = b"\x07" + uleb(RA)
# A trampoline at 0x4000 whose CFA is a DWARF expression (DW_OP_breg7 0).
EXPRESSION = b"\x0f" + uleb(2) + b"\x77\x00"


def section():
    data = cie()
    fdes = []
    for begin, size, insns in ((0x2000, 0x20, BODY), (0x3000, 0x10, OUTERMOST),
                               (0x4000, 0x10, EXPRESSION)):
        fdes.append((begin, len(data)))
        data += fde(len(data), 0, begin, size, insns)
    return data + struct.pack("<I", 0), fdes


def tables(with_hdr):
    data, fdes = section()
    eh = cfi.Section(data, EH_ADDR, 0)
    if not with_hdr:
        return cfi.EhFrame(eh)
    # version 1; eh_frame_ptr pcrel|sdata4, count udata4, table datarel|sdata4.
    hdr = bytearray(b"\x01\x1b\x03\x3b")
    hdr += struct.pack("<i", EH_ADDR - (HDR_ADDR + 4)) + struct.pack("<I", len(fdes))
    for begin, off in fdes:
        hdr += struct.pack("<ii", begin - HDR_ADDR, EH_ADDR + off - HDR_ADDR)
    return cfi.EhFrame(eh, cfi.Section(bytes(hdr), HDR_ADDR, 0))


class Rows(unittest.TestCase):
    def check_rows(self, t):
        def cfa(pc):
            row = t.row(pc)
            return None if row is None else (row.cfa_reg, row.cfa_off)

        self.assertEqual(cfa(0x2000), (RSP, 8))
        self.assertEqual(t.row(0x2000).rules[RA], ("offset", -8))
        self.assertEqual(cfa(0x2001), (RSP, 16))
        self.assertEqual(t.row(0x2003).rules[RBP], ("offset", -16))
        self.assertEqual(cfa(0x2004), (RBP, 16))
        self.assertEqual(cfa(0x200D), (RBP, 16))
        self.assertEqual(cfa(0x200E), (RSP, 8))  # after remember_state + def_cfa
        self.assertEqual(cfa(0x200F), (RBP, 16))  # restore_state
        self.assertEqual(cfa(0x201F), (RBP, 16))
        self.assertIsNone(t.row(0x2020))  # past the function
        self.assertIsNone(t.row(0x1FFF))  # before the first one
        self.assertEqual(t.row(0x3005).rules[RA], ("undefined", None))

    def test_rows_by_binary_search_of_eh_frame_hdr(self):
        self.check_rows(tables(with_hdr=True))

    def test_rows_by_a_scan_of_eh_frame(self):
        self.check_rows(tables(with_hdr=False))

    def test_leb128(self):
        self.assertEqual(cfi._uleb(uleb(624485), 0), (624485, 3))
        self.assertEqual(cfi._sleb(b"\x78", 0), (-8, 1))
        self.assertEqual(cfi._sleb(b"\xc0\xbb\x78", 0), (-123456, 3))
        with self.assertRaises(cfi.CfiError):
            cfi._uleb(b"\x80", 0)


class Unwind(unittest.TestCase):
    def setUp(self):
        self.t = tables(with_hdr=True)
        # Frame 0 at 0x2005 (CFA rbp+16): rbp 0x7100, so CFA 0x7110; the return address
        # 0x3008 at CFA-8 and the caller's rbp 0x7200 at CFA-16.
        self.memory = {0x7108: 0x3008, 0x7100: 0x7200}
        self.regs = {RA: 0x2005, RSP: 0x70F0, RBP: 0x7100, RBX: 5, 0: 99}

    def read(self, addr):
        if addr not in self.memory:
            raise cfi.CfiError("unmapped %#x" % addr)
        return self.memory[addr]

    def test_step_restores_the_callers_registers(self):
        caller = cfi.step(self.t.row(0x2005), self.regs, self.read)
        # rax (0) is caller-saved: unknown in the caller; rbx is callee-saved: kept.
        self.assertEqual(caller, {RA: 0x3008, RSP: 0x7110, RBP: 0x7200, RBX: 5})

    def tables_for(self, pc):
        return self.t if 0x2000 <= pc < 0x5000 else None

    def test_unwind_ends_at_an_undefined_return_address(self):
        pcs, why = cfi.unwind(dict(self.regs), self.tables_for, self.read)
        self.assertEqual((pcs, why), ([0x2005, 0x3008], None))

    def test_unwind_ends_where_told(self):
        pcs, why = cfi.unwind(dict(self.regs), self.tables_for, self.read,
                              stop=lambda pc, i: i == 0)
        self.assertEqual((pcs, why), ([0x2005], None))

    def test_unwind_says_why_it_stopped_early(self):
        self.memory[0x7108] = 0x9000  # a return address no table covers
        pcs, why = cfi.unwind(dict(self.regs), self.tables_for, self.read)
        self.assertEqual(pcs, [0x2005, 0x9000])
        self.assertIn("no unwind tables for 0x9000", why)
        del self.memory[0x7108]  # unreadable stack
        pcs, why = cfi.unwind(dict(self.regs), self.tables_for, self.read)
        self.assertEqual(pcs, [0x2005])
        self.assertIn("unmapped 0x7108", why)

    def test_expressions_are_reported_not_guessed(self):
        pcs, why = cfi.unwind({RA: 0x4004, RSP: 0x7000}, self.tables_for, self.read)
        self.assertEqual(pcs, [0x4004])
        self.assertIn("DWARF expression", why)

    def test_a_stack_pointer_that_does_not_grow_stops_the_walk(self):
        # Frame 1 is the same function again, with an rbp below frame 0's: its CFA (0x7010)
        # would put its caller below it on the stack.
        self.memory.update({0x7100: 0x7000, 0x7108: 0x2005, 0x7000: 0x7200, 0x7008: 0x3008})
        pcs, why = cfi.unwind(dict(self.regs), self.tables_for, self.read)
        self.assertEqual(pcs, [0x2005, 0x2005])
        self.assertIn("did not grow", why)


if __name__ == "__main__":
    unittest.main()
