"""Small file helpers shared by every stage: atomic writes and dirs, locks, hashing, JSON(L), YAML with line
numbers, safe names, UserError.

Every stage writes into a run directory; a killed process must never leave a file that looks complete, so
everything goes through a temp file + os.replace (dirs: an atomic exchange). Every reader of a user's file
reports bad input as UserError("FILE:LINE: key: message").
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


class UserError(Exception):
    """Bad input from the user: printed as one clear line, exit code 2 (or `exit_code`), never a traceback."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class InvalidJSON(UserError, json.JSONDecodeError):
    """A JSON file that does not parse: a UserError ("FILE:LINE: invalid JSON (...)") that old
    `except json.JSONDecodeError` / `except ValueError` handlers still catch."""

    def __init__(self, path: str | os.PathLike, msg: str, doc: str, pos: int):
        json.JSONDecodeError.__init__(self, msg, doc, pos)  # sets msg, doc, pos, lineno, colno
        self.path = path
        self.args = (f"{path}:{self.lineno}: invalid JSON ({msg})",)
        self.exit_code = 2

    def __reduce__(self):  # picklable across launcher processes
        return type(self), (self.path, self.msg, self.doc, self.pos)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def normal_mode(path: str | os.PathLike) -> None:
    """mkstemp/mkdtemp create 0600/0700; give published files and dirs the permissions `open`/`mkdir` would."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_UMASK)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def refuse_symlink(path: str | os.PathLike) -> None:
    """UserError when `path` is a symbolic link: a directory from someone else may plant one
    (scores/generations.jsonl -> ~/.bashrc), and we never write through it or replace it."""
    if os.path.islink(path):
        raise UserError(f"{path}: is a symbolic link; refusing to write through it (replace it with a regular file "
                        "or remove it)")


def open_append(path: str | os.PathLike):
    """`path` opened for reading and appending ("a+b"), created if missing, never through a symbolic link
    (O_NOFOLLOW: a planted link is a UserError, the file it points to is untouched)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symbolic link
            refuse_symlink(path)
        raise
    return os.fdopen(fd, "a+b")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temp file path next to `path` for any writer (ours or a converter's); on success it
    replaces `path` in one rename, on failure it is removed and `path` is untouched. A symbolic link at
    `path` is refused (refuse_symlink), never replaced or followed."""
    path = Path(path)
    refuse_symlink(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        normal_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file; bad content (invalid JSON or UTF-8, absurd nesting) raises InvalidJSON naming FILE:LINE
    (a UserError that is also a json.JSONDecodeError, so `except ValueError` recovery keeps working)."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidJSON(path, exc.msg, exc.doc, exc.pos) from None
    except UnicodeDecodeError as exc:
        raise InvalidJSON(path, f"invalid UTF-8 at byte {exc.start}", "", 0) from None
    except RecursionError:
        raise InvalidJSON(path, "nested too deeply", "", 0) from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


MAX_LINE_BYTES = 32 << 20  # longer JSONL lines are refused (or skipped), never read into memory


def read_lines(fh, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes | None, bool]]:
    """(line without its newline, whether a newline ended it) for each line of a binary file, one at a time. A
    line longer than `limit` bytes comes back as None: its bytes are skipped, never held in memory (a 1 GB
    single-line file costs one `limit`-sized buffer, not gigabytes)."""
    while True:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        if raw.endswith(b"\n"):
            yield raw[:-1], True
        elif len(raw) <= limit:
            yield raw, False  # the last line, without its newline
        else:
            complete = False
            while not complete:
                chunk = fh.readline(1 << 20)
                if not chunk:
                    break
                complete = chunk.endswith(b"\n")
            yield None, complete


def iter_jsonl(path: str | os.PathLike, strict: bool = True, appended: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each row of a JSONL file, read a line at a time.

    A bad line (invalid UTF-8 or JSON, absurd nesting, not an object, longer than MAX_LINE_BYTES) is a UserError
    naming FILE:LINE when `strict` (data must not be silently dropped), skipped when not. For a file that is
    `appended` to (a cache), a last line without its newline that does not parse is a torn tail - a writer
    killed mid-append, even inside a UTF-8 character - and is skipped, never an error; files written whole
    (scores, probes) have no such excuse."""
    with open(path, "rb") as fh:
        for n, (raw, complete) in enumerate(read_lines(fh), 1):
            problem = None
            if raw is None:
                problem = f"line longer than {MAX_LINE_BYTES >> 20} MiB"
            elif not raw.strip():
                continue
            else:
                try:
                    row = json.loads(raw.decode("utf-8"))
                    if not isinstance(row, dict):
                        problem = f"expected a JSON object, got {type(row).__name__}"
                except UnicodeDecodeError as exc:
                    problem = f"invalid UTF-8 at byte {exc.start}"
                except json.JSONDecodeError as exc:
                    problem = f"invalid JSON ({exc.msg}, column {exc.colno})"
                except (ValueError, RecursionError) as exc:
                    problem = f"invalid JSON ({type(exc).__name__})"
            if problem is None:
                yield n, row
            elif appended and not complete:
                continue  # torn tail of an append
            elif strict:
                raise UserError(f"{path}:{n}: {problem}")


def read_jsonl(path: str | os.PathLike, strict: bool = True, appended: bool = False) -> Iterator[dict]:
    """The objects of a JSONL file; see iter_jsonl (a bad line is FILE:LINE; `appended`: torn tail skipped)."""
    for _, row in iter_jsonl(path, strict=strict, appended=appended):
        yield row


def _parses(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except (ValueError, RecursionError):
        return False


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Append rows with one write() per call under an exclusive lock (safe for concurrent writers). A torn
    tail left by a killed writer is cut off first, so it never becomes a bad line in the middle (a complete
    last row that only lacks its newline is kept)."""
    import fcntl

    payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    if not payload:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_append(path) as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            size = fh.seek(0, os.SEEK_END)
            if size:
                back = min(size, 1 << 20)
                fh.seek(size - back)
                tail = fh.read(back)
                if not tail.endswith(b"\n"):
                    cut = tail.rfind(b"\n")
                    if _parses(tail[cut + 1:]) or (cut < 0 and back < size):
                        fh.write(b"\n")  # a complete last row without its newline is kept
                    else:
                        fh.truncate(size - back + cut + 1)
            fh.write(payload.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- directories

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _exchange_fn():
    """renameat2(RENAME_EXCHANGE): swap two paths in one syscall (Linux >= 3.15, glibc >= 2.28); None elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]

    def exchange(a: Path, b: Path) -> bool:
        if fn(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:  # AT_FDCWD, RENAME_EXCHANGE
            return True
        err = ctypes.get_errno()
        if err in (22, 38, 95):  # EINVAL/ENOSYS/EOPNOTSUPP: this filesystem cannot exchange
            return False
        raise OSError(err, os.strerror(err), str(b))

    return exchange


_EXCHANGE = _exchange_fn()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(final: Path) -> None:
    """Remove temp/old siblings of `final` left by killed writers of this host (their pid is gone)."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(?:tmp|old)\.{re.escape(_HOST)}\.(\d+)\.")
    with contextlib.suppress(OSError):
        for sib in final.parent.iterdir():
            m = pattern.match(sib.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))) \
                    and (".tmp." in sib.name or final.exists()):
                shutil.rmtree(sib, ignore_errors=True)


def recover_dir(final: str | os.PathLike) -> Path | None:
    """`final` if it exists; else put back the previous copy that an interrupted atomic_dir (non-exchange
    filesystems only) had moved aside. Call it before deciding that a checkpoint/cache dir is missing."""
    final = Path(final)
    for _ in range(3):  # concurrent writers may move copies while we look
        if final.exists():
            return final

        def mtime(q: Path) -> float:
            try:
                return q.stat().st_mtime
            except OSError:
                return -1.0

        with contextlib.suppress(OSError):
            for old in sorted(final.parent.glob(f".{final.name}.old.*"), key=mtime, reverse=True):
                with contextlib.suppress(OSError):
                    os.rename(old, final)
                if final.exists():
                    return final
    return final if final.exists() else None


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temp dir next to `final`; on success it replaces `final` so that a complete copy is
    always there: one atomic exchange (Linux), or rename-aside + rename-in where recover_dir() restores the
    aside copy after a kill. Temp names are unique per writer (host, pid), so concurrent writers of the same
    `final` never collide; the last one to finish wins. On failure `final` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(final)
    _sweep_stale(final)
    tag = f"{_HOST}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp.{tag}", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        normal_mode(tmp)
        _publish_dir(tmp, final, tag)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange it holds the previous copy


def _publish_dir(tmp: Path, final: Path, tag: str) -> None:
    for _ in range(100):  # another writer may publish between our checks; retry until ours is in place
        if not final.exists():
            try:
                os.rename(tmp, final)
                return
            except OSError as exc:
                if exc.errno not in (17, 39) or not final.exists():  # EEXIST/ENOTEMPTY: someone else was first
                    raise
        if _EXCHANGE is not None and _EXCHANGE(tmp, final):
            return
        old = final.with_name(f".{final.name}.old.{tag}{os.urandom(4).hex()}")
        try:
            os.rename(final, old)  # from here until the next rename, recover_dir() can restore it
        except FileNotFoundError:
            continue
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno in (17, 39):  # another writer published in between: drop the aside copy, retry
                shutil.rmtree(old, ignore_errors=True)
                continue
            recover_dir(final)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(f"{final}: could not publish the new directory (too many concurrent writers)")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """An flock on `path` + ".lock" (created if needed): e.g. one process converts a base model while the
    others wait and then find it ready. Released on exit and when the process dies."""
    import fcntl

    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- names and YAML

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def check_safe_name(name: Any, what: str = "name") -> str:
    """`name` if it can become one path component and a `name=path` server argument unchanged (letters,
    digits, '.', '_', '+', '-'; starts with a letter or digit; at most 128 characters); else UserError naming
    `what` (e.g. "task.yaml:1: name")."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name.endswith(".lock"):
        raise UserError(f"{what}: {str(name)[:80]!r} is not a safe name (letters, digits, '.', '_', '+', '-', "
                        "starting with a letter or digit, at most 128 characters)")
    return name


def printable(text: Any) -> str:
    """`text` with control characters (C0 but newline and tab, DEL, C1) written as escapes (\\x1b): a name from
    someone else's directory never drives the terminal and never makes an XML file invalid."""
    return "".join(c if c in "\n\t" or not (ord(c) < 32 or 127 <= ord(c) < 160) else
                   (f"\\x{ord(c):02x}") for c in str(text))


class YamlLines:
    """Line numbers of the keys of a YAML document: `get(("metrics", 2, "name"))` is the line of that key,
    or of its nearest parent that has one (1 when nothing matches)."""

    def __init__(self, lines: dict[tuple, int] | None = None):
        self.lines = dict(lines or {})

    def get(self, path: tuple) -> int:
        path = tuple(path)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def __bool__(self) -> bool:
        return bool(self.lines)


def key_str(path: tuple) -> str:
    """("metrics", 2, "name") -> "metrics[2].name"."""
    s = ""
    for p in path:
        s += f"[{p}]" if isinstance(p, int) else (("." if s else "") + str(p))
    return s


def load_yaml_with_lines(path: str | os.PathLike, display: str | None = None) -> tuple[Any, YamlLines]:
    """Parse a YAML file into (data, YamlLines). Anything that is not a readable YAML document (missing,
    a directory, not UTF-8, a syntax error, absurd nesting, a duplicate key) raises UserError "FILE:LINE: ..."."""
    import yaml

    disp = display or str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{disp}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{disp}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{disp}:1: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{disp}: cannot read: {exc.strerror or exc}") from None
    deep = _too_deep_line(text, MAX_YAML_DEPTH)
    if deep:  # PyYAML recurses (and takes seconds to fail) on absurd nesting: refuse it up front
        raise UserError(f"{disp}:{deep}: invalid YAML (nested deeper than {MAX_YAML_DEPTH} levels)")
    lines: dict[tuple, int] = {}
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # before anything expands an alias
            if isinstance(event, yaml.AliasEvent):
                raise UserError(f"{disp}:{event.start_mark.line + 1}: invalid YAML (aliases such as *{event.anchor} "
                                "are not accepted: a few nested ones expand to billions of nodes; write the values "
                                "out)")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _walk_yaml(node, (), lines, disp)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        raise UserError(f"{disp}:{line}: invalid YAML ({getattr(exc, 'problem', None) or exc})".replace("\n", " ")) \
            from None
    except RecursionError:
        raise UserError(f"{disp}:1: invalid YAML (nested too deeply)") from None
    return data, YamlLines(lines)


MAX_YAML_DEPTH = 100


def _too_deep_line(text: str, limit: int) -> int:
    """Line where flow brackets ([, {) outside quotes nest deeper than `limit`; 0 when they never do."""
    depth, quote, line = 0, "", 1
    for ch in text:
        if ch == "\n":
            line += 1
            quote = ""
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
    return 0


def _walk_yaml(node: Any, path: tuple, out: dict, disp: str) -> None:
    import yaml

    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.start_mark)
            if isinstance(k, yaml.ScalarNode) and key in seen and key != "<<":
                raise UserError(f"{disp}:{k.start_mark.line + 1}: {key_str(path + (key,))}: duplicate key")
            seen.add(key)
            out[path + (key,)] = k.start_mark.line + 1
            _walk_yaml(v, path + (key,), out, disp)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk_yaml(v, path + (i,), out, disp)


# --------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def regular_files(root: str | os.PathLike) -> list[Path]:
    """Every file under `root`, sorted by relative path. A symbolic link or a special file (fifo, device) is a
    UserError: such a folder may come from someone else, and a link would make us hash, load or ship the
    content of a file outside it (~/secret, /dev/zero)."""
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            if p.is_symlink():
                raise UserError(f"{p}: is a symbolic link; only regular files are read from {root} (replace the "
                                "link with the file itself)")
            if name in filenames:
                if not p.is_file():
                    raise UserError(f"{p}: not a regular file")
                out.append(p)
    return sorted(out, key=lambda q: q.relative_to(root).as_posix())


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hash of a JSON-serialisable object, independent of key order."""
    return sha256_text(json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False))[:length]
