"""``facedet export-firmware``: an integer program -> a self-contained C99 bundle.

The bundle (``DIR``)::

    include/facedet.h          the API (facedet_arena_size, facedet_input, facedet_run)
    src/fd_*.c, fd_*.h         the kernels, one per file (facedet/firmware/c/src)
    src/weights.c, weights.h   every integer array of the program as const tables (flash)
    src/model.c                the schedule: one const parameter block per streamed stage
                               (named layers, shapes in comments, arena offsets from the
                               plan) and facedet_run calling the stages in order
    platform/                  Cortex-M4 startup, semihosting harness, host harness, linker script
    Makefile, config.mk        `make host`, `make m4` (RAM budget = config.mk's RAM_KIB)
    model.safetensors          the quantized file it was made from (the --check oracle)
    bundle.json                what was exported, for `facedet firmware run`
    memory_report.json, .md    the arena plan, then (after an m4 build and run) the measured
                               stack, .data, .bss and flash

The schedule follows :func:`facedet.quant.plan.plan_graph` exactly, so the arena
the C code uses is the one ``facedet profile`` reports.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facedet import __version__
from facedet.errors import FacedetError
from facedet.fileutil import sha256_file
from facedet.quant.plan import Plan, PlanError, Stage, plan_graph
from facedet.quant.program import IAdd, ICell, IConv2d, IL2Norm, Program

C_DIR = Path(__file__).resolve().parent / "c"
BUNDLE_FORMAT = "facedet-firmware-bundle"
DEFAULT_RAM_KIB = 128
FLASH_KIB = 256
STACK_MIN = 2048  # bytes of stack the linker must leave (the measured high-water is reported)
PLATFORM_BYTES = 1024  # the rest of the RAM the m4 build needs: handler stack (512), libc .data, harness state
MAX_FACES = 64
FACE_BYTES = 20  # facedet_face_t: five floats
OWNED = ("include", "src", "platform", "build", "Makefile", "config.mk", "model.safetensors", "bundle.json", "memory_report.json", "memory_report.md")


def result_bytes(priors: int, max_faces: int = MAX_FACES) -> int:
    """sizeof(facedet_result_t): raw outputs, the face count, the faces."""
    return priors * 6 + 4 + max_faces * FACE_BYTES


@dataclass
class ExportReport:
    out: Path
    arch: str
    height: int
    width: int
    plan: Plan
    ram_budget: int
    result_bytes: int


def _c_name(name: str) -> str:
    return name.replace(".", "_").replace("-", "_")


def _c_array(ctype: str, name: str, values: np.ndarray, comment: str) -> str:
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    rows = [", ".join(str(v) for v in flat[i : i + 16]) for i in range(0, len(flat), 16)]
    body = ",\n    ".join(rows)
    return f"/* {comment} */\nconst {ctype} {name}[{len(flat)}] = {{\n    {body}\n}};\n"


class _Weights:
    """Collects const tables for weights.c / weights.h."""

    def __init__(self) -> None:
        self.defs: list[str] = []
        self.decls: list[str] = []

    def add(self, ctype: str, name: str, values: np.ndarray, comment: str) -> str:
        self.defs.append(_c_array(ctype, name, values, comment))
        self.decls.append(f"extern const {ctype} {name}[{int(np.asarray(values).size)}];")
        return name


def _folded_bias(op: IConv2d) -> np.ndarray:
    """bias - zp_in * sum(weight[co]) (docs/quantization.md §4.1), checked to fit int32."""
    b = op.bias.astype(np.int64) - op.zp_in * op.weight.reshape(op.out_channels, -1).astype(np.int64).sum(1)
    if np.abs(b).max(initial=0) >= 2**31:
        raise FacedetError(f"{op.name}: folded bias does not fit int32")
    return b


def _conv_init(w: _Weights, op: IConv2d) -> str:
    n = _c_name(op.name)
    shape = "x".join(str(d) for d in op.weight.shape)
    wn = w.add("int8_t", f"{n}_weight", op.weight, f"{op.name}: weight int8 [{shape}] (OHWI)")
    bn = w.add("int32_t", f"{n}_bias", _folded_bias(op), f"{op.name}: bias int32 [{op.out_channels}], zero point folded")
    mn = w.add("int32_t", f"{n}_multiplier", op.multiplier, f"{op.name}: requantization multiplier int32 [{op.out_channels}]")
    sn = w.add("int8_t", f"{n}_shift", op.shift, f"{op.name}: requantization shift [{op.out_channels}]")
    return (
        f"{{ .in_channels = {op.in_channels}, .out_channels = {op.out_channels}, .kernel = {op.kernel}, .stride = {op.stride}, "
        f".padding = {op.padding},\n      .zp_in = {op.zp_in}, .zp_out = {op.zp_out}, .act_min = {op.act_min}, .act_max = {op.act_max},\n"
        f"      .weight = {wn}, .bias = {bn}, .multiplier = {mn}, .shift = {sn} }}"
    )


def _cell_init(w: _Weights, prefix: str, c: ICell) -> str:
    n = _c_name(prefix)
    hidden = c.U.shape[0]
    wt = w.add("int16_t", f"{n}_Wt", c.W.T, f"{prefix}: W transposed, int16 [{hidden}][{c.W.shape[0]}]")
    ut = w.add("int16_t", f"{n}_Ut", c.U.T, f"{prefix}: U transposed, int16 [{hidden}][{hidden}]")
    bg = w.add("int32_t", f"{n}_bias_gate", c.bias_gate, f"{prefix}: gate bias, Q12")
    bu = w.add("int32_t", f"{n}_bias_update", c.bias_update, f"{prefix}: update bias, Q12")
    return (
        f"{{ .in = {c.W.shape[0]}, .hidden = {hidden}, .Wt = {wt}, .Ut = {ut}, .bias_gate = {bg}, .bias_update = {bu},\n"
        f"      .x_shift = {c.x_shift}, .h_shift = {c.h_shift}, .pre_shift = {c.pre_shift}, .zeta = {c.zeta}, .nu = {c.nu}, .zp_x = {c.zp_x} }}"
    )


def _off(stage: Stage, name: str) -> int:
    return stage.buffer(name).offset


def _stage_stem_pool(w: _Weights, stage: Stage, program: Program, plan: Plan, idx: int) -> tuple[str, str]:
    conv, pool = (program.op(n) for n in stage.ops[:2])
    fh, fw, fc = plan.shapes[stage.input]
    ch, cw, cc = plan.shapes[conv.name]
    oh, ow, oc = plan.shapes[pool.name]
    init = f"""/* {stage.name}: frame {fh}x{fw}x{fc} -> {conv.name} conv {conv.kernel}x{conv.kernel}/{conv.stride} -> {ch}x{cw}x{cc}
 *   -> {pool.name} RNNPool patch {pool.patch} stride {pool.stride} (h1 {pool.hidden1}, h2 {pool.hidden2}) -> {oh}x{ow}x{oc} -> replicate pad -> {oh + 1}x{ow + 1}x{oc}
 *   output {'over the frame' if stage.in_place else 'beside the frame'}; live arena bytes {stage.live_bytes} */
