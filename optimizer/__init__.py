"""Faro optimizer: model, forecasting, solvers, policies, simulator and the live controller.

Pure layers (``model``, ``forecast``, ``solve``, ``policy``, ``sim``) use numpy/scipy/statsmodels/cvxpy
only; ``kube``, ``metrics`` and ``service`` do the I/O.
"""

__version__ = "0.1.0"
