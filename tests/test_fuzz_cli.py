"""Fuzz every file the CLI reads: random bytes, truncations, byte flips, type-confused YAML/JSON, absurd nesting,
empty files. Each must end in a clean outcome (exit 2 with ONE "error: ..." line for unusable input; a valid
result when the mutation happened to stay valid) and never a traceback.

Seeded and bounded (each target: a fixed list of (kind, seed) cases) so a failure reproduces by its test id.
"""
from __future__ import annotations

import copy
import json
import random
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli import main as cli

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from fixtures_sweep import write_sweep  # noqa: E402

KINDS = ("bytes", "truncated", "flip", "structure", "deep", "empty")
GARBAGE = ("bytes", "deep")  # never valid input: must be exit 2 (data check: 1, its "errors found" code)


# --------------------------------------------------------------------------- mutations


def _random_scalar(rng: random.Random):
    return rng.choice([None, True, False, 0, -1, 10 ** 12, 1.5, float("nan"), float("inf"), "", "x", "../../etc",
                       "名前", "a=b", "{prompt}", "-rf", "0" * 300, [], {}])


def _nodes(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, path + (i,))


def _set(obj, path, value):
    if not path:
        return value
    cur = obj
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return obj


def mutate_structure(data, rng: random.Random):
    """Replace 1-3 random nodes of a parsed document with values of the wrong type."""
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        paths = list(_nodes(data))
        path = rng.choice(paths[1:] or paths)
        data = _set(data, path, _random_scalar(rng))
    return data


