"""Numbers as the reports print them, and the one markdown table writer."""


def fmt(mean, std=None, decimals=2, sign=False):
    """``mean`` (and ``± std`` when given) to ``decimals``; "–" for no value."""
    if mean is None:
        return "–"
    text = f"{mean:+.{decimals}f}" if sign else f"{mean:.{decimals}f}"
    return text + (f" ± {std:.{decimals}f}" if std is not None else "")


def relative(value, base):
    """``value`` against ``base`` in percent ("+4.2 %"); "–" without both."""
    if value is None or not base:
        return "–"
    return f"{100 * (value / base - 1):+.1f} %"


def table(head, rows, align):
    """Markdown lines: the header row, its separator and one line per row.

    head: column titles; rows: lists of cells (strings); align: one letter per column,
    "l" (left, ``---``) or "r" (right, ``---:``)."""
    if len(align) != len(head):
        raise ValueError(f"{len(head)} columns, {len(align)} alignments")
    separator = "|" + "".join(" --- |" if a == "l" else " ---: |" for a in align)
    return [row_line(head), separator] + [row_line(cells) for cells in rows]


def row_line(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"
