"""Time integration: the stepper with its error control and guards, and the solve loop.

solver.py  drives a problem through its save times and produces frames (no files)
stepper.py adaptive time integration (Strang splitting) with error control and guards
doubling.py step doubling's local error and Richardson extrapolation in log space (doubling_kernel.py: compiled)
"""