def mutate(kind: str, valid: bytes, fmt: str, rng: random.Random) -> bytes:
    if kind == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 400)))
    if kind == "truncated":
        return valid[: rng.randint(1, max(1, len(valid) - 1))]
    if kind == "flip":
        b = bytearray(valid)
        for _ in range(rng.randint(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == "deep":
        return rng.choice([b"[" * 5000, b'{"a": ' * 3000, b"a:\n" + b"- [" * 3000, b"[" * 3000 + b"]" * 3000])
    if kind == "empty":
        return b""
    assert kind == "structure"
    if fmt == "jsonl":
        rows = [json.loads(line) for line in valid.decode().splitlines() if line.strip()]
        i = rng.randrange(len(rows))
        rows[i] = mutate_structure(rows[i], rng)
        return "".join(json.dumps(r, default=str) + "\n" for r in rows).encode()
    if fmt == "json":
        return json.dumps(mutate_structure(json.loads(valid), rng), default=str).encode()
    return yaml.safe_dump(mutate_structure(yaml.safe_load(valid), rng), allow_unicode=True).encode()


# --------------------------------------------------------------------------- the outcome contract


def check_outcome(rc: int, err: str, kind: str, ok_codes: tuple[int, ...], garbage_code: int = 2) -> None:
    assert "Traceback" not in err, err[-4000:]
    if kind in GARBAGE:
        assert rc == garbage_code, (rc, err[-2000:])
    assert rc in ok_codes + (2,), (rc, err[-2000:])
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], err[-2000:]


def run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli(argv)
    return rc, capsys.readouterr().err


def cases(kinds=KINDS, seeds=(0,)):
    """(kind, seed) params with ids "kind-seed", so a failure reproduces by its test id."""
    out = []
    for k in kinds:
        for s in seeds:
            out.append(pytest.param(k, s, id=f"{k}-{s}"))
    return out


# --------------------------------------------------------------------------- fixtures

ROW = '{"id": "%d", "messages": [{"role": "user", "content": "question number %d"}, ' \
      '{"role": "assistant", "content": "{\\"a\\": %d}"}]}\n'


def _task_dir(root: Path) -> Path:
    d = root / "task"
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.jsonl").write_text("".join(ROW % (i, i, i) for i in range(6)))
    (d / "eval.jsonl").write_text("".join(ROW % (i, i, i) for i in range(10, 14)))
    (d / "task.yaml").write_text("name: fuzz\nversion: 1\ndata: {train: train.jsonl, eval: eval.jsonl}\n"
                                 "generation: {max_new_tokens: 16}\nmetrics:\n  - name: json_valid\n"
                                 "  - {name: field_accuracy, fields: [a]}\nprimary_metric: field_accuracy\n"
                                 "few_shot: {k: 1, seed: 0}\n")
    return d


@pytest.fixture(scope="module")
def sweep_template(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("fuzz_sweep"), "clear_win", n_items=30, n_probe=20)


def _sweep_copy(template: Path, tmp_path: Path) -> Path:
    dst = tmp_path / template.name
    shutil.copytree(template, dst)
    return dst


_CONTROL: dict[str, tuple[int, str]] = {}


def _control(name: str, argv: list[str], capsys, ok_codes) -> None:
    """The command must work on VALID input first; otherwise the fuzz result would say nothing. A failure here
    is a regression of the command itself, so it fails the test (never a skip)."""
    if name not in _CONTROL:
        _CONTROL[name] = run(argv, capsys)
    rc, err = _CONTROL[name]
    assert rc in ok_codes and "Traceback" not in err, (
        f"`harness {' '.join(argv[:1])}` fails on valid input (rc {rc}): "
        f"{(err.strip().splitlines() or [''])[-1][:200]}")


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize("kind,seed", cases(seeds=(0, 1, 2)))
def test_training_data_file(tmp_path, capsys, kind, seed):
    valid = "".join(ROW % (i, i, i) for i in range(6)).encode()
    f = tmp_path / "train.jsonl"
    f.write_bytes(mutate(kind, valid, "jsonl", random.Random(seed)))
    rc, err = run(["data", "check", str(f), "--model", "none"], capsys)
    check_outcome(rc, err, kind, (0, 1), garbage_code=1)


@pytest.mark.parametrize("kind,seed", cases(seeds=(0, 1, 2)))
def test_task_yaml(tmp_path, capsys, kind, seed):
    d = _task_dir(tmp_path)
    (d / "task.yaml").write_bytes(mutate(kind, (d / "task.yaml").read_bytes(), "yaml", random.Random(seed)))
    rc, err = run(["tasks", "--validate", str(d / "task.yaml")], capsys)
    check_outcome(rc, err, kind, (0,))


@pytest.mark.parametrize("kind,seed", cases(seeds=(0, 1)))
def test_task_eval_split(tmp_path, capsys, kind, seed):
    d = _task_dir(tmp_path)
    (d / "eval.jsonl").write_bytes(mutate(kind, (d / "eval.jsonl").read_bytes(), "jsonl", random.Random(seed)))
    rc, err = run(["tasks", "--validate", str(d / "task.yaml")], capsys)
    check_outcome(rc, err, kind, (0,))


@pytest.mark.parametrize("kind,seed", cases(seeds=(0, 1, 2)))
def test_task_json_schema(tmp_path, capsys, kind, seed):
    d = _task_dir(tmp_path)
    (d / "schema.json").write_text('{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}')
    text = (d / "task.yaml").read_text().replace("metrics:\n", "json_schema: schema.json\nmetrics:\n  - name: schema_valid\n")
    (d / "task.yaml").write_text(text)
    (d / "schema.json").write_bytes(mutate(kind, (d / "schema.json").read_bytes(), "json", random.Random(seed)))
    rc, err = run(["tasks", "--validate", str(d / "task.yaml")], capsys)
    check_outcome(rc, err, kind, (0,))


@pytest.mark.parametrize("kind,seed", cases(seeds=(0, 1)))
def test_probe_file(tmp_path, capsys, kind, seed):
    from harness.io import UserError
    from harness.probes import load_probes

    valid = "".join((REPO / "evalsets" / "probes" / "default.jsonl").read_text().splitlines(keepends=True)[:8])
    f = tmp_path / "probes.jsonl"
    f.write_bytes(mutate(kind, valid.encode(), "jsonl", random.Random(seed)))
    try:
        load_probes(f)
        pytest.skip("this mutation is a valid probe file (training would start)")
    except UserError:
        pass
    except Exception:  # noqa: BLE001 - the CLI run below reports the crash with its traceback
        pass
    rc, err = run(["train", "model=tiny_random", f"eval.probes={f}", f"run_dir={tmp_path / 'run'}"], capsys)
    check_outcome(rc, err, kind, ())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind,seed", cases(kinds=("bytes", "deep", "empty", "flip"), seeds=(0, 1)))
def test_model_config_yaml(tmp_path, capsys, kind, seed):
    """--model takes a YAML path; only never-valid mutations (a valid one could build any model)."""
    data = tmp_path / "d.jsonl"
    data.write_text("".join(ROW % (i, i, i) for i in range(3)))
    f = tmp_path / "model.yaml"
    valid = (REPO / "conf" / "model" / "tiny_random.yaml").read_bytes()
    mutated = mutate(kind, valid, "yaml", random.Random(seed))
    if kind == "flip":  # keep only flips that break the YAML itself
        try:
            yaml.safe_load(mutated)
            pytest.skip("flip kept the YAML parseable")
        except yaml.YAMLError:
            pass
        except Exception:  # noqa: BLE001
            pass
    f.write_bytes(mutated)
    rc, err = run(["data", "check", str(data), "--model", str(f)], capsys)
    check_outcome(rc, err, "bytes" if kind == "flip" else kind, ())


@pytest.mark.parametrize("kind,seed", cases(seeds=(0, 1, 2)))
def test_rubric_yaml(tmp_path, capsys, kind, seed):
    _control("rubric", ["judge", "rubrics", str(REPO / "rubrics" / "helpfulness.yaml")], capsys, (0,))
    f = tmp_path / "rubric.yaml"
    f.write_bytes(mutate(kind, (REPO / "rubrics" / "helpfulness.yaml").read_bytes(), "yaml", random.Random(seed)))
    rc, err = run(["judge", "rubrics", str(f)], capsys)
    check_outcome(rc, err, kind, (0,))


GATE_OK = (0, 1, 3)


@pytest.mark.parametrize("kind,seed", cases(seeds=(0, 1)))
def test_gate_config(tmp_path, capsys, sweep_template, kind, seed):
    sweep = _sweep_copy(sweep_template, tmp_path)
    _control("gate", ["gate", str(sweep)], capsys, GATE_OK)
    f = tmp_path / "gate.yaml"
    f.write_bytes(mutate(kind, (REPO / "conf" / "gate" / "default.yaml").read_bytes(), "yaml", random.Random(seed)))
    rc, err = run(["gate", str(sweep), "--config", str(f)], capsys)
    check_outcome(rc, err, kind, GATE_OK)


SWEEP_FILES = [("scores/scores.jsonl", "jsonl"), ("scores/summary.json", "json"), ("sweep.json", "json")]


@pytest.mark.parametrize("rel,fmt", SWEEP_FILES, ids=[r for r, _ in SWEEP_FILES])
@pytest.mark.parametrize("kind,seed", cases(kinds=("bytes", "truncated", "structure", "deep"), seeds=(0,)))
@pytest.mark.parametrize("command", ["gate", "report"])
def test_sweep_dir_files(tmp_path, capsys, sweep_template, command, rel, fmt, kind, seed):
    sweep = _sweep_copy(sweep_template, tmp_path)
    _control(command, [command, str(sweep)], capsys, GATE_OK)
    f = sweep / rel
    f.write_bytes(mutate(kind, f.read_bytes(), fmt, random.Random(seed)))
    rc, err = run([command, str(sweep)], capsys)
    check_outcome(rc, err, kind, GATE_OK)


# config.yaml is only quoted by the report (not parsed): it is fuzzed through `harness eval RUN_DIR` below.
RUN_FILES = [("metrics.json", "json"), ("status.json", "json"), ("curves.json", "json"),
             ("manifest.json", "json")]


@pytest.mark.parametrize("rel,fmt", RUN_FILES, ids=[r for r, _ in RUN_FILES])
@pytest.mark.parametrize("kind,seed", cases(kinds=("bytes", "structure"), seeds=(0,)))
def test_run_dir_files_through_report(tmp_path, capsys, sweep_template, rel, fmt, kind, seed):
    sweep = _sweep_copy(sweep_template, tmp_path)
    _control("report", ["report", str(sweep)], capsys, GATE_OK)
    f = sorted((sweep / "runs").iterdir())[0] / rel
    f.write_bytes(mutate(kind, f.read_bytes(), fmt, random.Random(seed)))
    rc, err = run(["report", str(sweep)], capsys)
    check_outcome(rc, err, kind, GATE_OK)


@pytest.mark.parametrize("kind,seed", cases(kinds=("bytes", "deep", "empty"), seeds=(0, 1)))
def test_run_config_through_eval(tmp_path, capsys, sweep_template, kind, seed):
    """`harness eval RUN_DIR` reads the run's config.yaml (never-valid mutations only: a valid one would generate)."""
    sweep = _sweep_copy(sweep_template, tmp_path)
    run_dir = sorted((sweep / "runs").iterdir())[0]
    f = run_dir / "config.yaml"
    f.write_bytes(mutate(kind, f.read_bytes(), "yaml", random.Random(seed)))
    rc, err = run(["eval", str(run_dir), "--no-progress"], capsys)
    check_outcome(rc, err, kind, ())
