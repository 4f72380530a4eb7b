"""Actuators: carry a plan out directly (e.g. Ray Serve's scale API) beside the HPA path."""
