#!/usr/bin/env bash
# Runs ON the lent GPU machine from the project root, with .gl and a bundle folder carried that holds the
# bundle (scripts/gpu-bundle.sh), this script, gpu-decode.sh and gpu-env.sh (the bundle is this script's folder):
# one round of decode A/B measurements in one call; logs tarred into $OUT/logs.tgz (the device tool returns
# few files). gpu-decode.sh's knobs (KNOBS, REPS, GEN, PARITY_KNOBS, PROFILE_KNOBS), and:
#   MATVEC_KNOBS="name=ENV=V[,..] ...": kernel-bench --matvec under each (int8 lines; default: the defaults);
#   PROFILES="name=ENV=V[,..] ...": extra profiled decode runs (bench --profile).
#   e.g. OUT=$OUT GEN=256 REPS=3 KNOBS="default off=SHARD_VK_DP_SG=0" PROFILES="off=SHARD_VK_DP_SG=0" bash .gpu-x/gpu-decode-ab.sh
set -u
here=$(dirname "$0")
o=/tmp/o; mkdir -p $o
export BUNDLE=$here
OUT0=${OUT:-/tmp/out}; OUT=$o . $here/gpu-env.sh
for k in ${MATVEC_KNOBS:-default}; do
  name=${k%%=*}; envs=""; [ "$k" != default ] && envs=${k#*=}
  echo "== matvec $name ($envs)" >> $o/matvec-knobs.txt
  env ${envs//,/ } timeout 100 $S kernel-bench --vulkan --matvec 2>&1 | grep "int8 dot, x packed" >> $o/matvec-knobs.txt
done
OUT=$o DP_ROWS_LIST="" REPS=${REPS:-2} KNOBS="${KNOBS}" PARITY_KNOBS="${PARITY_KNOBS}" PROFILE_KNOBS="${PROFILE_KNOBS}" bash $here/gpu-decode.sh
B="--model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens ${GEN:-128} --ctx 2048 --json"
for k in ${PROFILES:-}; do
  name=${k%%=*}; envs=${k#*=}
  env ${envs//,/ } $S bench $B --profile > /dev/null 2> $o/profile-$name.txt
  echo "--- decode profile $name ($envs):"; grep -A18 "^decode:" $o/profile-$name.txt
done
cat $o/matvec-knobs.txt
tar czf $OUT0/logs.tgz -C $o .
