"""Many runs at once: parameter sweeps.

plan.py     sweep file -> runs (plan_sweep)
index.py    the index: index.csv and index.nc
worker.py   one run, as a worker does it (run_one)
pool.py     the local process pool
cluster.py  a Dask distributed cluster (--scheduler)
sweep.py    run_sweep and the `gridflow sweep` command
"""
