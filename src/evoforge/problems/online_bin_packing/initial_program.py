"""Online bin packing (as in FunSearch): a priority function picks the bin for each item."""

import math

# EVOLVE-BLOCK-START
GAP_WEIGHT = 0.0  # 0: all bins tie and the first one that fits wins (first fit); > 0: best fit


def priority(item, bins):
    """Return one score per entry of `bins`; the item goes into the bin with the highest score.

    `item` is the size of the arriving item. `bins` lists the remaining capacities of the open
    bins the item fits into (in the order they were opened), followed by one empty bin (its
    remaining capacity is the full capacity): choosing that last entry opens a new bin.
    """
    return [-GAP_WEIGHT * (remaining - item) for remaining in bins]
# EVOLVE-BLOCK-END


def pack(sizes, capacity):
    """The online packing loop (fixed, outside the evolve block): items arrive in order and each
    is placed at once, into the bin whose entry `priority` scores highest (the first one on
    ties). Returns the bin index of every item; bins are numbered 0, 1, ... as they are opened."""
    remaining = []  # remaining capacity of every opened bin, by bin index
    assignment = []
    for item in sizes:
        fits = [b for b, r in enumerate(remaining) if r >= item]
        options = [remaining[b] for b in fits]
        options.append(capacity)
        scores = list(priority(item, options))
        if len(scores) != len(options):
            raise ValueError(f"priority() returned {len(scores)} scores for {len(options)} bins")
        if not all(math.isfinite(s) for s in scores):
            raise ValueError("priority() returned a non-finite score (NaN or infinity)")
        best = max(range(len(scores)), key=scores.__getitem__)
        if best == len(fits):
            remaining.append(capacity - item)
            assignment.append(len(remaining) - 1)
        else:
            remaining[fits[best]] -= item
            assignment.append(fits[best])
    return assignment
