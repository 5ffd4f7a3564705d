"""The PTX emitter's bf16 rounding: `convert._bf16_encode` printed as one `cvt.rn.bf16.f32` per lane.

The lowerings round f32 to bf16 with integer operations on the bits (tessera/ir/target/convert.py,
shared with the CPU): add 0x7FFF plus the lowest kept bit, shift right 16, and a quiet NaN with the
sign and top payload bits where the input is NaN. That is ten PTX instructions per element, and in a
bf16 softmax or layernorm, whose per-element arithmetic is a few dozen instructions, the rounding is
a fifth of all the instructions the SMs issue (bench/NOTES-gpu.md). Since sm_80 the hardware does the
same rounding in one instruction: `cvt.rn.bf16.f32` rounds to nearest even, keeps infinities, signed
zeros and subnormals, and gives a quiet NaN for a NaN input (the canonical one, where the integer
form keeps the payload's top bits: either is a NaN, the only promise the language makes).

`match(op, defs)` recognises the integer form at its last op (the `trunc` to i16) by walking back
through the definitions; the emitter then prints the `cvt` from the f32 value, and the integer ops,
left without users, are removed by ptxas. `ENABLED` switches the rewrite off (bench/gpu.py times
both forms).
"""

from __future__ import annotations

from tessera.ir.target.ops import Function, Op, Region, Value, elem_of

ENABLED = True


def definitions(f: Function) -> dict[int, Op]:
    """Value uid -> the op that defines it, over every region of `f`."""
    out: dict[int, Op] = {}

    def walk(r: Region) -> None:
        for op in r.ops:
            for v in op.results:
                out[v.uid] = op
            for sub in op.regions:
                walk(sub)

    walk(f.body)
    return out


def _def(v: Value, defs: dict[int, Op], name: str, **attrs: object) -> Op | None:
    op = defs.get(v.uid)
    if op is None or op.name != name:
        return None
    for key, want in attrs.items():
        if op.attr(key) != want:
            return None
    return op


def _is_const(v: Value, defs: dict[int, Op], value: int) -> bool:
    op = _def(v, defs, "const")
    if op is None:
        return False
    got = op.attr("value")
    return all(x == value for x in got) if isinstance(got, tuple) else got == value


def _shr16(v: Value, defs: dict[int, Op]) -> Value | None:
    """x where v = lshr(x, 16)."""
    op = _def(v, defs, "lshr")
    return op.operands[0] if op is not None and _is_const(op.operands[1], defs, 16) else None


def match(op: Op, defs: dict[int, Op]) -> Value | None:
    """The f32 value `op` rounds to bf16 bits, if `op` ends convert._bf16_encode's round-to-nearest-even
    form: trunc(select(uno(x, x), or(lshr(bits, 16), 0x40), lshr(add(add(bits, 0x7FFF), and(lshr(bits,
    16), 1)), 16))) with bits = bitcast(x); None otherwise."""
    if not ENABLED or op.name != "cast" or op.attr("kind") != "trunc" or op.attr("to") != "i16":
        return None
    sel = _def(op.operands[0], defs, "select")
    if sel is None:
        return None
    cond, quiet, rounded = sel.operands
    uno = _def(cond, defs, "cmp", pred="uno")
    if uno is None or uno.operands[0].uid != uno.operands[1].uid:
        return None
    x = uno.operands[0]
    if elem_of(x.ty).kind != "f32":
        return None
    q = _def(quiet, defs, "or")
    if q is None or not _is_const(q.operands[1], defs, 0x40):
        return None
    bits = _shr16(q.operands[0], defs)
    if bits is None or _def(bits, defs, "cast", kind="bitcast") is None or defs[bits.uid].operands[0].uid != x.uid:
        return None
    biased = _shr16(rounded, defs)
    outer = _def(biased, defs, "add") if biased is not None else None
    if outer is None:
        return None
    inner = _def(outer.operands[0], defs, "add")
    lsb = _def(outer.operands[1], defs, "and")
    if inner is None or lsb is None or inner.operands[0].uid != bits.uid or not _is_const(inner.operands[1], defs, 0x7FFF):
        return None
    if not _is_const(lsb.operands[1], defs, 1) or (src := _shr16(lsb.operands[0], defs)) is None or src.uid != bits.uid:
        return None
    return x
