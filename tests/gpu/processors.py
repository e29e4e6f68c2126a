"""The processor the real-GPU check runs in the worker: known GPU memory, then busy matmuls.

Imported by the worker only on a machine with a CUDA GPU and PyTorch (tests/gpu/README.md).
It holds a ballast of ``ballastGiB`` and three bf16 matrices for the whole run, multiplies them
for ``seconds``, and returns what PyTorch's caching allocator reserved at most: the figure the
worker's NVML reading is checked against.
"""

from __future__ import annotations

import time
from typing import Any

from kubedag.worker.context import Context

MATRIX = 8192  # bf16: 128 MiB a matrix, ~1.1 TFLOP a product: long enough to keep the GPU busy
PRODUCTS_PER_SYNC = 20


def burn(context: Context) -> dict[str, Any]:
    import torch  # noqa: PLC0415 - only on the GPU machine

    if not torch.cuda.is_available():
        raise RuntimeError("PyTorch sees no CUDA device")
    ballast_bytes = int(float(context.params.get("ballastGiB", 6)) * 2**30)
    seconds = float(context.params.get("seconds", 4))
    device = torch.device("cuda")
    ballast = torch.empty(ballast_bytes, dtype=torch.uint8, device=device)
    ballast.fill_(1)
    a = torch.randn(MATRIX, MATRIX, dtype=torch.bfloat16, device=device)
    b = torch.randn(MATRIX, MATRIX, dtype=torch.bfloat16, device=device)
    c = torch.empty(MATRIX, MATRIX, dtype=torch.bfloat16, device=device)
    torch.cuda.synchronize()
    products, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        for _ in range(PRODUCTS_PER_SYNC):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        products += PRODUCTS_PER_SYNC
    elapsed = time.monotonic() - started
    context.logger.info("%d products of %d² bf16 in %.1f s with %d B of ballast", products,
                        MATRIX, elapsed, ballast.numel())
    return {
        "maxMemoryReserved": torch.cuda.max_memory_reserved(),
        "maxMemoryAllocated": torch.cuda.max_memory_allocated(),
        "ballastBytes": ballast_bytes,
        "products": products,
        "seconds": round(elapsed, 3),
        "tflops": round(products * 2 * MATRIX**3 / elapsed / 1e12, 1),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
    }
