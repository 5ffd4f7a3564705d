"""Schedule IR text form (what `tessera lower --stage schedule` prints).

    plan @ln(%x: tensor<[64, 1000], f32>, %w: tensor<[1000], f32>, %b: tensor<[1000], f32>) -> (%r0) {
      %x = param 0 : tensor<[64, 1000], f32>
      %r0 = result 0 : tensor<[64, 1000], f32>
      %v0 = view %w broadcast_to {shape = [64, 1000]} : tensor<[64, 1000], f32>  # [64, 1000] strides [0, 1]
      kernel @k0 row_reduction [layernorm] -> tile @ln_k0_row_reduction {
        schedule Schedule(block=(4, 1024), vector=8, warps=4, stages=1) accum f32
        space [64, 1000] reduce [1] dims [64 | 1000]
        in %x : [64, 1000] strides [1000, 1]
        in %v0 : [64, 1000] strides [0, 1]
        out %r0 : [64, 1000] strides [1000, 1]
        %0 = reduce(%x) {kind = "sum", axes = [1], keepdims = true, accum = f32} : tensor<[64, 1], f32>
        ...
        store %7 -> %r0
      }
      print "h = {}" (%t1)
    }

Buffers first (params, results, temporaries, views with the shape ops they apply and the strides
they end up with), then the steps in execution order. A kernel shows its pattern, the graph ops it
came from, its schedule and accumulation dtype, its iteration space (the full shape, the reduced
axes, the collapsed kernel axes with `|` before the reduced one), its arguments as the kernel sees
them (`stat`: per-row values, size 1 on the reduced axis; `lhs`/`rhs`: matmul operands) and its
body: graph ops reading the input buffers by name, then a `store` per output.
"""

from __future__ import annotations

from tessera.ir.graph.printer import Namer, format_attr, print_op
from tessera.ir.schedule.ops import Buffer, HostPrint, KernelCall, Plan


def print_plan(plan: Plan) -> str:
    params = ", ".join(f"%{b.name}: {b.ty}" for b in plan.params)
    results = ", ".join(f"%{b.name}" for b in plan.results)
    lines = [f"plan @{plan.name}({params}) -> ({results}) {{"]
    if plan.effects:
        lines[0] = lines[0][:-1] + f"effects [{', '.join(plan.effects)}] {{"
    order = {"param": 0, "result": 1, "temp": 2, "view": 3}
    for b in sorted(plan.buffers, key=lambda b: order[b.kind]):
        lines.append("  " + print_buffer(b))
    for step in plan.steps:
        if isinstance(step, HostPrint):
            args = ", ".join(f"%{b.name}" for b in step.args)
            lines.append(f"  print {format_attr(step.format)} ({args})")
        else:
            lines.extend("  " + line for line in print_call(step).splitlines())
    lines.append("}")
    return "\n".join(lines) + "\n"


def print_buffer(b: Buffer) -> str:
    if b.kind in ("param", "result"):
        return f"%{b.name} = {b.kind} {b.index} : {b.ty}"
    if b.kind == "temp":
        return f"%{b.name} = temp : {b.ty}"
    steps = " ".join(
        s.op + (" {" + ", ".join(f"{k} = {format_attr(v)}" for k, v in s.attrs) + "}" if s.attrs else "")
        for s in b.steps)
    base = b.base.name if b.base is not None else "?"
    return f"%{b.name} = view %{base} {steps} : {b.ty}  # {b.layout}"


def print_call(call: KernelCall) -> str:
    head = f"kernel @{call.name} {call.pattern} [{', '.join(call.origin)}]"
    if call.kernel:
        head += f" -> tile @{call.kernel}"
    lines = [head + " {"]
    sched = f"  schedule {call.schedule}"
    if call.accum is not None:
        sched += f" accum {call.accum}"
    lines.append(sched)
    lines.append("  space " + _space(call))
    for a in call.args:
        part = "" if a.part == "full" else f" {a.part}"
        lines.append(f"  {a.role}{part} %{a.buffer.name} : {a.layout}")
    names = Namer()
    for v, i in call.bindings:
        a = call.args[i]
        if a.role == "in" and v not in names.names:
            names.names[v] = a.buffer.name
            names.used.add(a.buffer.name)
    for op in call.ops:
        lines.append("  " + print_op(op, names))
    for v, a in call.outputs:
        lines.append(f"  store {names.use(v)} -> %{a.buffer.name}")
    lines.append("}")
    return "\n".join(lines)


def _space(call: KernelCall) -> str:
    s = call.space
    text = "[" + ", ".join(map(str, s.shape)) + "]"
    if s.order != tuple(range(len(s.shape))):
        text += " order [" + ", ".join(map(str, s.order)) + "]"
    if s.reduced:
        text += " reduce [" + ", ".join(map(str, s.reduced_axes)) + "]"
    if s.k is not None:
        text += f" k {s.k}"
    ext = [str(e) for e in s.extents]
    if s.reduced:
        text += " dims [" + ", ".join(ext[:-1]) + " | " + ext[-1] + "]"
    else:
        text += " dims [" + ", ".join(ext) + "]"
    return text