static const fd_stem_pool_params stage{idx} = {{
    .H = {fh}, .W = {fw}, .C_in = {fc},
    .stem = {_conv_init(w, conv)},
    .Hc = {ch}, .Wc = {cw}, .Cc = {cc},
    .patch = {pool.patch}, .stride = {pool.stride}, .oh = {oh}, .ow = {ow},
    .rnn1 = {_cell_init(w, pool.name + ".rnn1", pool.rnn1)},
    .rnn2 = {_cell_init(w, pool.name + ".rnn2", pool.rnn2)},
    .out_multiplier = {pool.out_multiplier}, .out_shift = {pool.out_shift}, .zp_out = {pool.zp_out},
    .frame_off = {_off(stage, stage.input)}, .out_off = {_off(stage, stage.output)}, .stem_ring_off = {_off(stage, 'stem_ring')},
    .row_states_off = {_off(stage, 'row_states')}, .col_states_off = {_off(stage, 'col_states')}, .summary_off = {_off(stage, 'summary')},
    .conv_scratch_off = {_off(stage, 'conv_scratch')}
}};
"""
    return init, f"fd_stage_stem_pool(&stage{idx}, arena);"


def _stage_mbconv(w: _Weights, stage: Stage, program: Program, plan: Plan, idx: int) -> tuple[str, str]:
    ops = {n.rsplit(".", 1)[-1]: program.op(n) for n in stage.ops}
    dw, proj = ops["depthwise"], ops["project"]
    h, wd, cin = plan.shapes[stage.input]
    ho, wo, cout = plan.shapes[stage.output]
    expand = ops.get("expand")
    add: IAdd | None = ops.get("add")
    none_conv = "{ 0 }"
    add_init = (f"{{ .zp_a = {add.zp_a}, .zp_b = {add.zp_b}, .mult_a = {add.mult_a}, .mult_b = {add.mult_b}, .shift = {add.shift}, .zp_out = {add.zp_out} }}"
                if add else "{ 0 }")
    init = f"""/* {stage.name}: inverted residual {h}x{wd}x{cin} -> expand {dw.in_channels} -> depthwise {dw.kernel}x{dw.kernel}/{dw.stride} -> project {cout}{' + residual' if add else ''} -> {ho}x{wo}x{cout}
 *   output {'in place' if stage.in_place else 'beside the input'}; live arena bytes {stage.live_bytes} */
