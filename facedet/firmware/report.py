"""memory_report.json / memory_report.md of a firmware bundle.

Written at export from the plan (arena, per-stage table); the measured figures
-- stack high-water mark (stack painting on the emulated chip), ``.data``,
``.bss`` and flash (``.text`` + ``.rodata`` + ``.data``'s load image) -- are
filled in after the first ``m4`` build and run (``facedet firmware run``, or
export itself when the toolchain is installed).

``ram_bytes`` is the main stack's high-water mark + ``.data`` + ``.bss`` + the
handler stack (``.stack_msp``); the harness keeps the arena and the result in
``.bss``, so it is the whole RAM the detector used.  ``flash_bytes`` is
``.vectors`` + ``.text`` + ``.rodata`` + ``.ARM.exidx`` + ``.data`` (its load
image).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facedet.cli_common import atomic_write_text


def _plan_part(report) -> dict[str, Any]:
    plan = report.plan
    return {
        "arch": report.arch,
        "input": [report.height, report.width],
        "ram_budget_bytes": report.ram_budget,
        "arena_bytes": plan.arena_bytes,
        "arena_peak_stage": plan.peak_stage.name,
        "result_bytes": report.result_bytes,
        "stages": [
            {"name": s.name, "kind": s.kind, "live_bytes": s.live_bytes, "in_place": s.in_place,
             "buffers": [{"name": b.name, "offset": b.offset, "size": b.size} for b in s.buffers]}
            for s in plan.stages
        ],
        "stack_bytes": None,
        "ram_bytes": None,
        "flash_bytes": None,
        "sections": None,
    }


def write_memory_report(out: Path, report) -> dict[str, Any]:
    data = _plan_part(report)
    _write(out, data)
    return data


def update_memory_report(out: Path, sections: dict[str, int], stack_bytes: int) -> dict[str, Any]:
    """Fill in the measured figures (keeps the larger stack high-water mark of several runs)."""
    path = out / "memory_report.json"
    data = json.loads(path.read_text())
    previous = data.get("stack_bytes") or 0
    data["stack_bytes"] = max(int(stack_bytes), int(previous))
    data["sections"] = {k: int(v) for k, v in sections.items()}
    data["ram_bytes"] = data["stack_bytes"] + sum(int(sections.get(k, 0)) for k in (".data", ".bss", ".stack_msp"))
    data["flash_bytes"] = sum(int(sections.get(k, 0)) for k in (".vectors", ".text", ".rodata", ".ARM.exidx", ".data"))
    _write(out, data)
    return data


def _write(out: Path, data: dict[str, Any]) -> None:
    atomic_write_text(out / "memory_report.json", json.dumps(data, indent=2) + "\n")
    atomic_write_text(out / "memory_report.md", format_markdown(data))


def _kib(n: int | None) -> str:
    return "not measured yet" if n is None else f"{n:,} B ({n / 1024:.1f} KiB)"


def format_markdown(data: dict[str, Any]) -> str:
    lines = [
        f"# Memory report: {data['arch']} at {data['input'][0]}x{data['input'][1]}",
        "",
        "| | bytes |",
        "|---|---|",
        f"| RAM budget (linker script and MPU) | {_kib(data['ram_budget_bytes'])} |",
        f"| arena (frame resident at its start), peak at {data['arena_peak_stage']} | {_kib(data['arena_bytes'])} |",
        f"| result struct (raw head outputs + faces) | {_kib(data['result_bytes'])} |",
        f"| stack high-water mark, measured on the emulated Cortex-M4 | {_kib(data['stack_bytes'])} |",
        f"| RAM used: stack + .data + .bss + handler stack | {_kib(data['ram_bytes'])} |",
        f"| flash: .vectors + .text + .rodata + .ARM.exidx + .data | {_kib(data['flash_bytes'])} |",
        "",
    ]
    if data.get("sections"):
        lines += ["Sections of the m4 build:", "", "| section | bytes |", "|---|---|"]
        lines += [f"| {k} | {v:,} |" for k, v in data["sections"].items()]
        lines.append("")
    lines += ["## Arena per stage", "", "| stage | kind | live bytes | buffers (offset + size) |", "|---|---|---|---|"]
    for s in data["stages"]:
        bufs = ", ".join(f"{b['name']} {b['offset']}+{b['size']}" for b in s["buffers"])
        lines.append(f"| {s['name']} | {s['kind']} | {s['live_bytes']:,} | {bufs}{' (output in place)' if s['in_place'] else ''} |")
    return "\n".join(lines) + "\n"
