"""The comparisons' statistics: mean ± sample std over seeds, differences paired by seed, the
seed-to-seed spread they are judged against, and the verdict rule."""
import statistics


def mean_std(values):
    """Mean and sample standard deviation (n - 1) of the values that are not None; std is None
    below two values, both are None with none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def paired(a, b):
    """(seeds, a − b per seed) over the seeds where both {seed: value} have a value."""
    seeds = [s for s in sorted(set(a) & set(b)) if a[s] is not None and b[s] is not None]
    return seeds, [a[s] - b[s] for s in seeds]


def spread(diffs, *rows):
    """What a paired difference must exceed: the largest of the differences' std and each row's
    std (an undefined std counts as 0)."""
    return max([mean_std(diffs)[1] or 0.0] + [mean_std(row)[1] or 0.0 for row in rows])


def beyond_spread(diffs, *rows, either_way=False):
    """The verdict rule: (mean difference, spread, whether the mean is above the spread). A win
    is a mean above it; ``either_way``, a mean below minus the spread counts too."""
    mean, limit = mean_std(diffs)[0], spread(diffs, *rows)
    return mean, limit, mean is not None and (abs(mean) if either_way else mean) > limit
