#!/usr/bin/env bash
# Drives `kvctl DBPATH` (the interactive shell) through a real terminal with tmux and
# checks the prompt, a result, history (Up), and an error that does not end the session.
#
#   scripts/shell-tty-test.sh        # exits 0 and prints "shell-tty-test: ok", or names what failed
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
command -v tmux >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq tmux; }
make -s build >/dev/null
KVCTL=$PWD/.build/release/kvctl
DB=$(mktemp -d)/db
SESSION=kvctl-tty-$$
trap 'tmux kill-session -t "$SESSION" 2>/dev/null || true; rm -rf "$(dirname "$DB")"' EXIT

tmux new-session -d -s "$SESSION" -x 120 -y 30 "HOME=$(dirname "$DB") $KVCTL $DB"
screen() { tmux capture-pane -p -t "$SESSION"; }
wait_for() { # text
  for _ in $(seq 100); do screen | grep -qF -- "$1" && return 0; sleep 0.1; done
  echo "shell-tty-test: never saw '$1'; screen was:"; screen; exit 1
}
wait_for "kvengine>"
tmux send-keys -t "$SESSION" 'put greeting "hello, tty"' Enter
wait_for "OK"
tmux send-keys -t "$SESSION" 'get greeting' Enter
wait_for "hello, tty"
# History: Up recalls the last command.
tmux send-keys -t "$SESSION" Up Enter
for _ in $(seq 100); do [ "$(screen | grep -cx 'hello, tty')" -ge 2 ] && break; sleep 0.1; done
[ "$(screen | grep -cx 'hello, tty')" -ge 2 ] || { echo "shell-tty-test: Up did not recall 'get greeting'"; screen; exit 1; }
tmux send-keys -t "$SESSION" 'frobnicate' Enter
wait_for "error: unknown command 'frobnicate' (type help)"
tmux send-keys -t "$SESSION" 'count' Enter
for _ in $(seq 100); do [ "$(screen | grep -c '^kvengine>')" -ge 6 ] && break; sleep 0.1; done
screen | grep -qx "1" || { echo "shell-tty-test: count did not print 1 after the error"; screen; exit 1; }
tmux send-keys -t "$SESSION" 'quit' Enter
for _ in $(seq 50); do tmux has-session -t "$SESSION" 2>/dev/null || break; sleep 0.1; done
tmux has-session -t "$SESSION" 2>/dev/null && { echo "shell-tty-test: quit did not end the session"; exit 1; }
echo "shell-tty-test: ok"
