#!/bin/bash
cd /tmp/fresh
export HOME=/tmp/freshhome
echo "== fresh clone $(git rev-parse --short HEAD), HOME=$HOME (empty: no pip/HF/audit/matplotlib cache), $(date -u)"
start=$(date +%s)
make demo; echo "== make demo exit $? after $(( $(date +%s) - start )) s"
t2=$(date +%s)
./scripts/make-exit demo; echo "== ./scripts/make-exit demo exit $? after $(( $(date +%s) - t2 )) s"
t3=$(date +%s)
CI=true make test; echo "== CI=true make test exit $? after $(( $(date +%s) - t3 )) s"
echo "== done $(date -u)"
