print("shardctl")
