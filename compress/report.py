"""Sparsity reports for people and programs: the per-layer table, MACs, and a run's history, as a
terminal table (fits 100 columns), CSV, JSON or Markdown."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from compress.sparsity import STRUCTURED, LayerSparsity, total_sparsity

FORMATS = ("table", "csv", "json", "markdown")
GROUP_TITLES = {group: title.replace(" (%)", "%") for title, group in STRUCTURED.items()}


def shorten(name: str, width: int) -> str:
    """``layer3.2.conv2.weight`` -> ``layer3…conv2.weight``: the middle goes, both ends stay readable."""
    if len(name) <= width:
        return name
    if width <= 1:
        return name[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return f"{name[:head]}…{name[-tail:]}"


def layer_rows(layers: list[LayerSparsity], group: str | None) -> tuple[list[str], list[list[str]]]:
    groups = [group] if group else list(STRUCTURED.values())
    headers = ["Name", "Shape", "NNZ", "Fine%", *[GROUP_TITLES[g] for g in groups]]
    if group:
        headers += ["Std", "Mean", "Abs-Mean"]  # room for them when one structured column is shown
    rows = []
    for layer in layers:
        row = [layer.name, "x".join(map(str, layer.shape)), str(layer.nnz_sparse), f"{layer.fine:.2f}"]
        row += ["-" if layer.structured.get(g) is None else f"{layer.structured[g]:.2f}" for g in groups]
        if group:
            row += [f"{layer.std:.4f}", f"{layer.mean:.4f}", f"{layer.abs_mean:.4f}"]
        rows.append(row)
    dense = sum(layer.nnz_dense for layer in layers)
    sparse = sum(layer.nnz_sparse for layer in layers)
    total = ["Total", f"of {dense}", str(sparse), f"{total_sparsity(layers):.2f}"]
    rows.append(total + [""] * (len(headers) - len(total)))
    return headers, rows


def text_table(headers: list[str], rows: list[list[str]], width: int | None = 100,
               droppable: tuple[str, ...] = ()) -> str:  # fmt: skip
    """Left-aligned first column, right-aligned numbers, fitted to ``width``: columns that hold
    nothing ('-' or empty in every row) go first, then the ``droppable`` ones in order, and only
    then is the first column shortened in the middle (never below 12 characters)."""
    columns = [i for i in range(len(headers)) if i == 0 or any(r[i] not in ("-", "") for r in rows)]
    headers, rows = [headers[i] for i in columns], [[r[i] for i in columns] for r in rows]

    def widths() -> list[int]:
        return [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    for name in droppable:
        if width is None or sum(widths()) + 2 * (len(headers) - 1) <= width or name not in headers:
            continue
        i = headers.index(name)
        headers, rows = headers[:i] + headers[i + 1 :], [r[:i] + r[i + 1 :] for r in rows]
    w = widths()
    if width is not None:
        rest = sum(w[1:]) + 2 * (len(w) - 1)
        w[0] = max(12, min(w[0], width - rest))
    lines = []
    for row in [headers, *rows]:
        cells = [shorten(row[0], w[0]).ljust(w[0])] + [c.rjust(n) for c, n in zip(row[1:], w[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * n for n in w))
    return "\n".join(lines)


def sparsity_table(layers: list[LayerSparsity], width: int | None = 100) -> str:
    """Distiller's per-layer table (Rows / Cols mean what our group names mean), fitted to ``width``,
    and the total sparsity."""
    headers = ["Name", "Shape", "NNZ (dense)", "NNZ (sparse)", *STRUCTURED, "Fine (%)", "Std", "Mean", "Abs-Mean"]
    rows = [[layer.name, "x".join(map(str, layer.shape)), str(layer.nnz_dense), str(layer.nnz_sparse),
             *[_pct(layer.structured[g]) for g in STRUCTURED.values()], _pct(layer.fine), f"{layer.std:.4f}",
             f"{layer.mean:.4f}", f"{layer.abs_mean:.4f}"] for layer in layers]  # fmt: skip
    dense, sparse = sum(layer.nnz_dense for layer in layers), sum(layer.nnz_sparse for layer in layers)
    rows.append(["Total", "", str(dense), str(sparse), *[""] * len(STRUCTURED), _pct(total_sparsity(layers)), "", "",
                 ""])  # fmt: skip
    table = text_table(headers, rows, width, droppable=("Abs-Mean", "Mean", "Std", "NNZ (dense)"))
    return f"{table}\nTotal sparsity: {total_sparsity(layers):.2f}%"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def csv_table(headers: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def layers_csv(layers: list[LayerSparsity]) -> tuple[list[str], list[list[Any]]]:
    """Every measured field, unrounded: for programs."""
    groups = list(STRUCTURED.values())
    headers = ["name", "shape", "nnz_dense", "nnz_sparse", "fine", *groups, "std", "mean", "abs_mean"]
    rows = [
        [layer.name, "x".join(map(str, layer.shape)), layer.nnz_dense, layer.nnz_sparse, layer.fine,
         *["" if layer.structured.get(g) is None else layer.structured[g] for g in groups],
         layer.std, layer.mean, layer.abs_mean]
        for layer in layers
    ]  # fmt: skip
    return headers, rows


def history_rows(history: list[dict[str, Any]], rules: list[str]) -> tuple[list[str], list[list[str]]]:
    """Per epoch: top1, sparsity, each penalty rule's loss and each pruning rule's pruned share (%)."""
    pruners = [k[len("pruned/") :] for k in (history[0] if history else {}) if k.startswith("pruned/")]
    headers = ["epoch", "top1", "sparsity", "filters%", "channels%", *rules, *(f"{p}%" for p in pruners)]
    rows = []
    for h in history:
        row = [str(h["epoch"]), f"{h['top1']:.2f}", f"{h['sparsity']:.2f}"]
        row += [f"{h.get('sparsity/filters', 0.0):.2f}", f"{h.get('sparsity/channels', 0.0):.2f}"]
        row += [f"{h.get(f'loss/{r}', 0.0):.4g}" for r in rules]
        row += [f"{h.get(f'pruned/{p}', 0.0):.2f}" for p in pruners]
        rows.append(row)
    return headers, rows


def mask_rows(scheduler_state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The masks a checkpoint holds: pruning rules' (per rule) and kept regularization masks, each
    with the share of the weight it holds at zero after every step."""
    state = scheduler_state or {}
    rows = []
    for rule, per in sorted(state.get("pruning", {}).get("masks", {}).items()):
        rows += [_mask_row(rule, name, mask) for name, mask in per.items()]
    rows += [_mask_row("keep_mask", name, mask) for name, mask in sorted(state.get("masks", {}).items())]
    return rows


