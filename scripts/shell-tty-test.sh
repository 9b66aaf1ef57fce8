#!/usr/bin/env bash
# Drives `kvctl DBPATH` (the interactive shell) through a real terminal with tmux and
# checks the prompt, a result, history (Up), an error that does not end the session, tab
# completion of a command and of a key, an unknown flag refused, --json inside the shell, a continuation line inside quotes,
# Ctrl-C stopping a long scan (the session goes on), and a long scan through the pager
# (less shows one screen; q returns to the prompt).
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

# Enough keys that a scan to the terminal runs for seconds.
seq 1 200000 | awk '{ printf "bulk%07d\tvalue %d\n", $1, $1 }' | "$KVCTL" "$DB" import --format tsv >/dev/null
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
for _ in $(seq 100); do screen | grep -qx "200001" && break; sleep 0.1; done
screen | grep -qx "200001" || { echo "shell-tty-test: count did not print 200001 after the error"; screen; exit 1; }
# Tab completes a command name, then a key.
tmux send-keys -t "$SESSION" 'sta' Tab
wait_for "kvengine> stats"
tmux send-keys -t "$SESSION" C-u 'get gree' Tab
wait_for "kvengine> get greeting"
tmux send-keys -t "$SESSION" Enter
for _ in $(seq 100); do [ "$(screen | grep -cx 'hello, tty')" -ge 3 ] && break; sleep 0.1; done
[ "$(screen | grep -cx 'hello, tty')" -ge 3 ] || { echo "shell-tty-test: the completed 'get greeting' did not run"; screen; exit 1; }
tmux send-keys -t "$SESSION" 'scan --frobnicate' Enter
wait_for "error: Unknown option '--frobnicate'"
tmux send-keys -t "$SESSION" 'GET --json greeting' Enter
wait_for '{"key": "greeting", "value": "hello, tty"}'
tmux send-keys -t "$SESSION" 'put "two' Enter
wait_for "...>"
tmux send-keys -t "$SESSION" 'lines" v2' Enter
tmux send-keys -t "$SESSION" 'get "two\nlines"' Enter
wait_for "v2"
tmux send-keys -t "$SESSION" 'pager off' Enter
wait_for "OK"
tmux send-keys -t "$SESSION" 'scan' Enter
wait_for "bulk00"
tmux send-keys -t "$SESSION" C-c
wait_for "interrupted"
tmux send-keys -t "$SESSION" 'clear-screen-marker' Enter
wait_for "error: unknown command 'clear-screen-marker'"
tmux has-session -t "$SESSION" 2>/dev/null || { echo "shell-tty-test: Ctrl-C ended the session"; exit 1; }
# Ctrl-C at the prompt does not end the session either.
tmux send-keys -t "$SESSION" C-c
sleep 0.3
tmux send-keys -t "$SESSION" 'after-ctrl-c' Enter
wait_for "error: unknown command 'after-ctrl-c'"
# Long output goes through the pager (less, PAGER being unset): one screen of it, and the
# scan stops when q quits the pager.
tmux send-keys -t "$SESSION" 'pager on' Enter
sleep 0.3
tmux send-keys -t "$SESSION" 'scan bulk0100000' Enter
wait_for "bulk0100020"
sleep 0.5
screen | grep -q "bulk0100040" && { echo "shell-tty-test: the scan ran past the screen instead of through the pager"; screen; exit 1; }
tmux send-keys -t "$SESSION" q
sleep 0.3
tmux send-keys -t "$SESSION" 'after-pager' Enter
wait_for "error: unknown command 'after-pager'"
tmux send-keys -t "$SESSION" 'quit' Enter
for _ in $(seq 50); do tmux has-session -t "$SESSION" 2>/dev/null || break; sleep 0.1; done
tmux has-session -t "$SESSION" 2>/dev/null && { echo "shell-tty-test: quit did not end the session"; exit 1; }
echo "shell-tty-test: ok"
