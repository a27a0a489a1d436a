"""HF safetensors -> GGUF conversion (base models and PEFT LoRA adapters) with llama.cpp's own converters.

llama.cpp's converter scripts (convert_hf_to_gguf.py, convert_lora_to_gguf.py, the `conversion`
package and the vendored `gguf-py`) ship inside the llama-cpp-python *source* distribution, not
inside the installed wheel. They are extracted once into

    <cache>/llama.cpp-converters/<llama-cpp-python version>/

(<cache> = $LORA_HARNESS_CACHE or ~/.cache/lora-harness), so conversion never needs the network at
run time. To prepare them (needs the package registry once, e.g. at image build / CI setup):

    python -m harness.gguf prepare                 # pip download of the matching sdist, then extract
    python -m harness.gguf prepare --sdist FILE    # from a llama_cpp_python-X.tar.gz you already have

Other sources, looked up in this order by converter_dir():
  1. $LORA_HARNESS_LLAMACPP_SCRIPTS: a llama.cpp checkout (folder holding convert_hf_to_gguf.py);
  2. the extracted cache for the installed llama-cpp-python version (any cached version otherwise);
  3. an sdist tarball: $LORA_HARNESS_LLAMACPP_SDIST or <cache>/llama.cpp-converters/*.tar.gz (extracted on first use).

Outputs are cached by content: the key hashes the input weights/config/tokenizer files, the
output type and the converter version, so a changed adapter gets a new GGUF and an unchanged
one is converted once. Writes are atomic (temp file + rename).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from harness.io import UserError, atomic_dir, atomic_file, read_json, sha256_file, stable_hash

SCRIPTS_ENV = "LORA_HARNESS_LLAMACPP_SCRIPTS"
SDIST_ENV = "LORA_HARNESS_LLAMACPP_SDIST"
PACKAGE = "llama-cpp-python"
BASE_OUTTYPES = ("f16", "bf16", "f32", "q8_0")
LORA_OUTTYPES = ("f16", "bf16", "f32", "q8_0")
# llama.cpp file types accepted by quantize_gguf (name -> LLAMA_FTYPE_MOSTLY_* constant name)
QUANT_TYPES = {
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q2_k": "LLAMA_FTYPE_MOSTLY_Q2_K",
    "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "bf16": "LLAMA_FTYPE_MOSTLY_BF16",
}
_NEEDED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py")
_READY = "harness_converters.json"


def _cache_root() -> Path:
    from harness.models import cache_root

    return cache_root()


def converters_root() -> Path:
    return _cache_root() / "llama.cpp-converters"


def gguf_cache_dir() -> Path:
    return _cache_root() / "gguf"


def installed_llamacpp_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _missing_message() -> str:
    ver = installed_llamacpp_version()
    pin = f"=={ver}" if ver else ""
    return (
        "llama.cpp converter scripts not found (they ship in the llama-cpp-python source distribution, not the wheel); "
        f"run once with network: `python -m harness.gguf prepare` (= pip download --no-deps --no-binary :all: "
        f"{PACKAGE}{pin}, then extract), or point {SDIST_ENV} at a llama_cpp_python-X.tar.gz, "
        f"or {SCRIPTS_ENV} at a llama.cpp checkout"
    )


def _is_script_dir(d: Path) -> bool:
    return all((d / n).is_file() for n in _NEEDED) and (d / "gguf-py" / "gguf").is_dir()


def converter_dir() -> Path:
    """The folder holding llama.cpp's converter scripts, extracting them from a cached sdist if needed."""
    env = os.environ.get(SCRIPTS_ENV)
    if env:
        d = Path(env).expanduser()
        if not _is_script_dir(d):
            raise UserError(f"{d}: {SCRIPTS_ENV} must name a llama.cpp folder with {', '.join(_NEEDED)} and gguf-py/")
        return d
    root = converters_root()
    ver = installed_llamacpp_version()
    if ver and (root / ver / _READY).is_file():
        return root / ver
    sdists = []
    if os.environ.get(SDIST_ENV):
        p = Path(os.environ[SDIST_ENV]).expanduser()
        if not p.is_file():
            raise UserError(f"{p}: {SDIST_ENV} names no file")
        sdists.append(p)
    if root.is_dir():
        found = sorted(root.glob("llama_cpp_python-*.tar.gz"), key=lambda p: _version_key(_sdist_version(p)))
        # the installed version first, newest otherwise
        sdists += [p for p in found if _sdist_version(p) == ver] + list(reversed(found))
    for p in sdists:
        return extract_converters(p)
    cached = sorted((d for d in root.glob("*") if (d / _READY).is_file()), key=lambda d: _version_key(d.name)) if root.is_dir() else []
    if cached:
        return cached[-1]  # a different version than the runtime: fine for the model families we convert
    raise UserError(_missing_message())


