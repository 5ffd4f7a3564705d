"""`tessera run` and `tessera lower` (spec §9): entries, arguments from files and at random, --dim,
--out, --profile, targets, and the exit codes — 0 ok, 1 compile error, 2 usage, 3 run-time error
(a failed guard names the rule and the actual extent) — never with a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner, Result

from tessera.cli import EXIT_COMPILE, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.tsr"))
MLP = str(ROOT / "examples" / "mlp.tsr")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), env=env)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr, result.output + result.stderr
    assert "internal compiler error" not in result.stderr, result.stderr
    return result


def write(tmp_path: Path, text: str, name: str = "prog.tsr") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- run: ok


def test_run_main_of_an_example_on_the_reference_target() -> None:
    r = run("run", str(ROOT / "examples" / "softmax.tsr"), "--target", "reference")
    assert r.exit_code == EXIT_OK, r.stderr
    assert r.stdout.startswith("softmax rows sum to 1.0")


def test_run_an_entry_with_scalar_arguments(tmp_path: Path) -> None:
    prog = write(tmp_path, "def scale(n: int, s: float, tag: str):\n    return n * s, tag + '!'\n")
    r = run("run", prog, "--entry", "scale", "--arg", "n=4", "--arg", "s=0.5", "--arg", "tag=hi")
    assert r.exit_code == EXIT_OK, r.stderr
    assert r.stdout == "out0 = float 2.0\n2.0\nout1 = str 'hi!'\nhi!\n"


def test_arg_of_another_float_dtype_is_converted_to_the_declared_one(tmp_path: Path) -> None:
    prog = write(tmp_path, 'def show(x: Tensor["N", bf16]):\n    print(x.dtype, x)\n    return x\n')
    x = np.array([1.0, 1.0 + 2.0**-9, 1.0 + 3 * 2.0**-9, 3.14159], dtype=np.float64)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "o.npz"
    r = run("run", prog, "--entry", "show", "--arg", f"x={tmp_path / 'x.npy'}", "--out", str(out))
    assert r.exit_code == EXIT_OK, r.stderr
    expected = x.astype(ml_dtypes.bfloat16)  # round to nearest even: 1+2^-9 -> 1, 1+3*2^-9 -> 1+2^-7
    assert expected[1] == 1.0 and float(expected[2]) == 1.0 + 2.0**-7
    assert r.stdout.startswith("bf16 [1.        1.        1.0078125 3.140625 ]")
    with np.load(out) as data:
        assert list(data) == ["out0"]
        assert data["out0"].dtype == np.float32  # bf16 widened for .npz
        np.testing.assert_array_equal(data["out0"], expected.astype(np.float32))


def _mlp_inputs(tmp_path: Path, b: int = 4, d: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    arrays = {"x": rng.standard_normal((b, d)), "w1": rng.standard_normal((d, 4 * d)) * 0.3,
              "b1": rng.standard_normal(4 * d), "w2": rng.standard_normal((4 * d, d)) * 0.3}
    for k, a in arrays.items():
        np.save(tmp_path / f"{k}.npy", a)  # float64 files: converted to bf16 / f32 on the way in
    return arrays


def test_out_npz_of_a_jit_entry_matches_the_reference_evaluator(tmp_path: Path) -> None:
    from tessera.frontend.check import check_file
    from tessera.ir.graph.build import build_graph
    from tessera.ir.graph.passes import specialize_shapes
    from tessera.ir.graph.reference import evaluate

    arrays = _mlp_inputs(tmp_path)
    out = tmp_path / "o.npz"
    args = [a for k in arrays for a in ("--arg", f"{k}={tmp_path / (k + '.npy')}")]
    r = run("run", MLP, "--entry", "mlp", "--target", "reference", *args, "--out", str(out))
    assert r.exit_code == EXIT_OK, r.stderr
    checked = check_file(MLP)
    assert checked.result is not None
    fn = next(f for f in checked.result.program.root.tree.functions if f.name == "mlp")
    graph = build_graph(checked.result, fn, {})
    graph = specialize_shapes(graph, {s: v for s, v in {"B": 4, "D": 8, "H": 32}.items() if s in graph.symbols})
    bf16 = ml_dtypes.bfloat16
    ins = [arrays["x"].astype(bf16), arrays["w1"].astype(bf16), arrays["b1"].astype(np.float32),
           arrays["w2"].astype(bf16)]
    (want,) = evaluate(graph, ins)
    with np.load(out) as data:
        got = data["out0"]
    assert got.dtype == np.float32 and got.shape == (4, 8)
    np.testing.assert_array_equal(got, want.astype(np.float32))
    # And against NumPy itself, within bf16 tolerance.
    from math import erf

    xf, w1f, w2f = (a.astype(np.float32) for a in (ins[0], ins[1], ins[3]))
    h = xf @ w1f + ins[2]
    h = 0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))
    np.testing.assert_allclose(got, (h @ w2f).astype(bf16).astype(np.float32), rtol=2e-2, atol=2e-2)


def test_cpu_and_reference_runs_of_a_jit_entry_agree(tmp_path: Path) -> None:
    outs = {}
    for target in ("cpu", "reference"):
        outs[target] = tmp_path / f"{target}.npz"
        r = run("run", MLP, "--entry", "mlp", "--target", target, "--dim", "B=16", "--dim", "D=64",
                "--seed", "5", "--out", str(outs[target]))
        assert r.exit_code == EXIT_OK, r.stderr
    with np.load(outs["cpu"]) as a, np.load(outs["reference"]) as b:
        assert a["out0"].shape == (16, 64)
        # bf16 results: equal up to one rounding of bf16 (accumulation order differs).
        np.testing.assert_allclose(a["out0"], b["out0"], rtol=2**-7, atol=2**-7 * np.abs(b["out0"]).max())


def test_missing_tensor_arguments_are_drawn_at_random_from_dims(tmp_path: Path) -> None:
    prog = write(tmp_path, 'def shapes(x: Tensor["B", "D", f32], y: Tensor["D", bf16]):\n'
                           '    print(x.shape, y.shape, y.dtype)\n    return x\n')
    out1, out2 = tmp_path / "a.npz", tmp_path / "b.npz"
    r = run("run", prog, "--entry", "shapes", "--dim", "B=3", "--dim", "D=5", "--seed", "7", "--out", str(out1))
    assert r.exit_code == EXIT_OK, r.stderr
    assert r.stdout.startswith("(3, 5) (5,) bf16")
    run("run", prog, "--entry", "shapes", "--dim", "B=3", "--dim", "D=5", "--seed", "7", "--out", str(out2))
    with np.load(out1) as a, np.load(out2) as b:
        np.testing.assert_array_equal(a["out0"], b["out0"])  # seeded
        expected = np.random.Generator(np.random.PCG64(7)).standard_normal((3, 5)).astype(np.float32)
        np.testing.assert_array_equal(a["out0"], expected)


def test_dims_fixed_by_where_equalities_need_no_flag(tmp_path: Path) -> None:
    prog = write(tmp_path, 'def f(x: Tensor["D", f32], w: Tensor["H", f32]) where H == 4 * D:\n'
                           '    print(w.shape)\n')
    r = run("run", prog, "--entry", "f", "--dim", "D=3")
    assert r.exit_code == EXIT_OK, r.stderr
    assert r.stdout == "(12,)\n"


def test_profile_writes_a_chrome_trace_of_compile_and_run_phases(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    r = run("run", str(ROOT / "examples" / "softmax.tsr"), "--target", "reference", "--profile", str(trace))
    assert r.exit_code == EXIT_OK, r.stderr
    events = json.loads(trace.read_text())["traceEvents"]
    names = [e["name"] for e in events]
    assert names.count("compile row_softmax") == 1 and names.count("run row_softmax") == 1
    assert "compile row_softmax_bf16" in names and "run row_softmax_bf16" in names
    for e in events:
        assert e["ph"] == "X" and e["dur"] >= 0 and e["cat"] in ("compile", "run")
        assert "N=64" in e["args"]["spec"] and "M=1000" in e["args"]["spec"]


def test_tessera_target_environment_variable_sets_the_default(tmp_path: Path) -> None:
    r = run("run", str(ROOT / "examples" / "softmax.tsr"), env={"TESSERA_TARGET": "reference"})
    assert r.exit_code == EXIT_OK, r.stderr
    r = run("run", str(ROOT / "examples" / "softmax.tsr"), env={"TESSERA_TARGET": "hip"})
    assert r.exit_code == EXIT_RUNTIME
    r = run("run", str(ROOT / "examples" / "softmax.tsr"), env={"TESSERA_TARGET": "tpu"})
    assert r.exit_code == EXIT_USAGE and "unknown target 'tpu'" in r.stderr


# ---------------------------------------------------------------- run: run-time errors (exit 3)


def test_guard_failure_names_the_rule_and_the_actual_extent() -> None:
    r = run("run", MLP, "--entry", "mlp", "--target", "reference", "--dim", "B=4", "--dim", "D=12")
    assert r.exit_code == EXIT_RUNTIME
    assert "error[E-SHAPE]: D % 8 == 0 does not hold: D = 12 (x.shape[1])" in r.stderr
    assert "where D % 8 == 0" in r.stderr  # the rendered source line of the constraint


def test_guard_failure_on_a_range_constraint(tmp_path: Path) -> None:
    r = run("run", MLP, "--entry", "mlp", "--target", "reference", "--dim", "B=5000", "--dim", "D=8")
    assert r.exit_code == EXIT_RUNTIME
    assert "error[E-SHAPE]: B in 1..=4096 does not hold: B = 5000 (x.shape[0])" in r.stderr


def test_guard_failure_from_host_code_points_at_the_call(tmp_path: Path) -> None:
    prog = write(tmp_path, """@jit
