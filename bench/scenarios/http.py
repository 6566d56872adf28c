"""Scenario 3: placeholder until written."""


def run(ctx):
    return {"status": "not available yet"}
