"""Many runs at once: parameter sweeps.

sweep.py parameter sweeps: plan, run, index.csv
"""
