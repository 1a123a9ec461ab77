"""Mechanical checks for the support-routing dataset (stdlib only).

Run: python audit/suites/data/routing/validate.py
Exits non-zero on any error; prints the count tables quoted in README.md.
"""
import difflib
import json
import os
import re
import sys
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
TOPICS = ["billing", "refunds", "returns", "shipping", "orders", "subscription",
          "account", "security", "privacy", "app_bugs", "device", "warranty"]
URGENCIES = ["high", "normal", "low"]
KEYS = ["id", "prompt", "reference", "topic", "order_number", "urgency", "split", "group"]
MIN_ROWS = {"train": 720, "test": 360}
MIN_PER_TOPIC = {"train": 45, "test": 22}
NEAR_DUP = 0.9

errors, warnings = [], []


def err(msg):
    errors.append(msg)


def norm(text):
    text = text.lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def strip_seps(text):
    return re.sub(r"[\s\-#]", "", text)


def load(split):
    rows = []
    path = os.path.join(HERE, "messages.jsonl")
    if not os.path.exists(path):
        err(f"missing {path}")
        return rows
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                err(f"messages.jsonl:{n}: blank line")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                err(f"messages.jsonl:{n}: bad JSON ({e})")
                continue
            if row.get("split") not in ("train", "test"):
                err(f"messages.jsonl:{n}: split must be train or test, got {row.get('split')!r}")
            if row.get("split") != split:
                continue
            row["_where"] = f"messages.jsonl:{n}"
            rows.append(row)
    return rows


def check_row(row, split):
    w = row["_where"]
    keys = [k for k in row if k != "_where"]
    if keys != KEYS:
        err(f"{w}: keys {keys} != {KEYS}")
        return False
    if not isinstance(row["id"], str) or not re.fullmatch(r"route-\d{4,}", row["id"]):
        err(f"{w}: bad id {row['id']!r}")
    if not isinstance(row["prompt"], str) or not row["prompt"].strip():
        err(f"{w}: empty prompt")
        return False
    if row["prompt"] != row["prompt"].strip() or "\n" in row["prompt"]:
        err(f"{w}: prompt has leading/trailing space or a newline")
    if row["topic"] not in TOPICS:
        err(f"{w}: topic {row['topic']!r} not allowed")
    if row["urgency"] not in URGENCIES:
        err(f"{w}: urgency {row['urgency']!r} not allowed")
    if row["split"] != split:
        err(f"{w}: split field {row['split']!r} but file is {split}")
    if not isinstance(row["group"], str) or not row["group"]:
        err(f"{w}: bad group")
    on = row["order_number"]
    if on is not None and not (isinstance(on, str) and re.fullmatch(r"\d{8}", on)):
        err(f"{w}: order_number {on!r} is not null or 8 digits")
    ref = json.dumps({"topic": row["topic"], "order_number": on, "urgency": row["urgency"]})
    if row["reference"] != ref:
        err(f"{w}: reference {row['reference']!r} != {ref!r}")
    # order number present in the text / absent when null
    prompt = row["prompt"]
    raw_runs = re.findall(r"(?<!\d)\d{8,}(?!\d)", prompt)
    # digit groups joined by single spaces/dashes, e.g. "4821 3977", "4821-3977"
    spaced = [strip_seps(m) for m in re.findall(r"(?<![\d\-])\d+(?:[ \-]\d+)*(?![\d\-])", prompt)]
    if on is not None:
        if on not in strip_seps(prompt):
            err(f"{w}: order_number {on} not found in prompt")
        others = [r for r in raw_runs if r != on]
        if others:
            err(f"{w}: other 8+ digit run(s) {others} besides order number {on}")
    else:
        if [r for r in raw_runs if len(r) == 8]:
            err(f"{w}: 8-digit run in prompt but order_number is null")
        if [s for s in spaced if len(s) == 8]:
            err(f"{w}: digits grouped to 8 digits (e.g. '4821 3977') but order_number is null")
    return True


def table(title, rows_by_split, key, values):
    print(f"\n{title}")
    print(f"| {key} | train | test | total |")
    print("|---|---:|---:|---:|")
    tot = Counter()
    for v in values:
        a = sum(1 for r in rows_by_split["train"] if r[key] == v)
        b = sum(1 for r in rows_by_split["test"] if r[key] == v)
        tot["train"] += a
        tot["test"] += b
        print(f"| {v} | {a} | {b} | {a + b} |")
    print(f"| **all** | {tot['train']} | {tot['test']} | {tot['train'] + tot['test']} |")


