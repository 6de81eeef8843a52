"""``avatar-agent bench``: run the scripts in ``benchmarks/`` and collect their numbers.

Each ``benchmarks/bench_<area>.py`` exposes ``run(cfg) -> dict``. Results are printed as
JSON; the recorded figures live in ``benchmarks/RESULTS.md``. The scripts are part of
the source checkout, not of the installed package: installed, ``bench`` says so.
"""

from __future__ import annotations

import importlib.util
import platform
import time
from pathlib import Path
from typing import Any

from .config import Config
from .errors import InputError
from .models import source_checkout

_CHECKOUT = source_checkout()
BENCH_DIR: Path | None = _CHECKOUT / "benchmarks" if _CHECKOUT is not None else None


def areas() -> list[str]:
    """Benchmark areas present: ``benchmarks/bench_<area>.py`` (none when installed)."""
    if BENCH_DIR is None:
        return []
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def run_bench(cfg: Config, what: list[str]) -> dict[str, Any]:
    """Run the named areas (``all`` = every area) and return their results."""
    if BENCH_DIR is None:
        raise InputError("the benchmarks ship with the source, not with the installed package",
                         hint="clone the repository, pip install -e . there and run: make bench")
    known = areas()
    chosen = known if "all" in what else what
    unknown = [a for a in chosen if a not in known]
    if unknown:
        raise InputError(f"unknown benchmark '{unknown[0]}'", hint=f"choose from: {', '.join(known)}, all")
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor()
                               or platform.machine()}
    for area in chosen:
        path = BENCH_DIR / f"bench_{area}.py"
        if not path.is_file():
            raise InputError(f"benchmark script {path} not found", hint="run from a source checkout")
        spec = importlib.util.spec_from_file_location(f"bench_{area}", path)
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(module)
        results[area] = module.run(cfg)
    return results
