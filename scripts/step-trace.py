#!/usr/bin/env python3
"""Where a token's time goes through shard processes (issue 4).

    SHARD_TRACE=/tmp/tr shardctl bench --model M --shards 2 ...   # each process writes /tmp/tr.ROLE.PID
    scripts/step-trace.py /tmp/tr [--skip N]

Prints, for the steps after the first N (default 2: prefill and the first decode step), the median and
mean of each segment of a step's path: coordinator submit -> sent -> worker 0 poll -> decoded ->
forward -> encoded -> sent -> worker 1 poll ... -> coordinator poll -> decoded, and the coordinator's
time between a result and the next submit; and the token period (one result to the next) with its part
outside the forward passes, which also covers chained steps (SHARD_CHAIN), where the first worker starts
each step itself. Points are CLOCK_MONOTONIC ns of one host.
"""
import collections, glob, statistics, sys

prefix = sys.argv[1]
skip = int(sys.argv[sys.argv.index('--skip') + 1]) if '--skip' in sys.argv else 2
steps = collections.defaultdict(dict)
workers = set()
for path in glob.glob(prefix + '.*'):
    for line in open(path):
        step, point, ns = line.split()
        steps[int(step)][point] = int(ns)
        if point.startswith('w-'):
            workers.add(point.rsplit('.', 1)[0])
order = ['coordinator.submit', 'coordinator.sent']
for w in sorted(workers):
    order += [w + '.' + p for p in ('poll', 'decoded', 'forward', 'encoded', 'sent')]
order += ['coordinator.poll', 'coordinator.decoded']
ids = sorted(steps)[skip:]
segments = collections.defaultdict(list)
total, between, outside, period, period_outside = [], [], [], [], []
for s in ids:
    e = steps[s]
    for a, b in zip(order, order[1:]):
        if a in e and b in e:
            segments[a + ' -> ' + b].append((e[b] - e[a]) / 1e3)
    nxt = steps.get(s + 1, {})
    if 'coordinator.decoded' in e and 'coordinator.decoded' in nxt:
        # One token's period as the coordinator sees it (also for chained steps, which it does not submit).
        period.append((nxt['coordinator.decoded'] - e['coordinator.decoded']) / 1e3)
        forwards = [nxt[w + '.forward'] - nxt[w + '.decoded'] for w in workers if w + '.forward' in nxt and w + '.decoded' in nxt]
        if len(forwards) == len(workers):
            period_outside.append(period[-1] - sum(forwards) / 1e3)
    if 'coordinator.submit' in e and 'coordinator.decoded' in e:
        total.append((e['coordinator.decoded'] - e['coordinator.submit']) / 1e3)
        forwards = [e[w + '.forward'] - e[w + '.decoded'] for w in workers if w + '.forward' in e and w + '.decoded' in e]
        if len(forwards) == len(workers):
            outside.append(total[-1] - sum(forwards) / 1e3)
        nxt = steps.get(s + 1, {})
        if 'coordinator.submit' in nxt:
            between.append((nxt['coordinator.submit'] - e['coordinator.decoded']) / 1e3)
print(f'{len(ids)} steps')
print(f'{"segment":58} {"p50 us":>9} {"mean us":>9}')
for a, b in zip(order, order[1:]):
    k = a + ' -> ' + b
    if segments[k]:
        print(f'{k:58} {statistics.median(segments[k]):9.1f} {statistics.mean(segments[k]):9.1f}')
if total:
    print(f'{"step: submit -> decoded":58} {statistics.median(total):9.1f} {statistics.mean(total):9.1f}')
if outside:
    print(f'{"step outside the forward passes":58} {statistics.median(outside):9.1f} {statistics.mean(outside):9.1f}')
if period:
    print(f'{"token period: decoded -> next decoded":58} {statistics.median(period):9.1f} {statistics.mean(period):9.1f}')
if period_outside:
    print(f'{"token period outside the forward passes":58} {statistics.median(period_outside):9.1f} {statistics.mean(period_outside):9.1f}')
if between:
    print(f'{"coordinator: decoded -> next submit":58} {statistics.median(between):9.1f} {statistics.mean(between):9.1f}')
