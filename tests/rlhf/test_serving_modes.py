"""SERVING_SAMPLING_MODE: read at start-up (a bad value or a mode for the other device stops
it), and the mode a worker process prepares each model in once, then keeps."""

from __future__ import annotations

import pytest

from modelcore.cpu_sampling import Int8Block, Int8Linear, PackedLinear, int8_supported
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


AVX2 = int8_supported()
needs_avx2 = pytest.mark.skipif(not AVX2, reason="the int8 kernel needs an AVX2 CPU")


@pytest.mark.parametrize(
    ("mode", "layer", "blocks_fused"),
    [
        ("auto", Int8Linear if AVX2 else PackedLinear, AVX2),  # int8 on this CPU
        pytest.param("int8", Int8Linear, True, marks=needs_avx2),
        ("reference", PackedLinear, False),
    ],
)
def test_a_model_is_prepared_once_in_the_mode(
    settings, tiny_version, fresh_policies, mode, layer, blocks_fused
):
    settings.SERVING_DEVICE, settings.SERVING_SAMPLING_MODE = "cpu", mode
    policy = _sampling_policy(str(tiny_version.directory), tiny_version.sha256).policy
    assert isinstance(policy.lm_head, layer)
    assert all(isinstance(b, Int8Block) == blocks_fused for b in policy.decoder.layers)
    # The next task finds the same prepared model: kept warm, not loaded again.
    assert _sampling_policy(str(tiny_version.directory), tiny_version.sha256).policy is policy
