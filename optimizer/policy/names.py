"""Policy names and the documented default, importable without loading any policy (the CLI's flag
parsers and the service config read them; ``registry.py`` builds the policies)."""

from __future__ import annotations

FARO_POLICY_NAMES: tuple[str, ...] = ("faro-sum", "faro-fair", "faro-fairsum", "faro-penaltysum", "faro-penaltyfairsum")
BASELINE_POLICY_NAMES: tuple[str, ...] = ("aiad", "oneshot", "mark", "fairshare", "hpa-cpu")
POLICY_NAMES: tuple[str, ...] = (*FARO_POLICY_NAMES, *BASELINE_POLICY_NAMES, "oracle")

DEFAULT_POLICY = "faro-fair"
"""The documented default Faro variant: ``faro optimizer``'s policy, the one ``faro simulate --suite`` and
``bench/generalization.py`` score, and the one docs/policies.md gives numbers for."""