def _sdist_version(p: Path) -> str:
    m = re.match(r"llama_cpp_python-(.+)\.tar\.gz$", p.name)
    return m.group(1) if m else "0"


def _version_key(v: str) -> tuple:
    return tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.+-]", v))


def extract_converters(sdist: Path) -> Path:
    """Extract the converter scripts of a llama-cpp-python sdist into the cache (atomic); return the folder."""
    sdist = Path(sdist)
    version = _sdist_version(sdist)
    final = converters_root() / version
    if (final / _READY).is_file():
        return final
    wanted = re.compile(r"^[^/]+/vendor/llama\.cpp/((?:convert_[a-z_]+\.py)|(?:conversion/.*)|(?:gguf-py/.*))$")
    try:
        with tarfile.open(sdist, "r:gz") as tf, atomic_dir(final) as tmp:
            n = 0
            for m in tf.getmembers():
                mm = wanted.match(m.name)
                if not mm or not (m.isfile() or m.isdir()):
                    continue
                m.name = mm.group(1)
                tf.extract(m, tmp, filter="data")
                n += 1
            if not _is_script_dir(tmp):
                raise UserError(f"{sdist}: no llama.cpp converter scripts inside (is it a llama-cpp-python sdist?)")
            (tmp / _READY).write_text(json.dumps({"version": version, "sdist": str(sdist), "files": n}, indent=2))
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{sdist}: cannot extract llama.cpp converters: {e}") from e
    return final


def prepare(version: str | None = None, sdist: str | os.PathLike | None = None) -> Path:
    """Make the converters available offline: extract `sdist`, or pip-download the matching sdist first."""
    if sdist:
        return extract_converters(Path(sdist))
    version = version or installed_llamacpp_version()
    if not version:
        raise UserError(f"{PACKAGE} is not installed; install it with: pip install 'lora-harness[llamacpp]' (or give --version)")
    root = converters_root()
    if (root / version / _READY).is_file():
        return root / version
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"llama_cpp_python-{version}.tar.gz"
    if not target.is_file():
        with tempfile.TemporaryDirectory(dir=root) as td:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"{PACKAGE}=={version}", "-d", td]
            r = subprocess.run(cmd, capture_output=True, text=True)
            got = list(Path(td).glob("*.tar.gz"))
            if r.returncode != 0 or not got:
                raise UserError(f"pip download of {PACKAGE}=={version} sdist failed: {(r.stderr or r.stdout).strip()[-400:]}")
            os.replace(got[0], target)
    return extract_converters(target)


# ---------------------------------------------------------------------------------------- conversion


def _input_digest(folder: Path, patterns: tuple[str, ...]) -> str:
    files = sorted({p for pat in patterns for p in folder.glob(pat) if p.is_file()})
    return stable_hash([[p.name, sha256_file(p)] for p in files], 32)


def _converter_version(cdir: Path) -> str:
    try:
        return json.loads((cdir / _READY).read_text())["version"]
    except (OSError, ValueError, KeyError):
        return str(cdir.resolve())


def _run_converter(script: str, args: list[str], out_file: Path, what: str) -> None:
    cdir = converter_dir()
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.pop("NO_LOCAL_GGUF", None)  # use the gguf-py that matches the scripts
    with atomic_file(out_file) as tmp:
        cmd = [sys.executable, str(cdir / script), *args, "--outfile", tmp]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(cdir))
        if r.returncode != 0 or os.path.getsize(tmp) == 0:
            tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-6:])
            raise UserError(f"{what}: llama.cpp {script} failed (exit {r.returncode}): {tail}")


def _cached(out_file: Path | None, default_name: str, key: str) -> tuple[Path, Path, bool]:
    out = Path(out_file) if out_file else gguf_cache_dir() / default_name
    meta = out.with_name(out.name + ".json")
    try:
        ok = out.is_file() and json.loads(meta.read_text()).get("key") == key
    except (OSError, ValueError):
        ok = False
    return out, meta, ok


