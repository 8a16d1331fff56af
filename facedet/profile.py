"""Static cost model of a detector: parameters, dense MACs, priors, activation memory.

Counting conventions (README.md, "Models", lists the resulting counts and
``tests/test_model.py`` asserts them):

* **Parameters** include batch-norm gamma/beta, L2Norm weights, zeta and nu,
  not batch-norm running statistics.
* **MACs** count convolutions and matrix-vector products only (batch norm,
  activations, L2Norm and element-wise ops are free).  RNNPool is counted
  dense and per patch, as the firmware computes it: ``2 P^2`` RNN1 steps of
  ``k*h1 + h1^2`` and ``4 P`` RNN2 steps of ``h1*h2 + h2^2`` per computed patch.
* **Activation memory, layer by layer.** Layers run one after another and each
  head runs right after the layer it taps.  While a layer runs, its input and
  its output are live, plus the detection outputs (conf + loc) accumulated so
  far, which form the final result.  Intermediate tensors inside a block (the
  expanded MBConv tensor, RNNPool's per-patch state) are streamed and not
  counted, as in the RNNPool paper's RAM figures.  ``peak`` is the maximum of
  the live bytes over all steps, for float32 and for int8 activations.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from facedet.detector import build_model
from facedet.graph import Graph


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def block_macs(graph: Graph, shapes: dict, block: str) -> int:
    """MACs of the ops a block emitted, from the graph (the one source of costs)."""
    return sum(op.macs([shapes[i] for i in op.inputs]) for op in graph.ops if op.block == block)


def profile(arch: str, height: int | None = None, width: int | None = None, program=None) -> dict[str, Any]:
    """Profile ``arch`` at an input of ``height x width`` (default: its nominal size).

    Returns a JSON-ready dict with keys ``arch``, ``input`` ([H, W, C]),
    ``params``, ``macs``, ``priors``, ``layers`` (one dict per layer and head:
    ``name``, ``type``, ``output`` [H, W, C], ``params``, ``macs``,
    ``act_bytes_f32``/``act_bytes_int8`` (input + output of the step) and
    ``live_bytes_f32``/``live_bytes_int8`` (plus the detection outputs held),
    ``peak_bytes_f32``, ``peak_bytes_int8`` and ``peak_layer``; and the
    firmware's streamed int8 plan (:func:`facedet.quant.plan.plan_graph`):
    ``streamed_peak_bytes`` (the arena, frame included),
    ``streamed_peak_layer``, ``streamed_result_bytes`` (raw head outputs,
    held by the caller) and ``streamed_stages`` -- or ``streamed_peak_bytes``
    None and ``streamed_note`` for a model without a streaming plan.
    With an integer ``program`` (a quantized file), ``quantized`` gives its
    parameter bytes.
    """
    model = build_model(arch)
    spec = model.spec
    h = spec.input_size[0] if height is None else height
    w = spec.input_size[1] if width is None else width
    if h <= 0 or w <= 0:
        from facedet.errors import FacedetError

        raise FacedetError(f"input size must be positive, got {h}x{w}")
    if not model.fits(h, w):
        from facedet.errors import FacedetError

        raise FacedetError(f"input {h}x{w} is too small for '{arch}' (minimum {model.min_input_side()}x{model.min_input_side()})")

    rows: list[dict[str, Any]] = []
    held = 0  # elements of detection outputs produced so far
    graph = model.structure
    shapes = graph.shapes(h, w)
    block_out = {}  # block name -> its output tensor
    for op in graph.ops:
        block_out[op.block] = op.output
    heads = {f"heads.{k}": hd for k, hd in enumerate(graph.heads)}

    def elems(shape) -> int:
        return shape[0] * shape[1] * shape[2]

    x = graph.input
    for name, module in model.steps():
        in_elems = elems(shapes[x])
        if name in heads:
            fh, fw, _ = shapes[heads[name].conf]
            out_shape = (fh, fw, 6)
        else:
            out_shape = shapes[block_out[name]]
        step = in_elems + elems(out_shape)
        rows.append({
            "name": name,
            "type": type(module).__name__,
            "output": list(out_shape),
            "params": _params(module),
            "macs": int(block_macs(graph, shapes, name)),
            "act_bytes_f32": 4 * step,
            "act_bytes_int8": step,
            "live_bytes_f32": 4 * (step + held),
            "live_bytes_int8": step + held,
        })
        if name in heads:
            held += elems(out_shape)
        else:
            x = block_out[name]

    peak = max(rows, key=lambda r: r["live_bytes_int8"])
    result = {
        "arch": spec.name,
        "input": [h, w, spec.in_channels],
        "params": _params(model),
        "macs": int(sum(r["macs"] for r in rows)),
        "priors": int(model.priors(h, w).shape[0]),
        "peak_bytes_f32": max(r["live_bytes_f32"] for r in rows),
        "peak_bytes_int8": peak["live_bytes_int8"],
        "peak_layer": peak["name"],
        "layers": rows,
    }
    result.update(_streamed(graph, h, w))
    if program is not None:
        result["quantized"] = _program_bytes(program)
    return result


def _streamed(graph: Graph, h: int, w: int) -> dict[str, Any]:
    from facedet.quant.plan import PlanError, plan_graph

    try:
        plan = plan_graph(graph, h, w)
    except PlanError as exc:
        return {"streamed_peak_bytes": None, "streamed_peak_layer": None, "streamed_note": str(exc)}
    return {
        "streamed_peak_bytes": plan.arena_bytes,
        "streamed_peak_layer": plan.peak_stage.name,
        "streamed_result_bytes": plan.result_bytes,
        "streamed_stages": [{"name": s.name, "kind": s.kind, "live_bytes": s.live_bytes, "buffers": {b.name: [b.offset, b.size] for b in s.buffers}} for s in plan.stages],
    }


def _program_bytes(program) -> dict[str, Any]:
    """Bytes of an integer program's parameters, by integer type, plus the sigmoid/tanh tables."""
    from facedet.quant.arith import SIGMOID_TABLE, TANH_TABLE

    _, arrays = program.to_json_and_arrays()
    by_type: dict[str, int] = {}
    for a in arrays.values():
        by_type[str(a.dtype)] = by_type.get(str(a.dtype), 0) + int(a.nbytes)
    tables = 2 * (len(SIGMOID_TABLE) + len(TANH_TABLE))
    return {"param_bytes": sum(by_type.values()) + tables, "param_bytes_by_type": by_type, "table_bytes": tables, "ops": len(program.ops)}


def format_profile(p: dict[str, Any]) -> str:
    """Human-readable table of :func:`profile` output."""
    h, w, c = p["input"]
    lines = [
        f"arch {p['arch']}  input {h}x{w}x{c}  params {p['params']:,}  MACs {p['macs'] / 1e6:.1f} M  priors {p['priors']:,}",
        "",
        f"{'layer':<12} {'type':<17} {'output':>12} {'params':>9} {'MACs':>12} {'act f32':>11} {'act int8':>10} {'live int8':>10}",
    ]
    for r in p["layers"]:
        oh, ow, oc = r["output"]
        lines.append(
            f"{r['name']:<12} {r['type']:<17} {f'{oh}x{ow}x{oc}':>12} {r['params']:>9,} {r['macs']:>12,} "
            f"{r['act_bytes_f32']:>11,} {r['act_bytes_int8']:>10,} {r['live_bytes_int8']:>10,}"
        )
    lines += [
        "",
        f"peak activation memory (layer by layer, at {p['peak_layer']}): "
        f"{p['peak_bytes_f32']:,} B float32, {p['peak_bytes_int8']:,} B int8 ({p['peak_bytes_int8'] / 1024:.1f} KiB)",
    ]
    if p.get("streamed_peak_bytes") is None:
        lines.append(f"streamed int8 plan: none ({p.get('streamed_note')})")
    else:
        lines += ["", "streamed int8 plan (the firmware's arena; the frame is resident at its start):"]
        lines += [f"  {s['name']:<14} {s['kind']:<11} {s['live_bytes']:>9,} B" for s in p["streamed_stages"]]
        lines.append(
            f"streamed peak: {p['streamed_peak_bytes']:,} B ({p['streamed_peak_bytes'] / 1024:.1f} KiB) at {p['streamed_peak_layer']}; "
            f"raw head outputs {p['streamed_result_bytes']:,} B (held by the caller)"
        )
    if "quantized" in p:
        q = p["quantized"]
        types = ", ".join(f"{k} {v:,} B" for k, v in sorted(q["param_bytes_by_type"].items()))
        lines.append(f"quantized parameters: {q['param_bytes']:,} B ({types}, sigmoid/tanh tables {q['table_bytes']:,} B)")
    return "\n".join(lines)
