"""The fast engine: packed XNOR-popcount kernels compiled with numba, bit-exact with the reference engine.

Layout. Every binary bit map is kept as uint64 words along the channel axis of the HWC map,
``(N, H + 2·pad, W + 2·pad, ceil(C / 64))``: channel ``c`` is bit ``c % 64`` of word ``c // 64``. The
spatial border holds the next layer's ``pad_bit`` in every real channel, so the kernels never test for
borders. The unused high bits of the last word are 0 in both activations and weights, and the kernels count
*mismatches* ``d = popcount(x XOR w)``: padding bits never mismatch, so no correction is needed, and
``acc = N − 2·d`` with N = K·K·C.

Thresholds. ``acc ≥ t`` is ``d ≤ ⌊(N − t) / 2⌋`` and ``acc ≤ t`` is ``d ≥ ⌈(N − t) / 2⌉``; both become one
comparison ``(v ≤ lim[c]) XOR inv[c]`` on the kernel's integer ``v`` (``d``, or ``acc`` for layer 0), followed
by OR/AND pooling over the bits and packing into the next layer's words.

Kernels. A layer is split into tasks (image, pooled output row, block of columns), so threads share the batch
and the rows of one image alike; threads claim tasks from an atomic counter (see ``_Helpers``).
The inner loop runs over output channels with the weights transposed to (K·K·words, C_out): LLVM vectorizes
it to VPXORQ + VPOPCNTQ + VPADDQ on AVX-512 VPOPCNTDQ CPUs (POPCNT elsewhere). Layer 0 adds or subtracts
the integer pixels from ``input_lut`` in the narrowest exact integer type (int16 for 8-bit inputs and small
kernels), over the flattened image so its loops are long although it has only a few channels.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from bcnn.engine.reference import map_input
from bcnn.errors import BcnnError
from bcnn.ir import Layer, Net


def _ensure_cache_dir() -> None:
    """numba caches next to this file; if the package is installed read-only, cache somewhere writable.

    numba falls back to a user-wide directory by itself, but that can be unwritable too (no HOME in a
    container). Setting numba.config.CACHE_DIR before the kernels are decorated is what takes effect.
    """
    if numba.config.CACHE_DIR or os.access(Path(__file__).parent, os.W_OK):
        return
    for cand in (Path.home() / ".cache" / "numba", Path(tempfile.gettempdir()) / f"bcnn-numba-{os.getuid()}"):
        try:
            cand.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(cand, os.W_OK):
            numba.config.CACHE_DIR = str(cand)
            return


_ensure_cache_dir()


WORD = 64


@intrinsic
def _popcount(typingctx, x):
    """llvm.ctpop.i64: one (V)POPCNT instruction. Typed int64 so sums stay integer (uint64 + int64 is float64)."""
    if not isinstance(x, types.Integer) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(x), codegen


@intrinsic
def _fetch_add(typingctx, arr, index):
    """Atomically add 1 to arr[index] (int64) and return the old value: the task counter threads share."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        return builder.atomic_rmw("add", ptr, context.get_constant(types.int64, 1), "seq_cst")

    return types.int64(arr, index), codegen


# -------------------------------------------------------------------------------------------------- kernels

@njit(cache=True, fastmath=False)
def _pool_words(packed, and_mask, out_bits, n, y, opad, pool, stride, base, px0, px1):
    """Pool packed words: OR for most channels, AND where and_mask has the channel's bit (same bit position).

    packed[j, base + r·stride + (px − px0)·pool + s] is word j of conv row r, column px·pool + s.
    """
    words = packed.shape[0]
    for j in range(words):
        m = and_mask[j]
        src = packed[j]
        for px in range(px0, px1):
            o = np.uint64(0)
            x_and = ~np.uint64(0)
            for r in range(pool):
                row = base + r * stride + (px - px0) * pool
                for s in range(pool):
                    w = src[row + s]
                    o |= w
                    x_and &= w
            out_bits[n, opad + y, opad + px, j] = (o & ~m) | (x_and & m)


CHANNEL_BLOCK = 128  # output channels per pass: 4 pixels x 128 int64 accumulators stay in L1


