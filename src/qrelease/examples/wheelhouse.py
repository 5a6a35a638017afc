"""The example apps' wheelhouse, made on first use: the README works on a fresh machine.

The example environments install `bell-service` and `qrng` from `find_links: wheels`, a
directory under the state dir, and no package index has them. So whichever process deploys
first (`qrelease reconcile`, `qrelease controller run`, the `make run` demo) hands its venv
deployer an `ExampleWheelhouse`: before an install into such a directory, it builds each
example package the release pins, at that version, from the sources shipped with qrelease
(see `wheels`), unless the wheel is already there. It builds only what the bundled
manifests pin, so a package of your own that merely shares a name is never built; pin
your packages with `sha256` and a mix-up could not install anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from qrelease.deployers.base import DeployError
from qrelease.model.manifest import Package


class ExampleWheelhouse:
    """Builds the bundled example packages into a wheel directory when a release needs them."""

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._pinned: Mapping[str, Sequence[str]] | None = None
        self._lock = threading.Lock()  # releases of one pass may install in parallel

    def supply(self, directory: Path, packages: Sequence[Package]) -> None:
        """Build the example packages among `packages` that `directory` lacks.

        A link to a directory that is gone (a share not mounted) is the operator's: nothing
        is built through it, and the install says what is missing.
        """
        from qrelease.examples.demo import has_wheel

        if directory.is_symlink() and not directory.exists():
            return
        with self._lock:
            pinned = self._bundled_pins()
            missing: dict[str, list[str]] = {}
            for package in packages:
                if package.version not in pinned.get(package.name, ()):
                    continue
                if not has_wheel(directory, package.name, package.version):
                    missing.setdefault(package.name, []).append(package.version)
            if missing:
                self._build(directory, missing)

    def _bundled_pins(self) -> Mapping[str, Sequence[str]]:
        """Example package -> the versions the bundled manifests pin (empty if not shipped)."""
        if self._pinned is None:
            from qrelease.examples.bundle import bundled_root
            from qrelease.examples.demo import buildable_versions

            try:
                self._root = self._root or bundled_root()
            except FileNotFoundError:
                self._pinned = {}
            else:
                self._pinned = buildable_versions(self._root)
        return self._pinned

    def _build(self, directory: Path, missing: Mapping[str, Sequence[str]]) -> None:
        from qrelease.examples.wheels import build_example_wheels

        assert self._root is not None
        try:
            build_example_wheels(self._root / "examples", directory, versions=missing)
        except (DeployError, OSError) as error:
            wanted = ", ".join(f"{name} {' '.join(v)}" for name, v in sorted(missing.items()))
            raise DeployError(f"cannot build the example wheels ({wanted}): {error}") from None


def example_wheelhouse() -> ExampleWheelhouse:
    """The wheelhouse of the bundled examples (builds nothing until a release needs it)."""
    return ExampleWheelhouse()