def words(text):
    return len(text.split())


def main():
    data = {s: load(s) for s in ("train", "test")}
    good = {s: [r for r in data[s] if check_row(r, s)] for s in data}

    ids = Counter(r["id"] for s in good for r in good[s])
    for i, c in ids.items():
        if c > 1:
            err(f"id {i} used {c} times")
    gsplits = defaultdict(set)
    gtopics = defaultdict(set)
    for s in good:
        for r in good[s]:
            gsplits[r["group"]].add(s)
            gtopics[r["group"]].add(r["topic"])
    for g, ss in gsplits.items():
        if len(ss) > 1:
            err(f"group {g} spans both splits")
    for g, ts in gtopics.items():
        if len(ts) > 1:
            warnings.append(f"group {g} has several topics {sorted(ts)}")

    # duplicates and near-duplicates
    items = [(s, r, norm(r["prompt"])) for s in good for r in good[s]]
    exact = defaultdict(list)
    for s, r, n in items:
        exact[n].append((s, r))
    for n, lst in exact.items():
        if len(lst) > 1:
            err("exact duplicate prompt (after normalising): "
                + ", ".join(f"{r['id']}({s})" for s, r in lst) + f": {n!r}")
    items.sort(key=lambda x: len(x[2]))
    for i in range(len(items)):
        s1, r1, n1 = items[i]
        l1 = len(n1)
        for j in range(i + 1, len(items)):
            s2, r2, n2 = items[j]
            l2 = len(n2)
            if 2 * l1 / (l1 + l2) < NEAR_DUP:
                break
            if n1 == n2:
                continue
            sm = difflib.SequenceMatcher(None, n1, n2, autojunk=False)
            if sm.real_quick_ratio() < NEAR_DUP or sm.quick_ratio() < NEAR_DUP:
                continue
            ratio = sm.ratio()
            if ratio >= NEAR_DUP:
                msg = (f"near-duplicate prompts (ratio {ratio:.2f}): {r1['id']}({s1}) "
                       f"{r1['prompt']!r} ~ {r2['id']}({s2}) {r2['prompt']!r}")
                if s1 != s2:
                    err(msg)
                elif r1["group"] != r2["group"]:
                    warnings.append(msg)

    # minimum counts
    for s in ("train", "test"):
        if len(good[s]) < MIN_ROWS[s]:
            err(f"{s}: {len(good[s])} rows < {MIN_ROWS[s]}")
        tc = Counter(r["topic"] for r in good[s])
        for t in TOPICS:
            if tc[t] < MIN_PER_TOPIC[s]:
                err(f"{s}: topic {t} has {tc[t]} rows < {MIN_PER_TOPIC[s]}")

    # tables
    table("Rows per topic", good, "topic", TOPICS)
    table("Rows per urgency", good, "urgency", URGENCIES)
    print("\nShare with an order number / length")
    print("| split | rows | groups | with order_number | short (<12 words) | medium (12-59) | long (60+) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in ("train", "test", "all"):
        rows = good["train"] + good["test"] if s == "all" else good[s]
        n = len(rows) or 1
        wo = sum(1 for r in rows if r["order_number"] is not None)
        sh = sum(1 for r in rows if words(r["prompt"]) < 12)
        lo = sum(1 for r in rows if words(r["prompt"]) >= 60)
        groups = len({r["group"] for r in rows})
        print(f"| {s} | {len(rows)} | {groups} | {wo} ({100 * wo / n:.0f}%) | {sh} ({100 * sh / n:.0f}%) "
              f"| {len(rows) - sh - lo} ({100 * (len(rows) - sh - lo) / n:.0f}%) | {lo} ({100 * lo / n:.0f}%) |")
    print("\nTopic x urgency (both splits)")
    print("| topic | high | normal | low | with order_number |")
    print("|---|---:|---:|---:|---:|")
    allrows = good["train"] + good["test"]
    for t in TOPICS:
        rs = [r for r in allrows if r["topic"] == t]
        c = Counter(r["urgency"] for r in rs)
        wo = sum(1 for r in rs if r["order_number"] is not None)
        print(f"| {t} | {c['high']} | {c['normal']} | {c['low']} | {wo} |")

    for wmsg in warnings:
        print("WARNING:", wmsg)
    for e in errors:
        print("ERROR:", e)
    print(f"\n{len(errors)} error(s), {len(warnings)} warning(s)")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
