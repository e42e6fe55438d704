"""Auto-assist providers: what a reviewer is shown before deciding a review item.

``base`` defines the provider protocol and the registry, ``features`` turns an item's evidence into
numbers, ``rules`` scores risk with transparent weighted factors, ``learned`` fits and applies a model
of past human decisions, ``default`` combines the two (offline), and ``openai_compat`` asks an
OpenAI-compatible chat endpoint, falling back to the default provider.
"""
