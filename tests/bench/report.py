#!/usr/bin/env python3
"""Folds the `BENCH`/`SKIP`/`FAIL` lines of one `tests/bench/run.sh` run into one Markdown
table, prints it, and writes it into docs/benchmarks.md between the GENERATED markers
(the hand-written analysis around them is kept).

Line format (tab-separated), from tests/bench/engines and runtime/benches/common/bench_line.rs:
    BENCH <row> <column> <value> <unit> <higher|lower> <runs> <note>
    SKIP  <row> <column> <reason>
    FAIL  <row> <column> <what>
    ERROR <row> <message>          (written by run.sh when a benchmark did not run)

Every ratio is "how many times better SCL is than that column" (time: theirs / ours;
throughput: ours / theirs), so a ratio below 1 is a comparison SCL loses.

Usage: report.py RESULTS_FILE DOC_FILE MACHINE_LINE
"""

import sys

ENGINE_COLUMNS = [
    ("native", "native Rust"),
    ("roto", "Roto 0.12"),
    ("luau", "Luau (JIT)"),
    ("lua54", "Lua 5.4"),
    ("rhai", "Rhai 1.27"),
]

ENGINE_ROWS = [
    ("sort_userdata", "sort_userdata (10,000 host objects, host `<`)"),
    ("fib30", "fib(30) recursive"),
    ("loop1e8", "counting loop, 10^8 iterations"),
    ("sieve1e6", "sieve to 10^6 (78,498 primes)"),
    ("string100k", "100,000-piece string, interpolation"),
    ("nbody", "n-body, 50,000 steps (energy to 1e-9)"),
    ("json1mb", "parse 1 MB JSON, sum a field"),
    ("compile200", "compile a 200-line script (median of 100)"),
]

SERVICE_ROWS = [
    ("saf_enqueue_1", "S&F durable enqueue, 1 producer", "saf"),
    ("saf_enqueue_64", "S&F durable enqueue, 64 producers", "saf"),
    ("saf_forward", "S&F forward to a local HTTP sink", "saf"),
    ("saf_million_fill", "S&F filling 1,000,000 buffered", "saf"),
    ("saf_million_rss", "S&F RSS with 1,000,000 buffered", "saf"),
    ("central_throughput", "central inbound API vs bare axum, 64 connections", "central"),
    ("central_p50", "central inbound API p50 vs bare axum", "central"),
    ("central_p99", "central inbound API p99 vs bare axum", "central"),
    ("routed_throughput", "method with one Route.To().GetAttributes vs bare axum, 64 connections", "central"),
    ("routed_p50", "Route.To().GetAttributes method p50 vs bare axum", "central"),
    ("routed_p99", "Route.To().GetAttributes method p99 vs bare axum", "central"),
    ("external_call", "ExternalSystem.Call vs bare reqwest (median)", "external"),
    ("external_call_signed", "Call + API key + HMAC signing vs bare reqwest", "external"),
    ("site_start", "site start with 1,000 instances", "site"),
    ("site_idle_rss", "idle site RSS with 1,000 instances", "site"),
]

GOALS = {
    "sort_userdata": "faster than Luau and Roto; >= 10x Rhai",
    "fib30": "within 2x of native",
    "loop1e8": "within 2x of native",
}


def parse(path):
    bench, skip, fail, errors = {}, {}, {}, {}
    for line in open(path, encoding="utf-8"):
        fields = line.rstrip("\n").split("\t")
        kind = fields[0]
        if kind == "BENCH" and len(fields) >= 7:
            row, column, value, unit, better, runs = fields[1:7]
            note = fields[7] if len(fields) > 7 else ""
            bench[(row, column)] = (float(value), unit, better, int(runs), note)
        elif kind == "SKIP" and len(fields) >= 4:
            skip[(fields[1], fields[2])] = fields[3]
        elif kind == "FAIL" and len(fields) >= 4:
            fail[(fields[1], fields[2])] = fields[3]
        elif kind == "ERROR" and len(fields) >= 3:
            errors[fields[1]] = fields[2]
    return bench, skip, fail, errors


def number(value):
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio(ours, theirs, better):
    """How many times better SCL is (>1) or worse (<1)."""
    if ours <= 0 or theirs <= 0:
        return None
    return theirs / ours if better == "lower" else ours / theirs


def ratio_text(r):
    if r is None:
        return ""
    text = f"{r:.2f}x"
    return f"**{text} loses**" if r < 1 else text


