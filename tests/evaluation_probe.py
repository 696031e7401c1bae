"""One cold measure of a stack's evaluation, in the interpreter that runs this file (issue 14).

tests/test_evaluation_time.py starts it once per measure, so every import is a first import.
Its one argument is JSON: ``stack``, ``overrides`` (config, as run_program takes them) and
``needed``: null to run the program once and report every module then loaded, or the modules to
import first, timed, before the evaluation is timed. ``pad`` names modules the evaluation imports
as well (the test's control: what the program would cost if it imported them itself).
"""

from __future__ import annotations

import importlib
import json
import sys
import time

# What the interpreter loaded before this file ran (site's own): no part of any measure.
AT_START = set(sys.modules)


def lazy(module: object) -> bool:
    """Registered, not loaded until first used: importlib.util.LazyLoader's modules, and those of
    pulumi._utils.lazy_import (a copy of it, which the SDKs use for each API group's module)."""
    return type(module).__name__ == "_LazyModule"


def main(request: dict) -> dict:
    needed = request["needed"]
    start = time.perf_counter()
    for name in needed or []:
        module = importlib.import_module(name)
        if lazy(module):
            # Used, as the program uses it, before its submodules are imported (they come after
            # it): any attribute but the introspection ones (__name__, __dict__...) loads it.
            getattr(module, "__all__", None)
    imported = time.perf_counter()
    # The engine's stand-in (untimed): what `pulumi up` does outside the program's process.
    from harness import run_program

    evaluating = time.perf_counter()
    for name in request.get("pad") or []:
        importlib.import_module(name)
    run_program(request["stack"], overrides=request["overrides"])
    done = time.perf_counter()
    if needed is None:
        # Only the loaded ones cost an import.
        modules = [(name, module) for name, module in list(sys.modules.items()) if name not in AT_START]
        return {"modules": [[name, lazy(module)] for name, module in modules]}
    return {"imports": imported - start, "evaluation": done - evaluating}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
