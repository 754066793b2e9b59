"""The IR network as bit-packed XOR + popcount in plain torch integer ops, identical on CPU and CUDA.

Layout, as in the fast engine: a binary bit map is int64 words along the channel axis of the HWC map,
``(N, H + 2·pad, W + 2·pad, ceil(C / 64))``; channel ``c`` is bit ``c % 64`` of word ``c // 64``. The spatial
border holds the layer's ``pad_bit`` in every real channel, and the unused high bits of the last word are 0 in
activations and weights alike, so they never mismatch: ``acc = K·K·C − 2·popcount(x XOR w)`` with no
correction. Packing per pixel before unfolding packs each bit once, not K·K times.

Popcount is the SWAR bit trick in int64 (torch has no popcount op). Signed arithmetic wraps in two's
complement in eager torch and in Triton, so the unsigned algorithm gives the same bits; ``>>`` is arithmetic,
but every shift is followed by a mask without the sign bit, or (the final ``>> 56``) acts on a byte whose top
bit is 0. The first layer takes integer pixels, not bits, and stays a float32 convolution as in
``float_torch_model`` (``bcnn.engine.torch_input``: exact below 2^24). ``compile=True`` wraps the module in
``torch.compile`` so that inductor fuses XOR + popcount + sum into one kernel (Triton on CUDA, C++ on CPU).
"""

from __future__ import annotations

from bcnn.engine.torch_input import lut_pixels, pm1_weights, require_float32_exact
from bcnn.ir import Net

# Bytes of the largest (positions, out_ch, words) int64 intermediate; popcount keeps a few such temporaries
# alive, so chunking over positions at this size holds a layer's peak near 1 GiB.
CHUNK_BYTES = 2**28
RECOMPILE_LIMIT = 64  # compiled (network, batch size) pairs in one process: a sweep over nets and batches
MAX_FUSED_PIECES = 24  # pieces per layer where inductor fuses each (see piece_rows); batch 256 of binarynet needs 19

# SWAR constants as signed int64 (all below 2^63, so Python ints are already in range).
_M1, _M2, _M4, _H01 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x0101010101010101


def popcount64(x):
    """Bits set in each int64 element (0..64), as int64."""
    x = x - ((x >> 1) & _M1)
    x = (x & _M2) + ((x >> 2) & _M2)
    x = (x + (x >> 4)) & _M4
    return (x * _H01) >> 56  # top byte = sum of the byte counts ≤ 64, so its sign bit is 0


