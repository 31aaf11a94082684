import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SSD_KERAS_QUICK", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clear_keras_session():
    """Keep Keras name counters and graphs from leaking between tests."""
    yield
    try:
        import keras
        keras.backend.clear_session()
    except Exception:  # pragma: no cover - keras not importable
        pass
