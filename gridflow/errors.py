"""Exception and warning types of gridflow.

Every error a user can cause is an :class:`InputError` (command-line exit status 2);
a failure of the numerics is a :class:`NumericalError` (exit status 1).  Messages say
what was wrong and how to fix it, in one paragraph.
"""

from __future__ import annotations


class GridflowError(Exception):
    """Base class of all gridflow errors."""

    exit_code: int = 1


class InputError(GridflowError):
    """Bad input of any kind: case file, density, data file, samples (exit status 2)."""

    exit_code = 2


class CaseError(InputError):
    """A case file (or a ``--set`` override) is malformed or inconsistent."""


class ExpressionError(CaseError):
    """A ``log_density`` formula cannot be parsed or uses something not allowed."""


class ScheduleError(CaseError):
    """A tempering schedule leaves [0, 1] (or is not finite) where it is used."""


class DensityError(InputError):
    """A density is not finite, not integrable on the box, or otherwise unusable."""


class TrajectoryFileError(InputError):
    """A trajectory file is missing, not HDF5, truncated, or not a gridflow file."""


class OutputWriteError(TrajectoryFileError):
    """Writing an output file failed midway (disk full, file-size limit, permission lost): the
    frames written before stay readable and the run can be resumed (exit status 1)."""

    exit_code = 1


class LimitError(InputError):
    """A request exceeds a limit of gridflow or of the machine: memory, frames, samples, replicates, steps."""


class NumericalError(GridflowError):
    """The solver could not produce a trustworthy result (exit status 1)."""

    exit_code = 1


class BoundaryMassWarning(UserWarning):
    """A density puts noticeable mass on the edge of the box (the box truncates it)."""


class PecletWarning(UserWarning):
    """The cell Péclet number h|grad log pi| of a run is large for the Scharfetter–Gummel flux (its
    error constant grows with it; the run is accurate only on finer cells or with the log-mean flux)."""
