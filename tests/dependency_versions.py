"""Which third-party versions a test run used, and which moved since the last verified green run.

CI installs the newest releases pip picks (what users get), so a dependency can move under an unchanged tree.
When a test then fails, the report says which packages differ from `.ci/verified-versions.txt`, the set that last
passed the README's two commands on a fresh clone, and the run's header lists the versions of the packages the
suite leans on. To get that verified set back (to tell a dependency's move from a change of ours):

    pip install -c .ci/verified-versions.txt "torch==2.13.0" -e ".[dev]"

After a verified green run on a fresh clone and a fresh venv, record the set it used:

    python tests/dependency_versions.py --record
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VERIFIED = REPO / ".ci" / "verified-versions.txt"
# shown in every run's header: the runtime dependencies, the oracle and the extras' heavy packages
HEADER_PACKAGES = ("torch", "triton", "numpy", "safetensors", "tokenizers", "pillow", "transformers", "kernels",
                   "huggingface-hub", "onnx", "onnxruntime", "fastapi", "pydantic", "ray", "pytest", "hypothesis")
NOT_RECORDED = {"janus-rt", "pip", "setuptools", "wheel"}  # ours, and the installer's own tools


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public_version(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0': the local label names a build (CPU, CUDA), not a release."""
    return version.split("+", 1)[0]


def installed_versions() -> dict[str, str]:
    """{canonical name: version} of every distribution importable in this interpreter."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def read_verified(path: Path = VERIFIED) -> dict[str, str]:
    """{canonical name: version} from a `name==version` file ('#' comments); {} when there is none."""
    if not path.is_file():
        return {}
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise ValueError(f"{path}: {line!r} is not 'name==version'")
            pins[canonical(name)] = version.strip()
    return pins


def moved(installed: dict[str, str], verified: dict[str, str]) -> list[str]:
    """What differs from the verified set: a line per package whose release moved or that is gone, then one line
    for the packages that are new (a new dependency can break a run too: PyPI's `kernels` came in with
    transformers 5). [] when nothing differs, or when there is no verified set to compare with."""
    if not verified:
        return []
    lines, new = [], []
    for name in sorted(set(installed) | set(verified)):
        now, then = installed.get(name), verified.get(name)
        if name in NOT_RECORDED or (now and then and public_version(now) == public_version(then)):
            continue
        if then is None:
            new.append(f"{name} {now}")
        else:
            lines.append(f"{name} {then} -> {now or '(not installed)'}")
    if new:
        lines.append(f"not in the verified set: {', '.join(new)}")
    return lines


def header_line(installed: dict[str, str], verified: dict[str, str]) -> str:
    """'torch 2.13.0+cpu, transformers 5.25.0 (verified 5.17.0), ...' for the packages the suite leans on."""
    parts = []
    for name in HEADER_PACKAGES:
        if name in installed:
            then = verified.get(name)
            note = f" (verified {then})" if then and public_version(then) != public_version(installed[name]) else ""
            parts.append(f"{name} {installed[name]}{note}")
    return ", ".join(parts)


def record(path: Path = VERIFIED) -> int:
    """Write the current interpreter's versions as the verified set; returns how many were written."""
    pins = {n: public_version(v) for n, v in installed_versions().items() if n not in NOT_RECORDED}
    lines = [f"# the versions of the last verified green run of the README's two commands (fresh clone, fresh venv,",
             f"# Python {sys.version_info.major}.{sys.version_info.minor}), recorded {date.today().isoformat()} by "
             f"`python tests/dependency_versions.py --record`",
             *(f"{name}=={version}" for name, version in sorted(pins.items()))]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return len(pins)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help=f"write this interpreter's versions to {VERIFIED}")
    args = parser.parse_args(argv)
    if args.record:
        print(f"recorded {record()} packages in {VERIFIED}")
        return 0
    lines = moved(installed_versions(), read_verified())
    print("\n".join(lines) if lines else f"every installed package is at its version in {VERIFIED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
