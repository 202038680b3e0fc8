"""Shared helpers of the benchmarks: the demos' examples and the machine description."""

import importlib.util
import os
import platform
from pathlib import Path

DEMOS = Path(__file__).resolve().parent.parent / "demos"


def load_demo(name: str):
    """The module ``demos/<name>.py`` (its ``SIZES`` and ``make_example``)."""
    spec = importlib.util.spec_from_file_location(name, DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def machine() -> dict:
    """Where the numbers were measured."""
    return {"node": platform.node(), "processor": platform.processor(), "cpus": os.cpu_count()}
