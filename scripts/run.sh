#!/usr/bin/env bash
# The main job: sets up .venv, executes notebooks/00_* .. 05_* in order with
# a profile (argument, else $CIFAR_LIB_PROFILE, else full on a GPU and cpu
# otherwise), then refreshes that profile's figures, results and report.
source "$(dirname "$0")/env.sh"
PROFILE="${1:-${CIFAR_LIB_PROFILE:-}}"
shift || true
exec python -m cifar_lib notebooks ${PROFILE:+--profile "$PROFILE"} "$@"
