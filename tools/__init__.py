"""One-off and research scripts: weight conversion, Lite0 reference inputs, linear probe, the
explanations' checks. Run from the project root (`python -m tools.explain_check`, or as files where
their docstrings say so)."""
