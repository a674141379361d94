"""``report.html``: one self-contained page of an evaluation (figures embedded, no links out)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["html_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; } td, th { padding: 0.2rem 0.8rem; border-bottom: 1px solid #eee; }
th { text-align: left; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; }
figure img { max-width: 28rem; border: 1px solid #eee; } figcaption { font-size: 0.85rem; color: #555; max-width: 28rem; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(rows: Mapping[str, Any]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def html_report(title: str, metrics: Mapping[str, Any], settings: Mapping[str, Any], data: Mapping[str, Any],
                folder: Path, figures: Sequence[tuple[str, str]]) -> str:
    """The page: ``metrics``, the model's ``settings``, a ``data`` summary and the PNG
    ``figures`` (``(file name in folder, caption)``) embedded as data URLs."""
    images = []
    for name, caption in figures:
        encoded = base64.b64encode((folder / name).read_bytes()).decode("ascii")
        images.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
                      f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<h2>Metrics</h2>{_table(metrics)}<h2>Figures</h2>{''.join(images) or '<p>none</p>'}"
            f"<h2>Data</h2>{_table(data)}<h2>Model</h2>{_table(settings)}</body></html>\n")
