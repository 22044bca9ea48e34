#!/usr/bin/env bash
# What `srun --nodes 2 --ntasks-per-node 1 CMD` does, on one machine: CMD started twice at once, as the two
# nodes' launchers (each a `torchrun --nnodes 2 ...` agent joining the same rendezvous); fails when either fails.
"$@" &
first=$!
"$@" &
second=$!
status=0
wait "$first" || status=$?
wait "$second" || status=$?
exit "$status"
