"""Analyses across finished runs, above the experiment grid and the explanations.

- `xai_check`: `thesis xai check`, the faithfulness of every trained run's explanations (`xai.check` per run).
- `probes`: linear probes on the frozen encoders the fusions read (what their features still hold).
"""
