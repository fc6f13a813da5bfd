import ShardCLI
ShardWorker.runMain()
