// ShardRuntime module