def engine_cell(bench, skip, fail, row, column):
    if (row, column) in fail:
        return "result differs: not timed"
    if (row, column) in skip:
        return "– " + skip[(row, column)]
    if (row, column) not in bench:
        return "not run"
    value, unit, better, _, _ = bench[(row, column)]
    ours = bench.get((row, "scl"))
    r = ratio(ours[0], value, better) if ours else None
    cell = f"{number(value)} {unit}"
    return f"{cell} ({ratio_text(r)})" if r is not None else cell


def goal_result(bench, row):
    scl = bench.get((row, "scl"))
    if row not in GOALS:
        return "", ""
    if scl is None:
        return GOALS[row], "not measured"

    def times(column):
        other = bench.get((row, column))
        return other[0] / scl[0] if other else None

    if row == "sort_userdata":
        luau, roto, rhai = times("luau"), times("roto"), times("rhai")
        parts = []
        for name, r, need in (("Luau", luau, 1.0), ("Roto", roto, 1.0), ("Rhai", rhai, 10.0)):
            if r is None:
                parts.append(f"{name}: not measured")
            else:
                parts.append(f"{name} {r:.2f}x " + ("met" if r > need else "**missed**"))
        return GOALS[row], "; ".join(parts)
    native = bench.get((row, "native"))
    if native is None:
        return GOALS[row], "not measured"
    slower = scl[0] / native[0]
    verdict = "met" if slower <= 2.0 else "**missed**"
    return GOALS[row], f"{slower:.2f}x native: {verdict}"


def table(bench, skip, fail, errors):
    header = ["benchmark", "SCL"] + [label for _, label in ENGINE_COLUMNS] + ["goal", "result"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row, label in ENGINE_ROWS:
        scl = bench.get((row, "scl"))
        if (row, "scl") in fail:
            scl_cell = "result differs: not timed"
        elif scl:
            scl_cell = f"**{number(scl[0])} {scl[1]}**"
        else:
            scl_cell = errors.get("engines", "not run")
        cells = [label, scl_cell]
        cells += [engine_cell(bench, skip, fail, row, column) for column, _ in ENGINE_COLUMNS]
        cells += list(goal_result(bench, row))
        lines.append("| " + " | ".join(cells) + " |")
    for row, label, bench_name in SERVICE_ROWS:
        scl = bench.get((row, "scl"))
        if scl is None:
            why = errors.get(bench_name, "no figure printed")
            lines.append(f"| {label} | {why} |" + " |" * (len(header) - 2))
            continue
        baseline = bench.get((row, "baseline"))
        base_cell = ""
        if baseline:
            r = ratio(scl[0], baseline[0], scl[2])
            base_cell = f"bare: {number(baseline[0])} {baseline[1]} ({ratio_text(r)})"
        cells = [label, f"**{number(scl[0])} {scl[1]}**", base_cell, "", "", "", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(bench):
    out = []
    for (row, column), (_, _, _, runs, note) in sorted(bench.items()):
        if note:
            out.append(f"- `{row}` / {column} ({runs} runs): {note}")
    return "\n".join(out)


def main():
    results, doc, machine = sys.argv[1], sys.argv[2], sys.argv[3]
    bench, skip, fail, errors = parse(results)
    generated = (
        f"{machine}\n\n"
        "Medians of this thread's CPU time for the script engines (one untimed, checked "
        "warm-up run, then 3 to 21 timed runs); the services print their own medians. "
        "In brackets: how many times better SCL is than that column (time: theirs / ours; "
        "throughput: ours / theirs); **below 1 SCL loses**.\n\n"
        + table(bench, skip, fail, errors)
        + "\n\nPer-cell notes (how each engine expresses the workload):\n\n"
        + notes(bench)
        + "\n"
    )
    if fail:
        generated += "\nResult checks that failed:\n\n" + "\n".join(
            f"- {row} / {column}: {what}" for (row, column), what in sorted(fail.items())
        ) + "\n"
    if errors:
        generated += "\nBenchmarks that did not run:\n\n" + "\n".join(
            f"- {name}: {message}" for name, message in sorted(errors.items())
        ) + "\n"
    print(generated)
    begin, end = "<!-- BEGIN GENERATED by tests/bench/run.sh -->", "<!-- END GENERATED -->"
    try:
        text = open(doc, encoding="utf-8").read()
    except FileNotFoundError:
        text = f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    before, rest = text.split(begin, 1)
    _, after = rest.split(end, 1)
    open(doc, "w", encoding="utf-8").write(before + begin + "\n" + generated + end + after)


if __name__ == "__main__":
    main()
