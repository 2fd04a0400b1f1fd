"""OpenAI-compatible chat completions as a ``falconet rules generate`` backend."""
