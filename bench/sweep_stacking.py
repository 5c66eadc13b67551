"""Would stacking a sweep's same-shape TopK members into one batched kernel pay? Measured, not assumed.

    python bench/sweep_stacking.py             # 4 TopK members (k 16/32/64/128), d_sae 4608, batch 4096
    python bench/sweep_stacking.py --repeats 3

``fit_sweep`` steps its members one after another on the shared batch. Two ways to share more
of the work between same-shape members are measured here against that, side by side:

* **encoder**, the one dense matmul of a fast TopK step: each member's ``addmm`` into its own
  reused workspace (what the trainer does) against one matmul over the members' encoders
  concatenated along ``d_sae`` (each member's ``b_dec`` folded into its bias, since
  ``(x - b_dec) W`` differs per member), and against ``torch.bmm`` over the stacked encoders;
* **whole steps**: the members' full training steps in turn (2 intra-op threads) against two
  Python threads, each stepping half of the members with 1 intra-op thread (the kernels
  release the GIL; on 2 cores this is the other way to use both).

The selection, the sparse backward and Adam cannot be shared: each member has its own
pre-activations, k and weights. Ratios below 1 mean the stacked way is faster. Random data
(the kernels' cost does not depend on it); a quiet machine is needed for the ratios to hold.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable

import torch
from _timing import best_time  # bench/_timing.py, beside this file

from saelab.train import config_for
from saelab.train.optim import make_optimizer, make_scheduler, train_step
from saelab.train.registry import make_sae


def encoder_paths(x: torch.Tensor, ws: list[torch.Tensor], biases: list[torch.Tensor]) -> dict[str, Callable]:
    """The three ways to compute every member's pre-activations, [batch, d_sae] each."""
    n, batch, d_sae = len(ws), x.shape[0], ws[0].shape[1]
    own = [torch.empty(batch, d_sae) for _ in ws]
    w_cat, b_cat = torch.cat(ws, 1), torch.cat(biases)
    cat_out = torch.empty(batch, n * d_sae)
    w_stack, b_stack = torch.stack(ws), torch.stack(biases).unsqueeze(1)
    bmm_out = torch.empty(n, batch, d_sae)

    def separate() -> None:
        for w, b, out in zip(ws, biases, own, strict=True):
            torch.addmm(b, x, w, out=out)

    return {
        "separate": separate,
        "concatenated": lambda: torch.addmm(b_cat, x, w_cat, out=cat_out),
        "bmm": lambda: torch.baddbmm(b_stack, x.expand(n, -1, -1), w_stack, out=bmm_out),
    }


def step_paths(members: list, x: torch.Tensor, steps: int) -> dict[str, Callable]:
    """Every member's full training step: in turn, or in two Python threads."""

    def run(group: list) -> None:
        for _ in range(steps):
            for sae, opt, sched in group:
                train_step(sae, opt, x, sched)

    def in_turn() -> None:
        torch.set_num_threads(2)
        run(members)

    def two_threads() -> None:
        torch.set_num_threads(1)
        # Interleaved halves balance the cost: k 16 + 64 against k 32 + 128.
        threads = [threading.Thread(target=run, args=(members[i::2],)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        torch.set_num_threads(2)

    return {"in turn": in_turn, "two threads": two_threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=lambda s: [int(v) for v in s.split(",")], default=[16, 32, 64, 128])
    parser.add_argument("--d-in", type=int, default=576)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=4, help="training steps per member per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, args.d_in) @ (torch.randn(args.d_in, args.d_in) / args.d_in**0.5)
    cfgs = [
        config_for(
            "topk",
            k=k,
            d_in=args.d_in,
            d_sae=args.d_sae,
            batch_size=args.batch_size,
            total_steps=10_000,
            hook_name="bench",
            normalize_activations="none",
            device="cpu",
            seed=i,
        )  # fmt: skip
        for i, k in enumerate(args.ks)
    ]
    members = []
    for cfg in cfgs:
        sae = make_sae(cfg)
        opt = make_optimizer(sae, cfg)
        members.append((sae, opt, make_scheduler(opt, cfg)))
    print(f"{len(cfgs)} TopK members, k={args.ks}, d_in {args.d_in}, d_sae {args.d_sae}, batch {args.batch_size}; "
          f"best of {args.repeats}")  # fmt: skip

    with torch.no_grad():
        ws = [s.W_enc.detach() for s, _, _ in members]
        biases = [(s.b_enc - s.b_dec @ s.W_enc).detach() for s, _, _ in members]
        enc = {name: best_time(fn, args.repeats, warmup=True) for name, fn in encoder_paths(x, ws, biases).items()}
    steps = {name: best_time(fn, args.repeats, warmup=True) for name, fn in step_paths(members, x, args.steps).items()}

    base = enc["separate"]
    print(
        f"\nencoder matmuls, all members: separate {base * 1e3:.0f} ms; "
        + ", ".join(f"{n} {t * 1e3:.0f} ms ({t / base:.2f}x)" for n, t in enc.items() if n != "separate")
    )
    in_turn = steps["in turn"]
    per_step = in_turn / (args.steps * len(members))
    print(f"whole steps: in turn {in_turn:.2f} s ({per_step * 1e3:.0f} ms a member-step, of which the encoder "
          f"matmul {base / len(members) / per_step:.0%}); two threads {steps['two threads']:.2f} s "
          f"({steps['two threads'] / in_turn:.2f}x)")  # fmt: skip
    best = min(enc["concatenated"], enc["bmm"])
    bound = (in_turn - args.steps * (base - best)) / in_turn
    print(f"the best stacked encoder would bring a sweep step to {bound:.3f}x at most (the rest cannot be shared)")


if __name__ == "__main__":
    main()
