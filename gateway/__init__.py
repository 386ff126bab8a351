"""The HTTP gateway: settings, store, auth, metrics and the request pipeline."""
