"""SERVING_SAMPLING_MODE: read at start-up (a bad value or a mode for the other device stops
it), and the mode a worker process prepares each model in once, then keeps."""

from __future__ import annotations

import pytest

from modelcore.cpu_sampling import Int8Linear, PackedLinear, int8_supported
from rlhf.serving import _sampling_policy
from tests.tandem.test_settings import run_django


@pytest.fixture
def fresh_policies():
    _sampling_policy.cache_clear()  # cached per model, not per mode
    yield
    _sampling_policy.cache_clear()


def test_an_unknown_mode_stops_start_up(tmp_path):
    result = run_django("", tmp_path, DEBUG="1", SERVING_SAMPLING_MODE="fast")
    assert result.returncode != 0
    assert (
        "SERVING_SAMPLING_MODE='fast': expected one of auto, reference, int8, cuda-graphs"
        in result.stderr
    )


def test_a_mode_for_the_other_device_stops_start_up(tmp_path):
    result = run_django(
        "", tmp_path, DEBUG="1", SERVING_DEVICE="cpu", SERVING_SAMPLING_MODE="cuda-graphs"
    )
    assert result.returncode != 0
    assert "sampling mode 'cuda-graphs' runs on cuda, not on cpu" in result.stderr


@pytest.mark.parametrize(
    ("mode", "layer"),
    [
        ("auto", Int8Linear if int8_supported() else PackedLinear),
        pytest.param(
            "int8",
            Int8Linear,
            marks=pytest.mark.skipif(not int8_supported(), reason="needs an AVX2 CPU"),
        ),
        ("reference", PackedLinear),
    ],
)
def test_a_model_is_prepared_once_in_the_mode(settings, tiny_version, fresh_policies, mode, layer):
    settings.SERVING_DEVICE, settings.SERVING_SAMPLING_MODE = "cpu", mode
    policy = _sampling_policy(str(tiny_version.directory), tiny_version.sha256)
    assert isinstance(policy.lm_head, layer)
    # The next task finds the same prepared model: kept warm, not loaded again.
    assert _sampling_policy(str(tiny_version.directory), tiny_version.sha256) is policy
