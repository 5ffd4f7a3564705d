"""Target IR: explicit per-lane SSA code, target-neutral, printed by every emitter in tessera/codegen.

Where Tile IR computes on whole blocks, Target IR says exactly what one thread of execution does:
scalar and short-vector values (`f32`, `<16 x f32>`, `<16 x i1>`), typed pointers in an address
space (`ptr<global, f32>` for tensor memory, `ptr<local, f32>` for a thread's stack arrays,
`ptr<shared, f32>` for memory shared by the threads of a GPU program), and structured control flow:

- `for %i = %lo to %hi step %st iter_args(%a = %init) -> (T) { ...; yield %next }` runs while
  `%i < %hi` (signed) and returns the final carried values;
- `if %c -> (T) { ...; yield %x } else { ...; yield %y }`.

Ops are element-wise on vectors (a scalar op on each lane); casts, compares and selects are explicit;
memory ops say whether they are contiguous (`load`/`store`, optionally masked) or per-lane
(`gather`/`scatter`); `vreduce` reduces the lanes of one vector; math intrinsics (`exp`, `tanh`,
`erf`, ...) are ops an emitter may map to hardware or a library, the lowering expands the ones a
target lacks (see TargetInfo). `program_id`/`thread_id`/`barrier`/`shared`/`shuffle_xor` exist for
GPU targets; the CPU lowering loops over programs itself.

Each op names an `OpDef` in `TARGET_OPS` (operand count, attributes, a type rule); the verifier and
the printer read the table, as in the other IR layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class TargetIRError(Exception):
    """A malformed Target IR function (a verifier failure or a lowering bug)."""


# ---------------------------------------------------------------- types

SCALAR_KINDS = ("i1", "i8", "i16", "i32", "i64", "f16", "f32", "f64")
ADDRESS_SPACES = ("global", "shared", "local")


@dataclass(frozen=True)
class Scalar:
    kind: str  # one of SCALAR_KINDS

    @property
    def is_float(self) -> bool:
        return self.kind[0] == "f"

    @property
    def is_int(self) -> bool:
        return self.kind[0] == "i"

    @property
    def bits(self) -> int:
        return int(self.kind[1:])

    def __str__(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Vector:
    lanes: int
    elem: Scalar

    def __str__(self) -> str:
        return f"<{self.lanes} x {self.elem}>"


@dataclass(frozen=True)
class Pointer:
    space: str  # one of ADDRESS_SPACES
    elem: Scalar

    def __str__(self) -> str:
        return f"ptr<{self.space}, {self.elem}>"


TargetType = Scalar | Vector | Pointer

I1, I8, I16, I32, I64 = (Scalar(k) for k in ("i1", "i8", "i16", "i32", "i64"))
F16, F32, F64 = Scalar("f16"), Scalar("f32"), Scalar("f64")


def elem_of(t: TargetType) -> Scalar:
    if isinstance(t, Vector):
        return t.elem
    if isinstance(t, Scalar):
        return t
    raise TargetIRError(f"{t} has no element type")


def lanes_of(t: TargetType) -> int:
    return t.lanes if isinstance(t, Vector) else 1


def with_elem(t: TargetType, elem: Scalar) -> Scalar | Vector:
    """The type with t's lane count and elem as element type."""
    return Vector(t.lanes, elem) if isinstance(t, Vector) else elem


def vec(elem: Scalar, lanes: int) -> Scalar | Vector:
    """lanes of elem: a scalar for one lane."""
    return elem if lanes == 1 else Vector(lanes, elem)


# ---------------------------------------------------------------- values, ops, functions

_ids = itertools.count()
AttrValue = int | float | bool | str | tuple


@dataclass(eq=False)
class Value:
    ty: TargetType
    hint: str = ""
    uid: int = field(default_factory=lambda: next(_ids), repr=False)

    def __hash__(self) -> int:
        return self.uid


@dataclass(eq=False)
class Region:
    args: list[Value]
    ops: list[Op]


