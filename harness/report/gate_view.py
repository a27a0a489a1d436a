"""The gate's outputs: gate.json, junit.xml, gate.md and the terminal table, and `run_gate` (evaluate, write,
print). Presentation only: the checks, their statuses and the exit code are harness.gate's; this module shows
them and never decides anything.

junit.xml: inconclusive = skipped with the reason, unusable = error, fail = failure. Names and reasons come from
the sweep dir, so every renderer escapes them for its format (XML attributes, Markdown, rich markup).
"""
from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness.decision import OUTCOMES
from harness.fmt import fmt_num
from harness.gate import FAIL, INCONCLUSIVE, PASS, UNUSABLE, evaluate_gate, exit_code
from harness.io import atomic_write_text, printable, write_json
from harness.report import jsonable


def run_gate(sweep_dir: str | Path, config: str | Path | dict, *, adapter: str | None = None,
             out_dir: str | Path | None = None, quiet: bool = False, inconclusive: str | None = None,
             target: float | None = None, against_margin: float | None = None) -> int:
    """Evaluate, print, write SWEEP_DIR/gate/{gate.json,junit.xml,gate.md}; return the exit code."""
    res = evaluate_gate(sweep_dir, config, adapter=adapter, target=target, against_margin=against_margin)
    paths = write_gate_outputs(res, out_dir or Path(sweep_dir) / "gate")
    if not quiet:
        print_table(res)
        print(f"wrote {paths['gate_json']}, {paths['junit_xml']}, {paths['gate_md']}")
    print(summary_line(res))
    return exit_code(res, inconclusive)


def summary_line(res: dict) -> str:
    c = res["counts"]
    return (f"gate {res['status'].upper()}: {c[PASS]}/{res['n_checks']} checks passed"
            + "".join(f", {c[k]} {k}" for k in (FAIL, INCONCLUSIVE, UNUSABLE) if c[k])
            + f" (adapter {printable(res['adapter_name'])}; decision {OUTCOMES[res['decision']['outcome']]})")


def junit_xml(res: dict) -> str:
    suite_name = f"lora-gate.{res['sweep_name']}"
    c = res["counts"]
    attrs = {"tests": str(res["n_checks"]), "failures": str(c[FAIL]), "errors": str(c[UNUSABLE]),
             "skipped": str(c[INCONCLUSIVE]), "time": "0"}
    root = ET.Element("testsuites", name="lora-gate", **{k: v for k, v in attrs.items() if k != "skipped"})
    suite = ET.SubElement(root, "testsuite", name=suite_name, **attrs)
    props = ET.SubElement(suite, "properties")
    for k in ("adapter", "adapter_name", "config", "primary_metric", "status", "target"):
        ET.SubElement(props, "property", name=k, value=str(res[k]))
    ET.SubElement(props, "property", name="decision", value=res["decision"]["outcome"])
    for r in res["checks"]:
        tc = ET.SubElement(suite, "testcase", classname=suite_name, name=r.name, time="0")
        text = f"value {fmt_num(r.value)} (threshold {r.threshold}): {r.reason}"
        if r.status == FAIL:
            ET.SubElement(tc, "failure", message=r.reason, type=f"Gate{r.kind.capitalize()}Failure").text = text
        elif r.status == INCONCLUSIVE:
            ET.SubElement(tc, "skipped", message=f"inconclusive: {r.reason}")
        elif r.status == UNUSABLE:
            ET.SubElement(tc, "error", message=r.reason, type="GateUnusableInput").text = text
        else:
            ET.SubElement(tc, "system-out").text = text
    for el in root.iter():  # names and reasons come from the sweep dir: no control character makes the XML invalid
        el.attrib.update({k: printable(v) for k, v in el.attrib.items()})
        el.text = printable(el.text) if el.text is not None else None
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def gate_md(res: dict) -> str:
    tgt = ""
    if res["target"] is not None:
        tgt = f" Target {res['target']:g} ({res['target_source']})"
        if res["report_target"] != res["target"]:
            tgt += f"; the report used {res['report_target'] if res['report_target'] is not None else 'no target'}"
        tgt += "."
    lines = [f"# Gate: {res['status'].upper()}", "",
             f"Decision: **{OUTCOMES[res['decision']['outcome']]}** — {_md(res['decision']['headline'])}", "",
             f"Sweep `{_md(res['sweep_name'])}`, adapter `{_md(res['adapter_name'])}` (`{_md(res['adapter'])}`, "
             f"selection: {_md(res['adapter_selection'])}), config `{_md(res['config'])}`.{tgt}", "",
             _md(summary_line(res)), "",
             "| check | value | threshold | result | detail |", "|---|---|---|---|---|"]
    for r in res["checks"]:
        cells = [_md(r.name), fmt_num(r.value), _md(r.threshold), r.status if r.passed else f"**{r.status.upper()}**",
                 _md(r.reason)]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def _md(text: Any) -> str:
    """Text from the sweep dir (names, reasons) as Markdown text: no raw HTML, no control characters, no backtick
    that would end a code span."""
    return html.escape(printable(text), quote=False).replace("`", "'")


def write_gate_outputs(res: dict, out_dir: str | Path) -> dict:
    out = Path(out_dir)
    payload = dict(res)
    payload["checks"] = [dict(jsonable(r), passed=r.passed) for r in res["checks"]]
    write_json(out / "gate.json", payload)
    atomic_write_text(out / "junit.xml", junit_xml(res))
    atomic_write_text(out / "gate.md", gate_md(res))
    return {"gate_json": out / "gate.json", "junit_xml": out / "junit.xml", "gate_md": out / "gate.md"}


def print_table(res: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def txt(x: Any) -> str:  # names come from the sweep dir: `r8[/x]` is text, not rich markup
        return escape(printable(x))

    style = {PASS: "green", FAIL: "bold red", INCONCLUSIVE: "yellow", UNUSABLE: "bold magenta"}
    t = Table(title=f"gate: {txt(res['sweep_name'])} / adapter {txt(res['adapter_name'])}", show_lines=False)
    for col in ("check", "value", "threshold", "result", "detail"):
        t.add_column(col, overflow="fold")
    for r in res["checks"]:
        t.add_row(txt(r.name), fmt_num(r.value), txt(r.threshold), f"[{style[r.status]}]{r.status}[/]", txt(r.reason))
    con = Console()
    con.print(f"decision: [bold]{OUTCOMES[res['decision']['outcome']]}[/] — {txt(res['decision']['headline'])}")
    con.print(t)
