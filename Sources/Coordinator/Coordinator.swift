// Coordinator module
