"""Probe checks (harness.probes): one family with the task metrics, behind harness.scoring.registry."""