def f(x: Tensor["N", f32]) -> Tensor["N", f32] where N % 4 == 0:
    return x * 2.0


def main():
    for n in range(6, 7):
        y = f(ones((n,), f32))
""")
    r = run("run", prog, "--target", "reference")
    assert r.exit_code == EXIT_RUNTIME
    assert "error[E-SHAPE]: N % 4 == 0 does not hold: N = 6 (x.shape[0])" in r.stderr
    assert f"--> {prog}:8:13" in r.stderr


def test_symbols_that_disagree_between_arguments(tmp_path: Path) -> None:
    prog = write(tmp_path, 'def f(x: Tensor["N", f32], y: Tensor["N", f32]):\n    return x\n')
    np.save(tmp_path / "x.npy", np.ones(3))
    np.save(tmp_path / "y.npy", np.ones(4))
    r = run("run", prog, "--entry", "f", "--arg", f"x={tmp_path / 'x.npy'}", "--arg", f"y={tmp_path / 'y.npy'}")
    assert r.exit_code == EXIT_RUNTIME, r.stderr
    assert "the dim symbol N is 3 (x.shape[0]) but 4 (y.shape[0])" in r.stderr


def test_a_bad_input_file_is_a_runtime_error(tmp_path: Path) -> None:
    prog = write(tmp_path, 'def f(x: Tensor["N", f32]):\n    return x\n')
    (tmp_path / "bad.npy").write_text("garbage")
    r = run("run", prog, "--entry", "f", "--arg", f"x={tmp_path / 'bad.npy'}")
    assert r.exit_code == EXIT_RUNTIME
    assert "not a valid .npy file" in r.stderr
    r = run("run", prog, "--entry", "f", "--arg", f"x={tmp_path / 'none.npy'}")
    assert r.exit_code == EXIT_RUNTIME and "no such file" in r.stderr


def test_a_failed_assert_is_a_runtime_error(tmp_path: Path) -> None:
    prog = write(tmp_path, 'def main():\n    x = 1\n    assert x == 2, "x must be two"\n')
    r = run("run", prog)
    assert r.exit_code == EXIT_RUNTIME
    assert "error[E-RUNTIME]: assertion failed: x must be two" in r.stderr
    assert f"--> {prog}:3:5" in r.stderr


def test_the_hip_target_without_a_gpu_is_one_line_and_exit_3() -> None:
    from tessera.runtime.hip import available

    why = available()
    if why is None:
        pytest.skip("an AMD GPU is available here")
    r = run("run", str(ROOT / "examples" / "softmax.tsr"), "--target", "hip")
    assert r.exit_code == EXIT_RUNTIME
    assert r.stderr == f"error: the hip target cannot run here: {why}\n" and r.stdout == ""


def test_the_cuda_target_without_a_gpu_is_one_line_and_exit_3() -> None:
    from tessera.runtime.cuda import available

    why = available()
    if why is None:
        pytest.skip("a CUDA device is available here")
    r = run("run", str(ROOT / "examples" / "softmax.tsr"), "--target", "cuda")
    assert r.exit_code == EXIT_RUNTIME
    assert r.stderr == f"error: the cuda target cannot run here: {why}\n" and r.stdout == ""


# ---------------------------------------------------------------- run: compile and usage errors


def test_compile_errors_exit_1_before_anything_runs(tmp_path: Path) -> None:
    prog = write(tmp_path, 'def main():\n    print("ran")\n    return undefined_name\n')
    r = run("run", prog)
    assert r.exit_code == EXIT_COMPILE
    assert "error[E-NAME]: name 'undefined_name' is not defined" in r.stderr and "ran" not in r.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    no_main = write(tmp_path, "def f(x: int):\n    return x\n")
    r = run("run", no_main)
    assert r.exit_code == EXIT_USAGE and "has no function 'main'" in r.stderr
    r = run("run", MLP, "--entry", "nope")
    assert r.exit_code == EXIT_USAGE and "no function 'nope'" in r.stderr
    r = run("run", MLP, "--entry", "mlp", "--dim", "B=4")
    assert r.exit_code == EXIT_USAGE
    assert "needs the extent of D: pass --dim D=<extent>" in r.stderr
    r = run("run", MLP, "--entry", "mlp", "--arg", "q=x.npy")
    assert r.exit_code == EXIT_USAGE and "'mlp' has no parameter 'q'" in r.stderr
    r = run("run", MLP, "--entry", "mlp", "--arg", "x")
    assert r.exit_code == EXIT_USAGE and "--arg expects NAME=PATH.npy" in r.stderr
    r = run("run", MLP, "--entry", "mlp", "--dim", "D=eight")
    assert r.exit_code == EXIT_USAGE and "not an integer" in r.stderr
    r = run("run", MLP, "--entry", "mlp", "--dim", "Q=3")
    assert r.exit_code == EXIT_USAGE and "no dim symbol Q" in r.stderr
    r = run("run", str(tmp_path / "missing.tsr"))
    assert r.exit_code == EXIT_USAGE


# ---------------------------------------------------------------- lower


def _jit_names(path: Path) -> list[str]:
    from tessera.frontend.check import check_file

    checked = check_file(path)
    assert checked.result is not None
    return [f.name for f in checked.result.program.root.tree.functions
            if checked.result.signatures[f].kind == "jit"]


@pytest.mark.parametrize("path", [p for p in EXAMPLES if _jit_names(p)], ids=lambda p: p.stem)
def test_lower_prints_the_graph_of_every_example(path: Path) -> None:
    r = run("lower", str(path), "--stage", "graph")
    assert r.exit_code == EXIT_OK, r.stderr
    for name in _jit_names(path):
        assert f"func @{name}(" in r.stdout
    assert r.stdout.count("tessera.graph") == 0 or r.stdout.startswith("tessera.graph")


def test_lower_graph_is_symbolic_unless_dims_are_given() -> None:
    r = run("lower", MLP, "--stage", "graph")
    assert r.exit_code == EXIT_OK, r.stderr
    assert "tensor<[B, D], bf16>" in r.stdout
    r = run("lower", MLP, "--stage", "graph", "--dim", "B=4", "--dim", "D=8")
    assert r.exit_code == EXIT_OK, r.stderr
    assert "tensor<[4, 8], bf16>" in r.stdout and "tensor<[8, 32], bf16>" in r.stdout


def test_lower_below_the_graph_needs_every_symbol() -> None:
    r = run("lower", MLP, "--stage", "schedule", "--dim", "B=4")
    assert r.exit_code == EXIT_USAGE
    assert "needs every dim symbol bound; missing D (pass --dim D=<extent>)" in r.stderr


def test_lower_usage_errors() -> None:
    r = run("lower", MLP, "--stage", "hip")
    assert r.exit_code == EXIT_USAGE and "needs every dim symbol bound" in r.stderr
    r = run("lower", MLP, "--stage", "graph", "--fn", "main")
    assert r.exit_code == EXIT_USAGE and "'main' is not a @jit function" in r.stderr
    r = run("lower", MLP, "--stage", "graph", "--fn", "nope")
    assert r.exit_code == EXIT_USAGE and "no function 'nope'" in r.stderr
    r = run("lower", MLP, "--stage", "graph", "--fn", "mlp", "--dim", "Z=1")
    assert r.exit_code == EXIT_USAGE and "no dim symbol Z" in r.stderr


def test_lower_every_cpu_stage_of_the_softmax_example() -> None:
    from tests.filecheck_util import filecheck

    softmax = str(ROOT / "examples" / "softmax.tsr")
    dims = ("--fn", "row_softmax", "--dim", "N=64", "--dim", "M=1000")
    r = run("lower", softmax, "--stage", "graph", *dims)
    assert r.exit_code == EXIT_OK, r.stderr
    filecheck(r.stdout, """
        CHECK: func @row_softmax(%x: tensor<[64, 1000], f32>) -> (tensor<[64, 1000], f32>)
        CHECK: softmax(%x)
        CHECK: return
    """)
    r = run("lower", softmax, "--stage", "schedule", *dims)
    assert r.exit_code == EXIT_OK, r.stderr
    filecheck(r.stdout, """
        CHECK: plan @row_softmax(
        CHECK: kernel @{{.*}}softmax
        CHECK: schedule Schedule(block=
    """)
    r = run("lower", softmax, "--stage", "tile", *dims)
    assert r.exit_code == EXIT_OK, r.stderr
    filecheck(r.stdout, """
        CHECK: kernel @row_softmax_{{.*}} grid=
        CHECK: program_id
        CHECK: load(%x
    """)
    r = run("lower", softmax, "--stage", "target", *dims)
    assert r.exit_code == EXIT_OK, r.stderr
    filecheck(r.stdout, """
        CHECK: func @row_softmax_{{.*}}(%x: ptr<global, f32>
    """)


# ---------------------------------------------------------------- build and run a bundle


def test_build_a_bundle_and_run_it_without_recompiling(tmp_path: Path) -> None:
    import hashlib

    from tessera.codegen.llvm import compile_count

    out = tmp_path / "mlp.bundle"
    r = run("build", MLP, "-o", str(out), "--dim", "B=32", "--dim", "D=256")
    assert r.exit_code == EXIT_OK, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "tessera-bundle" and manifest["entry"] == "main"
    (spec,) = manifest["specializations"]
    assert spec["function"] == "mlp" and spec["key"]["extents"] == {"B": 32, "D": 256, "H": 1024}
    files = manifest["files"]
    for rel, digest in files.items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert "source/mlp.tsr" in files
    assert any(rel.startswith("objects/") for rel in files), files
    graph_text = (out / spec["graph"]).read_text()
    assert graph_text.startswith("tessera.graph ") and "tensor<[32, 256], bf16>" in graph_text
    assert (out / spec["schedule"]).read_text().startswith("plan @mlp(")

    direct = run("run", MLP, "--target", "cpu")
    assert direct.exit_code == EXIT_OK, direct.stderr
    before = compile_count()
    bundled = run("run", str(out))
    assert bundled.exit_code == EXIT_OK, bundled.stderr
    assert compile_count() == before  # the object code came from the bundle
    assert bundled.stdout == direct.stdout and bundled.stdout.startswith("mlp (32, 256) ")


def test_a_corrupt_bundle_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert run("build", MLP, "-o", str(out), "--dim", "B=32", "--dim", "D=256").exit_code == EXIT_OK
    src = out / "source" / "mlp.tsr"
    src.write_text(src.read_text() + "\n# edited\n")
    r = run("run", str(out))
    assert r.exit_code == EXIT_RUNTIME
    assert "is corrupt: source/mlp.tsr does not match its manifest hash" in r.stderr
    (out / "manifest.json").unlink()
    r = run("run", str(out))
    assert r.exit_code == EXIT_RUNTIME and "not a Tessera bundle" in r.stderr


def test_build_needs_extents_for_some_function(tmp_path: Path) -> None:
    r = run("build", MLP, "-o", str(tmp_path / "b"))
    assert r.exit_code == EXIT_USAGE
    assert "no @jit function" in r.stderr and "mlp" in r.stderr
