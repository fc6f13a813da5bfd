print("shard-worker")
