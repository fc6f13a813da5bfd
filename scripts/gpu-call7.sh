. scripts/gpu-env.sh; start_models > /dev/null
timeout 200 $S kernel-bench --vulkan --decode > $out/kb.txt 2>&1
tiny_parity 16; LONGER=1 logits_parity "SHARD_VK_CMD_XH2=0" "SHARD_VK_CMD_XH2=1" > /dev/null; cat $out/parity.txt
bench_configs $out/c.md "w||64 16;def||64 16 32 8;xh2|SHARD_VK_CMD_XH2=1|64 16;w512|SHARD_VK_CMD_SPLIT_WIDE=512|64;tall|SHARD_VK_CMD_TALL_MAX=64|64;def2||64 16;xh22|SHARD_VK_CMD_XH2=1|64 16;tall2|SHARD_VK_CMD_TALL_MAX=64|64"
cat $out/c.md
for i in 1 2; do for pt in 512 1; do $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens $pt --gen-tokens 128 --ctx 2048 --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('b1 pt=$pt', round(d.get('prefill_tokens_per_s'),1), round(d.get('decode_tokens_per_s'),1))"; done; done
grep -E "^decode|cmd \(direct|XH2" $out/kb.txt | cut -c1-210
rm -f $out/*.json $out/*.err
