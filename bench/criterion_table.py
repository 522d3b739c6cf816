#!/usr/bin/env python3
"""Prints the criterion results under target/criterion as a Markdown table of medians (p50).

Run after `cargo bench -p gridnode-bench`. Each group's rows are printed together, so a figure
sits beside the limit it was measured against in the same run.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def human(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


print("| benchmark | p50 (median) | mean | 95% CI of mean |")
print("| --- | --- | --- | --- |")
for estimates in sorted(root.glob("*/*/new/estimates.json")):
    group, name = estimates.parts[-4], estimates.parts[-3]
    data = json.loads(estimates.read_text())
    mean = data["mean"]
    ci = mean["confidence_interval"]
    print(
        f"| {group}/{name} | {human(data['median']['point_estimate'])} | "
        f"{human(mean['point_estimate'])} | {human(ci['lower_bound'])} – {human(ci['upper_bound'])} |"
    )
