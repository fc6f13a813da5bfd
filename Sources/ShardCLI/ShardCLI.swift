// ShardCLI module