static const fd_mbconv_params stage{idx} = {{
    .H = {h}, .W = {wd}, .C_in = {cin}, .H_out = {ho}, .W_out = {wo}, .C_out = {cout}, .hidden = {dw.in_channels},
    .has_expand = {int(expand is not None)}, .has_add = {int(add is not None)},
    .expand = {_conv_init(w, expand) if expand else none_conv},
    .depthwise = {_conv_init(w, dw)},
    .project = {_conv_init(w, proj)},
    .add = {add_init},
    .in_off = {_off(stage, stage.input)}, .out_off = {_off(stage, stage.output)}, .ring_off = {_off(stage, 'expand_ring')},
    .vec_off = {_off(stage, 'dw_vector')}, .scratch_off = {_off(stage, 'scratch')}
}};
"""
    return init, f"fd_stage_mbconv(&stage{idx}, arena);"


def _stage_head(w: _Weights, stage: Stage, program: Program, plan: Plan, idx: int, prior0: int) -> tuple[str, str, int]:
    ops = {n.rsplit(".", 1)[-1]: program.op(n) for n in stage.ops}
    conf, loc = ops["conf"], ops["loc"]
    norm: IL2Norm | None = ops.get("norm")
    h, wd, c = plan.shapes[stage.input]
    cells = h * wd
    if norm is not None:
        gain = w.add("int32_t", f"{_c_name(norm.name)}_gain", norm.gain, f"{norm.name}: L2Norm gain int32 [{c}]")
        norm_init = f"{{ .channels = {c}, .zp_in = {norm.zp_in}, .zp_out = {norm.zp_out}, .shift = {norm.shift}, .gain = {gain} }}"
    else:
        norm_init = "{ 0 }"
    init = f"""/* {stage.name}: source {h}x{wd}x{c}{' -> L2Norm' if norm else ''} -> conf {conf.kernel}x{conf.kernel} ({conf.out_channels}{', max-out' if 'maxout' in ops else ''}) and loc {loc.kernel}x{loc.kernel} (4)
 *   priors {prior0} .. {prior0 + cells - 1}; live arena bytes {stage.live_bytes} */
static const fd_head_params stage{idx} = {{
    .H = {h}, .W = {wd}, .C = {c}, .has_norm = {int(norm is not None)}, .maxout = {int('maxout' in ops)},
    .norm = {norm_init},
    .conf = {_conv_init(w, conf)},
    .loc = {_conv_init(w, loc)},
    .in_off = {_off(stage, stage.input)}, .ring_off = {_off(stage, 'l2norm_ring') if norm else 0}, .patch_off = {_off(stage, 'patch')}
}};
"""
    call = f"fd_stage_head(&stage{idx}, arena, &result->conf[{prior0}][0], &result->loc[{prior0}][0]);"
    return init, call, prior0 + cells


def generate_sources(program: Program, plan: Plan, spec, max_faces: int, score_threshold: float, nms_threshold: float) -> dict[str, str]:
    """``{relative path: text}`` of the generated files: weights.c/.h, model.c, facedet.h."""
    w = _Weights()
    inits, calls = [], []
    prior = 0
    stage_names = []
    for idx, stage in enumerate(plan.stages):
        stage_names.append(f"{stage.name} ({stage.kind})")
        if stage.kind == "stem_pool":
            init, call = _stage_stem_pool(w, stage, program, plan, idx)
        elif stage.kind == "mbconv":
            init, call = _stage_mbconv(w, stage, program, plan, idx)
        elif stage.kind == "head":
            init, call, prior = _stage_head(w, stage, program, plan, idx, prior)
        elif stage.kind == "postprocess":
            init, call = _stage_post(stage, program, plan, spec, idx)
        else:
            raise FacedetError(f"no C stage for '{stage.kind}'")
        inits.append(init)
        calls.append((stage, call))
    if prior != plan.priors:
        raise FacedetError(f"internal: heads cover {prior} priors, the plan {plan.priors}")

    body = []
    for idx, (stage, call) in enumerate(calls):
        body.append(f"    FD_MARK({idx});  /* {stage.name} */")
        if stage.kind == "postprocess":
            body.append(f"    result->num_faces = fd_postprocess_f32(&stage{idx}, &result->conf[0][0], &result->loc[0][0], cfg.score_threshold,")
            body.append(f"                                           cfg.nms_threshold, cfg.max_faces, arena + {stage.buffer('candidates').offset}, &result->faces[0].x1);")
        else:
            body.append(f"    {call}")
    body.append(f"    FD_MARK({len(calls)});")
    header_guard = "\n".join(w.decls)
    weights_h = f"/* Generated by facedet export-firmware: the integer program's tables (const, flash). */\n#ifndef FD_WEIGHTS_H\n#define FD_WEIGHTS_H\n\n#include <stdint.h>\n\n{header_guard}\n\n#endif\n"
    weights_c = "/* Generated by facedet export-firmware from the quantized model (docs/quantization.md). */\n#include \"weights.h\"\n\n" + "\n".join(w.defs)
    model_c = f"""/*
 * Generated by facedet export-firmware: the schedule of the integer program, {plan.height}x{plan.width} input.
 * One const parameter block per streamed stage (facedet/quant/plan.py), then facedet_run.
 * Arena: {plan.arena_bytes} bytes, peak at {plan.peak_stage.name}.
 */
