"""Registers the shared stack fixtures once (tests/support/stack.py)."""

pytest_plugins = ("tests.support.stack",)


def pytest_configure(config: object) -> None:
    """A state directory of this test session's own: `produce`, `labels`, `forget` and
    `down` in the tests never find a stack that a developer runs beside them."""
    import os
    import tempfile

    os.environ["KPISTREAM_STATE_DIR"] = tempfile.mkdtemp(prefix="kpistream-test-state-")
