"""What a time loop reads per step: the coefficient schedule a(t_m, x), the coefficient of the
current step (:class:`StepCoefficient`, one DG0 Function and one change flag per step, shared
by all steppers) and the source f(t, x)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dolfinx.fem
import numpy as np
import numpy.typing as npt
import ufl
from mpi4py import MPI

from dolfinx_lod.coefficients import (
    CoefficientLike,
    check_coefficient_values,
    coefficient_function,
    owned_coefficient_values,
    set_cell_values,
    validate_array_shape,
)
from dolfinx_lod.grids import NestedGrids
from dolfinx_lod.inputs import at_time, positional_arity
from dolfinx_lod.parallel import validate


@dataclass
class CoefficientSchedule:
    """a(t_m, x) for the steps m = 1..M: ``at(m, t)`` returns (coefficient, parameter p).

    Build one with :meth:`from_stack` (one fine-cell array per step), :meth:`from_family`
    (a family a(x, p) and a schedule p(t)) or :meth:`from_function` (a DOLFINx Function
    updated in place for each t).
    """

    at: Callable[[int, float], tuple[CoefficientLike, Any]]
    steps: int | None = None  # number of steps the schedule is defined for (None: any)

    @classmethod
    def from_stack(cls, stack: npt.ArrayLike, check: bool = True) -> CoefficientSchedule:
        """Coefficient on step m = stack[m - 1], an (M, n_y, n_x) or (M, n_z, n_y, n_x) array
        (orientation as for arrays of :mod:`dolfinx_lod.coefficients`). With ``check``, every
        step is validated now, one step at a time (a memory-mapped stack is read once), so
        that a bad value at a later step stops a run before its first step; pass False for a
        stack validated already."""
        stack = np.asarray(stack) if not isinstance(stack, np.ndarray) else stack
        if stack.ndim not in (3, 4):
            raise ValueError(
                f"coefficient stack must have shape (M, n_y, n_x) or (M, n_z, n_y, n_x); got "
                f"{stack.shape}"
            )
        validate_array_shape(stack[0], "coefficient stack entry", stack.ndim - 1)
        for m in range(stack.shape[0] if check else 0):
            check_coefficient_values(np.asarray(stack[m]), f"coefficient at step {m + 1}")
        return cls(lambda m, t: (stack[m - 1], None), steps=stack.shape[0])

    @classmethod
    def from_family(cls, a: Callable, schedule: Callable[[float], Any]) -> CoefficientSchedule:
        """Coefficient a(x, p(t_m)) on step m."""
        return cls(lambda m, t: (a, schedule(t)))

    @classmethod
    def from_function(
        cls, a: dolfinx.fem.Function, update: Callable[[dolfinx.fem.Function, float], None]
    ) -> CoefficientSchedule:
        """A DG0 Function a on T_h that ``update(a, t_m)`` sets in place for step m (e.g.
        ``a.interpolate(...)``; call ``a.x.scatter_forward()`` after writing values by hand).
        The time loop calls it before each step and reads the values right after."""

        def at(m: int, t: float) -> tuple[dolfinx.fem.Function, None]:
            update(a, t)
            return a, None

        return cls(at)

    @classmethod
    def from_data(cls, a: Any, time: dolfinx.fem.Constant | None = None) -> CoefficientSchedule:
        """Any form of :mod:`dolfinx_lod.inputs` as the coefficient of every step, or a
        callable (t, x) -> values evaluated at t_m; ``time``: a Constant that the user's UFL
        expression reads as t, set to t_m before the step's values are read."""
        return cls(lambda m, t: (at_time(a, t, time), None))


