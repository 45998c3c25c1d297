"""What is computed from solutions: distances, validation studies, diagnostics, closed forms, plots.

diagnostics.py       diagnostics of a grid density in log space: KL, Fisher information, moments
distances.py         exact W1/W2 (1D) and sliced W2 (2D) between an ensemble and a grid law
exact.py             exact reference solutions for verifying the solver
hypothesis_tests.py  histogram TV and G-test, Kolmogorov–Smirnov and Cramér–von Mises tests
kl_kernel.py         compiled (numba) one-pass sum of the generalised KL terms
metrics.py           compare: every distance and test between a particle ensemble and a grid density
mmd.py               unbiased MMD^2 with exact grid integrals; the Gaussian cell-pair kernel
plot.py              figures of a trajectory: density snapshots and diagnostics
replicates.py        replicate ensembles tested together (Hotelling T^2); masses of mixture modes
validation.py        validation studies of particle samplers against the grid solution: run, fit slopes, verdict
validation_report.py a validation study as text and as a figure
"""
