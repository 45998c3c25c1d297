"""What is computed from solutions: distances, validation studies, diagnostics, closed forms, plots.

diagnostics.py       diagnostics of a grid density in log space: KL, Fisher information, moments
exact.py             exact reference solutions for verifying the solver
kl_kernel.py         compiled (numba) one-pass sum of the generalised KL terms
metrics.py           distances and tests between a particle ensemble and a grid density
plot.py              figures of a trajectory: density snapshots and diagnostics
validation.py        validation studies of particle samplers against the grid solution: run, fit slopes, verdict
validation_report.py a validation study as text and as a figure
validation_cli.py    the ``gridflow validate`` command
"""
