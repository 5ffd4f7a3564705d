"""`tessera lower FILE --stage S --fn NAME --dim ...` (spec §9) for every `@jit` function of every
example and every CPU stage: graph, schedule, tile, target, llvm.

Each run goes through the click command in process and must exit 0 with readable, non-empty IR that
FileCheck patterns recognise per stage: the graph function with its parameters specialised to the
`--dim` extents; the schedule's plan with one `kernel @kN` per fused group and its schedule; each
kernel's tile program (program ids, loads of its inputs, stores of its outputs, `dot` for a matmul);
each kernel's Target IR function running a range of programs with vectors of the host's width; and
LLVM IR that defines every kernel and that LLVM itself parses and verifies. The graph stage, symbolic
and specialised, round-trips through tessera.ir.graph.parser.

The extents are those of each example's main() (a table below; symbols a `where` equality derives,
such as mlp's H == 4 * D, are left to the compiler).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import llvmlite.binding as llvm
import pytest
from click.testing import CliRunner
from filecheck_util import filecheck

from tessera.cli import main
from tessera.frontend.check import check_file
from tessera.frontend.types import TensorType
from tessera.ir.graph.parser import parse_module
from tessera.ir.graph.printer import print_function
from tessera.ir.graph.verify import verify_function
from tessera.runtime.cpu_features import cpu_target_info, host_cpu
from tessera.runtime.stages import bind

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
STAGES = ("graph", "schedule", "tile", "target", "llvm")

# The extents each example's main() calls its @jit functions with.
MAIN_DIMS: dict[tuple[str, str], dict[str, int]] = {
    ("attention.tsr", "causal_attention"): {"B": 2, "H": 4, "S": 128, "D": 64},
    ("attention.tsr", "causal_attention_ref"): {"B": 2, "H": 4, "S": 128, "D": 64},
    ("layernorm.tsr", "norm"): {"B": 2, "S": 16, "D": 128},
    ("layernorm.tsr", "norms_bf16"): {"T": 16, "D": 128},
    ("mlp.tsr", "mlp"): {"B": 32, "D": 256},
    ("softmax.tsr", "row_softmax"): {"N": 64, "M": 1000},
    ("softmax.tsr", "row_softmax_bf16"): {"N": 64, "M": 1000},
    ("transformer_block.tsr", "transformer_block"): {"B": 2, "S": 128, "D": 256},
}
CASES = sorted(MAIN_DIMS)


@pytest.fixture(scope="module", autouse=True)
def private_code_cache(tmp_path_factory: pytest.TempPathFactory):
    """Anything the stages compile goes to a cache of this module's own, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TESSERA_CACHE_DIR", str(tmp_path_factory.mktemp("tessera-cache")))
    yield
    mp.undo()


@functools.cache
def lower(file: str, fn: str, stage: str, specialised: bool = True) -> str:
    """The CLI's output for one stage (cached: the later stages' patterns read the schedule)."""
    args = ["lower", str(EXAMPLES / file), "--stage", stage, "--fn", fn]
    if specialised:
        for sym, v in MAIN_DIMS[(file, fn)].items():
            args += ["--dim", f"{sym}={v}"]
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, f"tessera {' '.join(args)} exited {r.exit_code}:\n{r.output}"
    text = r.stdout
    assert text.strip(), f"tessera {' '.join(args)} printed nothing"
    # Readable: IR text, not Python reprs or tracebacks.
    for junk in ("Traceback", " object at 0x", "<tessera.", "None"):
        assert junk not in text, f"{file} {fn} {stage}: {junk!r} in the output:\n{text[:2000]}"
    return text


@functools.cache
def kernels(file: str, fn: str) -> list[tuple[str, str, str]]:
    """(kernel name in the plan, pattern, accumulation dtype or "") of every kernel, from the schedule."""
    text = lower(file, fn, "schedule")
    found = re.findall(r"^  kernel @(k\d+) (\w+) \[.*\{\n\s+schedule Schedule\(.*\)( accum \w+)?$", text,
                       re.MULTILINE)
    assert found, f"no kernels in the plan of {fn}:\n{text}"
    return [(k, pattern, acc.split()[-1] if acc else "") for k, pattern, acc in found]


def kernel_symbol(fn: str, k: str, pattern: str) -> str:
    return f"{fn}_{k}_{pattern}"


def test_the_table_covers_every_jit_function_of_every_example() -> None:
    found = set()
    for path in sorted(EXAMPLES.glob("*.tsr")):
        checked = check_file(path)
        assert checked.ok and checked.result is not None, path
        sigs = checked.result.signatures
        found |= {(path.name, f.name) for f in checked.result.program.root.tree.functions
                  if sigs[f].kind == "jit"}
    assert found == set(MAIN_DIMS)


def _param_types(file: str, fn: str) -> list[str]:
    """`%name: tensor<[extents], dtype>` of every parameter, with the main() extents."""
    checked = check_file(EXAMPLES / file)
    assert checked.result is not None
    f = next(f for f in checked.result.program.root.tree.functions if f.name == fn)
    sig = checked.result.signatures[f]
    env = bind(sig, MAIN_DIMS[(file, fn)])
    out = []
    for p in sig.params:
        assert isinstance(p.ty, TensorType) and p.ty.dtype is not None
        dims = ", ".join(str(d.evaluate(env)) for d in p.ty.dims)
        out.append(f"%{p.name}: tensor<[{dims}], {p.ty.dtype}>")
    return out


def _round_trips(text: str, fn: str) -> None:
    m = parse_module(text)
    assert [f.name for f in m.functions] == [fn]
    verify_function(m.functions[0])
    assert print_function(m.functions[0]).rstrip("\n") == text.rstrip("\n"), "print(parse(text)) != text"