def refuse_own_code(folder: Path, trust_remote_code: bool) -> None:
    """llama.cpp's converters load the tokenizer/config of several architectures with trust_remote_code=True, so
    a folder that carries its own code (`auto_map` in a JSON config, or any *.py) would run it. Refused unless
    the user allowed remote code on their own command line."""
    if trust_remote_code:
        return
    found = []
    for p in sorted(folder.glob("*.json")):
        if p.name == "tokenizer.json" or not p.is_file() or p.stat().st_size > 16 * 2**20:
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        # transformers' auto_map names code files to import; PEFT's "auto_mapping" only names a transformers class
        if isinstance(data, dict) and data.get("auto_map"):
            found.append(f"auto_map in {p.name}")
    found += [str(p.relative_to(folder)) for p in sorted(folder.rglob("*.py"))][:3]
    if found:
        raise UserError(f"{folder}: carries its own code ({', '.join(found)}), which llama.cpp's GGUF converter may run "
                        "(it loads some models with trust_remote_code=True); refused. If you trust it, allow it "
                        "yourself: model.trust_remote_code=true (harness export: --trust-remote-code)")


def refuse_unconvertible_layout(model_dir: Path) -> None:
    """UserError for a layout llama.cpp's converter would silently turn into another model: its Gemma 3 conversion
    ignores config.json's layer_types and assumes Gemma 3's own pattern (5 sliding-window layers, then 1 global),
    so any other pattern gets the wrong RoPE base and window on some layers (tests/test_gguf_families.py)."""
    cfg = read_json(model_dir / "config.json") or {}
    types = cfg.get("layer_types") if isinstance(cfg, dict) else None
    if "Gemma3ForCausalLM" in (cfg.get("architectures") or []) and isinstance(types, list):
        want = ["sliding_attention" if i % 6 < 5 else "full_attention" for i in range(len(types))]
        if types != want:
            raise UserError(f"{model_dir / 'config.json'}: layer_types: llama.cpp's Gemma 3 conversion assumes 5 "
                            "sliding-window layers then 1 global, this model has another pattern: its GGUF would not "
                            "be this model (export it as an adapter or merged instead)")


def convert_hf_to_gguf(model_dir: str | os.PathLike, out_file: str | os.PathLike | None = None, outtype: str = "f16",
                       trust_remote_code: bool = False) -> Path:
    """Convert a HF safetensors model folder to one GGUF file; cached by content (returns the cached file)."""
    model_dir = Path(model_dir)
    if outtype not in BASE_OUTTYPES:
        raise UserError(f"unknown GGUF outtype {outtype!r} (expected one of {', '.join(BASE_OUTTYPES)})")
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a Hugging Face model folder (no config.json)")
    refuse_own_code(model_dir, trust_remote_code)
    refuse_unconvertible_layout(model_dir)
    cdir = converter_dir()
    digest = _input_digest(model_dir, ("*.safetensors", "*.json", "tokenizer.model", "*.txt"))
    key = stable_hash({"in": digest, "outtype": outtype, "conv": _converter_version(cdir)}, 16)
    out, meta, ok = _cached(Path(out_file) if out_file else None, f"{model_dir.name}-{outtype}-{key}.gguf", key)
    if ok:
        return out
    _run_converter("convert_hf_to_gguf.py", [str(model_dir), "--outtype", outtype], out, str(model_dir))
    meta.write_text(json.dumps({"key": key, "source": str(model_dir), "outtype": outtype}, indent=2))
    return out


def convert_lora_to_gguf(
    adapter_dir: str | os.PathLike,
    base_model_dir: str | os.PathLike,
    out_file: str | os.PathLike | None = None,
    outtype: str = "f32",
    trust_remote_code: bool = False,
) -> Path:
    """Convert a PEFT LoRA adapter folder to a llama.cpp GGUF LoRA; cached by adapter + base content."""
    adapter_dir, base_model_dir = Path(adapter_dir), Path(base_model_dir)
    if outtype not in LORA_OUTTYPES:
        raise UserError(f"unknown GGUF LoRA outtype {outtype!r} (expected one of {', '.join(LORA_OUTTYPES)})")
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file() or not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"{adapter_dir}: not a PEFT adapter folder (needs adapter_config.json + adapter_model.safetensors)")
    refuse_own_code(adapter_dir, trust_remote_code)
    refuse_own_code(base_model_dir, trust_remote_code)
    cdir = converter_dir()
    key = stable_hash(
        {
            "adapter": sha256_file(weights),
            "config": sha256_file(adapter_dir / "adapter_config.json"),
            "base_config": sha256_file(base_model_dir / "config.json"),
            "outtype": outtype,
            "conv": _converter_version(cdir),
        },
        16,
    )
    out, meta, ok = _cached(Path(out_file) if out_file else None, f"lora-{adapter_dir.name}-{outtype}-{key}.gguf", key)
    if ok:
        return out
    _run_converter(
        "convert_lora_to_gguf.py",
        [str(adapter_dir), "--base", str(base_model_dir), "--outtype", outtype],
        out,
        str(adapter_dir),
    )
    meta.write_text(json.dumps({"key": key, "source": str(adapter_dir), "base": str(base_model_dir), "outtype": outtype}, indent=2))
    return out


