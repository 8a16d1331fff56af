"""The streamed memory plan of the integer program: one arena, every buffer placed.

The firmware (``facedet export-firmware``) runs the program in *stages*, each
streaming row by row so that no large intermediate tensor ever exists whole,
and ``facedet profile`` reports the same plan; both call :func:`plan_graph`,
so the figure a user reads is the arena the C code gets.

Stages (the ops of each are consecutive in the graph):

``stem_pool``
    stem convolution + RNNPool + replicate pad.  The frame is resident at the
    start of the arena.  Stem rows are made into a ring of ``patch`` rows;
    RNN1 runs along each new stem row once per patch column (row-state ring:
    ``patch`` rows x patch columns x hidden1, int16) and down each image
    column once per patch row (column-state ring: ``patch`` x hidden1) --
    a row of a patch is also a row of the patch ``stride`` below, and a column
    one of the patch to its right -- then RNN2 summarises every patch.  Output
    row ``r`` is written over frame rows that no stem row needs any more.
``mbconv``
    expand 1x1 -> depthwise -> project 1x1 (-> residual add).  Expanded input
    rows live in a ring of ``kernel`` rows; each output pixel makes its
    depthwise vector and immediately all projected channels (an int16 scratch
    holds the vector being multiplied).  The output is written over input rows
    no longer needed when that is safe.
``head``
    L2Norm -> confidence and box convolutions (-> max-out).  L2Norm output
    rows live in a ring of ``kernel`` rows; each output pixel gathers its
    ``k x k x C`` neighbourhood into an int16 buffer for the dot products.
    The raw head outputs go to the caller's result, not the arena.
``postprocess``
    score threshold, box decoding and NMS on the raw outputs, with candidate
    lists in the (by then free) arena.

Every buffer starts on a 4-byte boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from facedet import graph as g

ALIGN = 4
POST_CANDIDATE_BYTES = 24  # per prior: int32 index, float32 score and box (fd_postprocess_f32.c)


class PlanError(ValueError):
    """The graph has a part no streaming stage implements."""


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    """One region of the arena: ``[offset, offset + size)``."""

    name: str
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass
class Stage:
    """One streamed stage and every arena buffer live while it runs."""

    name: str
    kind: str
    ops: list[str]
    input: str
    output: str | None
    buffers: list[Buffer] = field(default_factory=list)
    in_place: bool = False

    @property
    def live_bytes(self) -> int:
        return max((b.end for b in self.buffers), default=0)

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)


@dataclass
class Plan:
    """Stages in order, the arena size (their largest extent) and where it peaks."""

    height: int
    width: int
    stages: list[Stage]
    shapes: dict
    result_bytes: int  # raw int8 head outputs (in the caller's result, not the arena)
    priors: int

    @property
    def arena_bytes(self) -> int:
        return _align(max(s.live_bytes for s in self.stages))

    @property
    def peak_stage(self) -> Stage:
        return max(self.stages, key=lambda s: s.live_bytes)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


def _bytes(shape) -> int:
    return shape[0] * shape[1] * shape[2]


def stem_pool_rows_ok(frame_shape, conv: g.Conv2d, pool: g.RNNPool, pool_shape, out_row_bytes: int) -> bool:
    """Whether RNNPool output row ``r`` may overwrite the frame from its start.

    After patch row ``r`` the next stem row to make is ``S*r + P``, which reads
    frame rows from ``(S*r + P)*s_c - p_c`` on; output rows ``0..r`` end at
    ``(r+1) * out_row_bytes``.
    """
    fh, fw, fc = frame_shape
    oh = pool_shape[0]
    for r in range(oh):
        next_stem = pool.stride * r + pool.patch
        first_needed = max(0, next_stem * conv.stride - conv.padding)
        if (r + 1) * out_row_bytes > first_needed * fw * fc and first_needed < fh:
            return False
    return True


def mbconv_rows_ok(in_shape, out_shape, k: int, stride: int, pad: int, residual: bool) -> bool:
    """Whether output row ``y`` may overwrite the input from its start.

    Before output row ``y``, input rows up to ``y*s - p + k - 1`` are expanded
    into the ring; after it, the input rows still read are the unexpanded ones
    and (with a residual) row ``y + 1``.  A residual block writes each pixel
    over the same input pixel after reading it, which needs equal row sizes.
    """
    h, w, cin = in_shape
    oh, ow, cout = out_shape
    ri, ro = w * cin, ow * cout
    if residual and ri != ro:
        return False
    for y in range(oh):
        needed = min(y * stride - pad + k, h)
        if residual:
            needed = min(needed, y + 1)
        if needed < h and (y + 1) * ro > needed * ri:
            return False
    return True


def _place_after(buffers: list[Buffer], name: str, size: int, base: int) -> Buffer:
    b = Buffer(name, _align(base), size)
    buffers.append(b)
    return b


def plan_graph(graph: g.Graph, height: int, width: int) -> Plan:
    """The streamed arena plan of ``graph`` at an input of ``height x width``.

    Raises:
        PlanError: for graph parts no streaming stage implements (two
            convolutions before RNNPool, head towers, ...).
    """
    shapes = graph.shapes(height, width)
    if shapes is None:
        raise PlanError(f"input {height}x{width} is too small for this model")
    ops = list(graph.ops)
    consumers = graph.consumers()
    stages: list[Stage] = []
    cur = graph.input
    cur_buf = Buffer(graph.input, 0, _bytes(shapes[graph.input]))
    i = 0

    def ops_of(prefix: str) -> list[g.Op]:
        return [o for o in ops if o.block == prefix]

    while i < len(ops):
        op = ops[i]
        block = op.block
        if block.startswith("heads."):
            head_ops = ops_of(block)
            stages.append(_head_stage(block, head_ops, cur, cur_buf, shapes))
            i += len(head_ops)
            continue
        if isinstance(op, g.Conv2d) and i + 2 < len(ops) and isinstance(ops[i + 1], g.RNNPool) and isinstance(ops[i + 2], g.ReplicatePad) \
                and op.groups == 1 and consumers[op.output] == [ops[i + 1]] and op.inputs == [cur]:
            conv, pool, pad = ops[i], ops[i + 1], ops[i + 2]
            stage, cur_buf = _stem_pool_stage(conv, pool, pad, cur, cur_buf, shapes)
            stages.append(stage)
            cur = pad.output
            i += 3
            continue
        mb = _mbconv_ops(ops, i, cur)
        if mb is not None:
            stage, cur_buf = _mbconv_stage(block, mb, cur, cur_buf, shapes)
            stages.append(stage)
            cur = mb[-1].output
            i += len(mb)
            continue
        raise PlanError(f"no streaming stage for '{op.name}' ({op.kind}); the firmware plan covers a stem convolution + RNNPool, inverted-residual blocks and heads without towers")

    priors = sum(shapes[h.conf][0] * shapes[h.conf][1] for h in graph.heads)
    result = priors * 6
    post = Stage("postprocess", "postprocess", [], cur, None)
    _place_after(post.buffers, "candidates", priors * POST_CANDIDATE_BYTES, 0)
    stages.append(post)
    return Plan(height, width, stages, shapes, result, priors)


def _stem_pool_stage(conv: g.Conv2d, pool: g.RNNPool, pad: g.ReplicatePad, cur: str, cur_buf: Buffer, shapes):
    fshape = shapes[cur]
    cshape = shapes[conv.output]
    pshape = shapes[pool.output]
    oshape = shapes[pad.output]
    out_size = _bytes(oshape)
    stage = Stage(f"{conv.block}-{pool.block.rsplit('.', 1)[-1]}", "stem_pool", [conv.name, pool.name, pad.name], cur, pad.output)
    stage.buffers.append(cur_buf)
    row_bytes = oshape[1] * oshape[2]
    if out_size <= cur_buf.size and stem_pool_rows_ok(fshape, conv, pool, pshape, row_bytes):
        out = Buffer(pad.output, cur_buf.offset, out_size)
        stage.in_place = True
    else:
        out = Buffer(pad.output, _align(cur_buf.end), out_size)
    stage.buffers.append(out)
    top = max(cur_buf.end, out.end)
    ring = _place_after(stage.buffers, "stem_ring", pool.patch * cshape[1] * cshape[2], top)
    rows = _place_after(stage.buffers, "row_states", pool.patch * pshape[1] * pool.hidden1 * 2, ring.end)
    cols = _place_after(stage.buffers, "col_states", pool.patch * pool.hidden1 * 2, rows.end)
    summary = _place_after(stage.buffers, "summary", 4 * pool.hidden2 * 2, cols.end)
    _place_after(stage.buffers, "conv_scratch", conv.kernel * conv.kernel * conv.in_channels * 2, summary.end)
    return stage, out


def _mbconv_ops(ops: list[g.Op], i: int, cur: str) -> list[g.Op] | None:
    """The ops of one inverted-residual block starting at ``i`` (expand?, depthwise, project, add?)."""
    block = ops[i].block
    part = [o for o in ops[i:] if o.block == block]
    names = [o.name.rsplit(".", 1)[-1] for o in part]
    if names not in (["expand", "depthwise", "project"], ["expand", "depthwise", "project", "add"], ["depthwise", "project"], ["depthwise", "project", "add"]):
        return None
    if part[0].inputs != [cur]:
        return None
    return part


def _mbconv_stage(block: str, mb: list[g.Op], cur: str, cur_buf: Buffer, shapes):
    by = {o.name.rsplit(".", 1)[-1]: o for o in mb}
    dw: g.Conv2d = by["depthwise"]
    in_shape = shapes[cur]
    out_shape = shapes[mb[-1].output]
    hidden = dw.in_channels
    residual = "add" in by
    stage = Stage(block, "mbconv", [o.name for o in mb], cur, mb[-1].output)
    stage.buffers.append(cur_buf)
    out_size = _bytes(out_shape)
    if out_size <= cur_buf.size and mbconv_rows_ok(in_shape, out_shape, dw.kernel, dw.stride, dw.padding, residual):
        out = Buffer(mb[-1].output, cur_buf.offset, out_size)
        stage.in_place = True
    else:
        out = Buffer(mb[-1].output, _align(cur_buf.end), out_size)
    stage.buffers.append(out)
    top = max(cur_buf.end, out.end)
    ring = _place_after(stage.buffers, "expand_ring", dw.kernel * in_shape[1] * hidden, top)
    vec = _place_after(stage.buffers, "dw_vector", hidden, ring.end)
    _place_after(stage.buffers, "scratch", 2 * max(in_shape[2], hidden), vec.end)
    return stage, out


def _head_stage(block: str, head_ops: list[g.Op], cur: str, cur_buf: Buffer, shapes) -> Stage:
    by = {o.name.rsplit(".", 1)[-1]: o for o in head_ops}
    if "conf" not in by or "loc" not in by or any(k.endswith("_tower") for k in by):
        raise PlanError(f"no streaming stage for head '{block}' (towers are not supported)")
    conf: g.Conv2d = by["conf"]
    if conf.stride != 1 or by["loc"].kernel != conf.kernel:
        raise PlanError(f"no streaming stage for head '{block}' (strided or mixed kernels)")
    src = shapes[cur]
    stage = Stage(block, "head", [o.name for o in head_ops], cur, None)
    stage.buffers.append(cur_buf)
    top = cur_buf.end
    if "norm" in by:
        ring = _place_after(stage.buffers, "l2norm_ring", conf.kernel * src[1] * src[2], top)
        top = ring.end
    _place_after(stage.buffers, "patch", conf.kernel * conf.kernel * src[2] * 2, top)
    return stage


def format_plan(plan: Plan) -> list[str]:
    """Per-stage table lines: live arena bytes and the buffers behind them."""
    lines = [f"{'stage':<18} {'kind':<11} {'live bytes':>10}  buffers (offset+size)"]
    for s in plan.stages:
        bufs = ", ".join(f"{b.name} {b.offset}+{b.size}" for b in s.buffers)
        lines.append(f"{s.name:<18} {s.kind:<11} {s.live_bytes:>10,}  {bufs}{'  (output in place)' if s.in_place else ''}")
    return lines
