"""Check that every module of janus_rt imports from one place: the device script's proof that the package is whole.

`python -m janus_rt.bench.import_check --under DIR` imports each module of the janus_rt it finds (walking the
package's folders, links followed, so the namespace package janus_rt.kernels counts) and checks that each came
from under DIR. It exits 1 naming every module that fails, 0 otherwise; a module that needs a missing optional
extra (fastapi, ray, onnx, tensorrt: a ModuleNotFoundError for a package that is not janus_rt) is listed apart
and does not fail the check. bench/device_run.sh runs it before any stage, where janus-rt is not installed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path


def module_names(package_dir: Path, package: str = "janus_rt") -> list[str]:
    """Every module under `package_dir` (links followed), as dotted names, sorted; no __main__ modules."""
    names = []
    for folder, subfolders, files in os.walk(package_dir, followlinks=True):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        parts = Path(folder).relative_to(package_dir).parts
        for file in files:
            if not file.endswith(".py") or file == "__main__.py":
                continue
            stem = file[:-3]
            names.append(".".join((package, *parts) if stem == "__init__" else (package, *parts, stem)))
    return sorted(set(names))


def check(under: Path | None) -> tuple[list[str], list[str], list[str]]:
    """(imported, missing optional extras as 'module: package', failures as 'module: error')."""
    import janus_rt  # start-up time: importing the package (after --under puts it on the path) is what this checks

    root = Path(janus_rt.__file__).parent
    imported, extras, failures = [], [], []
    for name in module_names(root):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and not e.name.startswith("janus_rt"):
                extras.append(f"{name}: {e.name}")
            else:
                failures.append(f"{name}: {type(e).__name__}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 (any import failure is reported by name)
            failures.append(f"{name}: {type(e).__name__}: {e}")
            continue
        origin = Path(module.__file__ or "")
        if under is not None and not origin.absolute().is_relative_to(under.absolute()):
            failures.append(f"{name}: imported from {origin}, not from under {under}")
            continue
        imported.append(name)
    return imported, extras, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--under", type=Path, default=None,
                        help="every module must be imported from under this folder (the device script's link tree)")
    args = parser.parse_args(argv)
    imported, extras, failures = check(args.under)
    where = f" from under {args.under}" if args.under else ""
    print(f"janus_rt: {len(imported)} modules import{where}")
    if extras:
        print(f"  skipped, optional extra not installed: {'; '.join(extras)}")
    for failure in failures:
        print(f"  FAILED {failure}")
    return 1 if failures or not imported else 0


if __name__ == "__main__":
    sys.exit(main())