def quantize_gguf(in_file: str | os.PathLike, out_file: str | os.PathLike, qtype: str = "q4_k_m", n_threads: int = 0) -> Path:
    """Quantize a GGUF model with llama.cpp's llama_model_quantize (needs llama-cpp-python); atomic."""
    in_file, out_file = Path(in_file), Path(out_file)
    if qtype not in QUANT_TYPES:
        raise UserError(f"unknown quantization {qtype!r} (expected one of {', '.join(QUANT_TYPES)})")
    if not in_file.is_file():
        raise UserError(f"{in_file}: GGUF file not found")
    try:
        import llama_cpp
    except ImportError as e:
        raise UserError("GGUF quantization needs llama-cpp-python: pip install 'lora-harness[llamacpp]'") from e
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[qtype])
    params.nthread = int(n_threads)
    with atomic_file(out_file) as tmp:
        rc = llama_cpp.llama_model_quantize(str(in_file).encode(), tmp.encode(), params)
        if rc != 0:
            raise UserError(f"{in_file}: llama_model_quantize to {qtype} failed (code {rc})")
    return out_file


def gguf_metadata(path: str | os.PathLike) -> dict:
    """A few header fields of a GGUF file (architecture, name, file type, tensor count) via the gguf package."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    out: dict = {"n_tensors": len(r.tensors)}
    for k in ("general.architecture", "general.name", "general.type", "general.file_type", "adapter.type", "adapter.lora.alpha"):
        f = r.fields.get(k)
        if f is None:
            continue
        v = f.parts[f.data[0]]
        out[k] = bytes(v).decode("utf-8", "replace") if v.dtype.kind == "u" and v.dtype.itemsize == 1 else v.tolist()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m harness.gguf", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="fetch/extract llama.cpp's converter scripts into the cache (network once)")
    p.add_argument("--version", help=f"{PACKAGE} version (default: the installed one)")
    p.add_argument("--sdist", help="an already downloaded llama_cpp_python-X.tar.gz")
    p = sub.add_parser("where", help="print the converter folder")
    p = sub.add_parser("convert", help="convert a HF model folder to GGUF")
    p.add_argument("model_dir")
    p.add_argument("--out")
    p.add_argument("--outtype", default="f16", choices=BASE_OUTTYPES)
    p.add_argument("--trust-remote-code", action="store_true", help="convert a folder that carries its own code")
    p = sub.add_parser("convert-lora", help="convert a PEFT adapter folder to a GGUF LoRA")
    p.add_argument("adapter_dir")
    p.add_argument("--base", required=True)
    p.add_argument("--out")
    p.add_argument("--outtype", default="f32", choices=LORA_OUTTYPES)
    p.add_argument("--trust-remote-code", action="store_true", help="convert folders that carry their own code")
    p = sub.add_parser("quantize", help="quantize a GGUF model")
    p.add_argument("in_file")
    p.add_argument("out_file")
    p.add_argument("--type", default="q4_k_m", choices=sorted(QUANT_TYPES))
    a = ap.parse_args(argv)
    try:
        if a.cmd == "prepare":
            print(prepare(a.version, a.sdist))
        elif a.cmd == "where":
            print(converter_dir())
        elif a.cmd == "convert":
            print(convert_hf_to_gguf(a.model_dir, a.out, a.outtype, a.trust_remote_code))
        elif a.cmd == "convert-lora":
            print(convert_lora_to_gguf(a.adapter_dir, a.base, a.out, a.outtype, a.trust_remote_code))
        elif a.cmd == "quantize":
            print(quantize_gguf(a.in_file, a.out_file, a.type))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
