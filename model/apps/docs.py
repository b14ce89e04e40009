"""The README's and docs/gpu.md's generated tables and ``docs/outputs.md``, from the tick plan
and the column registry.

    python -m weishang.model.apps.docs           # rewrite the generated sections and docs/outputs.md
    python -m weishang.model.apps.docs --check   # exit 1 when they are out of date (the tests run this)

A generated section sits between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME
-->``; everything else in those files is written by hand.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from ..columns import REGISTRY, Column, Reduction
from ..commerce import TICK_PLAN
from ..plan import markdown_table, syncs_table

ROOT = Path(__file__).resolve().parents[2]
TABLE_FILES = {"ticks": "`ticks.parquet`", "merchants": "`merchants.parquet`", "cascades": "`cascades.parquet`",
               "risk_curve": "`risk_curve.parquet`",
               "transactions": "`transactions/part-TICK.parquet`", "summary": "`manifest.json` `summary`"}
TABLE_ROWS = {"ticks": "one per tick", "merchants": "tick x merchant", "cascades": "one per post",
              "risk_curve": "tick x scorer x class x false-positive target",
              "transactions": "one per scored payment (opt-in: `output.transactions`)",
              "summary": "one figure each, per run"}


def _groups(columns: tuple[Column, ...]) -> list[tuple[str, list[Column]]]:
    """Columns in order, a family's members under one name (``exposures_l{1,2,3}``)."""
    groups: list[tuple[str, list[Column]]] = []
    seen: dict[tuple[str, str], list[Column]] = {}
    for c in columns:
        key = (c.family, c.family_meaning)
        if c.family and key in seen:
            seen[key].append(c)
            continue
        members = [c]
        groups.append((c.family or c.name, members))
        if c.family:
            seen[key] = members
    named = []
    for key, members in groups:
        if len(members) == 1:
            named.append((members[0].name, members))
            continue
        prefix, _, suffix = key.partition("{x}")
        values = [m.name[len(prefix):len(m.name) - len(suffix) or None] for m in members]
        named.append((f"{prefix}{{{','.join(values)}}}{suffix}", members))
    return named


#: a table with more column groups than this is summarised in the README (listed in docs/outputs.md)
LISTED_COLUMNS = 8


def column_overview() -> str:
    """The README's table of tables: each table's columns, families folded (the run summary's
    figures are in docs/outputs.md)."""
    lines = ["| table | rows | columns |", "|---|---|---|"]
    for table, columns in REGISTRY.items():
        if table == "summary":
            continue
        groups = _groups(columns)
        if len(groups) > LISTED_COLUMNS:  # a long table: its groups of figures, the columns in docs/outputs.md
            names = (f"{len(columns)} columns ([`docs/outputs.md`](docs/outputs.md#{table})): "
                     + ", ".join(f"`{name}`" for name, _ in groups[:LISTED_COLUMNS]) + ", ...")
        else:
            names = ", ".join(f"`{name}`" for name, _ in groups)
        lines.append(f"| {TABLE_FILES[table]} | {TABLE_ROWS[table]} | {names} |")
    return "\n".join(lines)


def _reduction(c: Column) -> str:
    if isinstance(c.reduction, Reduction):
        return type(c.reduction).__name__.lower() + (f": {c.reduction.how}" if hasattr(c.reduction, "how") else "")
    return c.reduction


def outputs_reference() -> str:
    """``docs/outputs.md``: every column with its type, unit, reduction and meaning."""
    lines = ["# Output columns", "",
             "Generated from the column registry (`model/columns.py`, which gathers each mechanism's `ticks` columns) by `python -m weishang.model.apps.docs`; do not "
             "edit by hand. Every Parquet field carries its `unit` and `meaning` as field metadata. Null means "
             "undefined (a ratio over nothing, a merchant still in business has no exit reason); *reduction* says "
             "how a run's ticks add up to one figure (`sum`, `last`, `mean`, `none`, or the summary's formula).", ""]
    for table, columns in REGISTRY.items():
        lines += [f"## {table}", "", f"{TABLE_FILES[table]}: {TABLE_ROWS[table]}.", "",
                  "| column | type | unit | reduction | nullable | meaning |", "|---|---|---|---|---|---|"]
        for name, members in _groups(columns):
            c = members[0]
            meaning = c.meaning if len(members) == 1 else c.family_meaning
            lines.append(f"| `{name}` | {c.dtype} | {c.unit} | {_reduction(c)} | {'yes' if c.nullable else ''} | "
                         f"{meaning} |")
        lines.append("")
    return "\n".join(lines)


#: README section name -> its generator
SECTIONS: dict[str, Callable[[], str]] = {"tick-plan": lambda: markdown_table(TICK_PLAN),
                                          "columns": column_overview}
#: docs/gpu.md section name -> its generator
GPU_SECTIONS: dict[str, Callable[[], str]] = {"device-syncs": lambda: syncs_table(TICK_PLAN)}


def render_readme(text: str, sections: dict[str, Callable[[], str]] = SECTIONS, name: str = "README.md") -> str:
    """``text`` with every generated section replaced by its generator's output."""
    for section, make in sections.items():
        pattern = re.compile(rf"(<!-- generated: {section} -->\n)(?:.*?\n)?(<!-- end generated: {section} -->)",
                             re.S)
        if not pattern.search(text):
            raise ValueError(f"{name} has no generated section {section!r}")
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    readme, outputs, gpu = ROOT / "README.md", ROOT / "docs" / "outputs.md", ROOT / "docs" / "gpu.md"
    wanted = {readme: render_readme(readme.read_text(encoding="utf-8")), outputs: outputs_reference(),
              gpu: render_readme(gpu.read_text(encoding="utf-8"), GPU_SECTIONS, "docs/gpu.md")}
    stale = [path for path, text in wanted.items() if not path.is_file() or path.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python -m weishang.model.apps.docs", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
