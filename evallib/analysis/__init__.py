"""The analysis layer: answers computed from the queries' frames, with the statistics that
make them trustworthy. Each module is one question; none writes the warehouse except
`monitor.record_alerts` (through `evallib.warehouse.Warehouse`) and none imports streamlit.

- `compare`: a candidate run against a baseline, paired, overall and per slice;
- `many_runs`: several runs against one reference, per slice;
- `gate`: the release gate (a policy file, a verdict, an exit code);
- `golden_sets`: golden-set versions over time;
- `coverage`: the golden set's strata mix beside production's;
- `rag`: retrieval metrics and failure attribution;
- `drift`, `monitor`: production's distributions and alerts;
- `calibration`: judge against human labels;
- `report`: the monthly review; `export`: failing cases as CSV.

Modules load on import of their own name (plotly and scipy only where needed).
"""

__all__ = ["calibration", "compare", "coverage", "drift", "export", "gate", "golden_sets",
           "many_runs", "monitor", "rag", "report"]