class StepCoefficient:
    """a(t_m, x) of the current step, evaluated only when a stepper asks for the field (a
    stepper whose correctors depend on p alone never does).

    Attributes: ``m``, ``t``, ``a`` (the schedule's coefficient of this step: array, callable
    or Function) and ``p`` (its parameter, or None). The one DG0 Function :meth:`function` is
    shared by every stepper of a time loop, and :meth:`changed` is decided once per step."""

    def __init__(self, grids: NestedGrids, schedule: CoefficientSchedule):
        self.grids, self.schedule = grids, schedule
        self._function = dolfinx.fem.Function(grids.Q_h, name="a")
        self._evaluated_at: int | None = None
        self._previous: npt.NDArray[np.float64] | None = None  # values of the last evaluation
        self._changed = True
        self.m, self.t = 0, 0.0
        self.a: CoefficientLike | None = None
        self.p: Any = None

    def advance(self, m: int, t: float) -> None:
        """Move to step m at time t."""
        self.m, self.t = m, t
        self.a, self.p = self.schedule.at(m, t)

    def values(self) -> npt.NDArray[np.float64]:
        """Validated values on the owned fine cells. Collective."""
        if self._evaluated_at != self.m:
            values = owned_coefficient_values(
                self.grids, self.a, self.p, name=f"coefficient at step {self.m}"
            )
            same = self._previous is not None and np.array_equal(values, self._previous)
            self._changed = not self.grids.comm.allreduce(same, op=MPI.LAND)
            if self._changed:
                set_cell_values(self._function, values)
                self._previous = values
            self._evaluated_at = self.m
        return self._previous

    def changed(self) -> bool:
        """True (on every rank) if a(t_m) differs from the field of the last evaluated step,
        or none was evaluated before. Collective."""
        self.values()
        return self._changed

    def function(self) -> dolfinx.fem.Function:
        """a(t_m) as a DG0 Function on T_h. Collective."""
        self.values()
        return self._function


class Source:
    """f(t) as a DG0 Function on T_h: a number stays a number; other data (any form of
    :mod:`dolfinx_lod.inputs`, a callable (t, x) -> values for a time-dependent f) is evaluated
    at the first step and again at every step if it may depend on t (a (t, x) callable, a UFL
    expression or Constant the user changes in place, data read with a ``time`` Constant)."""

    def __init__(self, grids: NestedGrids, f: Any, time: dolfinx.fem.Constant | None = None):
        self.grids, self.f, self.time = grids, f, time
        self._values: npt.NDArray[np.float64] | None = None
        if isinstance(f, int | float | np.number):
            validate(grids.comm, lambda: check_source(f))
            self.function: float | dolfinx.fem.Function = float(f)
        else:
            self.function = dolfinx.fem.Function(grids.Q_h, name="f")
        self._varying = time is not None or isinstance(f, ufl.core.expr.Expr)
        self._varying |= callable(f) and positional_arity(f) == 2

    def update(self, t: float) -> bool:
        """Set f(t); True (on every rank) if its values changed. Collective."""
        if isinstance(self.function, float) or (self._values is not None and not self._varying):
            return False
        data = at_time(self.f, t, self.time)
        values = owned_coefficient_values(self.grids, data, name="source f", positive=False)
        changed = self._values is None or not np.array_equal(values, self._values)
        if self.grids.comm.allreduce(changed, op=MPI.LOR):
            set_cell_values(self.function, values)
            self._values = values
            return True
        return False


def check_source(source: Any) -> None:
    """A number source f must be finite."""
    if isinstance(source, int | float | np.number) and not np.isfinite(source):
        raise ValueError(f"source f must be a finite number or a callable f(t, x), got {source}")


def capacity_function(grids: NestedGrids, capacity: Any) -> float | dolfinx.fem.Function:
    """The capacity c > 0, constant in time: a number as it is, other data (any form of
    :mod:`dolfinx_lod.inputs`) as a DG0 Function on T_h. Collective."""
    if isinstance(capacity, int | float | np.number):
        validate(grids.comm, lambda: _check_positive_number(capacity, "capacity"))
        return float(capacity)
    return coefficient_function(grids, capacity, name="capacity")


def _check_positive_number(value: float, name: str) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value}")


def initial_value(grids: NestedGrids, u0: Callable | None) -> dolfinx.fem.Function | None:
    """The nodal interpolant of u0 in V_h (None for u0 = 0)."""
    if u0 is None:
        return None
    u = dolfinx.fem.Function(grids.V_h)
    u.interpolate(u0)
    return u
