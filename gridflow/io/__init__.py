"""Everything that meets a file or a user: case files, formulas, HDF5 trajectory and particle files, runs.

case.py              case files (TOML): read, override, resolve a whole case; memory estimate
case_checks.py       value checkers, table/kind validation and the error messages of case files
case_schema.py       the case schema: tables, keys, defaults (DEFAULT_TOLERANCE), limits, cross-field checks
dataset.py           xarray views of sweeps and of in-memory runs
expression.py        the safe formula language of case files
h5store.py           shared HDF5 layout: attributes, netCDF variables/dimensions, appending frames (design notes)
h5reader.py          opening an HDF5 file for reading, with specific errors (FileKind, open_readonly)
output_safety.py     which paths may be written, the output lock, temporary names
particle_file.py     particle trajectory files: ParticleWriter, write/open_particles
runner.py            runs a resolved case: problem -> stepper -> frames -> trajectory file
status_file.py       the frame-by-frame writer's life cycle: SWMR mode, status attribute, append in place
superblock.py        the HDF5 signature and the superblock's writer flags (read, cleared)
trajectory.py        grid trajectory files: layout names, reader, Trajectory object
trajectory_damage.py damaged frames of a trajectory (MASS_TOLERANCE)
trajectory_writer.py TrajectoryWriter: writes grid trajectory files frame by frame
"""
