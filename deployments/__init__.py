"""Deployment definitions and schedules of the flows."""