@dataclass(eq=False)
class Op:
    name: str
    operands: tuple[Value, ...]
    attrs: tuple[tuple[str, AttrValue], ...]
    results: tuple[Value, ...]
    regions: tuple[Region, ...] = ()

    def attr(self, key: str, default: AttrValue | None = None) -> AttrValue:
        for k, v in self.attrs:
            if k == key:
                return v
        if default is not None:
            return default
        raise KeyError(f"target op {self.name} has no attribute '{key}'")

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, f"{self.name} has {len(self.results)} results"
        return self.results[0]


@dataclass(eq=False)
class Function:
    """A compiled entry point. `params` are typed values; the body ends in `return`."""

    name: str
    params: list[Value]
    body: Region
    doc: str = ""
    threads: int = 0  # GPU targets: threads per program (CTA); 0 where one thread runs a program
    min_programs: int = 0  # GPU: programs per SM the register allocation leaves room for (0: its choice)


@dataclass(eq=False)
class Module:
    functions: list[Function] = field(default_factory=list)

    def function(self, name: str) -> Function:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)


# ---------------------------------------------------------------- the catalogue

# A type rule checks operand types and attributes and returns the result types; it raises
# TargetIRError with a message when they do not fit.
TypeRule = Callable[[Sequence[TargetType], dict[str, AttrValue]], list[TargetType]]


@dataclass(frozen=True)
class TargetOpDef:
    name: str
    n_operands: int  # -1: variadic
    attrs: tuple[str, ...]  # required attribute names
    rule: TypeRule | None  # None: results are declared by the builder (const, alloca, loads...)
    category: str  # arith | math | compare | cast | vector | memory | control | id | sync | matrix
    doc: str = ""


TARGET_OPS: dict[str, TargetOpDef] = {}


def _def(name: str, n: int, attrs: tuple[str, ...], rule: TypeRule | None, cat: str, doc: str) -> None:
    TARGET_OPS[name] = TargetOpDef(name, n, attrs, rule, cat, doc)


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise TargetIRError(msg)


def _numeric(t: TargetType) -> Scalar | Vector:
    _need(isinstance(t, (Scalar, Vector)), f"expected a scalar or vector, got {t}")
    return t  # type: ignore[return-value]


