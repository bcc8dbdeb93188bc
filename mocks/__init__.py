"""Mocks of the national platforms, one FastAPI app each (NGSP, population, PayGov, ...).

They arrive with the platforms' issues; each speaks the wire shapes of shared PLATFORMS.md.
"""