@njit(nogil=True, cache=True, fastmath=False)
def _binary_layer_task(task, x, wt, kernel, oh, ow, pool, cols, lim, inv, and_mask, out_bits, out_acc, fan_in, opad,
                       last):
    words = x.shape[3]
    c_out = wt.shape[1]
    out_words = and_mask.shape[0]
    oho = oh // pool
    blocks = (ow + cols - 1) // cols
    n = task // (oho * blocks)
    rest = task - n * oho * blocks
    py = rest // blocks
    x0 = (rest - py * blocks) * cols
    x1 = min(ow, x0 + cols)
    width = x1 - x0
    acc = np.empty((pool, width, c_out), np.int64)
    s = np.empty((4, CHANNEL_BLOCK + 8), np.int64)  # +8: rows not 1 KiB apart (L1 set conflicts)
    for r in range(pool):
        oy = py * pool + r
        for g in range(x0, x1, 4):
            if x1 - g >= 4:
                for c0 in range(0, c_out, CHANNEL_BLOCK):
                    m = min(c_out, c0 + CHANNEL_BLOCK) - c0
                    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
                    s[:, :m] = 0
                    row = 0
                    for kh in range(kernel):
                        for kw in range(kernel):
                            for j in range(words):
                                xa = x[n, oy + kh, g + kw, j]
                                xb = x[n, oy + kh, g + kw + 1, j]
                                xc = x[n, oy + kh, g + kw + 2, j]
                                xd = x[n, oy + kh, g + kw + 3, j]
                                w = wt[row, c0:c0 + m]
                                for c in range(m):
                                    wc = w[c]
                                    s0[c] += _popcount(xa ^ wc)
                                    s1[c] += _popcount(xb ^ wc)
                                    s2[c] += _popcount(xc ^ wc)
                                    s3[c] += _popcount(xd ^ wc)
                                row += 1
                    for q in range(4):
                        acc[r, g - x0 + q, c0:c0 + m] = s[q, :m]
            else:
                for p in range(g, x1):
                    a = acc[r, p - x0]
                    a[:] = 0
                    row = 0
                    for kh in range(kernel):
                        for kw in range(kernel):
                            for j in range(words):
                                xv = x[n, oy + kh, p + kw, j]
                                w = wt[row]
                                for c in range(c_out):
                                    a[c] += _popcount(xv ^ w[c])
                                row += 1
    if last:
        for r in range(pool):
            for i in range(width):
                for c in range(c_out):
                    out_acc[n, py * pool + r, x0 + i, c] = fan_in - 2 * acc[r, i, c]
        return
    # threshold and pack 64 channels to a word (a vectorizable OR-reduction), then pool whole words
    packed = np.empty((out_words, pool * width), np.uint64)
    for r in range(pool):
        for i in range(width):
            a = acc[r, i]
            for j in range(out_words):
                word = np.uint64(0)
                for b in range(min(WORD, c_out - WORD * j)):
                    c = WORD * j + b
                    word |= np.uint64((a[c] <= lim[c]) != inv[c]) << np.uint64(b)
                packed[j, r * width + i] = word
    _pool_words(packed, and_mask, out_bits, n, py, opad, pool, width, 0, x0 // pool, x1 // pool)


@njit(nogil=True, cache=True, fastmath=False)
def _binary_layer(ctl, x, wt, kernel, oh, ow, pool, cols, lim, inv, and_mask, out_bits, out_acc, fan_in, opad, last):
    """x: (N, Hp, Wp, words) uint64, padded; wt: (K·K·words, C_out) uint64; d = popcount(x XOR w).

    One task is (image, pooled row, block of ``cols`` conv columns, a multiple of the pool). Within it, four
    output pixels share each weight load (the inner loop is over 128 output channels, vectorized), which
    quarters the weight traffic from L2; a group of fewer than four pixels takes the one-pixel loop.
    """
    n_tasks = x.shape[0] * (oh // pool) * ((ow + cols - 1) // cols)
    ctl[2] = n_tasks
    while True:  # claim tasks until none are left: threads that start late find nothing to do
        task = _fetch_add(ctl, 0)
        if task >= n_tasks:
            return
        _binary_layer_task(task, x, wt, kernel, oh, ow, pool, cols, lim, inv, and_mask, out_bits, out_acc, fan_in,
                           opad, last)
        _fetch_add(ctl, 1)


@njit(nogil=True, cache=True, fastmath=False)
def _int_layer_task(task, xf, wpos, kernel, oh, ow, pool, rows, lim, inv, and_mask, out_bits, out_acc, opad, last):
    ch = xf.shape[1]
    wp = ow + kernel - 1
    c_out = wpos.shape[0]
    out_words = and_mask.shape[0]
    blocks = (oh + rows - 1) // rows
    n = task // blocks
    y0 = (task - n * blocks) * rows
    y1 = min(oh, y0 + rows)
    length = (y1 - y0) * wp
    packed = np.zeros((out_words, length), np.uint64)
    # acc = 2·(sum over +1 taps) − total = total − 2·(sum over −1 taps): the window total is shared by all
    # channels, so each channel adds only its rarer sign, at most half of the taps
    total = np.zeros(length, xf.dtype)
    for kh in range(kernel):
        for kw in range(kernel):
            start = (y0 + kh) * wp + kw
            for j in range(ch):
                src = xf[n, j, start:start + length]
                for i in range(length):
                    total[i] += src[i]
    taps = kernel * kernel * ch
    a = np.empty(length, xf.dtype)
    src_ch = np.empty(taps, np.int64)
    src_at = np.empty(taps, np.int64)
    for c in range(c_out):
        plus = 2 * np.sum(wpos[c]) <= taps
        k = 0
        tap = 0
        for kh in range(kernel):
            for kw in range(kernel):
                for j in range(ch):
                    if wpos[c, tap] == plus:
                        src_ch[k] = j
                        src_at[k] = (y0 + kh) * wp + kw
                        k += 1
                    tap += 1
        # four taps per pass over the accumulators: a quarter of their loads and stores
        a[:] = 0
        xn = xf[n]
        q = 0
        while q + 4 <= k:
            s0 = xn[src_ch[q], src_at[q]:src_at[q] + length]
            s1 = xn[src_ch[q + 1], src_at[q + 1]:src_at[q + 1] + length]
            s2 = xn[src_ch[q + 2], src_at[q + 2]:src_at[q + 2] + length]
            s3 = xn[src_ch[q + 3], src_at[q + 3]:src_at[q + 3] + length]
            for i in range(length):
                a[i] += s0[i] + s1[i] + s2[i] + s3[i]
            q += 4
        while q < k:
            s0 = xn[src_ch[q], src_at[q]:src_at[q] + length]
            for i in range(length):
                a[i] += s0[i]
            q += 1
        if plus:
            for i in range(length):
                a[i] = 2 * a[i] - total[i]
        else:
            for i in range(length):
                a[i] = total[i] - 2 * a[i]
        if last:
            for oy in range(y0, y1):
                for ox in range(ow):
                    out_acc[n, oy, ox, c] = a[(oy - y0) * wp + ox]
            continue
        # threshold this channel everywhere and set its bit in the packed words
        t, flip = lim[c], inv[c]
        shift = np.uint64(c % WORD)
        dst = packed[c // WORD]
        for i in range(length):
            dst[i] |= np.uint64((a[i] <= t) != flip) << shift
    if not last:
        for py in range(y0 // pool, y1 // pool):
            _pool_words(packed, and_mask, out_bits, n, py, opad, pool, wp, (py * pool - y0) * wp, 0,
                        ow // pool)


@njit(nogil=True, cache=True, fastmath=False)
def _int_layer(ctl, xf, wpos, kernel, oh, ow, pool, rows, lim, inv, and_mask, out_bits, out_acc, opad, last):
    """Layer 0 on integers, one task per (image, block of ``rows`` output rows).

    xf: (N, C, Hp·Wp + K) the padded image per channel, flattened row-major (K zeros of slack at the end);
    wpos: (C_out, K·K·C) bool, True = +1, in (kh, kw, c) order. In the flattened image the window offset
    (kh, kw) is a constant shift, so each (output channel, tap) is one long add or subtract over the rows of
    the block: long loops vectorize well even where C is 3 (columns ow..Wp-1 are computed and ignored).
    """
    n_tasks = xf.shape[0] * ((oh + rows - 1) // rows)
    ctl[2] = n_tasks
    while True:  # claim tasks until none are left: threads that start late find nothing to do
        task = _fetch_add(ctl, 0)
        if task >= n_tasks:
            return
        _int_layer_task(task, xf, wpos, kernel, oh, ow, pool, rows, lim, inv, and_mask, out_bits, out_acc, opad, last)
        _fetch_add(ctl, 1)


# ------------------------------------------------------------------------------------------------ threads
#
# Why not numba's prange: a parallel region ends at a barrier that waits for every worker thread, and on a
# machine whose cores are shared with other processes a worker is often not scheduled for a whole time slice
# (measured here: 4-12 ms per layer, 100 ms per CNV image). Here the calling thread works from the start
# and helpers join when they get a core; tasks are claimed from an atomic counter, so the caller finishes
# alone if no helper shows up, and waits only for tasks a helper has actually claimed.

class _Helpers:
    def __init__(self) -> None:
        self.queues: list[queue.SimpleQueue] = []
        self.lock = threading.Lock()

    def ensure(self, n: int) -> None:
        with self.lock:
            while len(self.queues) < n:
                q: queue.SimpleQueue = queue.SimpleQueue()
                threading.Thread(target=self._work, args=(q,), daemon=True, name="bcnn-fast").start()
                self.queues.append(q)

    @staticmethod
    def _work(q: queue.SimpleQueue) -> None:
        while True:
            fn, args, errors = q.get()
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001  (handed to the caller, which is waiting for this task)
                errors.append(e)

    def run(self, fn, args: tuple, threads: int) -> None:
        ctl = np.zeros(3, np.int64)  # next task, tasks done, number of tasks
        errors: list[BaseException] = []
        self.ensure(threads - 1)
        for q in self.queues[:threads - 1]:
            q.put((fn, (ctl, *args), errors))
        fn(ctl, *args)  # returns when no task is left to claim
        while ctl[1] < ctl[2] and not errors:  # a helper is finishing a task it claimed
            time.sleep(0)
        if errors:
            raise errors[0]


_HELPERS = _Helpers()


def default_threads() -> int:
    """Threads used by default: NUMBA_NUM_THREADS if set, else the CPUs this process may run on."""
    if os.environ.get("NUMBA_NUM_THREADS"):
        return max(1, int(os.environ["NUMBA_NUM_THREADS"]))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------------- preparation

def pack_bits(bits: np.ndarray) -> np.ndarray:
    """bool (..., C) -> uint64 (..., ceil(C/64)); channel c is bit c % 64 of word c // 64, unused bits 0."""
    c = bits.shape[-1]
    words = -(-c // WORD)
    padded = np.zeros((*bits.shape[:-1], words * WORD), dtype=bool)
    padded[..., :c] = bits
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


def _pad_words(channels: int, pad_bit: int) -> np.ndarray:
    """The words of one border pixel: pad_bit in every real channel, 0 in the unused bits."""
    return pack_bits(np.full(channels, bool(pad_bit)))


class _Prepared:
    """One layer's kernel operands, built once per network."""

    def __init__(self, layer: Layer, index: int, next_pad: int, next_pad_bit: int, net_lut: np.ndarray):
        self.layer = layer
        self.first = index == 0
        self.last = layer.is_last
        self.kernel, self.pad, self.pool = layer.kernel, layer.pad, layer.pool
        self.oh, self.ow = layer.conv_shape
        self.c_out = layer.out_ch
        self.fan_in = layer.fan_in
        w = layer.weights.reshape(layer.out_ch, layer.kernel, layer.kernel, layer.in_ch)
        if self.first:
            self.w = np.ascontiguousarray(w.reshape(layer.out_ch, -1))
            # |2·partial sum| bound: the narrowest integer type that is exact for the kernel's sums
            big = 2 * int(np.abs(net_lut).max()) * layer.fan_in
            self.int_dtype = np.int16 if big < 2**15 else np.int32 if big < 2**31 else np.int64
            # rows per task: a multiple of the pool, and about 256 accumulators per channel so loops are long
            wp = self.ow + self.kernel - 1
            self.rows = self.pool * max(1, -(-256 // (wp * self.pool)))
        else:
            self.w = np.ascontiguousarray(pack_bits(w).reshape(layer.out_ch, -1).T)
        n = layer.fan_in
        if self.last:
            self.lim = np.zeros(self.c_out, np.int64)
            self.inv = np.zeros(self.c_out, bool)
        else:
            t = layer.thresholds.astype(np.int64)
            ge = layer.ge.astype(bool)
            if self.first:  # v = acc: acc >= t is not(acc <= t-1)
                self.lim = np.where(ge, t - 1, t)
                self.inv = ge.copy()
            else:  # v = d: acc >= t is d <= floor((N-t)/2); acc <= t is not(d <= ceil((N-t)/2) - 1)
                self.lim = np.where(ge, (n - t) // 2, -((t - n) // 2) - 1)
                self.inv = ~ge
            self.lim = np.ascontiguousarray(self.lim, dtype=np.int64)
            self.inv = np.ascontiguousarray(self.inv, dtype=bool)
        self.next_pad = next_pad
        self.next_pad_bit = next_pad_bit
        oh, ow, _ = layer.out_shape
        self.out_hw = (oh + 2 * next_pad, ow + 2 * next_pad)
        self.out_words = -(-self.c_out // WORD)
        # channels pooled with AND, as bits of the packed words (pooling runs on whole words)
        self.and_mask = pack_bits(np.zeros(self.c_out, bool) if self.last else layer.pool_and.astype(bool))
        self.border = _pad_words(self.c_out, next_pad_bit)
        # conv columns per task: a multiple of the pool and of the 4-pixel groups, small enough that one image
        # still gives both threads work
        self.cols = self.pool * 4 * max(1, 16 // (4 * self.pool))

    def run(self, x: np.ndarray, threads: int) -> np.ndarray:
        n = x.shape[0]
        if self.last:
            out_acc = np.empty((n, self.oh, self.ow, self.c_out), np.int64)
            out_bits = np.empty((0, 0, 0, 0), np.uint64)
        else:
            out_acc = np.empty((0, 0, 0, 0), np.int64)
            out_bits = np.empty((n, *self.out_hw, self.out_words), np.uint64)
            p = self.next_pad
            if p:  # only the border needs the pad bits; the kernel writes the interior
                out_bits[:, :p] = self.border
                out_bits[:, -p:] = self.border
                out_bits[:, :, :p] = self.border
                out_bits[:, :, -p:] = self.border
        if self.first:
            _HELPERS.run(_int_layer, (x, self.w, self.kernel, self.oh, self.ow, self.pool, self.rows, self.lim,
                                      self.inv, self.and_mask, out_bits, out_acc, self.next_pad, self.last), threads)
        elif self.oh == self.ow == 1 and self.next_pad == 0:
            # a fully connected layer is a 1x1 convolution over a 1 x N "image" of flattened inputs: the kernel
            # then shares weight loads across four images and splits the batch into column blocks
            flat = x.reshape(1, 1, n, -1)
            _HELPERS.run(_binary_layer, (flat, self.w, 1, 1, n, 1, 16, self.lim, self.inv, self.and_mask,
                                         out_bits.reshape(1, 1, n, -1) if out_bits.size else out_bits,
                                         out_acc.reshape(1, 1, n, -1) if out_acc.size else out_acc,
                                         self.fan_in, 0, self.last), threads)
        else:
            _HELPERS.run(_binary_layer, (x, self.w, self.kernel, self.oh, self.ow, self.pool, self.cols, self.lim,
                                         self.inv, self.and_mask, out_bits, out_acc, self.fan_in, self.next_pad,
                                         self.last), threads)
        return out_acc if self.last else out_bits


class FastEngine:
    """A network prepared for the fast kernels (weights packed once); ``run`` is safe to call repeatedly."""

    def __init__(self, net: Net):
        net.validate()
        self.net = net
        layers = net.layers
        self.layers = []
        for i, layer in enumerate(layers):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            self.layers.append(_Prepared(layer, i, nxt.pad if nxt else 0, nxt.pad_bit if nxt else 0,
                                         net.input_lut))

    def prepare_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 images -> layer 0's input: integers (N, C, Hp·Wp + K), zero-padded, in its int type."""
        x = map_input(self.net, images)  # validates dtype and shape
        n = x.shape[0]
        first = self.layers[0]
        p = first.pad
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
        # (N, C, Hp·Wp) plus K zeros of slack: the layout _int_layer reads
        x = x.transpose(0, 3, 1, 2).reshape(n, x.shape[3], -1)
        return np.ascontiguousarray(np.pad(x, ((0, 0), (0, 0), (0, first.kernel))), dtype=first.int_dtype)

    def run(self, images: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Last-layer accumulators, int64 (N, n_outputs), for uint8 images (N, H, W, C)."""
        map_input(self.net, images[:0])  # validates dtype and shape
        n = images.shape[0]
        if n == 0:
            return np.zeros((0, self.net.n_outputs), np.int64)
        x = self.prepare_input(images)
        if threads is not None and threads < 1:
            raise BcnnError(f"threads must be >= 1, got {threads}")
        threads = threads or default_threads()
        for prep in self.layers:
            x = prep.run(x, threads)
        return x.reshape(n, -1)


def run_fast(net: Net, images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """The last layer's integer accumulators, int64 (N, n_outputs), identical to ``run_reference``.

    ``threads``: CPU threads (default: ``default_threads()``). For repeated calls on one network build a
    ``FastEngine`` once instead: this packs the weights on every call.
    """
    return FastEngine(net).run(images, threads=threads)


def warmup() -> float:
    """Compile (or load from the on-disk cache) every kernel; returns the seconds it took.

    The first run after installing compiles for about half a minute; later runs load the cache in well under
    a second.
    """
    from bcnn.randnet import ConvSpec, random_images, random_net

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    # covers both kernels in both output modes: layer 0 -> bits, binary -> bits, binary -> accumulators,
    # and layer 0 -> accumulators (a one-layer network)
    nets = [random_net(rng, (4, 4, 2), convs=[ConvSpec(3, kernel=1, pad=1, pool=2)], fcs=[2]),
            random_net(rng, (2, 2, 1), convs=[], fcs=[2])]
    for net in nets:
        run_fast(net, random_images(rng, net, 1))
    return time.perf_counter() - t0
