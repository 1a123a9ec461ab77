#!/usr/bin/env bash
# Run an audit suite as a release gate in any CI system.
#
#   examples/ci_gate.sh SUITE MODEL [BASELINE] [OUT_DIR]
#
# Writes OUT_DIR/{results.json,samples.jsonl,report.html,junit.xml,summary.md} (reports are
# written even when a gate fails), appends the Markdown summary to $GITHUB_STEP_SUMMARY when set,
# and exits with audit's own code: 0 all gates pass, 1 a gate failed, 2 usage/config/runtime error.
# With MLFLOW_TRACKING_URI set (and pip install 'audit[tracking]'), the run is also logged there:
# params, every metric, gate results and the reports as artifacts (docs/tracking.md).
set -uo pipefail

suite=${1:?usage: ci_gate.sh SUITE MODEL [BASELINE] [OUT_DIR]}
model=${2:?usage: ci_gate.sh SUITE MODEL [BASELINE] [OUT_DIR]}
baseline=${3:-}
out=${4:-reports/ci}

export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}   # never reach the hub from CI
args=(run "$suite" --model "$model" --out "$out" --quiet)
if [[ -n "$baseline" ]]; then
  args+=(--baseline "$baseline")
fi
if [[ -n "${MLFLOW_TRACKING_URI:-}" ]]; then
  args+=(--mlflow "$MLFLOW_TRACKING_URI")
fi

audit "${args[@]}"
code=$?

if [[ -f "$out/summary.md" ]]; then
  if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
    cat "$out/summary.md" >> "$GITHUB_STEP_SUMMARY"
  else
    cat "$out/summary.md"
  fi
fi
case $code in
  0) echo "audit: all gates passed" ;;
  1) echo "audit: a release gate failed; see $out/report.html" >&2 ;;
  *) echo "audit: the audit could not run (exit $code); see the error above" >&2 ;;
esac
exit $code
