"""The release gate: `policy` reads the TOML policy, `verdict` decides it over two runs,
`render` writes the terminal, Markdown and JUnit reports. See docs/gate.md."""

from .policy import (
    CASE_METRICS,
    CHECKS,
    ON_INCONCLUSIVE,
    Acceptance,
    Policy,
    PolicyError,
    Rule,
    load_policy,
    parse_policy,
)
from .render import junit, markdown, terminal
from .verdict import GateData, GateResult, Outcome, RunRef, drop_verdict, run_gate

__all__ = ["CASE_METRICS", "CHECKS", "ON_INCONCLUSIVE", "Acceptance", "GateData", "GateResult",
           "Outcome", "Policy", "PolicyError", "Rule", "RunRef", "drop_verdict", "junit",
           "load_policy", "markdown", "parse_policy", "run_gate", "terminal"]
