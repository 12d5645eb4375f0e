import pytest

from tests.core.training.tiny import register_tiny_layout


@pytest.fixture(autouse=True)
def _tiny_layout(monkeypatch):
    register_tiny_layout(monkeypatch)