def _mask_row(rule: str, name: str, mask: Any) -> dict[str, Any]:
    zero = int((mask == 0).sum())
    return {"rule": rule, "parameter": name, "shape": "x".join(map(str, mask.shape)),
            "masked": 100.0 * zero / max(mask.numel(), 1)}  # fmt: skip


def _masks_table(masks: list[dict[str, Any]], table) -> str:
    rows = [[m["rule"], m["parameter"], m["shape"], f"{m['masked']:.2f}"] for m in masks]
    return table(["Rule", "Parameter", "Shape", "Masked (%)"], rows)


def render(
    layers: list[LayerSparsity],
    macs: dict[str, int] | None,
    history: list[dict[str, Any]],
    rules: list[str],
    *,
    masks: list[dict[str, Any]] | None = None,
    fmt: str = "table",
    group: str | None = None,
    header: str = "",
    width: int | None = 100,
    what: str = "layers",
) -> str:
    if fmt == "json":
        return json.dumps(
            {
                "layers": [layer.to_dict() for layer in layers],
                "total_sparsity": total_sparsity(layers),
                "macs": macs,
                "masks": masks or [],
                "history": history,
            },
            indent=2,
        )
    if fmt == "csv":  # one table, so that a program can read it: the layers, or the history
        if what == "history":
            return csv_table(list(history[0]), [list(h.values()) for h in history]) if history else ""
        return csv_table(*layers_csv(layers))
    table = markdown_table if fmt == "markdown" else lambda h, r: text_table(h, r, width)
    parts = [header] if header else []
    parts.append(table(*layer_rows(layers, group)))
    parts.append(f"Total sparsity: {total_sparsity(layers):.2f}%")
    if macs:
        ratio = macs["thinned"] / macs["dense"] if macs["dense"] else 1.0
        parts.append(f"MACs per input: {macs['dense']:,} dense, {macs['thinned']:,} after thinning ({ratio:.1%})")
    if masks:
        parts.append("Masks (re-applied after every step):")
        parts.append(_masks_table(masks, table))
    if history:
        parts.append("History:")
        parts.append(table(*history_rows(history, rules)))
    return "\n".join(parts)