#include <stdint.h>

#include "facedet.h"
#include "fd_kernels.h"
#include "fd_postprocess.h"
#include "weights.h"

#ifdef FACEDET_PROFILE
#define FD_MARK(i) facedet_profile_mark(i)
#else
#define FD_MARK(i) ((void)0)
#endif

{chr(10).join(inits)}
size_t facedet_arena_size(void) {{ return FACEDET_ARENA_SIZE; }}

int8_t *facedet_input(void *arena) {{ return (int8_t *)arena + {plan.stages[0].buffer(plan.stages[0].input).offset}; }}

int facedet_run(void *arena_ptr, size_t arena_size, const facedet_config_t *config, facedet_result_t *result) {{
    int8_t *arena = (int8_t *)arena_ptr;
    facedet_config_t cfg = {{ FACEDET_DEFAULT_SCORE_THRESHOLD, FACEDET_DEFAULT_NMS_THRESHOLD, FACEDET_MAX_FACES }};
    if (arena_ptr == NULL || result == NULL || ((uintptr_t)arena_ptr & 3u) != 0u) return FACEDET_ERR_ARGUMENT;
    if (arena_size < FACEDET_ARENA_SIZE) return FACEDET_ERR_ARENA;
    if (config != NULL) {{
        cfg = *config;
        if (!(cfg.score_threshold >= 0.0f && cfg.score_threshold <= 1.0f) || !(cfg.nms_threshold >= 0.0f && cfg.nms_threshold <= 1.0f) ||
            cfg.max_faces < 0 || cfg.max_faces > FACEDET_MAX_FACES)
            return FACEDET_ERR_ARGUMENT;
    }}
{chr(10).join(body)}
    return FACEDET_OK;
}}
"""
    template = (C_DIR / "include" / "facedet.h.in").read_text()
    values = {
        "MODEL": f"{program.arch} ({', '.join(stage_names)})",
        "INPUT_H": str(plan.height), "INPUT_W": str(plan.width), "INPUT_C": str(program.in_channels),
        "PRIORS": str(plan.priors), "MAX_FACES": str(max_faces), "ARENA": str(plan.arena_bytes), "STAGES": str(len(calls)),
        "THRESHOLD": repr(float(score_threshold)), "NMS": repr(float(nms_threshold)),
    }
    for k, v in values.items():
        template = template.replace(f"@{k}@", v)
    return {"src/weights.c": weights_c, "src/weights.h": weights_h, "src/model.c": model_c, "include/facedet.h": template}


def _stage_post(stage: Stage, program: Program, plan: Plan, spec, idx: int) -> tuple[str, str]:
    rows = []
    for (conf, loc), step, anchor in zip(program.heads, spec.steps, spec.anchors):
        fh, fw, _ = plan.shapes[conf]
        qc, ql = program.qparams[conf], program.qparams[loc]
        rows.append(
            f"    {{ .fh = {fh}, .fw = {fw}, .step = {float(step)!r}f, .anchor = {float(anchor)!r}f, .conf_scale = {_f32(qc.scale)}, "
            f".loc_scale = {_f32(ql.scale)}, .conf_zp = {qc.zero_point}, .loc_zp = {ql.zero_point} }}"
        )
    init = f"""/* postprocess: dequantize, softmax, threshold, decode, NMS ({plan.priors} priors; candidates in the arena) */
