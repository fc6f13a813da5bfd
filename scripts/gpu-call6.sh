. scripts/gpu-env.sh; start_models > /dev/null
tiny_parity 16; LONGER=1 logits_parity "SHARD_VK_QK_I8=0" "SHARD_VK_QK_I8=1" > /dev/null; cat $out/parity.txt
b1() { env $1 $S bench --model /tmp/7b.gguf --backend vulkan --prompt-tokens 512 --gen-tokens 16 --ctx 2048 --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('$1 prefill512', round(d.get('prefill_tokens_per_s'),1))"; }
for i in 1 2 3; do b1 SHARD_VK_QK_I8=1; b1 SHARD_VK_QK_I8=0; done
bench_configs $out/c.md "w||64;def||64 16;s256|SHARD_VK_CMD_SPLIT=256|64 16;def2||64;s2562|SHARD_VK_CMD_SPLIT=256|64;qk0|SHARD_VK_QK_I8=0|16"
cat $out/c.md