def _same(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    t = _numeric(ts[0])
    for u in ts[1:]:
        _need(u == t, f"operand types {', '.join(map(str, ts))} differ")
    return [t]


def _float_same(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    t = _same(ts, a)
    _need(elem_of(t[0]).is_float, f"expected float operands, got {t[0]}")
    return t


def _int_same(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    t = _same(ts, a)
    _need(elem_of(t[0]).is_int, f"expected integer operands, got {t[0]}")
    return t


FLOAT_PREDICATES = ("oeq", "one", "olt", "ole", "ogt", "oge", "ueq", "une", "ult", "ule", "ugt", "uge",
                    "ord", "uno")
INT_PREDICATES = ("eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge")


def _cmp(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    t = _same(ts, a)[0]
    preds = FLOAT_PREDICATES if elem_of(t).is_float else INT_PREDICATES
    _need(a["pred"] in preds, f"predicate {a['pred']} is not one of {preds} for {t}")
    return [with_elem(t, I1)]


def _select(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    c, x, y = ts
    _need(x == y, f"select values {x} and {y} differ")
    _need(c == I1 or c == with_elem(x, I1), f"select condition {c} does not fit {x}")
    return [x]


CAST_KINDS = ("fpext", "fptrunc", "sitofp", "uitofp", "fptosi_sat", "fptoui_sat", "sext", "zext", "trunc",
              "bitcast")


def _cast(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    src = _numeric(ts[0])
    kind, to = a["kind"], a["to"]
    _need(kind in CAST_KINDS, f"cast kind {kind} is not one of {CAST_KINDS}")
    _need(isinstance(to, str) and to in SCALAR_KINDS, f"cast to {to}: not a scalar kind")
    dst = Scalar(to)  # type: ignore[arg-type]
    s = elem_of(src)
    ok = {
        "fpext": s.is_float and dst.is_float and dst.bits > s.bits,
        "fptrunc": s.is_float and dst.is_float and dst.bits < s.bits,
        "sitofp": s.is_int and dst.is_float, "uitofp": s.is_int and dst.is_float,
        "fptosi_sat": s.is_float and dst.is_int, "fptoui_sat": s.is_float and dst.is_int,
        "sext": s.is_int and dst.is_int and dst.bits > s.bits,
        "zext": s.is_int and dst.is_int and dst.bits > s.bits,
        "trunc": s.is_int and dst.is_int and dst.bits < s.bits,
        "bitcast": s.bits == dst.bits,
    }[kind]  # type: ignore[index]
    _need(ok, f"cast {kind} from {s} to {dst} is not valid")
    return [with_elem(src, dst)]


def _splat(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    _need(isinstance(ts[0], Scalar), f"splat takes a scalar, got {ts[0]}")
    lanes = a["lanes"]
    _need(isinstance(lanes, int) and lanes >= 2, f"splat lanes must be >= 2, got {lanes}")
    return [Vector(lanes, ts[0])]  # type: ignore[arg-type]


def _extract(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    v = ts[0]
    _need(isinstance(v, Vector), f"extract takes a vector, got {v}")
    _need(0 <= a["index"] < v.lanes, f"lane {a['index']} out of range for {v}")  # type: ignore[operator, union-attr]
    return [v.elem]  # type: ignore[union-attr]


def _insert(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    v, x = ts
    _need(isinstance(v, Vector) and x == v.elem, f"insert {x} into {v}")
    _need(0 <= a["index"] < v.lanes, f"lane {a['index']} out of range for {v}")  # type: ignore[operator, union-attr]
    return [v]


VREDUCE_KINDS = ("add", "mul", "max", "min", "umax", "umin", "and", "or")


def _vreduce(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    v = ts[0]
    _need(isinstance(v, Vector), f"vreduce takes a vector, got {v}")
    _need(a["kind"] in VREDUCE_KINDS, f"vreduce kind {a['kind']} is not one of {VREDUCE_KINDS}")
    return [v.elem]  # type: ignore[union-attr]


def _ptradd(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    p, off = ts
    _need(isinstance(p, Pointer), f"ptradd takes a pointer, got {p}")
    _need(off == I64, f"ptradd offset must be i64, got {off}")
    return [p]


def _mask_ok(mask: TargetType, lanes: int) -> None:
    _need(mask == vec(I1, lanes), f"mask {mask} does not fit {lanes} lanes")


def _load(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    # Declared result; the verifier checks it against the pointer (see verify.py).
    return []


def _store(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    p, v, *mask = ts
    _need(isinstance(p, Pointer), f"store takes a pointer, got {p}")
    _need(elem_of(v) == p.elem, f"store of {v} through {p}")  # type: ignore[union-attr]
    if mask:
        _mask_ok(mask[0], lanes_of(v))
    return []


def _scatter(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    p, offs, v, mask = ts
    _need(isinstance(p, Pointer) and isinstance(v, Vector), f"scatter of {v} through {p}")
    _need(elem_of(v) == p.elem, f"scatter of {v} through {p}")  # type: ignore[union-attr]
    _need(offs == Vector(v.lanes, I64), f"scatter offsets {offs} must be <{v.lanes} x i64>")  # type: ignore[union-attr]
    _mask_ok(mask, v.lanes)  # type: ignore[union-attr]
    return []


def _fma(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    return _float_same(ts, a)


def _none(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    return []


def _shared(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    count, elem = a["count"], a["elem"]
    _need(isinstance(count, int) and count > 0, f"shared count must be positive, got {count}")
    _need(isinstance(elem, str) and elem in SCALAR_KINDS, f"shared elem {elem}: not a scalar kind")
    return [Pointer("shared", Scalar(elem))]  # type: ignore[arg-type]


def _ptrtoint(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    _need(isinstance(ts[0], Pointer), f"ptrtoint takes a pointer, got {ts[0]}")
    return [I64]


def _shuffle(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    _need(isinstance(ts[0], Scalar), f"shuffle_xor takes a scalar, got {ts[0]}")
    m = a["mask"]
    _need(isinstance(m, int) and 0 < m < 64, f"shuffle_xor lane mask must be in 1..63, got {m}")
    return [ts[0]]


ARITH = ("add", "sub", "mul")
for _n in ARITH:
    _def(_n, 2, (), _same, "arith", f"lane-wise {_n} (integers wrap)")
_def("div", 2, (), _same, "arith", "float division; signed integer division (undefined for 0: guard it)")
_def("udiv", 2, (), _int_same, "arith", "unsigned integer division")
_def("rem", 2, (), _same, "arith", "remainder with the sign of the dividend (fmod / srem)")
_def("urem", 2, (), _int_same, "arith", "unsigned remainder")
_def("max", 2, (), _same, "arith", "maximum: NaN-propagating for floats, signed for integers")
_def("min", 2, (), _same, "arith", "minimum: NaN-propagating for floats, signed for integers")
_def("umax", 2, (), _int_same, "arith", "unsigned maximum")
_def("umin", 2, (), _int_same, "arith", "unsigned minimum")
for _n in ("and", "or", "xor", "shl", "lshr", "ashr"):
    _def(_n, 2, (), _int_same, "arith", f"bitwise {_n}")
_def("neg", 1, (), _same, "arith", "negation")
_def("abs", 1, (), _same, "arith", "absolute value")
_def("fma", 3, (), _fma, "arith", "a * b + c rounded once")
for _n in ("sqrt", "floor", "ceil", "rint", "trunc"):
    _def(_n, 1, (), _float_same, "math", f"correctly rounded {_n}")
_def("copysign", 2, (), _float_same, "math", "magnitude of a, sign of b")
for _n in ("exp", "log", "sin", "cos", "tanh", "erf"):
    _def(_n, 1, (), _float_same, "math", f"the {_n} function (library or hardware accuracy)")
_def("pow", 2, (), _float_same, "math", "a ** b")
_def("cmp", 2, ("pred",), _cmp, "compare", "lane-wise comparison -> i1 lanes")
_def("select", 3, (), _select, "compare", "select(cond, a, b), cond scalar or per lane")
_def("cast", 1, ("kind", "to"), _cast, "cast", "convert the element type (kind as in CAST_KINDS)")
_def("const", 0, ("value",), None, "arith", "a constant; value is a number or one per lane")
_def("splat", 1, ("lanes",), _splat, "vector", "a vector of one scalar")
_def("extract", 1, ("index",), _extract, "vector", "one lane of a vector")
_def("insert", 2, ("index",), _insert, "vector", "a vector with one lane replaced")
_def("vreduce", 1, ("kind",), _vreduce, "vector", "reduce the lanes of a vector (any order for add/mul)")
_def("alloca", 0, ("count",), None, "memory", "a thread-private array of count elements (local space)")
_def("ptradd", 2, (), _ptradd, "memory", "pointer + offset in elements")
_def("ptrtoint", 1, (), _ptrtoint, "memory", "the address a pointer holds, as i64 (alignment tests)")
_def("load", -1, (), None, "memory", "load(p) or load(p, mask, other): contiguous lanes from p")
_def("store", -1, (), _store, "memory", "store(p, v) or store(p, v, mask): contiguous lanes to p")
_def("gather", 4, (), None, "memory", "gather(p, offsets, mask, other): lane i reads p[offsets[i]]")
_def("scatter", 4, (), _scatter, "memory", "scatter(p, offsets, v, mask): lane i writes p[offsets[i]]")
_def("for", -1, (), None, "control", "for(lo, hi, step, inits...) { ^(iv, carried...) ... yield }")
_def("if", -1, (), None, "control", "if(cond) { then ... yield } else { ... yield }")
_def("yield", -1, (), _none, "control", "the values a for/if region passes on")
_def("return", 0, (), _none, "control", "leave the function")
_def("program_id", 0, ("axis",), None, "id", "the GPU program (CTA) index along an axis")
_def("thread_id", 0, ("axis",), None, "id", "the thread index within the program along an axis")
_def("barrier", 0, (), _none, "sync", "all threads of the program reach this point")
_def("shared", 0, ("count", "elem"), _shared, "memory",
     "an array of count elem values shared by the threads of a GPU program (one per function)")
_def("shuffle_xor", 1, ("mask",), _shuffle, "sync",
     "GPU: the value of the warp lane whose index is this lane's xor mask (the whole warp takes part: "
     "32 lanes, or an AMD wavefront of 64)")


# -- matrix units and asynchronous copies (GPU; rules and PTX in tessera/ir/gpu_mma.py, codegen/ptx.py)


def _mma(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    from tessera.ir.gpu_mma import mma_types

    want = mma_types(str(a["layout"]), str(a["ab"]))
    _need(tuple(ts) == want[:3], f"mma {a['layout']} {a['ab']} takes ({', '.join(map(str, want[:3]))}), got "
                                 f"({', '.join(map(str, ts))})")
    return [want[3]]


def _ldmatrix(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    p = ts[0]
    _need(isinstance(p, Pointer) and p.space == "shared" and p.elem.bits == 16,  # type: ignore[union-attr]
          f"ldmatrix reads 16-bit elements from shared memory, got {p}")
    n = a["count"]
    _need(n in (1, 2, 4), f"ldmatrix count must be 1, 2 or 4, got {n}")
    _need(isinstance(a["trans"], bool), "ldmatrix trans must be a bool")
    return [vec(I32, int(n))]  # type: ignore[call-overload]


def _cp_async(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    dst, src, size = ts
    _need(isinstance(dst, Pointer) and dst.space == "shared", f"cp_async writes shared memory, got {dst}")
    _need(isinstance(src, Pointer) and src.space == "global", f"cp_async reads global memory, got {src}")
    _need(size == I32, f"cp_async source size must be i32, got {size}")
    _need(a["bytes"] in (4, 8, 16), f"cp_async copies 4, 8 or 16 bytes, got {a['bytes']}")
    return []


def _cp_wait(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    n = a["pending"]
    _need(isinstance(n, int) and 0 <= n < 8, f"cp_async_wait pending must be in 0..7, got {n}")
    return []


def _ptrcast(ts: Sequence[TargetType], a: dict[str, AttrValue]) -> list[TargetType]:
    p, elem = ts[0], a["elem"]
    _need(isinstance(p, Pointer), f"ptrcast takes a pointer, got {p}")
    _need(isinstance(elem, str) and elem in SCALAR_KINDS, f"ptrcast elem {elem}: not a scalar kind")
    return [Pointer(p.space, Scalar(elem))]  # type: ignore[union-attr, arg-type]


_def("mma", 3, ("layout", "ab"), _mma, "matrix",
     "mma(a, b, c) = a @ b + c on one warp-wide tile: fragments of A, B, C spread over the lanes of a warp "
     "in the layout `layout` (a row of tessera/ir/gpu_mma.py: shape and lane mapping), A and B of 16-bit "
     "`ab` (bf16, f16) packed in pairs per i32, C and the result f32; the whole warp takes part")
_def("ldmatrix", 1, ("count", "trans"), _ldmatrix, "matrix",
     "warp-wide load of `count` 8x8 matrices of 16-bit elements from shared memory: lane 8i+r gives the "
     "address of row r of matrix i; lane l gets (row l/4, cols 2(l%4), +1) of each matrix (transposed with "
     "trans) as one i32; the whole warp takes part")
_def("cp_async", 3, ("bytes",), _cp_async, "memory",
     "cp_async(dst, src, size): copy `bytes` bytes global -> shared asynchronously, bytes from `size` on "
     "written as zero; complete (for this thread) after a cp_async_wait that covers its group")
_def("cp_async_commit", 0, (), _none, "sync", "close the thread's current group of cp_async copies")
_def("cp_async_wait", 0, ("pending",), _cp_wait, "sync",
     "wait until at most `pending` of the thread's committed cp_async groups are incomplete")
_def("ptrcast", 1, ("elem",), _ptrcast, "memory", "the same address as a pointer to another element type")
