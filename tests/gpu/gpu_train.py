"""A real PyTorch training loop on the GPU for ``--seconds`` (the GPU telemetry check).

Prints ``step N loss X`` lines as a trainer does and, at the end, writes the training's
start/end times and ``torch.cuda.max_memory_reserved()`` to ``--report`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    import torch  # type: ignore[import-not-found, unused-ignore]

    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--report", required=True)
    args = p.parse_args()
    dev = torch.device("cuda")
    width, batch = 4096, 4096
    model = torch.nn.Sequential(
        *[m for _ in range(6) for m in (torch.nn.Linear(width, width), torch.nn.GELU())],
        torch.nn.Linear(width, 16),
    ).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, width, device=dev)
    y = torch.randint(0, 16, (batch,), device=dev)
    start = time.time()
    step = 0
    while time.time() - start < args.seconds:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    torch.cuda.synchronize()
    end = time.time()
    report = {
        "start": start,
        "end": end,
        "steps": step,
        "max_memory_reserved": int(torch.cuda.max_memory_reserved()),
        "max_memory_allocated": int(torch.cuda.max_memory_allocated()),
    }
    with open(args.report, "w") as fh:
        json.dump(report, fh)
    print(f"step {step} loss {loss.item():.4f} done", flush=True)


if __name__ == "__main__":
    main()
