"""Everything that meets a file or a user: case files, formulas, HDF5 trajectory and particle files, runs.

case.py          case files (TOML): read, override, resolve a whole case; memory estimate
case_checks.py   value checkers, table/kind validation and the error messages of case files
case_schema.py   the case schema: tables, keys, defaults (DEFAULT_TOLERANCE), limits, cross-field checks
dataset.py       xarray views of sweeps and of in-memory runs
expression.py    the safe formula language of case files
h5store.py       shared HDF5 storage: attributes, crash-safe writing, opening errors
particle_file.py particle trajectory files: ParticleWriter, write/open_particles
runner.py        runs a resolved case: problem -> stepper -> frames -> trajectory file
trajectory.py    grid trajectory files: writer, reader, Trajectory object
"""