@pytest.mark.parametrize("file,fn", CASES)
def test_graph_stage(file: str, fn: str) -> None:
    text = lower(file, fn, "graph")
    checks = [f"CHECK-LABEL: func @{fn}("]
    checks += [f"CHECK-SAME: {t}" for t in _param_types(file, fn)]
    checks += ["CHECK-NOT: symbols =",  # every symbol is bound: no symbolic attributes left
               r"CHECK: {{^  %[A-Za-z0-9_.]+ = [a-z_]+\(}}",
               "CHECK: return %", "CHECK-NEXT: }"]
    filecheck(text, "\n".join(checks))
    assert not re.search(r"tensor<\[[^\]]*[A-Z]", text), f"a symbolic dim is left in:\n{text}"
    _round_trips(text, fn)


@pytest.mark.parametrize("file,fn", CASES)
def test_symbolic_graph_stage_round_trips(file: str, fn: str) -> None:
    text = lower(file, fn, "graph", specialised=False)
    syms = sorted(MAIN_DIMS[(file, fn)])
    filecheck(text, f"""
        CHECK-LABEL: func @{fn}(
        CHECK: attributes {{{{.*}}}}symbols = [
        CHECK: return %
    """)
    assert any(re.search(rf"tensor<\[[^\]]*\b{s}\b", text) for s in syms), text
    _round_trips(text, fn)


@pytest.mark.parametrize("file,fn", CASES)
def test_schedule_stage(file: str, fn: str) -> None:
    text = lower(file, fn, "schedule")
    checks = [f"CHECK-LABEL: plan @{fn}("]
    for k, pattern, acc in kernels(file, fn):
        checks += [f"CHECK: kernel @{k} {pattern} [",
                   "CHECK-NEXT: schedule Schedule(block=({{[0-9]+(, [0-9]+)*}}){{.*}}vector={{[0-9]+}}"
                   + (f"{{{{.*}}}}) accum {acc}" if acc else ""),
                   "CHECK-NEXT: space [",
                   "CHECK: out %{{[A-Za-z0-9_.]+}} : [{{[0-9, ]*}}] strides [",
                   "CHECK: store %{{[A-Za-z0-9_.]+}} -> %",
                   "CHECK: {{^  }}}"]
    filecheck(text, "\n".join(checks))


@pytest.mark.parametrize("file,fn", CASES)
def test_tile_stage(file: str, fn: str) -> None:
    text = lower(file, fn, "tile")
    checks = []
    for k, pattern, _ in kernels(file, fn):
        name = kernel_symbol(fn, k, pattern)
        header = next(line for line in text.splitlines() if line.startswith(f"kernel @{name}("))
        checks += [f"CHECK-LABEL: kernel @{name}(", "CHECK-SAME: grid=[{{[0-9, ]+}}] schedule=Schedule(",
                   "CHECK: program_id {axis = 0}"]
        if re.search(r" in[,)]", header):  # a kernel with inputs loads blocks of them
            checks.append("CHECK: = load(%{{.*}}block<[{{[0-9, ]+}}]")
        if pattern == "matmul":
            checks.append("CHECK: = dot(")
        checks += ["CHECK: store(%", "CHECK: {{^}}}"]
    filecheck(text, "\n".join(checks))


@pytest.mark.parametrize("file,fn", CASES)
def test_target_stage(file: str, fn: str) -> None:
    text = lower(file, fn, "target")
    lanes = cpu_target_info().lanes
    checks = []
    for k, pattern, acc in kernels(file, fn):
        checks += [f"CHECK-LABEL: func @{kernel_symbol(fn, k, pattern)}(%",
                   "CHECK-SAME: %begin: i64, %end: i64) {",
                   "CHECK: for %prog = %begin to %end step %",
                   # Vectorised with the host's width: f32 lanes where the kernel computes in f32.
                   f"CHECK: <{lanes} x {'f32' if acc == 'f32' else '{{[a-z0-9]+}}'}>"]
    filecheck(text, "\n".join(checks))


@pytest.mark.parametrize("file,fn", CASES)
def test_llvm_stage(file: str, fn: str) -> None:
    text = lower(file, fn, "llvm")
    lanes = cpu_target_info().lanes
    checks = [f'CHECK: target triple = "{host_cpu().triple}"']
    for k, pattern, acc in kernels(file, fn):
        checks += [f'CHECK-LABEL: define void @"{kernel_symbol(fn, k, pattern)}"(ptr',
                   f"CHECK-DAG: <{lanes} x {'float' if acc == 'f32' else '{{[a-z0-9]+}}'}>",
                   "CHECK-DAG: ret void"]
    filecheck(text, "\n".join(checks))
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = llvm.parse_assembly(text)
    mod.verify()
    defined = sorted(f.name for f in mod.functions if not f.is_declaration)
    assert defined == sorted(kernel_symbol(fn, k, p) for k, p, _ in kernels(file, fn))


def test_stages_agree_on_the_kernels() -> None:
    # One kernel per fused group at every stage below the graph, in plan order.
    for file, fn in CASES:
        names = [kernel_symbol(fn, k, p) for k, p, _ in kernels(file, fn)]
        assert re.findall(r"^kernel @(\w+)\(", lower(file, fn, "tile"), re.MULTILINE) == names
        assert re.findall(r"^func @(\w+)\(", lower(file, fn, "target"), re.MULTILINE) == names
        assert re.findall(r'^define void @"(\w+)"\(', lower(file, fn, "llvm"), re.MULTILINE) == names
