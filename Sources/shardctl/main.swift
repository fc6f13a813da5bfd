import ShardCLI
Shardctl.runMain()
