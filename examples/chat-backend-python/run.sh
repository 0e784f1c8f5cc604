#!/bin/sh
# Starts the chat backend and one gateway node on switchboard.toml; Ctrl-C stops both.
# SWITCHBOARD selects the binary (default: the workspace's debug build).
set -e
cd "$(dirname "$0")"
SWITCHBOARD=${SWITCHBOARD:-../../target/debug/switchboard}
python3 backend.py --config switchboard.toml &
backend=$!
trap 'kill $backend' EXIT INT TERM
"$SWITCHBOARD" --app gateway --config switchboard.toml
