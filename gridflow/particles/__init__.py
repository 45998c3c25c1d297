"""Particle samplers and exact sampling from a grid density.

grid_sampling.py exact iid samples of a grid density; sample files
samplers.py      reference particle samplers that run a case's problem; user samplers
"""
