"""The kare domain: accounts in, categories, history, actions and runs out."""
