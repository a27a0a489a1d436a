"""harness.io: atomic writes leave either the old file or the new one, with ordinary permissions."""
from __future__ import annotations

import os
import stat

import pytest

from harness.io import atomic_dir, atomic_write_bytes, atomic_write_text, read_json, write_json


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_written_files_and_dirs_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.md", "hello")
        with atomic_dir(tmp_path / "adapter") as d:
            (d / "w.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "report.md") == 0o644
    assert _mode(tmp_path / "adapter") == 0o755


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "text where bytes belong")  # type: ignore[arg-type]  # fails inside the write
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_failed_atomic_dir_keeps_the_previous_dir(tmp_path):
    with atomic_dir(tmp_path / "out") as d:
        (d / "v").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as d:
            (d / "v").write_text("2")
            raise RuntimeError("crash mid-write")
    assert (tmp_path / "out" / "v").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------- atomic_dir under concurrency and kills

import multiprocessing as mp  # noqa: E402
import pickle  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

import harness.io as hio  # noqa: E402
from harness.io import (InvalidJSON, UserError, append_jsonl, check_safe_name, file_lock, iter_jsonl,  # noqa: E402
                        load_yaml_with_lines, read_jsonl, recover_dir)

CTX = mp.get_context("spawn")  # not fork: a pytest process with leftover threads can hang a forked child


def _complete(final) -> bool:
    """A published dir has both files with the same writer tag."""
    try:
        return (final / "a").read_text() == (final / "b").read_text() != ""
    except FileNotFoundError:
        return False


def _writer(final, barrier, wid, n, exchange):
    if not exchange:
        hio._EXCHANGE = None
    barrier.wait()
    for i in range(n):
        with atomic_dir(final) as d:
            (d / "a").write_text(f"{wid}-{i}")
            (d / "b").write_text(f"{wid}-{i}")


def _reader(final, barrier, stop, bad, exchange):
    if not exchange:
        hio._EXCHANGE = None
    barrier.wait()
    while not stop.is_set():
        # exchange: the path itself always holds a complete dir. rename-aside: a complete copy always exists
        # on disk and recover_dir finds it (a reader that lost the race retries).
        ok = (final / "a").exists() if exchange else recover_dir(final) is not None
        if not ok:
            with bad.get_lock():
                bad.value += 1


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "rename-aside"])
def test_concurrent_writers_and_readers_always_find_a_complete_dir(tmp_path, exchange):
    if exchange and hio._EXCHANGE is None:
        pytest.skip("no renameat2 on this platform")
    final = tmp_path / "checkpoints" / "last"
    with atomic_dir(final) as d:
        (d / "a").write_text("init")
        (d / "b").write_text("init")
    barrier, stop, bad = CTX.Barrier(5), CTX.Event(), CTX.Value("i", 0)
    writers = [CTX.Process(target=_writer, args=(final, barrier, w, 25, exchange)) for w in range(3)]
    readers = [CTX.Process(target=_reader, args=(final, barrier, stop, bad, exchange)) for _ in range(2)]
    for p in writers + readers:
        p.start()
    for p in writers:
        p.join(60)
    stop.set()
    for p in readers:
        p.join(10)
    assert [p.exitcode for p in writers + readers] == [0] * 5
    assert bad.value == 0, f"readers found no complete dir {bad.value} times"
    assert _complete(final) and (final / "a").read_text().endswith("-24")
    assert sorted(p.name for p in final.parent.iterdir()) == ["last"], "temp/aside copies left behind"


def _killed_between_renames(final):
    """Rename-aside mode, SIGKILLed right after `final` was moved aside: the worst moment."""
    hio._EXCHANGE = None
    real = os.rename

    def rename(src, dst):
        real(src, dst)
        if os.fspath(src) == os.fspath(final):
            os.kill(os.getpid(), signal.SIGKILL)

    hio.os.rename = rename
    with atomic_dir(final) as d:
        (d / "a").write_text("new")
        (d / "b").write_text("new")


def _killed_inside(final):
    with atomic_dir(final) as d:
        (d / "a").write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)


def _write_forever(final):
    i = 0
    while True:
        i += 1
        with atomic_dir(final) as d:
            (d / "a").write_text(str(i))
            (d / "b").write_text(str(i))


def test_sigkill_at_any_point_never_loses_the_previous_copy(tmp_path):
    final = tmp_path / "last"
    with atomic_dir(final) as d:
        (d / "a").write_text("old")
        (d / "b").write_text("old")
    p = CTX.Process(target=_killed_between_renames, args=(final,))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    assert not final.exists(), "the kill should have landed between the two renames"
    assert recover_dir(final) == final and (final / "a").read_text() == "old"

    p = CTX.Process(target=_killed_inside, args=(final,))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    assert any(".tmp." in q.name for q in tmp_path.iterdir())
    with atomic_dir(final) as d:  # the next writer sweeps what the dead one left
        (d / "a").write_text("next")
        (d / "b").write_text("next")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["last"]

    # five kills at seeded random moments of a busy writer: a complete copy survives every one
    import random

    rng = random.Random(0)
    for _ in range(5):
        p = CTX.Process(target=_write_forever, args=(final,))
        p.start()
        time.sleep(0.4 + rng.random() * 0.3)
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
        assert recover_dir(final) == final and _complete(final)


def _convert_once(final, counter, barrier):
    barrier.wait()
    with file_lock(final):
        if (final / "READY").is_file():
            return
        time.sleep(0.2)
        append_jsonl(counter, [{"pid": os.getpid()}])
        with atomic_dir(final) as d:
            (d / "READY").write_text("ok")


