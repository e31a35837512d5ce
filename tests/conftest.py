"""Registers the shared stack fixtures once (tests/support/stack.py)."""

pytest_plugins = ("tests.support.stack",)