def piece_rows(positions: int, chunk: int, fused: bool) -> int:
    """Rows of a layer's unfolded activations per XOR-popcount piece.

    Eager, each piece materializes its (rows, out_ch, words) intermediate, so ``chunk`` rows (CHUNK_BYTES) bound
    it. Compiled by inductor, XOR, popcount and sum fuse into one reduction that materializes none (on the CPU,
    binarynet at batch 1024 in one piece a layer peaked no higher than in 299 pieces), and each piece lengthens
    the graph: binarynet at batch 4096 made 1,176 pieces, whose compile did not end in the 90-odd seconds a
    call on an H200 left it, where batch 256's 80 took about 30 s. So fused pieces grow to at most
    MAX_FUSED_PIECES a layer.
    """
    return max(chunk, -(-positions // MAX_FUSED_PIECES)) if fused else chunk


def pack_channels(bits, shifts):
    """uint8/bool bits (..., C) -> int64 words (..., ceil(C / 64)), channel c at bit c % 64 of word c // 64.

    ``shifts`` is int64 (64,) holding 2^k (2^63 as -2^63): distinct powers add without carries, so the sum is
    the bitwise OR; the pad channels are 0.
    """
    import torch.nn.functional as F

    c = bits.shape[-1]
    words = -(-c // 64)
    x = F.pad(bits.to(shifts.dtype), (0, 64 * words - c))
    return (x.reshape(*x.shape[:-1], words, 64) * shifts).sum(-1)


def packed_torch_model(net: Net, device: str = "cpu", compile: bool = False, backend: str = "inductor"):
    """A torch.nn.Module computing the network's integer function with packed XOR-popcount binary layers.

    Input uint8 (N, H, W, C); output the last layer's int64 accumulators (N, n_outputs) in HWC order, equal to
    ``run_reference`` and ``float_torch_model``. ``compile``: a function calling it through ``torch.compile``
    (``backend``), one static-shape kernel per batch size.
    """
    import torch
    import torch.nn.functional as F

    require_float32_exact(net, device)
    shifts = torch.tensor([1 << k if k < 63 else -(1 << 63) for k in range(64)], dtype=torch.int64)

    class PackedModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("lut", torch.tensor(net.input_lut, dtype=torch.float32))
            self.register_buffer("shifts", shifts)
            self.specs = []
            self.fused = compile and backend == "inductor"  # piece_rows
            for i, layer in enumerate(net.layers):
                if i == 0:  # (out, in, K, K) ±1 floats for the integer first layer
                    self.register_buffer("w0", pm1_weights(layer))
                else:  # (out, K·K·words) packed, in the (kh, kw, word) order of the unfolded activations
                    packed = pack_channels(torch.from_numpy(layer.weights), shifts)
                    self.register_buffer(f"w{i}", packed.reshape(layer.out_ch, -1).contiguous())
                if not layer.is_last:
                    self.register_buffer(f"t{i}", torch.tensor(layer.thresholds, dtype=torch.int64))
                    self.register_buffer(f"ge{i}", torch.tensor(layer.ge))
                    self.register_buffer(f"and{i}", torch.tensor(layer.pool_and))
                words = -(-layer.in_ch // 64)
                chunk = max(1, CHUNK_BYTES // (layer.out_ch * layer.kernel**2 * words * 8))
                self.specs.append((layer.kernel, layer.pad, layer.pad_bit, layer.pool, layer.fan_in,
                                   layer.is_last, chunk))

        def forward(self, images):
            n = images.shape[0]
            x = lut_pixels(self.lut, images)
            for i, (k, pad, pad_bit, pool, fan_in, last, chunk) in enumerate(self.specs):
                if i == 0:
                    if pad:
                        x = F.pad(x, (pad, pad, pad, pad))
                    acc = F.conv2d(x, self.w0).round().to(torch.int64).permute(0, 2, 3, 1)  # NHWC
                else:
                    if pad:  # pad_bit in every real channel of the border (NHWC: pad W and H, not C)
                        x = F.pad(x, (0, 0, pad, pad, pad, pad), value=pad_bit)
                    words = pack_channels(x, self.shifts)  # (N, H', W', words)
                    oh, ow = words.shape[1] - k + 1, words.shape[2] - k + 1
                    cols = words.unfold(1, k, 1).unfold(2, k, 1).permute(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, -1)
                    wt = getattr(self, f"w{i}")
                    # in pieces over positions (piece_rows): eager, each within CHUNK_BYTES
                    rows = piece_rows(cols.shape[0], chunk, self.fused)
                    mism = torch.cat([popcount64(cols[s:s + rows, None, :] ^ wt).sum(-1)
                                      for s in range(0, cols.shape[0], rows)])
                    acc = (fan_in - 2 * mism).view(n, oh, ow, -1)
                if last:
                    return acc.reshape(n, -1)
                t = getattr(self, f"t{i}")
                bits = torch.where(getattr(self, f"ge{i}"), acc >= t, acc <= t).to(torch.uint8)
                if pool > 1:
                    _, oh, ow, co = bits.shape
                    blocks = bits.reshape(n, oh // pool, pool, ow // pool, pool, co)
                    bits = torch.where(getattr(self, f"and{i}"), blocks.amin((2, 4)), blocks.amax((2, 4)))
                x = bits  # uint8 0/1, NHWC
            raise AssertionError("unreachable: the last layer returns")

    model = PackedModule().to(device).eval()
    if not compile:
        return model
    compiled = torch.compile(model, dynamic=False, backend=backend)

    def run(x: torch.Tensor) -> torch.Tensor:
        # dynamo counts the kernels of every model built here against one limit (8 by default), past which
        # it silently runs eager: a batch sweep would time the wrong thing. Allow more, and fail instead of
        # that, during this model's calls only (recompiles happen in the call), not for the whole process.
        limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        with torch._dynamo.config.patch(recompile_limit=limit, fail_on_recompile_limit_hit=True):
            return compiled(x)

    return run
