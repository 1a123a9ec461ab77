"""Build messages.jsonl (split column: train / test) for the support-routing task from the hand-written
messages in src/<topic>.txt (deterministic; stdlib only).

Source format, one message per line:
    U ORDER | message text
U is h/n/l (urgency high/normal/low); ORDER is the 8-digit order number or '-' for null.
A line starting with '+' is a variation of the previous message's situation and joins
its group. Lines starting with '#' and blank lines are ignored.

Split: within each topic, groups are taken in the order written and a group goes to test
when half the group, added to the topic's test rows so far, stays within one third of the
rows seen (group included): roughly every third group is test and no group spans both splits.
Run: python audit/suites/data/routing/build.py
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
TOPICS = ["billing", "refunds", "returns", "shipping", "orders", "subscription",
          "account", "security", "privacy", "app_bugs", "device", "warranty"]
URG = {"h": "high", "n": "normal", "l": "low"}


def read_topic(topic):
    groups = []
    path = os.path.join(HERE, "src", topic + ".txt")
    if not os.path.exists(path):
        return groups
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            join = line.startswith("+")
            if join:
                line = line[1:]
            head, sep, text = line.partition(" | ")
            if not sep:
                raise SystemExit(f"{path}:{lineno}: missing ' | '")
            u, _, order = head.strip().partition(" ")
            order = order.strip()
            row = {"prompt": text.strip(), "topic": topic, "urgency": URG[u],
                   "order_number": None if order == "-" else order}
            if join and groups:
                groups[-1].append(row)
            else:
                groups.append([row])
    return groups


def main():
    train, test = [], []
    gno = 0
    for topic in TOPICS:
        seen = tst = 0
        for grp in read_topic(topic):
            gno += 1
            seen += len(grp)
            to_test = tst + len(grp) / 2 <= seen / 3
            split = "test" if to_test else "train"
            if to_test:
                tst += len(grp)
            for r in grp:
                r["split"] = split
                r["group"] = f"g{gno:04d}"
                (test if to_test else train).append(r)
    rng = random.Random(20240611)
    rng.shuffle(train)
    rng.shuffle(test)
    n = 0
    # One file, a `split` column (as the support data): a suite audits split test, `audit harden
    # --train-split train` attacks and trains on split train of the same file.
    with open(os.path.join(HERE, "messages.jsonl"), "w", encoding="utf-8") as f:
        for rows in (train, test):
            for r in rows:
                n += 1
                ref = json.dumps({"topic": r["topic"], "order_number": r["order_number"],
                                  "urgency": r["urgency"]})
                out = {"id": f"route-{n:04d}", "prompt": r["prompt"], "reference": ref,
                       "topic": r["topic"], "order_number": r["order_number"],
                       "urgency": r["urgency"], "split": r["split"], "group": r["group"]}
                f.write(json.dumps(out, ensure_ascii=False) + "\n")
    print(f"train {len(train)}  test {len(test)}")


if __name__ == "__main__":
    main()
