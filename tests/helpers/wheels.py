"""Build small real wheels for tests, written directly as zip files per the wheel spec.

Tests install these with real uv from a local find-links directory, so no network and no
build backend is needed. Spec: https://packaging.python.org/en/latest/specifications/binary-distribution-format/
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# A console script that prints where its release is and what the lock pins, so tests can
# see the deployed release from inside the running app. `--fail` exits 3, `--sleep N` waits.
DEFAULT_MODULE = '''\
"""Test app built by tests/wheels.py."""
import json, os, sys, time

def main():
    args = sys.argv[1:]
    if "--fail" in args:
        print("self-check failed on purpose", file=sys.stderr)
        return 3
    if "--sleep" in args:
        time.sleep(float(args[args.index("--sleep") + 1]))
    release = os.environ.get("QRELEASE_RELEASE_DIR") or os.path.dirname(sys.prefix)
    with open(os.path.join(release, "qrelease.lock.json"), encoding="utf-8") as handle:
        lock = json.load(handle)
    print(json.dumps({"release": release, "version": lock["version"], "prefix": sys.prefix,
                      "package_version": VERSION}))
    return 0
'''


@dataclass(frozen=True)
class BuiltWheel:
    """A wheel file on disk and the sha256 a manifest would pin it with."""

    name: str
    version: str
    path: Path
    sha256: str


def _record_hash(data: bytes) -> str:
    """The RECORD hash form: urlsafe base64 of the sha256 digest without padding."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _metadata(name: str, version: str, requires: Sequence[str]) -> str:
    """The METADATA file (core metadata 2.1)."""
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    return "\n".join(lines) + "\n\n"


def _entry_points(scripts: Mapping[str, str]) -> str:
    """The entry_points.txt file declaring console scripts."""
    lines = ["[console_scripts]"] + [f"{cmd} = {target}" for cmd, target in scripts.items()]
    return "\n".join(lines) + "\n"


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    scripts: Mapping[str, str] | None = None,
    modules: Mapping[str, str] | None = None,
    requires: Sequence[str] = (),
) -> BuiltWheel:
    """Write `<name>-<version>-py3-none-any.whl` into `dest` and return it with its sha256.

    By default the wheel holds one module `<name>_app` and a console script `<name>` that
    runs its `main()` (see DEFAULT_MODULE).
    """
    dist = re.sub(r"[-_.]+", "_", name).lower()
    module = f"{dist}_app"
    if modules is None:
        modules = {f"{module}.py": DEFAULT_MODULE + f"\nVERSION = {version!r}\n"}
    if scripts is None:
        scripts = {name: f"{module}:main"}
    info = f"{dist}-{version}.dist-info"
    files: dict[str, bytes] = {path: text.encode() for path, text in modules.items()}
    files[f"{info}/METADATA"] = _metadata(name, version, requires).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: qrelease-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if scripts:
        files[f"{info}/entry_points.txt"] = _entry_points(scripts).encode()
    return _write(dest / f"{dist}-{version}-py3-none-any.whl", files, f"{info}/RECORD", name)


def _write(path: Path, files: dict[str, bytes], record: str, name: str) -> BuiltWheel:
    """Zip `files` plus their RECORD into `path`."""
    rows = [f"{arc},{_record_hash(data)},{len(data)}" for arc, data in files.items()]
    rows.append(f"{record},,")
    files = {**files, record: ("\n".join(rows) + "\n").encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arc, data in files.items():
            info = zipfile.ZipInfo(arc, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    version = path.name.split("-")[1]
    return BuiltWheel(name=name, version=version, path=path, sha256=sha256)