static const fd_head_decode stage{idx}_heads[{len(rows)}] = {{
{(',' + chr(10)).join(rows)}
}};
static const fd_decode_params stage{idx} = {{ .n_heads = {len(rows)}, .heads = stage{idx}_heads, .var_xy = {_f32(spec.variances[0])}, .var_wh = {_f32(spec.variances[1])} }};
"""
    return init, ""


def _f32(x: float) -> str:
    """A float32 literal that reads back as exactly np.float32(x)."""
    return f"{float(np.float32(x)):.9g}f"


def check_program(program: Program, graph) -> None:
    """The program must be the lowering of the architecture's graph, op for op."""
    names = [op.name for op in graph.ops]
    if [op.name for op in program.ops] != names:
        raise FacedetError(f"the quantized program does not match architecture '{program.arch}' op for op")


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise FacedetError(f"{out} exists and is not a directory")
        if any(out.iterdir()):
            if not force:
                raise FacedetError(f"{out} already exists (use --force to replace the bundle)")
            if not (out / "bundle.json").is_file():
                raise FacedetError(f"{out} is not a facedet firmware bundle; refusing to replace it (choose a new or empty folder)")
            for name in OWNED:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def export_firmware(
    weights: Path | None,
    out: Path,
    *,
    ram_kib: int = DEFAULT_RAM_KIB,
    force: bool = False,
    max_faces: int = MAX_FACES,
    score_threshold: float = 0.8,
    nms_threshold: float = 0.3,
) -> ExportReport:
    """Write the bundle for the quantized model ``weights`` (default: the shipped one) to ``out``."""
    from facedet.detector import build_model
    from facedet.firmware.report import write_memory_report
    from facedet.quant.qfile import load_program
    from facedet.weights import default_weights_path, is_quantized, read_metadata

    if weights is None:
        weights = default_weights_path("m4", quantized=True)
        if weights is None:
            raise FacedetError("no quantized model is installed; pass --weights FILE (make one with 'facedet quantize')")
    weights = Path(weights)
    meta = read_metadata(weights)
    if not is_quantized(meta):
        raise FacedetError(f"{weights} holds float weights; export-firmware needs a quantized model (make one with 'facedet quantize')")
    program, meta = load_program(weights, meta)
    model = build_model(program.arch)
    check_program(program, model.structure)
    height, width = model.spec.input_size
    try:
        plan = plan_graph(model.structure, height, width)
    except PlanError as exc:
        raise FacedetError(f"cannot export '{program.arch}' to firmware: {exc}") from None
    res = result_bytes(plan.priors, max_faces)
    budget = ram_kib * 1024
    need = plan.arena_bytes + res + STACK_MIN + PLATFORM_BYTES
    if need > budget:
        raise FacedetError(
            f"--ram-kib {ram_kib} ({budget:,} B) is below what the firmware needs: the planned arena peaks at "
            f"{plan.arena_bytes:,} B at {plan.peak_stage.name}, plus {res:,} B of results, {STACK_MIN:,} B of stack "
            f"and {PLATFORM_BYTES:,} B for the platform ({need:,} B)"
        )
    _prepare_out(out, force)
    files = generate_sources(program, plan, model.spec, max_faces, score_threshold, nms_threshold)
    for sub in ("src", "include", "platform"):
        (out / sub).mkdir(exist_ok=True)
    for f in sorted((C_DIR / "src").iterdir()):
        if f.suffix in (".c", ".h"):
            shutil.copy2(f, out / "src" / f.name)
    for f in sorted((C_DIR / "platform").iterdir()):
        if f.is_file():
            shutil.copy2(f, out / "platform" / f.name)
    shutil.copy2(C_DIR / "Makefile", out / "Makefile")
    for rel, text in files.items():
        (out / rel).write_text(text)
    (out / "config.mk").write_text(f"# written by facedet export-firmware\nRAM_KIB = {ram_kib}\nFLASH_KIB = {FLASH_KIB}\nSTACK_MIN = {STACK_MIN}\n")
    shutil.copy2(weights, out / "model.safetensors")
    bundle = {
        "format": BUNDLE_FORMAT,
        "version": 1,
        "facedet_version": __version__,
        "arch": program.arch,
        "input": [height, width, program.in_channels],
        "priors": plan.priors,
        "max_faces": max_faces,
        "score_threshold": score_threshold,
        "nms_threshold": nms_threshold,
        "ram_kib": ram_kib,
        "source": weights.name,
        "source_sha256": sha256_file(weights),
        "qparams": {k: v.to_json() for k, v in program.qparams.items()},
        "heads": [list(h) for h in program.heads],
    }
    (out / "bundle.json").write_text(json.dumps(bundle, indent=2) + "\n")
    report = ExportReport(out, program.arch, height, width, plan, budget, res)
    write_memory_report(out, report)
    return report
