"""The fast engine against the reference engine: identical integer outputs on random networks and images."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcnn.engine import fast
from bcnn.engine.fast import FastEngine, pack_bits, run_fast, warmup
from bcnn.engine.reference import run_reference
from bcnn.errors import BcnnError
from bcnn.randnet import ConvSpec, random_images, random_net

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    warmup()  # compile (or load) once, so hypothesis' timing sees only the kernels


@st.composite
def nets(draw):
    """Small random networks that satisfy the IR: convolutions (pad, pool) then 1-3 fully connected layers."""
    size = draw(st.integers(1, 10))
    shape = (size, size, draw(st.integers(1, 4)))
    convs = []
    for _ in range(draw(st.integers(0, 3))):
        # channel counts around and beyond one 64-bit word
        out_ch = draw(st.one_of(st.integers(1, 70), st.sampled_from([63, 64, 65, 127, 128, 129])))
        pad = draw(st.integers(0, 2))
        kernel = draw(st.integers(1, min(5, size + 2 * pad)))
        conv = size + 2 * pad - kernel + 1
        pool = draw(st.sampled_from([p for p in (1, 2, 3) if conv % p == 0]))
        convs.append(ConvSpec(out_ch, kernel=kernel, pad=pad, pool=pool))
        size = conv // pool
    fcs = draw(st.lists(st.integers(1, 70), min_size=1, max_size=3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    net = random_net(rng, shape, convs=convs, fcs=fcs, input_signed=draw(st.booleans()))
    # wider input integers select the int32 / int64 first-layer kernels; keep the thresholds in range
    scale = draw(st.sampled_from([1, 1, 1, 300, 2**22]))
    if scale != 1:
        net.input_lut = net.input_lut * scale
        net.layers[0].thresholds = net.layers[0].thresholds * scale if not net.layers[0].is_last else None
    return net, seed


@given(nets(), st.integers(1, 5))
@settings(max_examples=70, **SETTINGS)
def test_fast_equals_reference(net_seed, n_images):
    net, seed = net_seed
    x = random_images(np.random.default_rng(seed + 1), net, n_images)
    assert np.array_equal(run_fast(net, x), run_reference(net, x))


@given(st.integers(1, 140), st.integers(0, 1), st.integers(0, 2**32 - 1))
@settings(max_examples=20, **SETTINGS)
def test_threshold_boundaries(channels, pad_bit, seed):
    """Every threshold around every reachable accumulator, both directions, with either pad bit.

    The fast engine compares the mismatch count with floor/ceil((N − t) / 2); an off-by-one there shows up only
    at the exact boundaries, so layer 1 gets one output channel per threshold in [−N − 2, N + 2].
    """
    rng = np.random.default_rng(seed)
    n = 9 * channels  # fan-in of layer 1
    t = np.arange(-n - 2, n + 3)
    net = random_net(rng, (3, 3, 2), convs=[ConvSpec(channels, pad=1), ConvSpec(len(t), pad=1)], fcs=[4])
    layer = net.layers[1]
    assert layer.fan_in == n
    layer.pad_bit = pad_bit
    layer.thresholds, layer.ge = t, rng.random(len(t)) < 0.5
    net.validate()
    x = random_images(rng, net, 6)
    assert np.array_equal(run_fast(net, x), run_reference(net, x))


def test_topologies_at_scale():
    """CNV-like layer widths (64, 128, 256) with padding and pooling; several images and both thread counts."""
    rng = np.random.default_rng(7)
    net = random_net(rng, (16, 16, 3), convs=[ConvSpec(64, pad=1), ConvSpec(128, pad=1, pool=2),
                                              ConvSpec(256, pool=2)], fcs=[200, 10])
    x = random_images(rng, net, 9)
    expected = run_reference(net, x)
    engine = FastEngine(net)
    assert np.array_equal(engine.run(x, threads=1), expected)
    assert np.array_equal(engine.run(x), expected)
    assert np.array_equal(engine.run(x[:1]), expected[:1])
    assert np.array_equal(engine.run(x, threads=3), expected)  # more threads than cores: helpers join late


def test_concurrent_callers():
    """Two Python threads running networks at once share the helper threads; each gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(8)
    nets = [random_net(rng, (12, 12, 3), convs=[ConvSpec(80, pad=1, pool=2)], fcs=[30, 10]) for _ in range(2)]
    xs = [random_images(rng, net, 7) for net in nets]
    engines = [FastEngine(net) for net in nets]
    with ThreadPoolExecutor(2) as ex:
        outs = list(ex.map(lambda i: [engines[i].run(xs[i], threads=2) for _ in range(5)], [0, 1]))
    for net, x, out in zip(nets, xs, outs, strict=True):
        expected = run_reference(net, x)
        assert all(np.array_equal(o, expected) for o in out)


def test_empty_batch_and_bad_input():
    net = random_net(np.random.default_rng(0))
    assert run_fast(net, np.zeros((0, *net.input_shape), np.uint8)).shape == (0, net.n_outputs)
    with pytest.raises(BcnnError, match="uint8"):
        run_fast(net, np.zeros((1, *net.input_shape), np.float32))
    with pytest.raises(BcnnError, match="shape"):
        run_fast(net, np.zeros((1, 3, 3, 3), np.uint8))
    with pytest.raises(BcnnError, match="threads"):
        run_fast(net, np.zeros((1, *net.input_shape), np.uint8), threads=0)


def test_pack_bits_layout():
    bits = np.zeros(130, bool)
    bits[[0, 63, 64, 129]] = True
    words = pack_bits(bits)
    assert words.dtype == np.uint64 and words.shape == (3,)
    assert words.tolist() == [1 | 1 << 63, 1, 2]


def test_warmup_returns_seconds():
    assert 0 <= warmup() < 120


def test_cache_dir_fallback(monkeypatch, tmp_path):
    """A read-only install (package directory not writable) still caches compiled kernels somewhere writable."""
    monkeypatch.setattr(fast.numba.config, "CACHE_DIR", "")
    monkeypatch.setattr(fast.Path, "home", lambda: tmp_path)
    real_access = fast.os.access
    monkeypatch.setattr(fast.os, "access", lambda p, mode: False if str(p) == str(fast.Path(fast.__file__).parent)
                        else real_access(p, mode))
    fast._ensure_cache_dir()
    assert fast.numba.config.CACHE_DIR == str(tmp_path / ".cache" / "numba")