def test_file_lock_lets_one_process_convert_while_the_others_wait(tmp_path):
    final, counter = tmp_path / "models" / "m", tmp_path / "count.jsonl"
    barrier = CTX.Barrier(4)
    procs = [CTX.Process(target=_convert_once, args=(final, counter, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert len(list(read_jsonl(counter))) == 1 and (final / "READY").is_file()


# --------------------------------------------------------------------------- JSON(L) readers


def test_torn_tail_inside_a_utf8_character_is_skipped_and_cut_on_next_append(tmp_path):
    p = tmp_path / "cache.jsonl"
    p.write_bytes('{"k": 1}\n{"k": "é'.encode()[:-1])  # killed inside the 2-byte é
    assert list(read_jsonl(p, appended=True)) == [{"k": 1}]
    with pytest.raises(UserError, match=r"cache\.jsonl:2: invalid UTF-8"):  # a file written whole has no excuse
        list(read_jsonl(p))
    append_jsonl(p, [{"k": 2}])
    assert list(read_jsonl(p)) == [{"k": 1}, {"k": 2}]
    assert p.read_bytes().count(b"\n") == 2
    p.write_bytes(b"[[[[[[[[[[")  # a lone garbage line: torn only if the file is appended to
    assert list(read_jsonl(p, appended=True)) == []
    with pytest.raises(UserError, match=r"cache\.jsonl:1: invalid JSON"):
        list(read_jsonl(p))


def test_bad_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    p = tmp_path / "scores.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2\n{"a": 3}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"scores\.jsonl:3: invalid JSON"):
        list(read_jsonl(p))
    assert [n for n, _ in iter_jsonl(p, strict=False)] == [1, 4]
    with pytest.raises(UserError, match=r"scores\.jsonl:3"):  # a torn-looking middle line is still an error
        list(read_jsonl(p, appended=True))
    p.write_bytes(b'{"a": 1}\n\xff\xfe\n{"a": 3}\n')
    with pytest.raises(UserError, match=r"scores\.jsonl:2: invalid UTF-8"):
        list(read_jsonl(p))
    p.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(UserError, match=r":2: expected a JSON object, got list"):
        list(read_jsonl(p))
    p.write_text('{"a": 1}\n' + "[" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r":2: invalid JSON"):
        list(read_jsonl(p))
    p.write_text('{"a": 1}\n{"a": 2}', encoding="utf-8")  # complete last line without newline: a row
    assert list(read_jsonl(p)) == [{"a": 1}, {"a": 2}]


def test_read_json_errors_name_the_line_and_stay_json_decode_errors(tmp_path):
    p = tmp_path / "summary.json"
    p.write_text('{\n  "a": 1,\n  oops\n}\n', encoding="utf-8")
    with pytest.raises(InvalidJSON) as info:
        read_json(p)
    assert str(info.value) == f"{p}:3: invalid JSON (Expecting property name enclosed in double quotes)"
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError) and info.value.exit_code == 2
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match="invalid UTF-8"):
        read_json(p)


# --------------------------------------------------------------------------- YAML with lines, safe names


def test_yaml_with_lines_maps_key_paths_and_rejects_duplicates(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("name: x\nmetrics:\n  - name: exact_match\n  - name: rouge\n    as: r\n", encoding="utf-8")
    data, lines = load_yaml_with_lines(p)
    assert data["metrics"][1]["as"] == "r"
    assert (lines.get(("name",)), lines.get(("metrics", 1, "as")), lines.get(("metrics", 1, "nope"))) == (1, 5, 4)
    p.write_text("name: x\nmetrics: []\nname: y\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"t\.yaml:3: name: duplicate key"):
        load_yaml_with_lines(p)
    p.write_text("name: x\n  bad: [\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"t\.yaml:2: invalid YAML"):
        load_yaml_with_lines(p)
    p.write_text("a: " + "[" * 3000, encoding="utf-8")
    with pytest.raises(UserError, match=r"t\.yaml:\d+: invalid YAML"):
        load_yaml_with_lines(p)
    p.write_bytes(b"name: \xff\n")
    with pytest.raises(UserError, match=r"t\.yaml:1: not UTF-8"):
        load_yaml_with_lines(p)


@pytest.mark.parametrize("bad", ["", ".", "..", "../etc", "a/b", "a=b", "-rf", "x y", "a\x00", "é", "a" * 129,
                                 "x.lock", 3, None])
def test_unsafe_names_are_refused(bad):
    with pytest.raises(UserError, match="task.yaml:1: name: .* is not a safe name"):
        check_safe_name(bad, "task.yaml:1: name")


def test_safe_names_pass_unchanged():
    for ok in ["demo", "r16-lr2e-4-e2", "run_01.v2", "lr1e+3", "A" * 128]:
        assert check_safe_name(ok) == ok


def test_append_keeps_a_complete_last_row_that_lacks_its_newline(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"k": 1}\n{"k": 2}', encoding="utf-8")  # hand-written, no final newline
    append_jsonl(p, [{"k": 3}])
    assert list(read_jsonl(p)) == [{"k": 1}, {"k": 2}, {"k": 3}]
    p.write_text('{"k": 1', encoding="utf-8")  # a lone torn row
    append_jsonl(p, [{"k": 4}])
    assert list(read_jsonl(p)) == [{"k": 4}]
