"""Scorers: every task metric and every probe check is one small class returning one typed `Score`.

base.py holds `Score` and the `Scorer` base; registry.py maps a name to "module:Class" (imported when first
used). Task metrics live in text.py, regex.py, numeric.py, json.py, schema.py, fields.py; probe checks in
probes/*.py. harness.metrics (score_sample, METRICS, validate_spec) and harness.probes (check_probe,
validate_probe) are the adapters the stages call.
"""
