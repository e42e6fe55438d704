"""Worker infrastructure: the instrumented base task, function metrics, the beat schedule registry."""
