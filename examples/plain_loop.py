"""MBT in a plain PyTorch loop (paper Sec. 3.5): one ``find_lr`` search on dict batches
with gradient accumulation, then SGD at the found lr.

    python examples/plain_loop.py [--steps 40] [--accumulate 2] [--search-batches 20]

Tiny synthetic data: runs in seconds on a CPU.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mbt.optim import find_lr


class TwoInputs(nn.Module):
    """A model with two inputs: an image-like tensor and a side feature vector."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Linear(32 + 4, 3)

    def forward(self, image: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image(image), side], dim=1))


def records(n: int = 256, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    image, side = torch.randn(n, 4, 4, generator=g), torch.randn(n, 4, generator=g)
    label = (image.mean((1, 2)) + side[:, 0] > 0).long() + (side[:, 1] > 1).long()
    return [{"image": image[i], "side": side[i], "label": label[i]} for i in range(n)]


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--accumulate", type=int, default=2)
    parser.add_argument("--search-batches", type=int, default=20)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = TwoInputs()
    micro = DataLoader(records(), batch_size=16, shuffle=True)  # dict batches
    # 20 search mini-batches (Sec. 3.5.2), each `accumulate` micro-batches of 16; rescaled
    # with N = 256 and k = 16 * accumulate (Sec. 3.5.1), both read from the loader.
    report = find_lr(model, F.cross_entropy, micro, target_key="label",
                     accumulate=args.accumulate, num_batches=args.search_batches)
    print(f"MBT lr {report.lr:.4g} (mean eta {report.mean_lr:.4g} x {report.scale:.3g})")
    optimizer = torch.optim.SGD(model.parameters(), lr=report.lr)
    step, losses = 0, []
    while step < args.steps:
        for i, batch in enumerate(micro):
            loss = F.cross_entropy(model(batch["image"], batch["side"]), batch["label"])
            (loss / args.accumulate).backward()
            losses.append(float(loss.detach()))
            if (i + 1) % args.accumulate == 0:
                optimizer.step()
                optimizer.zero_grad()
                step += 1
                if step == args.steps:
                    break
    print(f"{step} steps, last loss {sum(losses[-8:]) / len(losses[-8:]):.4f}")
    return report.lr


if __name__ == "__main__":
    main()
