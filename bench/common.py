"""Shared helper of the benchmarks: the machine description."""

import os
import platform


def machine() -> dict:
    """Where the numbers were measured."""
    return {"node": platform.node(), "processor": platform.processor(), "cpus": os.cpu_count()}
