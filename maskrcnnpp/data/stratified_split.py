"""A seeded split of items into named subsets (e.g. train/val/test), stratified by a label.

Used to make the committed DSB2018 split (strata: modality and image size) and
meant for any dataset import that splits its own images, e.g. 80/10/10 by seed::

    sizes = sizes_from_fractions(len(strata), {"train": 0.8, "val": 0.1, "test": 0.1})
    split, counts = stratified_split(strata, sizes, seed=2018)
"""
import random
from collections import defaultdict

__all__ = ["allocate", "sizes_from_fractions", "stratified_split"]


def _largest_remainder(quota, budget):
    """Integer parts of ``quota`` ({key: float}), plus one for the largest fractional parts
    until they sum to ``budget``."""
    counts = {k: int(q) for k, q in quota.items()}
    for k in sorted(quota, key=lambda k: counts[k] - quota[k])[: budget - sum(counts.values())]:
        counts[k] += 1
    return counts


def sizes_from_fractions(total, fractions):
    """Subset sizes summing exactly to ``total``, proportional to ``fractions`` ({name: weight})."""
    weight = sum(fractions.values())
    if total < 0 or weight <= 0 or min(fractions.values()) < 0:
        raise ValueError(f"cannot split {total} items by {fractions}")
    return _largest_remainder({k: total * f / weight for k, f in fractions.items()}, total)


def allocate(stratum_sizes, targets):
    """Per-stratum counts for each subset: proportional, at least one of each subset in
    strata of as many items as there are subsets, and summing exactly to ``targets``."""
    total = sum(targets.values())
    quota = {s: {k: m * targets[k] / total for k in targets} for s, m in stratum_sizes.items()}
    alloc = {s: {k: int(q) for k, q in quota[s].items()} for s in quota}
    given = {k: sum(alloc[s][k] for s in alloc) for k in targets}
    for s, m in sorted(stratum_sizes.items(), key=lambda item: -item[1]):  # largest strata first
        if m >= len(targets):
            for k in targets:
                if alloc[s][k] == 0 and given[k] < targets[k]:  # never beyond the subset's size
                    alloc[s][k] = 1
                    given[k] += 1
            while sum(alloc[s].values()) > m:  # the minimums overfilled a small stratum
                k = max((k for k in targets if alloc[s][k] > 1), key=lambda k: alloc[s][k] - quota[s][k])
                alloc[s][k] -= 1
    left = {s: m - sum(alloc[s].values()) for s, m in stratum_sizes.items()}
    deficit = {k: targets[k] - sum(alloc[s][k] for s in alloc) for k in targets}
    # Hand out the remaining items, largest fractional remainder first.
    by_remainder = sorted(((quota[s][k] - alloc[s][k], s, k) for s in quota for k in targets), reverse=True)
    for _, s, k in by_remainder:
        if left[s] > 0 and deficit[k] > 0:
            alloc[s][k] += 1
            left[s] -= 1
            deficit[k] -= 1
    for s in sorted(alloc):  # rare: what the remainders could not place
        for k in targets:
            n = max(0, min(left[s], deficit[k]))
            alloc[s][k] += n
            left[s] -= n
            deficit[k] -= n
    return alloc


def stratified_split(strata, sizes, seed):
    """Split the items of ``strata`` ({item id: stratum label}) into subsets of ``sizes``.

    Returns ``({subset: sorted ids}, {stratum: {subset: count}})``. Items are
    shuffled with ``random.Random(seed)`` within each stratum (strata and ids
    sorted first), so the same inputs and seed always give the same split.
    """
    if len(strata) != sum(sizes.values()):
        raise ValueError(f"{len(strata)} items, but the subset sizes sum to {sum(sizes.values())}")
    members = defaultdict(list)
    for item, stratum in sorted(strata.items()):
        members[stratum].append(item)
    alloc = allocate({s: len(ids) for s, ids in members.items()}, sizes)
    rng = random.Random(seed)
    split = {k: [] for k in sizes}
    for stratum in sorted(members):
        ids = members[stratum]
        rng.shuffle(ids)
        start = 0
        for k in sizes:
            split[k] += ids[start : start + alloc[stratum][k]]
            start += alloc[stratum][k]
    return {k: sorted(v) for k, v in split.items()}, {s: dict(alloc[s]) for s in sorted(alloc)}
