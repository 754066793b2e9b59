"""How long the compiled bit-packed model (`bcnn bench`'s torch-packed-cuda) takes to compile and to run, by how
many pieces each layer's XOR-popcount is cut into (bcnn.engine.packed_torch.piece_rows).

    python benchmarks/packed_compile.py --batch 1024 --max-pieces 24          # the default cap
    python benchmarks/packed_compile.py --batch 1024 --max-pieces 1000000     # CHUNK_BYTES's pieces alone
    python benchmarks/packed_compile.py --batch 1024 --max-pieces 1 --chunk-bytes 1099511627776  # one a layer

Prints the first call (compile and one run), the second (run), whether the first 4 outputs equal the
reference engine's, and the process's peak memory, from a cold compile (an empty inductor cache).
"""

from __future__ import annotations

import argparse
import atexit
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

# a cold compile, not one an earlier run cached: inductor reads this before its first compile
_CACHE = tempfile.mkdtemp(prefix="packed-compile-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bcnn import ir  # noqa: E402
from bcnn.engine import packed_torch  # noqa: E402
from bcnn.engine.reference import run_reference  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="binarynet", help="a bundled model or NET.bcnn (default binarynet)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--max-pieces", type=int, default=packed_torch.MAX_FUSED_PIECES)
    ap.add_argument("--chunk-bytes", type=int, default=packed_torch.CHUNK_BYTES)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    packed_torch.MAX_FUSED_PIECES, packed_torch.CHUNK_BYTES = args.max_pieces, args.chunk_bytes
    path = Path(args.net) if args.net.endswith(".bcnn") else ir.bundled_models_dir() / f"{args.net}.bcnn"
    net = ir.load(path)
    x = np.random.default_rng(0).integers(0, 256, (args.batch, *net.input_shape), dtype=np.uint8)
    images = torch.from_numpy(x).to(args.device)
    run = packed_torch.packed_torch_model(net, device=args.device, compile=True)
    with torch.inference_mode():
        t = time.perf_counter()
        run(images).cpu()  # the copy waits for the GPU
        first = time.perf_counter() - t
        t = time.perf_counter()
        out = run(images).cpu().numpy()
        second = time.perf_counter() - t
    exact = np.array_equal(out[:4], run_reference(net, x[:4]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{path.stem} batch {args.batch} on {args.device}, at most {args.max_pieces} pieces a layer: first call "
          f"{first:.1f} s, second {second:.2f} s, exact on 4 images: {exact}, peak memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
