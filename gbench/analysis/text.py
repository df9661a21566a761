"""Tables and notes for a terminal of 80 columns, and LaTeX that compiles.

* :func:`fit_table`: a table that fits ``width`` columns: columns with one value in every row are taken
  out (and named once below the table), the rest split into several tables of at most ``width``
  characters, each repeating the first ``keep`` columns; ``wide`` gives the one table as it is;
* :func:`wrap_note`: a long note wrapped to ``width``;
* :func:`latex_table`: a booktabs table (``\\toprule``, ``\\midrule``, ``\\bottomrule``) with TeX's
  special characters escaped, ``±``/``δ``/``σ``/``‖`` as math, and numeric columns right-aligned.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Sequence

from tabulate import tabulate

WIDTH = 80
_NUMBER = re.compile(r"^[-+−]?(\d|\.\d)")


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], tablefmt: str) -> str:
    """One table as tabulate draws it (cells as given: no number parsing)."""
    return tabulate([list(r) for r in rows], list(headers), tablefmt=tablefmt, disable_numparse=True)


def _width(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def constant_columns(headers: Sequence[str], rows: Sequence[Sequence[str]], keep: int = 1) -> list[int]:
    """Indices (after the first ``keep``) of columns whose cells are all equal, when there are 2+ rows."""
    if len(rows) < 2:
        return []
    return [j for j in range(keep, len(headers)) if len({r[j] for r in rows}) == 1]


def fit_table(headers: Sequence[str], rows: Sequence[Sequence[str]], tablefmt: str = "github",
              width: int = WIDTH, wide: bool = False, keep: int = 1) -> str:
    """The table within ``width`` columns (see the module doc); ``wide``: as one table."""
    if wide or _width(render(headers, rows, tablefmt)) <= width:
        return render(headers, rows, tablefmt)
    same = constant_columns(headers, rows, keep)
    cols = [j for j in range(len(headers)) if j not in same]
    parts: list[str] = []
    chunk: list[int] = []
    for j in cols[keep:]:
        trial = list(range(keep)) + chunk + [j]
        if chunk and _width(render([headers[k] for k in trial], [[r[k] for k in trial] for r in rows], tablefmt)) > width:
            parts.append(_part(headers, rows, list(range(keep)) + chunk, tablefmt))
            chunk = []
        chunk.append(j)
    if chunk or not parts:
        parts.append(_part(headers, rows, list(range(keep)) + chunk, tablefmt))
    if same:
        parts.append(wrap_note("same in every row: " + "; ".join(f"{headers[j]} {rows[0][j]}" for j in same), width))
    return "\n\n".join(parts)


def _part(headers: Sequence[str], rows: Sequence[Sequence[str]], cols: list[int], tablefmt: str) -> str:
    return render([headers[k] for k in cols], [[r[k] for k in cols] for r in rows], tablefmt)


def wrap_note(text: str, width: int = WIDTH, wide: bool = False, prefix: str = "") -> str:
    """``text`` wrapped to ``width`` (unwrapped when ``wide``); ``prefix`` starts every line (``% `` for LaTeX)."""
    if wide:
        return prefix + text
    return "\n".join(textwrap.wrap(text, width, initial_indent=prefix, subsequent_indent=prefix,
                                   break_on_hyphens=False)) or prefix


# -- LaTeX ------------------------------------------------------------------------------------------------

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_MATH = {"±": r"$\pm$", "δ": r"$\delta$", "σ": r"$\sigma$", "‖": r"$\|$", "−": r"$-$", "≥": r"$\geq$",
             "≤": r"$\leq$", "α": r"$\alpha$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "…": r"\dots{}",
             "×": r"$\times$", "₁": r"$_1$", "₂": r"$_2$"}


def tex(text: str) -> str:
    """``text`` as LaTeX source: special characters escaped, the symbols gbench prints as math."""
    out = []
    for ch in str(text):
        out.append(_TEX_SPECIAL.get(ch) or _TEX_MATH.get(ch) or ch)
    return "".join(out)


def numeric_column(cells: Sequence[str]) -> bool:
    """Whether a column holds numbers (every cell that is not ``-`` starts like one)."""
    shown = [c for c in cells if c not in ("-", "")]
    return bool(shown) and all(_NUMBER.match(c) for c in shown)


def latex_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A booktabs ``tabular``: text columns left-aligned, numeric ones right-aligned."""
    spec = "".join("r" if numeric_column([r[j] for r in rows]) else "l" for j in range(len(headers)))
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(tex(h) for h in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(tex(c) for c in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)
